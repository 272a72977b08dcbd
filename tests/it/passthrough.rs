//! The OAuth backend and the Anthropic-native passthrough, against the mock upstream: what
//! reaches Anthropic, what comes back, refresh, account health, streaming and its failures.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CLAUDE_CODE_UA: &str = "claude-cli/2.1.330 (external, cli)";

/// A gate with a stored login, pointed at `mock`, plus a key.
fn claude_code_headers(key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-api-key", key.to_string()),
        ("user-agent", CLAUDE_CODE_UA.into()),
        ("x-app", "cli".into()),
        ("anthropic-version", "2023-06-01".into()),
        (
            "anthropic-beta",
            "claude-code-20250219,fine-grained-tool-streaming-2025-05-14".into(),
        ),
    ]
}

fn post_with(url: &str, headers: &[(&'static str, String)], body: &str) -> Resp {
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post(url, &h, body)
}

/// Status, headers, and each body line with the time it arrived.
type Streamed = (u16, Vec<(String, String)>, Vec<(Duration, String)>);

/// Reads an SSE response line by line, noting when each line arrived.
fn stream(url: &str, headers: &[(&'static str, String)], body: &str) -> Streamed {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut rq = agent.post(url).header("content-type", "application/json");
    for (n, v) in headers {
        rq = rq.header(*n, v.as_str());
    }
    let started = Instant::now();
    let resp = rq.send(body).expect("request");
    let status = resp.status().as_u16();
    let hdrs = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        lines.push((started.elapsed(), line.trim_end().to_string()));
        line.clear();
    }
    (status, hdrs, lines)
}

fn events_of(lines: &[(Duration, String)]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("event: ").map(str::to_string))
        .collect()
}

fn hdr<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn claude_code_request_passes_through_byte_for_byte() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    // Unusual Unicode (escaped and raw, astral plane), a thinking signature, cache markers,
    // odd number formatting and unknown fields: all must arrive untouched.
    let body = r#"{"model":"claude-sonnet-4-6","max_tokens":1.024e3,"messages":[{"role":"user","content":[{"type":"text","text":"h\u00e9llo 𝄞 \ud83d\ude00 \u2028 ﷽","cache_control":{"type":"ephemeral","ttl":"1h"}}]},{"role":"assistant","content":[{"type":"thinking","thinking":"…","signature":"EqQBCkgIARABGAIiQL+/x=="}]}],"metadata":{"user_id":"{\"device_id\":\"abc\"}"},"future_field":{"z":1,"a":[]}}"#;
    let r = post_with(
        &gate.url("/v1/messages?beta=true"),
        &claude_code_headers(&key),
        body,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let upstream = mock.last_request().unwrap();
    assert_eq!(upstream.path, "/v1/messages?beta=true");
    assert_eq!(
        upstream.body,
        body.as_bytes(),
        "body must be byte-identical"
    );
    assert_eq!(
        upstream.header("authorization"),
        Some("Bearer sk-ant-oat01-stored")
    );
    assert_eq!(
        upstream.header("x-api-key"),
        None,
        "the client's key never leaves claudegate"
    );
    assert!(!upstream.headers.iter().any(|(_, v)| v.contains(&key)));
    assert_eq!(upstream.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        upstream.header("anthropic-beta"),
        Some("oauth-2025-04-20,claude-code-20250219,fine-grained-tool-streaming-2025-05-14")
    );
    assert_eq!(upstream.header("user-agent"), Some(CLAUDE_CODE_UA));
    // What came back is the upstream's answer with the headers clients use.
    assert_eq!(r.json()["type"], "message");
    assert!(
        r.header("request-id")
            .is_some_and(|v| v.starts_with("req_")),
        "{r:?}"
    );
    assert!(
        r.headers
            .iter()
            .any(|(n, _)| n.starts_with("anthropic-ratelimit-unified")),
        "{r:?}"
    );
}

#[test]
fn defaults_for_clients_that_send_no_version_or_betas() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"cloaking": {"mode": "never"}}));
    let r = post(
        &gate.url("/v1/messages"),
        &[("authorization", &format!("Bearer {key}"))],
        r#"{"model":"m","messages":[]}"#,
    );
    assert_eq!(r.status, 200);
    let up = mock.last_request().unwrap();
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(up.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert_eq!(
        up.body, br#"{"model":"m","messages":[]}"#,
        "mode never: untouched"
    );
}

