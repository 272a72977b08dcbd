//! `make soak`: mixed load for a long time (30 minutes by default) against one server, sampling
//! its memory, threads and open files every 10 s. Passes when, after a warm-up, resident memory
//! stays within ±20% of its median and neither threads nor file descriptors grow.
//!
//! The mix, on fresh connections from six client threads: streamed and whole answers on
//! `/v1/messages`, `/v1/chat/completions` and `/v1/responses`, upstream 529s, malformed bodies,
//! wrong keys, clients that hang up mid-stream, and `/health` + `/v1/models`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::gate::Setup;
use crate::http1::{self, Conn};
use crate::procfs;
use crate::upstreams::SseMock;

const CLIENTS: usize = 6;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// One kind of request in the mix: what to send and which status is expected.
struct Kind {
    name: &'static str,
    path: &'static str,
    body: String,
    wrong_key: bool,
    expect: u16,
    /// Read this many lines of the answer, then hang up (a client that goes away).
    hang_up_after: Option<usize>,
}

fn mix() -> Vec<Kind> {
    let user = json!([{"role": "user", "content": "Soak test."}]);
    // 20 events 10 ms apart; see `upstreams::SseMock` for the max_tokens convention.
    let short = 20 + 10 * 1000;
    let long = 100 + 20 * 1000;
    let k = |name, path, body: serde_json::Value, expect| Kind {
        name,
        path,
        body: body.to_string(),
        wrong_key: false,
        expect,
        hang_up_after: None,
    };
    let model = "claude-sonnet-4-6";
    vec![
        k(
            "messages stream",
            "/v1/messages",
            json!({"model": model, "max_tokens": short, "stream": true, "messages": user}),
            200,
        ),
        k(
            "messages whole",
            "/v1/messages",
            json!({"model": model, "max_tokens": 64, "messages": user}),
            200,
        ),
        k(
            "chat stream",
            "/v1/chat/completions",
            json!({"model": model, "max_tokens": short, "stream": true, "messages": user}),
            200,
        ),
        k(
            "chat whole",
            "/v1/chat/completions",
            json!({"model": model, "max_tokens": short, "messages": user}),
            200,
        ),
        k(
            "responses stream",
            "/v1/responses",
            json!({"model": model, "max_output_tokens": short, "stream": true, "input": "Soak."}),
            200,
        ),
        k(
            "upstream 529",
            "/v1/messages",
            json!({"model": model, "max_tokens": 999, "messages": user}),
            529,
        ),
        Kind {
            body: "{\"model\": \"x\", \"messages\": [".into(),
            ..k("malformed body", "/v1/chat/completions", json!({}), 400)
        },
        Kind {
            wrong_key: true,
            ..k(
                "wrong key",
                "/v1/messages",
                json!({"model": model, "max_tokens": 64, "messages": user}),
                401,
            )
        },
        Kind {
            hang_up_after: Some(4),
            ..k(
                "hang up mid-stream",
                "/v1/messages",
                json!({"model": model, "max_tokens": long, "stream": true, "messages": user}),
                200,
            )
        },
        k("models", "/v1/models", json!(null), 200),
    ]
}

/// Sends one request of `kind` on a fresh connection; returns the status (0 when the
/// exchange itself failed) and the answer's first line.
fn one(addr: SocketAddr, key: &str, kind: &Kind) -> (u16, String) {
    let t0 = Instant::now();
    let Ok(mut conn) = Conn::open(addr) else {
        return (0, "connect failed".into());
    };
    let key = if kind.wrong_key { "cgk_not_a_key" } else { key };
    let request = if kind.path == "/v1/models" {
        format!("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\n\r\n")
            .into_bytes()
    } else {
        http1::post(kind.path, key, &kind.body)
    };
    if conn.send(&request).is_err() {
        return (0, "send failed".into());
    }
    let Ok((status, framing)) = conn.read_head() else {
        return (0, "no answer".into());
    };
    let mut body = BufReader::new(conn.body(framing));
    let mut line = String::new();
    let mut first = String::new();
    let mut lines = 0;
    while let Ok(n) = body.read_line(&mut line) {
        if n == 0 || kind.hang_up_after.is_some_and(|after| lines >= after) {
            break;
        }
        if lines == 0 {
            first = line.chars().take(300).collect();
        }
        lines += 1;
        line.clear();
    }
    if std::env::var("SOAK_DEBUG").is_ok() {
        eprintln!(
            "soak debug: {} -> {status}, {lines} lines in {:?}, first {:?}",
            kind.name,
            t0.elapsed(),
            first.trim()
        );
    }
    (status, first)
}

