//! Self-test of the mock Anthropic upstream (`tests/it/common/mock_upstream.rs`).

use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// POST JSON with ureq; returns (status, response, body text).
fn post(url: &str, body: &Value) -> (u16, ureq::http::Response<ureq::Body>, String) {
    let mut resp = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (status, resp, text)
}

fn header<'a>(resp: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn connect(mock: &MockUpstream) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(mock.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let r = BufReader::new(s.try_clone().expect("clone"));
    (s, r)
}

/// Read one response with a content-length body from a raw connection.
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("num");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').expect("colon");
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().expect("len"))
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    (status, headers, body)
}

fn messages_body(stream: bool) -> Value {
    json!({"model": "claude-opus-4-6", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn default_json_message() {
    let mock = MockUpstream::start();
    let (status, resp, text) = post(
        &format!("{}/v1/messages", mock.url()),
        &messages_body(false),
    );
    assert_eq!(status, 200);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    assert!(header(&resp, "request-id").is_some_and(|v| v.starts_with("req_")));
    assert_eq!(
        header(&resp, "anthropic-ratelimit-unified-status"),
        Some("allowed")
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    assert!(v["id"].as_str().is_some_and(|s| s.starts_with("msg_")));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-opus-4-6");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": DEFAULT_TEXT_CHUNKS.concat()})
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert!(v["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(v["usage"]["output_tokens"], DEFAULT_TEXT_CHUNKS.len());
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(mock.count(), 1);
}

#[test]
fn default_sse_stream_framing() {
    let mock = MockUpstream::start();
    let (status, resp, text) = post(&format!("{}/v1/messages", mock.url()), &messages_body(true));
    assert_eq!(status, 200);
    assert!(header(&resp, "content-type").is_some_and(|v| v.starts_with("text/event-stream")));
    let events = parse_sse(&text);
    // Exact wire framing: the body is the concatenation of `event: X\ndata: Y\n\n`.
    let rewired: String = events.iter().map(SseEvent::to_wire).collect();
    assert_eq!(rewired, text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n(
        "content_block_delta",
        DEFAULT_TEXT_CHUNKS.len(),
    ));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for e in &events {
        assert_eq!(
            e.data_json()["type"],
            e.event.as_str(),
            "type field matches event name"
        );
    }
    assert_eq!(
        events[3].data,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#
    );
    assert!(events[0]
        .data
        .starts_with(r#"{"type":"message_start","message":{"id":"msg_"#));
    let start = events[0].data_json();
    assert_eq!(start["message"]["model"], "claude-opus-4-6");
    assert_eq!(start["message"]["content"], json!([]));
    assert!(start["message"]["usage"]["input_tokens"].as_u64().is_some());
    assert_eq!(
        events[1].data_json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text_out: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .map(|e| {
            e.data_json()["delta"]["text"]
                .as_str()
                .expect("text")
                .to_string()
        })
        .collect();
    assert_eq!(text_out, DEFAULT_TEXT_CHUNKS.concat());
    assert_eq!(
        events[events.len() - 2].data_json(),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": DEFAULT_TEXT_CHUNKS.len()}})
    );
}

#[test]
fn sse_events_arrive_separately_with_delay() {
    let mock = MockUpstream::start();
    let delay = 30u64;
    mock.enqueue(
        "/v1/messages",
        Reply::sse_text("claude-haiku-4-5", &["a", "b", "c", "d"]).delay_ms(delay),
    );
    let resp = agent()
        .post(format!("{}/v1/messages", mock.url()))
        .send(messages_body(true).to_string())
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let (mut times, mut text) = (Vec::new(), String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if line == "\n" {
            times.push(Instant::now());
        }
        text.push_str(&line);
    }
    let events = parse_sse(&text);
    assert_eq!(events.len(), 10);
    assert_eq!(times.len(), events.len());
    let gap = times[times.len() - 1] - times[0];
    let min = Duration::from_millis(delay * (events.len() as u64 - 1));
    assert!(
        gap + Duration::from_millis(5) >= min,
        "gap {gap:?} < {min:?}"
    );
}

#[test]
fn queued_error_with_retry_after_then_default() {
    let mock = MockUpstream::start();
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "slow down").retry_after(7),
    );
    let url = format!("{}/v1/messages", mock.url());
    let (status, resp, text) = post(&url, &messages_body(false));
    assert_eq!(status, 429);
    assert_eq!(header(&resp, "retry-after"), Some("7"));
    assert_eq!(
        header(&resp, "anthropic-ratelimit-unified-status"),
        Some("rejected")
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
    let (status, _, _) = post(&url, &messages_body(false));
    assert_eq!(status, 200);
}

#[test]
fn queue_is_fifo_per_route_then_falls_back() {
    let mock = MockUpstream::start();
    mock.enqueue("/v1/messages", Reply::message("m", "first"));
    mock.enqueue(
        "/v1/models",
        Reply::error(500, "api_error", "models broken"),
    );
    mock.enqueue(
        "/v1/messages",
        Reply::error(529, "overloaded_error", "Overloaded"),
    );
    mock.enqueue(
        "/v1/messages",
        Reply::json(201, json!({"third": true})).header("x-custom", "yes"),
    );
    mock.enqueue_prefix("/v1/models/", Reply::error(403, "permission_error", "nope"));
    assert_eq!(mock.queued(), 5);
    let url = format!("{}/v1/messages", mock.url());
    let (s1, _, t1) = post(&url, &messages_body(false));
    assert_eq!(
        (
            s1,
            serde_json::from_str::<Value>(&t1).expect("j")["content"][0]["text"].clone()
        ),
        (200, json!("first"))
    );
    let (s2, _, t2) = post(&url, &messages_body(false));
    assert_eq!(s2, 529);
    assert_eq!(
        serde_json::from_str::<Value>(&t2).expect("j")["error"]["type"],
        "overloaded_error"
    );
    let (s3, r3, t3) = post(&url, &messages_body(false));
    assert_eq!(
        (s3, header(&r3, "x-custom"), t3.as_str()),
        (201, Some("yes"), r#"{"third":true}"#)
    );
    let (s4, _, t4) = post(&url, &messages_body(false));
    assert_eq!(
        (
            s4,
            serde_json::from_str::<Value>(&t4).expect("j")["type"].clone()
        ),
        (200, json!("message"))
    );
    // Prefix route, then the exact route that was still queued, then defaults.
    let mut r = agent()
        .get(format!("{}/v1/models/claude-sonnet-4-6", mock.url()))
        .call()
        .expect("get");
    assert_eq!(r.status().as_u16(), 403);
    let _ = r.body_mut().read_to_string();
    let mut r = agent()
        .get(format!("{}/v1/models?limit=5", mock.url()))
        .call()
        .expect("get");
    assert_eq!(r.status().as_u16(), 500);
    let _ = r.body_mut().read_to_string();
    assert_eq!(mock.queued(), 0);
    let mut r = agent()
        .get(format!("{}/v1/models", mock.url()))
        .call()
        .expect("get");
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().expect("b")).expect("json");
    assert_eq!(v["data"][0]["id"], "claude-sonnet-4-6");
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["first_id"], "claude-sonnet-4-6");
    assert_eq!(v["has_more"], false);
    assert_eq!(
        v["last_id"],
        v["data"][v["data"].as_array().expect("arr").len() - 1]["id"]
    );
}

#[test]
fn oauth_token_endpoint() {
    let mock = MockUpstream::start();
    let url = format!("{}/v1/oauth/token", mock.url());
    let (s, _, t) = post(
        &url,
        &json!({"grant_type": "authorization_code", "code": "abc", "code_verifier": "v"}),
    );
    assert_eq!(s, 200);
    let first: Value = serde_json::from_str(&t).expect("json");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 28800);
    assert_eq!(first["scope"], "user:inference user:profile");
    assert_eq!(first["account"]["email_address"], "user@example.com");
    assert!(first["organization"]["uuid"].is_string());
    let access1 = first["access_token"].as_str().expect("at");
    let refresh1 = first["refresh_token"].as_str().expect("rt");
    assert!(access1.starts_with("sk-ant-oat01-") && refresh1.starts_with("sk-ant-ort01-"));

    let (s, _, t) = post(
        &url,
        &json!({"grant_type": "refresh_token", "refresh_token": refresh1}),
    );
    assert_eq!(s, 200);
    let second: Value = serde_json::from_str(&t).expect("json");
    assert_ne!(
        second["access_token"].as_str(),
        Some(access1),
        "tokens rotate"
    );
    assert_ne!(
        second["refresh_token"].as_str(),
        Some(refresh1),
        "tokens rotate"
    );
    assert_eq!(mock.tokens_issued(), 2);

    for bad in [refresh1, "sk-ant-ort01-revoked"] {
        let (s, _, t) = post(
            &url,
            &json!({"grant_type": "refresh_token", "refresh_token": bad}),
        );
        assert_eq!(s, 400, "{bad}");
        let v: Value = serde_json::from_str(&t).expect("json");
        assert_eq!(v["error"], "invalid_grant");
        assert!(v["error_description"].is_string());
    }
    mock.allow_refresh_reuse(true);
    let (s, _, _) = post(
        &url,
        &json!({"grant_type": "refresh_token", "refresh_token": refresh1}),
    );
    assert_eq!(s, 200);
    let (s, _, t) = post(&url, &json!({"grant_type": "password"}));
    assert_eq!(s, 400);
    assert!(t.contains("unsupported_grant_type"));
    assert_eq!(mock.requests_to("/v1/oauth/token").len(), 6);
}

#[test]
fn records_method_path_query_headers_and_body() {
    let mock = MockUpstream::start();
    let body = r#"{"model":"claude-sonnet-4-6","messages":[]}"#;
    let mut resp = agent()
        .post(format!("{}/v1/messages/count_tokens?beta=true", mock.url()))
        .header("x-api-key", "sk-test")
        .header("Anthropic-Beta", "one")
        .header("anthropic-beta", "two")
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value =
        serde_json::from_str(&resp.body_mut().read_to_string().expect("b")).expect("json");
    assert_eq!(v, json!({"input_tokens": body.len() / 4}));
    let r = mock.last_request().expect("recorded");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/messages/count_tokens?beta=true");
    assert_eq!(r.path_only(), "/v1/messages/count_tokens");
    assert_eq!(r.query(), Some("beta=true"));
    assert_eq!(r.header("X-API-KEY"), Some("sk-test"));
    assert_eq!(r.header_all("anthropic-beta"), vec!["one", "two"]);
    assert!(r.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert_eq!(r.body, body.as_bytes());
    assert_eq!(r.json()["model"], "claude-sonnet-4-6");
    assert_eq!(mock.requests(), vec![r]);
    mock.clear();
    assert_eq!(mock.count(), 0);
    assert!(mock.last_request().is_none());
}

#[test]
fn chunked_request_body_and_keep_alive() {
    let mock = MockUpstream::start();
    let (mut s, mut r) = connect(&mock);
    let body = messages_body(false).to_string();
    let (a, b) = body.split_at(10);
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let (status, headers, resp_body) = read_response(&mut r);
    assert_eq!(status, 200);
    assert!(!headers
        .iter()
        .any(|(n, v)| n == "connection" && v == "close"));
    assert_eq!(
        serde_json::from_slice::<Value>(&resp_body).expect("json")["model"],
        "claude-opus-4-6"
    );
    assert_eq!(mock.last_request().expect("rec").body, body.as_bytes());
    // Second request on the same connection; asks to close afterwards.
    s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let (status, headers, _) = read_response(&mut r);
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(n, v)| n == "connection" && v == "close"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("eof");
    assert!(rest.is_empty());
    assert_eq!(mock.count(), 2);
}

#[test]
fn stall_after_headers_times_out_reader() {
    let mock = MockUpstream::start();
    mock.enqueue("/v1/messages", Reply::stall_after_headers(2000));
    let (mut s, mut r) = connect(&mock);
    let body = messages_body(true).to_string();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut got = String::new();
    while !got.contains("message_start") || !got.ends_with("\n\n\r\n") {
        let mut line = String::new();
        assert!(r.read_line(&mut line).expect("line") > 0, "unexpected EOF");
        got.push_str(&line);
    }
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(got
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked"));
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let err = r
        .read(&mut buf)
        .expect_err("stalled upstream must not send more");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
}

#[test]
fn raw_reset_and_midstream_error_replies() {
    let mock = MockUpstream::start();
    let garbage = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ntrunc".to_vec();
    mock.enqueue("/v1/messages", Reply::raw(garbage.clone()));
    let events = sse_text_events("claude-sonnet-4-6", &["Hel", "lo"]);
    mock.enqueue("/v1/messages", Reply::reset_mid_stream(events.clone(), 4));
    let mut with_error = events[..4].to_vec();
    with_error.push(sse_error_event("overloaded_error", "Overloaded"));
    mock.enqueue("/v1/messages", Reply::sse(with_error));
    let body = messages_body(true).to_string();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut outputs = Vec::new();
    for _ in 0..3 {
        let (mut s, mut r) = connect(&mock);
        s.write_all(req.as_bytes()).expect("write");
        let mut all = Vec::new();
        let _ = r.read_to_end(&mut all); // reset may surface as an error after data
        outputs.push(String::from_utf8_lossy(&all).into_owned());
    }
    assert_eq!(outputs[0].as_bytes(), &garbage[..]);
    assert!(outputs[1].contains("event: content_block_delta\ndata: "));
    assert!(outputs[1].contains("\"Hel\"") && !outputs[1].contains("\"lo\""));
    assert!(
        !outputs[1].ends_with("0\r\n\r\n"),
        "no terminating chunk after reset"
    );
    assert!(outputs[2].ends_with("0\r\n\r\n"));
    assert!(outputs[2].contains(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    ));
}

#[test]
fn delay_before_headers_and_emission_stamps() {
    let mock = MockUpstream::start();
    mock.enqueue(
        "/v1/messages",
        Reply::message("m", "late").delay_before_ms(150),
    );
    mock.enqueue(
        "/v1/messages",
        Reply::sse_text("m", &["x", "y"])
            .delay_ms(5)
            .stamp_emitted_at(),
    );
    let url = format!("{}/v1/messages", mock.url());
    let t0 = Instant::now();
    let (s, _, _) = post(&url, &messages_body(false));
    assert_eq!(s, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let before = unix_micros();
    let (_, _, text) = post(&url, &messages_body(true));
    let stamps: Vec<u64> = parse_sse(&text)
        .iter()
        .map(|e| e.data_json()["emitted_at_us"].as_u64().expect("stamped"))
        .collect();
    assert_eq!(stamps.len(), 8);
    assert!(stamps[0] >= before && stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(stamps[7] - stamps[0] >= 7 * 5_000);
}

#[test]
fn tool_use_stream_helper_and_misc_defaults() {
    let events = sse_tool_use_events("m", "toolu_1", "get_weather", &["{\"city\":", "\"Paris\"}"]);
    assert_eq!(events[1].data_json()["content_block"]["type"], "tool_use");
    let json: String = events
        .iter()
        .filter_map(|e| {
            e.data_json()["delta"]["partial_json"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).expect("json"),
        json!({"city": "Paris"})
    );
    let mock = MockUpstream::start();
    let (s, _, t) = post(&format!("{}/v1/nope", mock.url()), &json!({}));
    assert_eq!(s, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&t).expect("json")["error"]["type"],
        "not_found_error"
    );
    let (mut sock, mut r) = connect(&mock);
    sock.write_all(b"POST /v1/messages HTTP/1.1\r\nContent-Length: 3\r\n\r\n{{{")
        .expect("write");
    assert_eq!(read_response(&mut r).0, 400, "invalid JSON body");
    sock.write_all(b"garbage\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut r).0, 400, "malformed request line");
    assert!(mock.wait_for_requests(2, Duration::from_secs(1)));
    let addr = mock.addr();
    drop(mock);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "stopped"
    );
}