#[test]
fn other_clients_are_cloaked_as_claude_code() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let body = r#"{"model":"claude-sonnet-4-6","system":"Be terse.","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
    let headers = vec![
        ("x-api-key", key.clone()),
        ("user-agent", "Anthropic/Python 2.12.0".to_string()),
        ("x-stainless-lang", "python".to_string()),
        ("anthropic-beta", "my-beta".to_string()),
    ];
    assert_eq!(
        post_with(&gate.url("/v1/messages"), &headers, body).status,
        200
    );
    let up = mock.last_request().unwrap();
    let v = up.json();
    assert_eq!(
        v["system"][0]["text"],
        "You are Claude Code, Anthropic's official CLI for Claude."
    );
    assert_eq!(v["system"][1]["text"], "Be terse.");
    assert_eq!(v["messages"], json!([{"role": "user", "content": "hi"}]));
    let uid: Value = serde_json::from_str(v["metadata"]["user_id"].as_str().unwrap()).unwrap();
    let device = std::fs::read_to_string(gate.setup.data_dir().join("device_id")).unwrap();
    assert_eq!(uid["device_id"], device.trim());
    assert_eq!(uid["account_uuid"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(
        up.header("x-claude-code-session-id"),
        uid["session_id"].as_str()
    );
    assert!(up.header("user-agent").unwrap().starts_with("claude-cli/"));
    assert_eq!(up.header("x-app"), Some("cli"));
    assert_eq!(up.header("x-stainless-lang"), Some("js"));
    let betas = up.header("anthropic-beta").unwrap();
    assert!(
        betas.contains("claude-code-20250219")
            && betas.contains("oauth-2025-04-20")
            && betas.contains("my-beta"),
        "{betas}"
    );
    // The device id is stable across requests and restarts.
    post_with(&gate.url("/v1/messages"), &headers, body);
    let uid2: Value = serde_json::from_str(
        mock.last_request().unwrap().json()["metadata"]["user_id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(uid2["device_id"], uid["device_id"]);
    assert_ne!(
        uid2["session_id"], uid["session_id"],
        "fresh session without cache_user_id"
    );
}

#[test]
fn cache_user_id_keeps_one_session_per_key_and_strict_drops_system() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"cloaking": {"cache_user_id": true, "strict": true, "sensitive_words": ["acme"]}}),
    );
    let body = r#"{"model":"m","system":"secret house rules","messages":[{"role":"user","content":"about Acme"}]}"#;
    let sid = |r: &Recorded| -> String {
        let uid: Value =
            serde_json::from_str(r.json()["metadata"]["user_id"].as_str().unwrap()).unwrap();
        uid["session_id"].as_str().unwrap().to_string()
    };
    post(&gate.url("/v1/messages"), &[("x-api-key", &key)], body);
    let first = mock.last_request().unwrap();
    post(&gate.url("/v1/messages"), &[("x-api-key", &key)], body);
    let second = mock.last_request().unwrap();
    assert_eq!(sid(&first), sid(&second));
    assert!(!first.body_text().contains("secret house rules"));
    assert_eq!(first.json()["messages"][0]["content"], "about A\u{200B}cme");
}

