//! The running server: routes, error shapes, keys, limits, body limits, CORS, saturation and
//! panic isolation — each against the real binary over HTTP.

use crate::common::gate::*;
use crate::common::mock_upstream::MockUpstream;
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/v1/models"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/complete"),
    ("POST", "/v1/fetch"),
    ("GET", "/admin/accounts"),
    ("GET", "/metrics"),
];

fn call(gate: &Gate, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    match method {
        "GET" => get(&gate.url(path), headers),
        _ => post(&gate.url(path), headers, "{}"),
    }
}

fn is_anthropic(path: &str) -> bool {
    path.starts_with("/v1/messages")
}

/// Opens a POST that declares `len` body bytes but sends only the head: the worker that takes
/// it sits reading the body (holding its worker, its limit slot and its body reservation).
/// Bodies of up to 1024 bytes are read by tiny_http before queueing, so `len` must be larger.
fn hold_with_slow_body(gate: &Gate, path: &str, key: &str, len: usize) -> TcpStream {
    assert!(len > 1024);
    let mut s = TcpStream::connect(gate.addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{"
    )
    .unwrap();
    s
}

#[test]
fn health_needs_no_key() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    gate.assert_healthy();
    let r = get(&gate.url("/health?probe=1"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn models_in_both_shapes() {
    let (gate, key) = Gate::start_with_key(
        json!({"models": {"catalogue": ["claude-x-1"], "aliases": {"x": "claude-x-1"}}}),
    );
    let auth = format!("Bearer {key}");
    let r = get(&gate.url("/v1/models"), &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["claude-x-1", "x"]);
    assert_eq!(v["data"][0]["object"], "model");
    assert!(v["data"][0]["created"].is_u64());

    let r = get(
        &gate.url("/v1/models"),
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["data"][0]["display_name"], "Claude X 1");
    assert_eq!(v["data"][1]["id"], "x");
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "claude-x-1");
    assert_eq!(v["last_id"], "x");
}

#[test]
fn default_catalogue_has_seed_ids_and_aliases() {
    let (gate, key) = Gate::start_with_key(json!({}));
    let v = get(&gate.url("/v1/models"), &[("x-api-key", &key)]).json();
    let ids: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    for id in [
        "claude-opus-4-6",
        "claude-sonnet-4-6",
        "claude-haiku-4-5-20251001",
        "claude-haiku-4-5",
        "opus",
        "sonnet",
        "haiku",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
}

#[test]
fn every_protected_route_refuses_missing_wrong_and_revoked_keys() {
    let mock = MockUpstream::start();
    let setup = Setup::new(
        json!({"upstream": {"base_url": mock.url()}, "limits": {"auth_failures_per_minute": 0}}),
    );
    let revoked = setup.add_key("old", &[]);
    let key = setup.add_key("app", &[]);
    assert!(setup.cli(&["keys", "revoke", "old"]).status.success());
    let gate = Gate::spawn(setup);
    let wrong = format!("Bearer {}", "cgk_".to_string() + &"0".repeat(64));
    let revoked_auth = format!("Bearer {revoked}");
    for (method, path) in PROTECTED {
        for headers in [
            vec![],
            vec![("authorization", wrong.as_str())],
            vec![("x-api-key", "nonsense")],
            vec![("authorization", revoked_auth.as_str())],
            vec![("authorization", "Basic Zm9vOmJhcg==")],
        ] {
            let r = call(&gate, method, path, &headers);
            if is_anthropic(path) {
                r.assert_anthropic_error(401, "authentication_error");
            } else if *path == "/v1/complete" || *path == "/v1/fetch" {
                r.assert_relay_error(401);
            } else {
                let v = r.assert_openai_error(401);
                assert_eq!(v["error"]["code"], "invalid_api_key");
            }
        }
        // The right key passes authentication (whatever the route then answers).
        let r = call(&gate, method, path, &[("x-api-key", &key)]);
        assert_ne!(r.status, 401, "{method} {path}: {r:?}");
    }
    assert_eq!(mock.count(), 0, "nothing may reach the upstream");
    assert!(!gate.log().contains(&key[4..]), "no key in logs");
}

#[test]
fn bearer_and_x_api_key_both_work() {
    let (gate, key) = Gate::start_with_key(json!({}));
    for h in [
        ("authorization", format!("Bearer {key}")),
        ("authorization", format!("bearer {key}")),
        ("x-api-key", key.clone()),
    ] {
        let r = get(&gate.url("/v1/models"), &[(h.0, &h.1)]);
        assert_eq!(r.status, 200, "{h:?}");
    }
}

#[test]
fn keys_hot_reload_without_restart() {
    let (gate, key) = Gate::start_with_key(json!({}));
    let new_key = gate.setup.add_key("late", &[]);
    let ok_within = |k: &str, want: u16| {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let r = get(&gate.url("/v1/models"), &[("x-api-key", k)]);
            if r.status == want {
                return;
            }
            assert!(Instant::now() < deadline, "still {} after 3 s", r.status);
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    ok_within(&new_key, 200);
    assert!(gate.setup.cli(&["keys", "revoke", "app"]).status.success());
    ok_within(&key, 401);
    ok_within(&new_key, 200);
}

#[test]
fn unknown_path_404_and_wrong_method_405_in_each_protocol() {
    let (gate, key) = Gate::start_with_key(json!({}));
    let r = get(&gate.url("/v1/nope"), &[("x-api-key", &key)]);
    r.assert_openai_error(404);
    let r = get(
        &gate.url("/v1/nope"),
        &[("anthropic-version", "2023-06-01")],
    );
    r.assert_anthropic_error(404, "not_found_error");
    let r = get(&gate.url("/"), &[]);
    r.assert_openai_error(404);
    assert!(!r.body.contains('<'), "no HTML: {}", r.body);

    let r = request("GET", &gate.url("/v1/messages"), &[("x-api-key", &key)]);
    r.assert_anthropic_error(405, "invalid_request_error");
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = request("DELETE", &gate.url("/v1/complete"), &[]);
    r.assert_relay_error(405);
    let r = request("POST", &gate.url("/health"), &[]);
    r.assert_openai_error(405);
    let r = request("PUT", &gate.url("/v1/models"), &[]);
    r.assert_openai_error(405);
}

#[test]
fn bad_bodies_and_unbuilt_routes_get_json_errors_in_their_protocol() {
    let (gate, key) = Gate::start_with_key(json!({}));
    let r = post(&gate.url("/v1/complete"), &[("x-api-key", &key)], "{}");
    let v = r.assert_relay_error(400);
    assert!(v["error"].as_str().unwrap().contains("prompt"), "{v}");
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        "{not json",
    );
    r.assert_relay_error(400);
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        "{not json",
    );
    r.assert_anthropic_error(400, "invalid_request_error");
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "[1]");
    r.assert_anthropic_error(400, "invalid_request_error");
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("x-api-key", &key)],
        "{}",
    );
    let v = r.assert_openai_error(400);
    assert_eq!(v["error"]["param"], "model");
    let r = get(&gate.url("/metrics"), &[("x-api-key", &key)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("# TYPE claudegate_requests_total counter"));
}