struct Sample {
    at_s: u64,
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

pub fn run(work: &Path, out_dir: &Path, duration: Duration) -> bool {
    let epoch = Instant::now();
    let mock = SseMock::start(epoch);
    // The default worker count, as a user would run it; limits off so the mix is not throttled
    // (a wrong key still meets the failed-auth throttle: 401 or 429 are both expected).
    let setup = Setup::new(work, "soak", mock.addr, 16);
    let gate = setup.spawn();
    let (addr, key, pid) = (gate.addr, gate.key.clone(), gate.pid());
    // SOAK_ONLY=N runs only the Nth kind of the mix (to chase a failure).
    let only: Option<usize> = std::env::var("SOAK_ONLY").ok().and_then(|v| v.parse().ok());
    let kinds = Arc::new(
        mix()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| only.is_none_or(|o| o == *i))
            .map(|(_, k)| k)
            .collect::<Vec<_>>(),
    );
    let counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..kinds.len()).map(|_| AtomicU64::new(0)).collect());
    let unexpected: Arc<Vec<AtomicU64>> =
        Arc::new((0..kinds.len()).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (kinds, counts, unexpected, stop, key) = (
                kinds.clone(),
                counts.clone(),
                unexpected.clone(),
                stop.clone(),
                key.clone(),
            );
            std::thread::spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % kinds.len();
                    let (status, first_line) = one(addr, &key, &kinds[k]);
                    counts[k].fetch_add(1, Ordering::Relaxed);
                    let fine = status == kinds[k].expect || (kinds[k].wrong_key && status == 429);
                    if !fine && unexpected[k].fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!(
                            "soak: {} answered {status}, expected {}: {}",
                            kinds[k].name,
                            kinds[k].expect,
                            first_line.trim()
                        );
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    eprintln!(
        "soak: {} s of mixed load; a sample every {} s",
        duration.as_secs(),
        SAMPLE_EVERY.as_secs()
    );
    while started.elapsed() < duration {
        std::thread::sleep(SAMPLE_EVERY.min(duration.saturating_sub(started.elapsed())));
        let s = Sample {
            at_s: started.elapsed().as_secs(),
            rss_kib: procfs::rss_kib(pid),
            threads: procfs::threads(pid),
            fds: procfs::open_fds(pid),
        };
        let busy = Conn::open(addr)
            .and_then(|mut c| {
                c.exchange(
                    format!("GET /metrics HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n")
                        .as_bytes(),
                )
            })
            .map(|(_, body)| {
                String::from_utf8_lossy(&body)
                    .lines()
                    .filter(|l| {
                        l.starts_with("claudegate_workers_busy")
                            || l.starts_with("claudegate_queue_waiting")
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        eprintln!(
            "soak: {:>5} s  RSS {:>6} KiB  threads {:>3}  fds {:>3}  requests {}  {busy}",
            s.at_s,
            s.rss_kib,
            s.threads,
            s.fds,
            counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().ok();
    }
    let alive = Conn::open(addr)
        .and_then(|mut c| c.exchange(http1::HEALTH))
        .is_ok_and(|(status, _)| status == 200);
    judge(
        &samples,
        &kinds,
        &counts,
        &unexpected,
        alive,
        duration,
        out_dir,
    )
}

fn judge(
    samples: &[Sample],
    kinds: &[Kind],
    counts: &[AtomicU64],
    unexpected: &[AtomicU64],
    alive: bool,
    duration: Duration,
    out_dir: &Path,
) -> bool {
    // Warm-up: the first 2 minutes (a tenth of a shorter run).
    let warm_s = (duration.as_secs() / 10).min(120);
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.at_s > warm_s).collect();
    if steady.len() < 3 {
        eprintln!("soak: too short to judge ({} steady samples)", steady.len());
        return false;
    }
    let median_rss = crate::median(steady.iter().map(|s| s.rss_kib as f64).collect());
    let (lo, hi) = steady.iter().fold((f64::MAX, 0f64), |(lo, hi), s| {
        (lo.min(s.rss_kib as f64), hi.max(s.rss_kib as f64))
    });
    let rss_ok = lo >= median_rss * 0.8 && hi <= median_rss * 1.2;
    // Growth: the last third of the steady samples against the first. Each request in flight
    // holds a connection thread and up to two sockets, so the counts move with the load by up
    // to a few per client; a leak grows without bound and shows over 30 minutes.
    let third = steady.len() / 3;
    let max_of =
        |part: &[&Sample], f: fn(&Sample) -> u64| part.iter().map(|s| f(s)).max().unwrap_or(0);
    let first = &steady[..third.max(1)];
    let last = &steady[steady.len() - third.max(1)..];
    let threads = (max_of(first, |s| s.threads), max_of(last, |s| s.threads));
    let fds = (max_of(first, |s| s.fds), max_of(last, |s| s.fds));
    let slack = CLIENTS as u64;
    let threads_ok = threads.1 <= threads.0 + slack;
    let fds_ok = fds.1 <= fds.0 + 2 * slack;
    let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let bad: u64 = unexpected.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let verdict = |ok: bool| if ok { "pass" } else { "FAIL" };
    let mut md = format!(
        "Soak: {} min, {total} requests ({bad} with an unexpected status), {} samples, warm-up {warm_s} s\n\n\
         | figure | measured | target | result |\n|---|---|---|---|\n",
        duration.as_secs() / 60,
        samples.len()
    );
    md.push_str(&format!(
        "| RSS after warm-up | median {:.2} MB, range {:.2}–{:.2} MB ({:+.0}% / {:+.0}%) | within ±20% of the median | {} |\n",
        median_rss / 1024.0, lo / 1024.0, hi / 1024.0,
        (lo / median_rss - 1.0) * 100.0, (hi / median_rss - 1.0) * 100.0, verdict(rss_ok)
    ));
    md.push_str(&format!(
        "| threads, first third → last third (max) | {} → {} | no growth (± {slack} in flight) | {} |\n",
        threads.0,
        threads.1,
        verdict(threads_ok)
    ));
    md.push_str(&format!(
        "| open fds, first third → last third (max) | {} → {} | no growth (± {} in flight) | {} |\n",
        fds.0,
        fds.1,
        2 * slack,
        verdict(fds_ok)
    ));
    md.push_str(&format!(
        "| requests with an unexpected status | {bad} of {total} | 0 | {} |\n",
        verdict(bad == 0)
    ));
    md.push_str(&format!(
        "| /health after the soak | {} | 200 | {} |\n",
        if alive { "200" } else { "no answer" },
        verdict(alive)
    ));
    md.push_str("\nRequests by kind: ");
    md.push_str(
        &kinds
            .iter()
            .zip(counts)
            .zip(unexpected)
            .map(|((k, c), u)| {
                format!(
                    "{} {} ({} unexpected)",
                    k.name,
                    c.load(Ordering::Relaxed),
                    u.load(Ordering::Relaxed)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    md.push('\n');
    let series: Vec<_> = samples
        .iter()
        .map(|s| json!({"at_s": s.at_s, "rss_kib": s.rss_kib, "threads": s.threads, "fds": s.fds}))
        .collect();
    std::fs::write(out_dir.join("soak.md"), &md).ok();
    std::fs::write(
        out_dir.join("soak.json"),
        serde_json::to_string_pretty(
            &json!({"samples": series, "requests": total, "unexpected": bad}),
        )
        .unwrap_or_default(),
    )
    .ok();
    println!(
        "\n{md}\nwritten to {}",
        out_dir.join("soak.{md,json}").display()
    );
    rss_ok && threads_ok && fds_ok && bad == 0 && alive
}