#[test]
fn streaming_is_relayed_event_by_event() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let chunks = ["a", "b", "c", "d", "e", "f"];
    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events("claude-sonnet-4-6", &chunks)).delay_ms(150),
    );
    let (status, headers, lines) = stream(
        &gate.url("/v1/messages?beta=true"),
        &claude_code_headers(&key),
        r#"{"model":"claude-sonnet-4-6","stream":true,"messages":[]}"#,
    );
    assert_eq!(status, 200);
    assert!(hdr(&headers, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    assert_eq!(hdr(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(hdr(&headers, "x-accel-buffering"), Some("no"));
    let events = events_of(&lines);
    assert_eq!(events.first().map(String::as_str), Some("message_start"));
    assert_eq!(events.last().map(String::as_str), Some("message_stop"));
    assert!(!events.contains(&"error".to_string()));
    // Events arrive as the upstream sends them, not in one lump at the end.
    let first = lines
        .iter()
        .find(|(_, l)| l.contains("message_start"))
        .unwrap()
        .0;
    let last = lines
        .iter()
        .find(|(_, l)| l.contains("message_stop"))
        .unwrap()
        .0;
    assert!(
        last - first >= Duration::from_millis(600),
        "spread {:?}",
        last - first
    );
    let text: String = lines
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/delta/text")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "abcdef");
}

#[test]
fn upstream_errors_before_the_first_byte_pass_through_without_cooldown() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(400, "invalid_request_error", "messages: field required")
            .header("request-id", "req_bad"),
    );
    let r = post_with(&gate.url("/v1/messages"), &claude_code_headers(&key), "{}");
    let v = r.assert_anthropic_error(400, "invalid_request_error");
    assert_eq!(v["error"]["message"], "messages: field required");
    assert_eq!(r.header("request-id"), Some("req_bad"));
    // One client's bad request does not lock anyone out.
    let r = post_with(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let accounts = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(accounts["accounts"][0]["state"], "ok");
    assert_eq!(accounts["accounts"][0]["failures"]["request"], 1);
}

#[test]
fn rate_limit_cools_the_account_down_and_is_answered_locally() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "Number of requests exceeded").retry_after(7),
    );
    let r = post_with(&gate.url("/v1/messages"), &claude_code_headers(&key), "{}");
    r.assert_anthropic_error(429, "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("7"));
    let before = mock.count();
    let started = Instant::now();
    let r = post_with(&gate.url("/v1/messages"), &claude_code_headers(&key), "{}");
    assert!(started.elapsed() < Duration::from_millis(500));
    let v = r.assert_anthropic_error(429, "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cooling down"),
        "{v}"
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((6..=9).contains(&retry), "retry-after {retry}");
    assert_eq!(
        mock.count(),
        before,
        "answered locally, nothing sent upstream"
    );
    let accounts = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    let a = &accounts["accounts"][0];
    assert_eq!(a["state"], "cooldown");
    assert!(a["cooldown_until"].is_string());
    assert_eq!(a["failures"]["rate_limit"], 1);
    assert!(a["ratelimit_unified"]["status"].is_string(), "{a}");
    // The OpenAI routes are not involved; count_tokens is refused locally too.
    post_with(
        &gate.url("/v1/messages/count_tokens"),
        &claude_code_headers(&key),
        "{}",
    )
    .assert_anthropic_error(429, "rate_limit_error");
}

#[test]
fn overloaded_and_5xx_are_retried_before_the_first_byte() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(529, "overloaded_error", "Overloaded"),
    );
    mock.enqueue(
        "/v1/messages",
        Reply::error(502, "api_error", "bad gateway"),
    );
    let r = post_with(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(mock.requests_to("/v1/messages").len(), 3);
    // Out of retries: the upstream's own status and error come back.
    for _ in 0..3 {
        mock.enqueue(
            "/v1/messages",
            Reply::error(529, "overloaded_error", "Overloaded"),
        );
    }
    let r = post_with(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"messages":[]}"#,
    );
    r.assert_anthropic_error(529, "overloaded_error");
    let accounts = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(
        accounts["accounts"][0]["state"], "ok",
        "overload is not the account's fault"
    );
}

#[test]
fn unreachable_upstream_is_a_502_after_retries() {
    let setup =
        Setup::new(json!({"upstream": {"base_url": "http://127.0.0.1:9", "max_retries": 1}}));
    setup.store_login(oauth_login("a", "r", 3600));
    let key = setup.add_key("app", &[]);
    let gate = Gate::spawn(setup);
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "{}");
    let v = r.assert_anthropic_error(502, "api_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 attempts"),
        "{v}"
    );
}