#[test]
fn per_key_rpm_limit_with_retry_after() {
    let setup = Setup::new(json!({"limits": {"per_key_rpm": 100}}));
    let slow = setup.add_key("slow", &["--rpm", "3"]);
    let other = setup.add_key("other", &[]);
    let gate = Gate::spawn(setup);
    for _ in 0..3 {
        assert_eq!(
            post(&gate.url("/v1/complete"), &[("x-api-key", &slow)], "{}").status,
            400
        );
    }
    let r = post(&gate.url("/v1/complete"), &[("x-api-key", &slow)], "{}");
    let v = r.assert_relay_error(429);
    assert!(v["error"].as_str().unwrap().contains("per minute"), "{v}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &slow)], "{}");
    r.assert_anthropic_error(429, "rate_limit_error");
    // Other keys and key-only routes are unaffected.
    assert_eq!(
        post(&gate.url("/v1/complete"), &[("x-api-key", &other)], "{}").status,
        400
    );
    assert_eq!(
        get(&gate.url("/v1/models"), &[("x-api-key", &slow)]).status,
        200
    );
}

#[test]
fn daily_limits_per_key_and_global_with_retry_after_until_midnight() {
    let setup = Setup::new(json!({"limits": {"global_daily": 3}}));
    let a = setup.add_key("a", &["--daily", "2"]);
    let b = setup.add_key("b", &[]);
    let gate = Gate::spawn(setup);
    for _ in 0..2 {
        assert_eq!(
            post(&gate.url("/v1/complete"), &[("x-api-key", &a)], "{}").status,
            400
        );
    }
    let r = post(&gate.url("/v1/complete"), &[("x-api-key", &a)], "{}");
    let v = r.assert_relay_error(429);
    assert!(v["error"].as_str().unwrap().contains("today"), "{v}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let until_midnight = 86_400 - now % 86_400;
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry.abs_diff(until_midnight) <= 5,
        "retry-after {retry} vs {until_midnight}"
    );
    assert_eq!(
        post(&gate.url("/v1/complete"), &[("x-api-key", &b)], "{}").status,
        400
    );
    let r = post(&gate.url("/v1/complete"), &[("x-api-key", &b)], "{}");
    let v = r.assert_relay_error(429);
    assert!(
        v["error"].as_str().unwrap().contains("limits.global_daily"),
        "{v}"
    );
}

#[test]
fn daily_counts_survive_a_restart() {
    let setup = Setup::new(json!({}));
    let a = setup.add_key("a", &["--daily", "2"]);
    let gate = Gate::spawn(setup);
    assert_eq!(
        post(&gate.url("/v1/complete"), &[("x-api-key", &a)], "{}").status,
        400
    );
    assert_eq!(
        post(&gate.url("/v1/complete"), &[("x-api-key", &a)], "{}").status,
        400
    );
    // The housekeeping thread saves counters every 5 s.
    let usage = gate.setup.data_dir().join("usage.json");
    let deadline = Instant::now() + Duration::from_secs(8);
    while !std::fs::read_to_string(&usage)
        .unwrap_or_default()
        .contains("\"today\":2")
    {
        assert!(Instant::now() < deadline, "usage.json not written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut gate = gate;
    gate.restart();
    let r = post(&gate.url("/v1/complete"), &[("x-api-key", &a)], "{}");
    let v = r.assert_relay_error(429);
    assert!(v["error"].as_str().unwrap().contains("today"), "{v}");
    let list = String::from_utf8(gate.setup.cli(&["keys", "list"]).stdout).unwrap();
    assert!(!list.contains("never"), "last use recorded: {list}");
}

#[test]
fn max_concurrent_refuses_while_slots_are_held() {
    let (gate, key) = Gate::start_with_key(json!({"limits": {"max_concurrent": 1}}));
    let held = hold_with_slow_body(&gate, "/v1/messages", &key, 2000);
    std::thread::sleep(Duration::from_millis(200));
    let r = post(&gate.url("/v1/complete"), &[("x-api-key", &key)], "{}");
    let v = r.assert_relay_error(429);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_concurrent"),
        "{v}"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = post(&gate.url("/v1/complete"), &[("x-api-key", &key)], "{}");
        if r.status == 400 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn failed_auth_is_throttled_per_ip_but_valid_keys_are_not() {
    let (gate, key) = Gate::start_with_key(json!({"limits": {"auth_failures_per_minute": 3}}));
    for _ in 0..3 {
        get(&gate.url("/v1/models"), &[("x-api-key", "guess")]).assert_openai_error(401);
    }
    let r = get(&gate.url("/v1/models"), &[("x-api-key", "guess")]);
    let v = r.assert_openai_error(429);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("failed authentication"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    post(&gate.url("/v1/messages"), &[], "{}").assert_anthropic_error(429, "rate_limit_error");
    // The same IP with a valid key is served.
    assert_eq!(
        get(&gate.url("/v1/models"), &[("x-api-key", &key)]).status,
        200
    );
}

#[test]
fn body_too_large_by_content_length_is_refused_before_reading() {
    let (mut gate, key) =
        Gate::start_with_key(json!({"max_body_bytes": 1000, "max_inflight_body_bytes": 5000}));
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        &"x".repeat(1001),
    );
    r.assert_anthropic_error(413, "request_too_large");
    // Declared but never sent: the answer comes at once, from the header alone.
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "POST /v1/complete HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 99999999999\r\n\r\n").unwrap();
    let started = Instant::now();
    assert_eq!(read_status(&mut s), Some(413));
    assert!(started.elapsed() < Duration::from_secs(2));
    gate.assert_healthy();
    // Exactly at the limit is fine.
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        &format!("\"{}\"", "x".repeat(998)),
    );
    assert_eq!(
        r.status, 400,
        "read whole, then refused for its content: {r:?}"
    );
}

#[test]
fn body_too_large_by_chunked_stream_is_cut_off() {
    let (mut gate, key) =
        Gate::start_with_key(json!({"max_body_bytes": 1000, "max_inflight_body_bytes": 5000}));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "POST /v1/complete HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    // Two 512-byte chunks pass the 1000-byte limit; then wait (sending more after the server
    // has answered and closed would turn our read into a connection reset).
    for _ in 0..2 {
        write!(s, "200\r\n{}\r\n", "y".repeat(0x200)).unwrap();
    }
    assert_eq!(read_status(&mut s), Some(413));
    // A chunked body within the limit is accepted.
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "POST /v1/complete HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_status(&mut s), Some(400));
    gate.assert_healthy();
}

#[test]
fn total_body_memory_is_bounded() {
    let (gate, key) =
        Gate::start_with_key(json!({"max_body_bytes": 60000, "max_inflight_body_bytes": 100000}));
    // One upload holds 60000 bytes of budget while it trickles in; a second cannot fit.
    let held = hold_with_slow_body(&gate, "/v1/messages", &key, 60000);
    std::thread::sleep(Duration::from_millis(200));
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        &format!("\"{}\"", "z".repeat(50000)),
    );
    let v = r.assert_relay_error(503);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("large request bodies"),
        "{v}"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        &format!("\"{}\"", "z".repeat(50000)),
    );
    assert_eq!(
        r.status, 400,
        "budget returned after the first upload ended: {r:?}"
    );
}

