//! HTTP framing a front proxy could read differently (vendor patch 11): conflicting or
//! malformed `Content-Length`, `Content-Length` with `Transfer-Encoding`, and codings other
//! than `chunked` are refused with 400 and the connection closed; tiny_http's own answers
//! (400, 431, 505) carry a JSON error body; no answer names the server software.

use crate::common::gate::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `bytes` on a fresh connection and reads until the server closes it (at most 3 s):
/// the head (lower-cased), the body, and whether the server closed the connection.
fn exchange(gate: &Gate, bytes: &[u8]) -> (String, String, bool) {
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(bytes).ok();
    let mut out = Vec::new();
    let closed = s.read_to_end(&mut out).is_ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string(), closed)
}

/// Asserts a JSON error answer of `status` in OpenAI shape; returns the body.
fn assert_json_error(head: &str, body: &str, status: u16, what: &str) -> Value {
    assert!(
        head.starts_with(&format!("http/1.1 {status} ")),
        "{what}: {head:?} {body:?}"
    );
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{what}: {head}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
    assert!(v["error"]["type"].is_string(), "{what}: {v}");
    v
}

#[test]
fn ambiguous_request_framing_gets_400_and_the_connection_closes() {
    let (mut gate, key) = Gate::start_with_key(json!({}));
    let cases = [
        (
            "two different Content-Length",
            "Content-Length: 2\r\nContent-Length: 12\r\n",
        ),
        ("a Content-Length list", "Content-Length: 2, 12\r\n"),
        ("a signed Content-Length", "Content-Length: +2\r\n"),
        (
            "a Content-Length that is not a number",
            "Content-Length: two\r\n",
        ),
        (
            "Content-Length and chunked",
            "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "chunked and Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
        ),
        ("a coding other than chunked", "Transfer-Encoding: gzip\r\n"),
        (
            "chunked not last",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        (
            "two Transfer-Encoding",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        ),
    ];
    for (what, framing) in cases {
        let request = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n{framing}\r\n{{}}\r\n\r\n"
        );
        let (head, body, closed) = exchange(&gate, request.as_bytes());
        let v = assert_json_error(&head, &body, 400, what);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("ength")
                || v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("ncoding"),
            "{what}: the message names the header: {v}"
        );
        assert!(head.contains("\r\nconnection: close"), "{what}: {head}");
        assert!(closed, "{what}: the connection was left open");
    }
    // Framing that agrees with itself is served as before: the same length twice, and chunked.
    let same = format!(
        "POST /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 2\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let (head, _, _) = exchange(&gate, same.as_bytes());
    assert!(head.starts_with("http/1.1 405 "), "{head}");
    let chunked = format!(
        "POST /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n\
         Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    let (head, _, _) = exchange(&gate, chunked.as_bytes());
    assert!(head.starts_with("http/1.1 405 "), "{head}");
    gate.assert_healthy();
}

#[test]
fn answers_written_by_tiny_http_have_a_json_body() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("too many headers", many.into_bytes(), 431),
        (
            "HTTP/2.0",
            b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
            505,
        ),
        ("a bad request line", b"GET\r\n\r\n".to_vec(), 400),
        (
            "a bad header",
            b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, bytes, status) in cases {
        let (head, body, closed) = exchange(&gate, &bytes);
        assert_json_error(&head, &body, status, what);
        assert!(head.contains("\r\nconnection: close"), "{what}: {head}");
        assert!(closed, "{what}: the connection was left open");
    }
    gate.assert_healthy();
}

#[test]
fn no_answer_names_the_server_software() {
    let (gate, key) = Gate::start_with_key(json!({}));
    let with_key = format!("x-api-key: {key}\r\n");
    let requests = [
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        format!("GET /v1/models HTTP/1.1\r\nHost: x\r\n{with_key}Connection: close\r\n\r\n"),
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
        "OPTIONS /v1/messages HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\nConnection: close\r\n\r\n"
            .to_string(),
        "GET /health HTTP/2.0\r\nHost: x\r\n\r\n".to_string(),
        "GET\r\n\r\n".to_string(),
    ];
    for request in requests {
        let (head, _, _) = exchange(&gate, request.as_bytes());
        assert!(head.starts_with("http/1.1 "), "{request:?}: {head:?}");
        assert!(!head.contains("\r\nserver:"), "{request:?}: {head}");
        assert!(!head.contains("tiny-http"), "{request:?}: {head}");
    }
}
