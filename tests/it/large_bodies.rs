//! Large histories through the real binary: a coding agent resends its whole conversation on
//! every turn, megabytes of JSON. Translating one must not cost many times its size in memory,
//! and a run of them spread over the workers must not leave each worker's share of the
//! allocator holding its own copy (glibc's per-thread arenas did: 685 MB after a sequence of
//! 5 MB requests with 16 workers). The history is the benchmark's (`tests/bench/history.rs`).

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use crate::common::gate::*;
use crate::common::mock_upstream::*;

#[path = "../bench/history.rs"]
#[allow(dead_code)]
mod history;

/// Sends `body` to `path` and reads the whole (streamed) answer; returns its status.
fn post(gate: &Gate, key: &str, path: &str, body: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let resp = agent
        .post(&gate.url(path))
        .header("authorization", &format!("Bearer {key}"))
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    let status = resp.status().as_u16();
    let mut answer = String::new();
    resp.into_body()
        .into_reader()
        .read_to_string(&mut answer)
        .ok();
    assert!(
        status == 200 && answer.contains("upstream."),
        "{path}: {status} {answer:.300}"
    );
    status
}

/// The gate's resident memory now and at its peak, in bytes.
fn rss(gate: &Gate) -> (u64, u64) {
    (gate.proc_kb("VmRSS") * 1024, gate.proc_kb("VmHWM") * 1024)
}

#[test]
fn translating_a_large_history_costs_at_most_four_times_its_body() {
    for (path, body) in [
        ("/v1/chat/completions", history::chat(4_000_000)),
        ("/v1/responses", history::responses(4_000_000)),
    ] {
        let mock = MockUpstream::start();
        let (gate, key) = logged_in(&mock.url(), json!({"workers": 4}));
        let (idle, _) = rss(&gate);
        post(&gate, &key, path, &body);
        let (_, peak) = rss(&gate);
        let times = (peak - idle) as f64 / body.len() as f64;
        assert!(
            times <= 4.0,
            "{path}: a {:.1} MB history took {:.1} MB above idle ({times:.1}× the body)",
            body.len() as f64 / 1e6,
            (peak - idle) as f64 / 1e6
        );
        // What the upstream got is the whole conversation, translated.
        let sent = mock.last_request().expect("the upstream was called").json();
        assert!(sent["messages"].as_array().is_some_and(|m| m.len() > 100));
    }
}

#[test]
fn a_run_of_large_histories_over_every_worker_does_not_pile_up() {
    const WORKERS: usize = 8;
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"workers": WORKERS, "limits": {"per_key_concurrent": WORKERS}}),
    );
    // First every worker translates a small history at once (the upstream holds each answer
    // until all are in), so that what a worker keeps in any case (its stack) is in the
    // baseline.
    for _ in 0..WORKERS {
        mock.enqueue(
            "/v1/messages",
            Reply::sse_text(DEFAULT_MODEL, DEFAULT_TEXT_CHUNKS).delay_before_ms(500),
        );
    }
    let small = history::chat(100_000);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| post(&gate, &key, "/v1/chat/completions", &small));
        }
    });
    let (warm, _) = rss(&gate);
    // Then sixteen large ones, two at a time: the workers take turns at them.
    let body = history::chat(2_000_000);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..8 {
                    post(&gate, &key, "/v1/chat/completions", &body);
                }
            });
        }
    });
    let (now, peak) = rss(&gate);
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "warm {:.1} MB, peak {:.1} MB, {:.1} MB at the end",
        mb(warm),
        mb(peak),
        mb(now)
    );
    // Two translations' worth at a time, whichever workers did them.
    let bound = 2 * 4 * body.len() as u64;
    assert!(
        peak.saturating_sub(warm) <= bound,
        "16 requests of {:.1} MB, two at a time over {WORKERS} workers: peak {:.1} MB above \
         the warm {:.1} MB (at most {:.1} MB expected); {:.1} MB at the end",
        mb(body.len() as u64),
        mb(peak.saturating_sub(warm)),
        mb(warm),
        mb(bound),
        mb(now)
    );
}
