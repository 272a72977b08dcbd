//! Operations: the audit log (fields, no secrets, rotation, off switch), `claudegate usage`,
//! and `GET /metrics` checked with a real Prometheus text parser (`prometheus_client`, pinned
//! in tests/e2e/requirements.txt and installed into target/e2e/venv by tests/e2e/install.sh).

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use crate::common::run::{e2e_dir, installed, repo};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "PROMPT-CANARY-7f3a the secret plan";

/// The e2e venv's python (see [`installed`] for the skip-or-fail rule).
fn venv_python(test: &str) -> Option<PathBuf> {
    installed("the e2e venv", e2e_dir().join("venv/bin/python"), test)
}

/// Runs tests/e2e/parse_metrics.py on `text`; the parsed families.
fn parse_metrics(python: &Path, text: &str) -> Vec<Value> {
    let mut child = Command::new(python)
        .arg(repo().join("tests/e2e/parse_metrics.py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run parse_metrics.py");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the page: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include every pair in `labels`.
fn sample(families: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .and_then(|s| s["value"].as_f64())
}

fn messages_body(stream: bool) -> String {
    json!({
        "model": "claude-sonnet-4-6", "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": PROMPT}],
    })
    .to_string()
}

fn anthropic(gate: &Gate, key: &str, stream: bool) -> Resp {
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
        &messages_body(stream),
    );
    assert_eq!(r.status, 200, "{r:?}");
    r
}

fn audit_path(gate: &Gate) -> PathBuf {
    gate.setup.data_dir().join("audit.log")
}

/// The audit log's lines once it holds at least `n` (the writer is asynchronous).
fn audit_lines(gate: &Gate, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(audit_path(gate)).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            assert!(lines.len() >= n, "want {n} audit lines, have {lines:?}");
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn audit_lines_carry_the_fields_and_no_secrets() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    anthropic(&gate, &key, false);
    anthropic(&gate, &key, true);
    let chat = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &json!({"model": "sonnet", "messages": [{"role": "user", "content": PROMPT}]}).to_string(),
    );
    assert_eq!(chat.status, 200, "{chat:?}");
    // Not authenticated: no line (and never the presented secret).
    let r = get(
        &gate.url("/v1/models"),
        &[("x-api-key", "cgk_wrong_secret_value")],
    );
    assert_eq!(r.status, 401);

    audit_lines(&gate, 3);
    std::thread::sleep(Duration::from_millis(200));
    let lines = audit_lines(&gate, 3);
    assert_eq!(
        lines.len(),
        3,
        "exactly the three authenticated requests: {lines:?}"
    );
    for (line, route) in lines
        .iter()
        .zip(["messages", "messages", "chat_completions"])
    {
        assert_eq!(line["key"], "app", "{line}");
        assert_eq!(line["route"], route, "{line}");
        assert_eq!(line["backend"], "oauth", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["ip"], "127.0.0.1", "{line}");
        assert_eq!(line["account_state"], "ok", "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(
            line["request_id"].as_str().unwrap().starts_with("req_"),
            "{line}"
        );
        assert!(line["input_tokens"].as_u64().unwrap() > 0, "{line}");
        assert!(line["output_tokens"].as_u64().unwrap() > 0, "{line}");
        assert!(line["cache_read_tokens"].is_u64() && line["cache_creation_tokens"].is_u64());
        let (ttfb, total) = (
            line["ttfb_ms"].as_u64().unwrap(),
            line["duration_ms"].as_u64().unwrap(),
        );
        assert!(ttfb <= total, "{line}");
    }
    assert_eq!(lines[0]["model"], "claude-sonnet-4-6");
    assert_eq!(lines[1]["model"], "claude-sonnet-4-6");
    assert_eq!(
        lines[2]["model"], "sonnet",
        "the model the request asked for"
    );
    let text = std::fs::read_to_string(audit_path(&gate)).unwrap();
    for secret in [
        PROMPT,
        "PROMPT-CANARY",
        &key,
        "cgk_wrong_secret_value",
        "sk-ant-oat01-stored",
    ] {
        assert!(!text.contains(secret), "the audit log holds {secret:?}");
    }
    assert!(!text.contains("Hello from the mock"), "no response text");
    assert_eq!(mode(&audit_path(&gate)), 0o600);
}