#[test]
fn a_401_refreshes_once_and_retries_with_the_rotated_token() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(
            401,
            "authentication_error",
            "OAuth access token has expired.",
        ),
    );
    let r = post_with(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let calls = mock.requests_to("/v1/messages");
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].header("authorization"),
        Some("Bearer sk-ant-oat01-stored")
    );
    let refresh = mock.requests_to("/v1/oauth/token");
    assert_eq!(refresh.len(), 1);
    assert_eq!(refresh[0].json()["grant_type"], "refresh_token");
    assert_eq!(refresh[0].json()["refresh_token"], "sk-ant-ort01-stored");
    // The rotated tokens are saved (0600) and used.
    let stored = gate.setup.stored_login();
    let new_access = stored["access_token"].as_str().unwrap().to_string();
    assert!(new_access.starts_with("sk-ant-oat01-mock-"), "{stored}");
    assert!(stored["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("sk-ant-ort01-mock-"));
    assert_eq!(stored["email"], "user@example.com");
    assert_eq!(
        calls[1].header("authorization"),
        Some(format!("Bearer {new_access}").as_str())
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gate.setup.data_dir().join("token.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn twenty_concurrent_requests_share_one_refresh() {
    let mock = MockUpstream::start();
    let mut config = upstream_config(&mock.url());
    merge(
        &mut config,
        &json!({"workers": 24, "limits": {"max_concurrent": 24, "per_key_concurrent": 24}}),
    );
    let setup = Setup::new(config);
    setup.store_login(oauth_login("sk-ant-oat01-old", "sk-ant-ort01-old", -10));
    let key = setup.add_key("app", &[]);
    let gate = Gate::spawn(setup);
    let url = gate.url("/v1/messages");
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (url, key) = (url.clone(), key.clone());
            std::thread::spawn(move || {
                post(&url, &[("x-api-key", &key)], r#"{"messages":[]}"#).status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        mock.requests_to("/v1/oauth/token").len(),
        1,
        "single-flight refresh"
    );
    let new = gate.setup.stored_login()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mock
        .requests_to("/v1/messages")
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {new}"))));
}

#[test]
fn invalid_grant_puts_the_account_in_needs_login() {
    let mock = MockUpstream::start();
    let mut config = upstream_config(&mock.url());
    merge(&mut config, &json!({}));
    let setup = Setup::new(config);
    setup.store_login(oauth_login("sk-ant-oat01-old", "sk-ant-ort01-revoked", -10));
    let key = setup.add_key("app", &["--admin"]);
    let gate = Gate::spawn(setup);
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "{}");
    let v = r.assert_anthropic_error(503, "api_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claudegate login"),
        "{v}"
    );
    assert_eq!(mock.requests_to("/v1/messages").len(), 0);
    let a = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(a["accounts"][0]["state"], "needs_login");
    assert!(gate.setup.stored_login()["needs_login"].is_string());
    // No second refresh is attempted: the state answers at once.
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "{}");
    r.assert_anthropic_error(503, "api_error");
    assert_eq!(mock.requests_to("/v1/oauth/token").len(), 1);
}

#[test]
fn not_logged_in_is_a_clear_503() {
    let mock = MockUpstream::start();
    let setup = Setup::new(upstream_config(&mock.url()));
    let key = setup.add_key("app", &["--admin"]);
    let gate = Gate::spawn(setup);
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], "{}");
    let v = r.assert_anthropic_error(503, "api_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("claudegate login"));
    let a = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(a["accounts"][0]["state"], "not_logged_in");
    // A login written while the server runs is picked up without a restart.
    gate.setup
        .store_login(oauth_login("sk-ant-oat01-late", "r", 3600));
    std::thread::sleep(Duration::from_millis(1200));
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        mock.last_request().unwrap().header("authorization"),
        Some("Bearer sk-ant-oat01-late")
    );
}

#[test]
fn a_stream_that_breaks_ends_with_an_error_event() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"timeouts": {"stream_idle_ms": 700}}));
    let body = r#"{"stream":true,"messages":[]}"#;
    mock.enqueue(
        "/v1/messages",
        Reply::reset_mid_stream(sse_text_events("m", &["a", "b", "c"]), 3),
    );
    let (status, _, lines) = stream(&gate.url("/v1/messages"), &claude_code_headers(&key), body);
    assert_eq!(status, 200);
    let events = events_of(&lines);
    assert_eq!(
        events.last().map(String::as_str),
        Some("error"),
        "{lines:?}"
    );
    assert!(events.contains(&"message_start".to_string()));

    mock.enqueue("/v1/messages", Reply::stall_after_headers(5000));
    let started = Instant::now();
    let (_, _, lines) = stream(&gate.url("/v1/messages"), &claude_code_headers(&key), body);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stall detected after {:?}",
        started.elapsed()
    );
    assert_eq!(
        events_of(&lines).last().map(String::as_str),
        Some("error"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|(_, l)| l.contains("stalled")),
        "{lines:?}"
    );

    // An upstream error event is relayed as sent, and a rate limit cools the account down.
    let mut events = sse_text_events("m", &["x"]);
    events.truncate(3);
    events.push(sse_error_event("rate_limit_error", "usage limit reached"));
    mock.enqueue("/v1/messages", Reply::sse(events));
    let (_, _, lines) = stream(&gate.url("/v1/messages"), &claude_code_headers(&key), body);
    assert!(lines.iter().any(|(_, l)| l.contains("usage limit reached")));
    let a = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(a["accounts"][0]["state"], "cooldown", "{a}");
}