#[test]
fn cors_only_for_local_origins() {
    let (gate, key) = Gate::start_with_key(json!({}));
    let r = get(
        &gate.url("/v1/models"),
        &[("x-api-key", &key), ("origin", "http://localhost:5173")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = get(
        &gate.url("/v1/models"),
        &[("x-api-key", &key), ("origin", "https://evil.example")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Errors carry the grant too, so a local page can read them.
    let r = get(
        &gate.url("/v1/models"),
        &[("origin", "http://127.0.0.1:3000")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://127.0.0.1:3000")
    );

    let pre = [
        ("origin", "http://localhost:3000"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "x-api-key, anthropic-version, content-type",
        ),
    ];
    let r = request("OPTIONS", &gate.url("/v1/messages"), &pre);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("anthropic-version"));
    let r = request(
        "OPTIONS",
        &gate.url("/v1/messages"),
        &[
            ("origin", "http://localhost.evil.example"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-methods"), None);
}

#[test]
fn saturated_server_answers_503_at_once_and_health_stays_fast() {
    // One key holds every worker here, so its per-key cap is lifted (by default one key may
    // hold at most three quarters of them).
    let (gate, key) = Gate::start_with_key(json!({
        "workers": 2, "queue": 1,
        "limits": {"max_concurrent": 10, "per_key_concurrent": 10},
    }));
    // Both workers held, then one request waits in the queue.
    let _a = hold_with_slow_body(&gate, "/v1/messages", &key, 5000);
    let _b = hold_with_slow_body(&gate, "/v1/messages", &key, 5000);
    std::thread::sleep(Duration::from_millis(200));
    let _queued = hold_with_slow_body(&gate, "/v1/messages", &key, 5000);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "{}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "503 took {:?}",
        started.elapsed()
    );
    r.assert_anthropic_error(503, "overloaded_error");
    assert_eq!(r.header("retry-after"), Some("1"));
    post(&gate.url("/v1/complete"), &[("x-api-key", &key)], "{}").assert_relay_error(503);
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = get(&gate.url("/health"), &[]);
        assert_eq!(r.status, 200);
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_millis(100),
        "slowest /health {worst:?}"
    );
}

#[cfg(debug_assertions)]
#[test]
fn a_panicking_handler_gets_a_json_500_and_the_server_lives() {
    let (mut gate, key) = Gate::start_with_key(json!({"workers": 1}));
    for _ in 0..3 {
        let r = get(&gate.url("/debug/panic"), &[("x-api-key", &key)]);
        r.assert_openai_error(500);
        let r = get(
            &gate.url("/debug/panic"),
            &[("anthropic-version", "2023-06-01")],
        );
        r.assert_anthropic_error(500, "api_error");
    }
    gate.assert_healthy();
    assert_eq!(
        get(&gate.url("/v1/models"), &[("x-api-key", &key)]).status,
        200,
        "the single worker survived"
    );
    assert!(gate.log().contains("panicked at"), "{}", gate.log());
    assert!(
        !gate.log().contains("deliberate panic"),
        "panic payloads are not logged"
    );
}

#[test]
fn verbose_logs_requests_without_secrets_or_queries() {
    let (gate, key) = Gate::start_with_key(json!({"debug": "verbose"}));
    get(
        &gate.url("/v1/models?token=secret-in-query"),
        &[("x-api-key", &key)],
    );
    post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        "{\"prompt\":\"my private prompt\"}",
    );
    std::thread::sleep(Duration::from_millis(100));
    let log = gate.log();
    assert!(log.contains("GET /v1/models -> 200"), "{log}");
    assert!(
        log.contains("POST /v1/messages -> 503"),
        "not logged in: {log}"
    );
    assert!(
        !log.contains("secret-in-query")
            && !log.contains("private prompt")
            && !log.contains(&key[4..]),
        "{log}"
    );
}

/// On the claude-cli backend every door is served; only `count_tokens` is a 501 naming why,
/// and a request without what the door needs is a 400 in its protocol, before anything runs.
#[test]
fn cli_backend_answers_each_door_in_its_protocol() {
    let (gate, key) = Gate::start_with_key(
        json!({"backend": "claude-cli", "cli": {"binary": "/nonexistent/claude"}}),
    );
    let r = post(
        &gate.url("/v1/messages/count_tokens"),
        &[("x-api-key", &key)],
        "{}",
    );
    let v = r.assert_anthropic_error(501, "api_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("count tokens") && msg.contains("oauth"), "{v}");
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "{}");
    let v = r.assert_anthropic_error(400, "invalid_request_error");
    assert!(v.to_string().contains("messages"), "{v}");
    let r = post(&gate.url("/v1/responses"), &[("x-api-key", &key)], "{}");
    let v = r.assert_openai_error(400);
    assert!(v.to_string().contains("model"), "{v}");
}

/// Requests that reach the server while it is still starting pass the same intake as all
/// others. (They once bypassed it: workers then un-counted requests that were never counted,
/// the busy counter wrapped around, and every later request got 503 "busy". Found by the soak.)
#[test]
fn requests_during_start_up_are_counted_like_any_other() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let setup = Setup::new(json!({"port": port, "workers": 2, "queue": 0}));
    let key = setup.add_key("app", &[]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // From before the process starts, knock on /health and /v1/models as fast as possible,
    // from four threads, so that some requests land while the server is still setting up.
    let knockers: Vec<_> = (0..4)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut answered = 0;
                while answered < 10 && Instant::now() < deadline {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let path = ["/health", "/v1/models"][answered % 2];
                    let rq = format!("GET {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\r\n");
                    if s.write_all(rq.as_bytes()).is_ok() && read_status(&mut s).is_some() {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let gate = Gate::spawn(setup);
    let answered: usize = knockers.into_iter().map(|k| k.join().unwrap()).sum();
    assert_eq!(answered, 40, "the start-up requests were not answered");
    for _ in 0..5 {
        let r = get(&gate.url("/v1/models"), &[("x-api-key", &key)]);
        assert_eq!(r.status, 200, "{r:?}");
    }
}