#[test]
fn audit_log_rotates_by_size_and_keeps_n() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"audit": {"max_bytes": 1024, "keep": 2}}),
    );
    for _ in 0..30 {
        let r = get(&gate.url("/v1/models"), &[("x-api-key", &key)]);
        assert_eq!(r.status, 200);
    }
    let path = audit_path(&gate);
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rotated(2).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    for p in [path.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 1024, "{} is {len} bytes", p.display());
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).expect("whole lines only");
            assert_eq!(v["route"], "models");
        }
    }
    assert!(
        !rotated(3).exists(),
        "only audit.keep = 2 rotated files are kept"
    );
}

#[test]
fn audit_disabled_writes_nothing() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"audit": {"enabled": false}}));
    anthropic(&gate, &key, false);
    get(&gate.url("/v1/models"), &[("x-api-key", &key)]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!audit_path(&gate).exists());
}

#[test]
fn usage_totals_per_key_with_since() {
    let setup = Setup::new(json!({}));
    let data = setup.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let line = |time: &str, key: &str, status: u16, input: u64, output: u64| {
        json!({"time": time, "key": key, "ip": "127.0.0.1", "route": "messages", "backend": "oauth",
               "model": "m", "status": status, "duration_ms": 5, "ttfb_ms": 1,
               "input_tokens": input, "output_tokens": output, "cache_read_tokens": 2,
               "cache_creation_tokens": 1, "request_id": null, "account_state": "ok"})
        .to_string()
    };
    let old = [
        line("2026-01-01T10:00:00Z", "alpha", 200, 100, 10),
        line("2026-01-02T10:00:00Z", "beta", 429, 0, 0),
    ];
    let new = [
        line("2026-02-01T10:00:00Z", "alpha", 200, 7, 3),
        line("2026-02-01T11:00:00Z", "alpha", 500, 0, 0),
        "not json, from a crash".to_string(),
    ];
    std::fs::write(data.join("audit.log.1"), old.join("\n") + "\n").unwrap();
    std::fs::write(data.join("audit.log"), new.join("\n") + "\n").unwrap();

    let out = setup.cli(&["usage"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "KEY",
            "REQUESTS",
            "ERRORS",
            "INPUT",
            "OUTPUT",
            "CACHE_READ",
            "CACHE_WRITE"
        ]
    );
    assert_eq!(
        rows[1],
        ["alpha", "3", "1", "107", "13", "6", "3"],
        "{text}"
    );
    assert_eq!(rows[2], ["beta", "1", "1", "0", "0", "2", "1"], "{text}");
    assert_eq!(
        rows[3],
        ["TOTAL", "4", "2", "107", "13", "8", "4"],
        "{text}"
    );
    // Aligned: every line's right-aligned last column ends at the same place.
    let ends: Vec<usize> = text.lines().map(str::len).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");

    let out = setup.cli(&["usage", "--since", "2026-01-15"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[1], ["alpha", "2", "1", "7", "3", "4", "2"], "{text}");
    assert_eq!(rows[2][0], "TOTAL", "beta had nothing since: {text}");

    for bad in [
        &["usage", "--since", "yesterday"][..],
        &["usage", "--since"],
        &["usage", "extra"],
    ] {
        let out = setup.cli(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
}

#[test]
fn usage_reads_what_the_server_wrote() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let r = anthropic(&gate, &key, false).json();
    let lines = audit_lines(&gate, 1);
    assert_eq!(lines[0]["input_tokens"], r["usage"]["input_tokens"]);
    let out = gate.setup.cli(&["usage"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let app: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(app[1], "1");
    assert_eq!(app[3], r["usage"]["input_tokens"].to_string());
}

#[test]
fn metrics_need_a_key_unless_public() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let r = get(&gate.url("/metrics"), &[]);
    r.assert_openai_error(401);
    let r = get(&gate.url("/metrics"), &[("x-api-key", &key)]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    let (public, _) = logged_in(&mock.url(), json!({"metrics": {"public": true}}));
    let r = get(&public.url("/metrics"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("# TYPE claudegate_requests_total counter"));
}

#[test]
fn metrics_parse_and_count_traffic() {
    let Some(python) = venv_python("metrics_parse_and_count_traffic") else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let a = anthropic(&gate, &key, false).json();
    anthropic(&gate, &key, true);
    assert_eq!(get(&gate.url("/v1/models"), &[]).status, 401);
    assert_eq!(
        get(&gate.url("/no/such/path"), &[("x-api-key", &key)]).status,
        404
    );

    let page = get(&gate.url("/metrics"), &[("x-api-key", &key)]);
    assert_eq!(page.status, 200);
    let fams = parse_metrics(&python, &page.body);
    let types: Vec<(&str, &str)> = fams
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    for want in [
        ("claudegate_requests", "counter"),
        ("claudegate_request_duration_seconds", "histogram"),
        ("claudegate_time_to_first_byte_seconds", "histogram"),
        ("claudegate_tokens", "counter"),
        ("claudegate_upstream_responses", "counter"),
        ("claudegate_token_refreshes", "counter"),
        ("claudegate_cooldown_active", "gauge"),
        ("claudegate_cooldown_until_seconds", "gauge"),
        ("claudegate_streams_active", "gauge"),
        ("claudegate_workers_busy", "gauge"),
        ("claudegate_queue_rejections", "counter"),
        ("claudegate_audit_lines_dropped", "counter"),
        ("claudegate_ratelimit_utilization", "gauge"),
        ("claudegate_ratelimit_reset_seconds", "gauge"),
    ] {
        assert!(types.contains(&want), "{want:?} missing from {types:?}");
    }
    let s = |name: &str, labels: &[(&str, &str)]| sample(&fams, name, labels);
    let req = "claudegate_requests_total";
    assert_eq!(
        s(req, &[("route", "messages"), ("status", "200")]),
        Some(2.0)
    );
    assert_eq!(s(req, &[("route", "models"), ("status", "401")]), Some(1.0));
    assert_eq!(s(req, &[("route", "other"), ("status", "404")]), Some(1.0));
    for h in [
        "claudegate_request_duration_seconds",
        "claudegate_time_to_first_byte_seconds",
    ] {
        let count = s(&format!("{h}_count"), &[("route", "messages")]);
        assert_eq!(count, Some(2.0), "{h}");
        let inf = s(
            &format!("{h}_bucket"),
            &[("route", "messages"), ("le", "+Inf")],
        );
        assert_eq!(inf, Some(2.0), "{h}");
        assert!(s(&format!("{h}_sum"), &[("route", "messages")]).unwrap() > 0.0);
    }
    // Two identical mock answers: twice the first one's tokens.
    let input = a["usage"]["input_tokens"].as_f64().unwrap();
    assert_eq!(
        s("claudegate_tokens_total", &[("kind", "input")]),
        Some(2.0 * input)
    );
    assert!(s("claudegate_tokens_total", &[("kind", "output")]).unwrap() > 0.0);
    assert_eq!(
        s("claudegate_upstream_responses_total", &[("status", "200")]),
        Some(2.0)
    );
    assert_eq!(s("claudegate_cooldown_active", &[]), Some(0.0));
    assert_eq!(s("claudegate_account_state", &[("state", "ok")]), Some(1.0));
    assert_eq!(s("claudegate_streams_active", &[]), Some(0.0));
    // The /metrics request itself is being served.
    assert_eq!(s("claudegate_workers_busy", &[]), Some(1.0));
    assert_eq!(
        s("claudegate_ratelimit_utilization", &[("window", "5h")]),
        Some(0.01)
    );
    assert!(s("claudegate_ratelimit_reset_seconds", &[("window", "5h")]).unwrap() > 1.7e9);
    // Bounded labels only: never a key, an IP or a prompt.
    for f in &fams {
        for smp in f["samples"].as_array().unwrap() {
            for (label, value) in smp["labels"].as_object().unwrap() {
                assert!(
                    ["route", "status", "le", "kind", "result", "state", "window", "class"]
                        .contains(&label.as_str()),
                    "unexpected label {label} in {smp}"
                );
                assert!(!value.as_str().unwrap().contains("127.0.0.1"), "{smp}");
            }
        }
    }
    for secret in [key.as_str(), "\"app\"", "127.0.0.1", "PROMPT-CANARY"] {
        assert!(!page.body.contains(secret), "/metrics shows {secret:?}");
    }
}