#[test]
fn a_client_that_disconnects_frees_its_worker_and_the_upstream() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"workers": 1}));
    let events = sse_text_events("m", &["x"; 60]);
    mock.enqueue("/v1/messages", Reply::sse(events).delay_ms(50));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    let body = r#"{"stream":true,"messages":[]}"#;
    write!(s, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nuser-agent: {CLAUDE_CODE_UA}\r\nx-app: cli\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = [0u8; 512];
    assert!(s.read(&mut buf).unwrap() > 0);
    drop(s); // gone after the first bytes of a ~3 s stream
    let started = Instant::now();
    let r = get(&gate.url("/v1/models"), &[("x-api-key", &key)]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "worker freed after {:?}",
        started.elapsed()
    );
}

#[test]
fn count_tokens_and_telemetry() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let body = r#"{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"count me"}]}"#;
    let r = post_with(
        &gate.url("/v1/messages/count_tokens?beta=true"),
        &claude_code_headers(&key),
        body,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    let up = mock.last_request().unwrap();
    assert_eq!(up.path, "/v1/messages/count_tokens?beta=true");
    assert_eq!(up.body, body.as_bytes());
    // Cloaked count requests get the identity line but no metadata (the endpoint rejects it).
    post(
        &gate.url("/v1/messages/count_tokens"),
        &[("x-api-key", &key)],
        body,
    );
    let v = mock.last_request().unwrap().json();
    assert!(
        v.get("metadata").is_none() && v["system"][0]["text"].is_string(),
        "{v}"
    );
    // Telemetry needs no key and goes nowhere.
    let before = mock.count();
    let r = post(
        &gate.url("/api/event_logging/batch"),
        &[],
        r#"{"events":[]}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(mock.count(), before);
}

#[test]
fn a_slow_answer_keeps_its_keep_alive_connection_usable() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"client_timeout_ms": 500}));
    mock.enqueue(
        "/v1/messages",
        Reply::message("m", "slow").delay_before_ms(1200),
    );
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = r#"{"messages":[]}"#;
    let request = format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nuser-agent: {CLAUDE_CODE_UA}\r\nx-app: cli\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(request.as_bytes()).unwrap();
    // A complete non-streaming answer is sent with Content-Length; read exactly that much.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "head ended early");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    assert!(String::from_utf8_lossy(&body).contains("slow"));
    // The same connection serves the next request although the first took longer than the
    // client timeout.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut s), Some(200));
}

/// A 403 that is not one of the subscription's named refusals (`tests/it/refusals.rs`: "OAuth
/// authentication is currently not allowed …" sets `blocked` instead) still cools down.
#[test]
fn a_403_cools_the_account_down_for_longer() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(403, "permission_error", "Request not allowed"),
    );
    let r = post_with(&gate.url("/v1/messages"), &claude_code_headers(&key), "{}");
    r.assert_anthropic_error(403, "permission_error");
    let r = post_with(&gate.url("/v1/messages"), &claude_code_headers(&key), "{}");
    r.assert_anthropic_error(429, "rate_limit_error");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry >= 300,
        "a refused account cools down for minutes, got {retry}"
    );
    let a = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(a["accounts"][0]["failures"]["forbidden"], 1);
}

/// Only silence ends a stream: one that keeps flowing runs far past every timeout.
#[test]
fn a_long_stream_that_keeps_flowing_completes() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"timeouts": {"stream_idle_ms": 600, "response_ms": 600}, "client_timeout_ms": 600}),
    );
    let chunks = ["t"; 12];
    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events("m", &chunks)).delay_ms(300),
    );
    let started = Instant::now();
    let (status, _, lines) = stream(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"stream":true,"messages":[]}"#,
    );
    assert_eq!(status, 200);
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let events = events_of(&lines);
    assert_eq!(
        events.last().map(String::as_str),
        Some("message_stop"),
        "{events:?}"
    );
    assert!(!events.contains(&"error".to_string()));
}

/// A client that stops reading is cut by the write timeout, which frees its worker.
#[test]
fn a_client_that_stops_reading_is_cut_by_the_write_timeout() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"workers": 1, "client_timeout_ms": 500}));
    let big = "x".repeat(16 * 1024);
    let chunks: Vec<&str> = std::iter::repeat_n(big.as_str(), 2000).collect(); // ~32 MB
    mock.enqueue("/v1/messages", Reply::sse(sse_text_events("m", &chunks)));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    let body = r#"{"stream":true,"messages":[]}"#;
    write!(s, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nuser-agent: {CLAUDE_CODE_UA}\r\nx-app: cli\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    // Never read. The single worker must come free once its writes time out.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = get(&gate.url("/v1/models"), &[("x-api-key", &key)]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "worker freed after {:?}",
        started.elapsed()
    );
    drop(s);
}

#[test]
fn the_token_is_refreshed_ahead_of_expiry_without_any_request() {
    let mock = MockUpstream::start();
    let setup = Setup::new(upstream_config(&mock.url()));
    // Expires in 30 minutes; the default margin is one hour, so it is due now.
    setup.store_login(oauth_login("sk-ant-oat01-old", "sk-ant-ort01-old", 1800));
    let _gate = Gate::spawn(setup);
    assert!(
        mock.wait_for_requests(1, Duration::from_secs(5)),
        "no background refresh"
    );
    let calls = mock.requests_to("/v1/oauth/token");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].json()["refresh_token"], "sk-ant-ort01-old");
    let deadline = Instant::now() + Duration::from_secs(3);
    while _gate.setup.stored_login()["access_token"] == "sk-ant-oat01-old" {
        assert!(Instant::now() < deadline, "refreshed token not saved");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_passing_refresh_failure_is_retried() {
    let mock = MockUpstream::start();
    let setup = Setup::new(upstream_config(&mock.url()));
    setup.store_login(oauth_login("sk-ant-oat01-old", "sk-ant-ort01-old", -5));
    let key = setup.add_key("app", &["--admin"]);
    mock.enqueue(
        "/v1/oauth/token",
        Reply::json(503, json!({"error": "temporarily_unavailable"})),
    );
    let gate = Gate::spawn(setup);
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(mock.requests_to("/v1/oauth/token").len(), 2);
    let a = get(&gate.url("/admin/accounts"), &[("x-api-key", &key)]).json();
    assert_eq!(a["accounts"][0]["state"], "ok");
    assert!(a["accounts"][0]["last_refresh"].is_string(), "{a}");
}

/// `HTTPS_PROXY` is honoured for the upstream (ureq tunnels through it with CONNECT, even to
/// an http:// base URL), and `NO_PROXY` bypasses it.
#[test]
fn https_proxy_and_no_proxy_are_honoured() {
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    let mock = MockUpstream::start();
    // A minimal CONNECT proxy that records each tunnel's target and pipes bytes both ways.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(8) {
            let Ok(mut client) = conn else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or("").to_string());
                let Ok(mut upstream) = TcpStream::connect(&target) else {
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .ok();
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    std::io::copy(&mut u2, &mut c2).ok();
                });
                std::io::copy(&mut client, &mut upstream).ok();
            });
        }
    });
    let proxy = format!("http://{proxy_addr}");
    let (setup, key) = logged_in_setup(&mock.url(), json!({}));
    let gate = Gate::spawn_with_env(setup, &[("HTTPS_PROXY", proxy.as_str())]);
    let r = post_with(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let tunnels = seen.lock().unwrap().clone();
    assert!(
        tunnels
            .iter()
            .any(|t| t.starts_with("CONNECT ") && t.contains(&mock.addr().port().to_string())),
        "{tunnels:?}"
    );
    drop(gate);

    // NO_PROXY naming the upstream's host bypasses the proxy.
    seen.lock().unwrap().clear();
    let (setup, key) = logged_in_setup(&mock.url(), json!({}));
    let gate = Gate::spawn_with_env(
        setup,
        &[("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", "127.0.0.1")],
    );
    let r = post_with(
        &gate.url("/v1/messages"),
        &claude_code_headers(&key),
        r#"{"messages":[]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "NO_PROXY must bypass the proxy"
    );
}
