//! Availability: one key's slow uploads must not starve the other keys (issue "Hardening II",
//! items 1 and 2). Each test reproduces an attack from the review against the real binary, with
//! short settings: one key (`app`) trickles request bodies, just fast enough that no single
//! socket read times out, while another key (`other`) must keep being served.
//!
//! - A body has a grace (`body_grace_ms`) and then a floor on its average rate
//!   (`body_min_bytes_per_s`); below it the answer is 408 and the connection is closed.
//! - `/v1/fetch` takes its bucket token and a per-key slot before reading the body.
//! - `limits.per_key_concurrent` (auto by default) leaves a quarter of the workers and of
//!   `limits.max_concurrent` to other keys.
//! - The body budget is reserved as bytes arrive, not from the declared `Content-Length`.
//!
//! Every loop here is bounded in count and time, and everything stays on loopback.

use crate::common::gate::*;
use crate::common::mock_upstream::MockUpstream;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A gate in front of `mock` with two keys: `app` (returned first: the one that misbehaves)
/// and `other` (everyone else).
fn two_keys(mock: &MockUpstream, config: Value) -> (Gate, String, String) {
    let (setup, slow) = logged_in_setup(&mock.url(), config);
    let other = setup.add_key("other", &[]);
    (Gate::spawn(setup), slow, other)
}

const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

/// The head of a POST to `path` that declares `len` body bytes, and the body's first byte.
/// Bodies over 1024 bytes are read by the worker (smaller ones by tiny_http before queueing).
fn upload_head(path: &str, key: &str, len: u64) -> String {
    assert!(len > 1024);
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{"
    )
}

/// Opens one upload that sends its head and one body byte, then nothing.
fn open_upload(addr: SocketAddr, path: &str, key: &str, len: u64) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(upload_head(path, key, len).as_bytes())
        .expect("send head");
    s
}

/// `n` connections of one key, each trickling a body of `len` declared bytes to `path` (one
/// byte every 100 ms: well inside the per-read timeout) until `until` or until dropped; a
/// connection the server closes is opened again at once, as the attack in the review did.
struct Trickle {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Trickle {
    fn start(
        addr: SocketAddr,
        path: &str,
        key: &str,
        len: u64,
        n: usize,
        until: Instant,
    ) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let (stop, head) = (stop.clone(), upload_head(path, key, len));
                thread::spawn(move || {
                    let going = || !stop.load(Ordering::SeqCst) && Instant::now() < until;
                    while going() {
                        let Ok(mut s) = TcpStream::connect(addr) else {
                            thread::sleep(Duration::from_millis(20));
                            continue;
                        };
                        if s.write_all(head.as_bytes()).is_err() {
                            continue;
                        }
                        while going() {
                            thread::sleep(Duration::from_millis(100));
                            if s.write_all(b" ").is_err() {
                                break; // closed by the server: open another
                            }
                        }
                    }
                })
            })
            .collect();
        Trickle { stop, threads }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().ok();
        }
    }
}

/// Key `other` asks for `/v1/models` and a message every 100 ms for `for_how_long`; every
/// answer must be 200. Returns how many rounds were served.
fn others_are_served(gate: &Gate, other: &str, for_how_long: Duration) -> usize {
    let end = Instant::now() + for_how_long;
    let mut rounds = 0;
    while Instant::now() < end {
        let r = get(&gate.url("/v1/models"), &[("x-api-key", other)]);
        assert_eq!(r.status, 200, "key other starved on /v1/models: {r:?}");
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", other)], MESSAGE);
        assert_eq!(r.status, 200, "key other starved on /v1/messages: {r:?}");
        rounds += 1;
        thread::sleep(Duration::from_millis(100));
    }
    rounds
}

/// Settings that make the attack and its cure fast: a 1 s per-read timeout (the trickle stays
/// inside it), a 300 ms grace and a floor of 1000 bytes/s (the trickle, 10 bytes/s, is far below).
fn short_settings() -> Value {
    json!({
        "client_timeout_ms": 1000,
        "body_grace_ms": 300,
        "body_min_bytes_per_s": 1000,
    })
}

/// The review's attack on a gate with [`short_settings`] and `extra`: `connections` uploads of
/// key `app` trickle to `path` (re-opened when closed), while key `other` must be served on
/// every request for 2.5 s.
fn others_are_served_through_a_trickle(path: &str, connections: usize, extra: Value) {
    let mock = MockUpstream::start();
    let mut config = short_settings();
    merge(&mut config, &extra);
    let (mut gate, slow, other) = two_keys(&mock, config);
    let until = Instant::now() + Duration::from_secs(4);
    let trickle = Trickle::start(gate.addr, path, &slow, 100_000, connections, until);
    thread::sleep(Duration::from_millis(300));
    let rounds = others_are_served(&gate, &other, Duration::from_millis(2500));
    drop(trickle);
    assert!(rounds >= 5, "only {rounds} rounds in 2.5 s");
    gate.assert_healthy();
}

/// Item 1, the review's first reproduction: 12 trickled `/v1/fetch` uploads of one key held
/// every worker and filled the queue, so other keys got 503 on `/v1/models` and
/// `/v1/messages` for as long as the trickle lasted.
#[test]
fn trickled_fetch_uploads_of_one_key_leave_workers_for_other_keys() {
    let extra =
        json!({"workers": 4, "queue": 2, "fetch": {"rpm": 0}, "limits": {"per_key_rpm": 0}});
    others_are_served_through_a_trickle("/v1/fetch", 12, extra);
}

/// Item 1, the review's second reproduction: three trickled `/v1/messages` uploads of one key
/// held every `limits.max_concurrent` slot, so other keys got 429.
#[test]
fn trickled_message_uploads_of_one_key_leave_slots_for_other_keys() {
    let extra = json!({"limits": {"max_concurrent": 3, "per_key_rpm": 0}});
    others_are_served_through_a_trickle("/v1/messages", 3, extra);
}

/// Item 1: one key at `limits.per_key_concurrent` gets 429 with `Retry-After` naming the limit,
/// in the caller's protocol, on the model routes and on `/v1/fetch`; other keys are served,
/// and the key is served again once its upload ends.
#[test]
fn a_key_at_its_concurrency_cap_gets_429_naming_the_limit() {
    let mock = MockUpstream::start();
    let config = json!({"limits": {"per_key_concurrent": 1}, "client_timeout_ms": 5000});
    let (gate, slow, other) = two_keys(&mock, config);
    let held = open_upload(gate.addr, "/v1/messages", &slow, 5000);
    thread::sleep(Duration::from_millis(300));

    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &slow)], MESSAGE);
    let v = r.assert_anthropic_error(429, "rate_limit_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.per_key_concurrent"), "{v}");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = post(
        &gate.url("/v1/fetch"),
        &[("x-api-key", &slow)],
        r#"{"url":"http://203.0.113.1/"}"#,
    );
    let v = r.assert_relay_error(429);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("limits.per_key_concurrent"),
        "{v}"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &other)], MESSAGE);
    assert_eq!(r.status, 200, "{r:?}");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", &slow)], MESSAGE);
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released: {r:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// What a client trickling a body saw: the answer (if any), how long it took, and whether the
/// server then closed the connection while the client kept trickling.
struct Trickled {
    answer: Option<String>,
    answered_after: Duration,
    closed: bool,
}

/// Trickles a body (one byte every 100 ms) on one connection for at most `within`, reading
/// what comes back; after a complete answer it keeps trickling for up to a second to see
/// whether the server closes the connection.
fn trickle_until_answered(addr: SocketAddr, head: &str, within: Duration) -> Trickled {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.write_all(head.as_bytes()).expect("send head");
    let started = Instant::now();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    let mut answered_after = None;
    let mut closed = false;
    let mut end = started + within;
    while Instant::now() < end && !closed {
        thread::sleep(Duration::from_millis(50));
        closed |= s.write_all(b" ").is_err();
        loop {
            match s.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    continue;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => closed = true,
            }
            break;
        }
        if answered_after.is_none() && complete(&got) {
            answered_after = Some(started.elapsed());
            end = Instant::now() + Duration::from_secs(1);
        }
    }
    Trickled {
        answer: answered_after.map(|_| String::from_utf8_lossy(&got).into_owned()),
        answered_after: answered_after.unwrap_or(started.elapsed()),
        closed,
    }
}

/// Reads from `s` until a whole response has arrived or `within` has passed; returns what came.
fn read_answer(s: &mut TcpStream, within: Duration) -> String {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let end = Instant::now() + within;
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    while Instant::now() < end && !complete(&got) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether `bytes` hold a whole response with a `Content-Length` body.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= len
}

/// Item 1: a body trickled just inside the per-read timeout is cut off soon after the grace,
/// with the 408 of the caller's protocol, and the server closes the connection instead of
/// reading the rest of the trickle.
#[test]
fn a_trickled_body_gets_408_in_the_callers_protocol_and_its_connection_closed() {
    let mock = MockUpstream::start();
    let (mut gate, key, _) = two_keys(&mock, short_settings());
    for (path, shape) in [
        ("/v1/messages", r#""type":"timeout_error""#),
        ("/v1/chat/completions", r#""code":"request_timeout""#),
        ("/v1/fetch", r#""ok":false"#),
    ] {
        let head =
            upload_head(path, &key, 100_000).replace("anthropic-version: 2023-06-01\r\n", "");
        let seen = trickle_until_answered(gate.addr, &head, Duration::from_secs(3));
        let answer = seen
            .answer
            .unwrap_or_else(|| panic!("{path}: no answer in 3 s while the body trickled"));
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains(shape), "{path}: {answer}");
        assert!(answer.contains("body_min_bytes_per_s"), "{path}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{path}: {answer}"
        );
        assert!(
            seen.answered_after < Duration::from_millis(1500),
            "{path}: 408 after {:?}",
            seen.answered_after
        );
        assert!(
            seen.closed,
            "{path}: the connection stayed open after the 408"
        );
    }
    gate.assert_healthy();
}

/// Item 1: the fetch bucket is spent before the body is read, so a key over `fetch.rpm` gets
/// its 429 at once instead of holding a worker while its body trickles in.
#[test]
fn fetch_bucket_is_spent_before_the_body_is_read() {
    let mock = MockUpstream::start();
    let config = json!({"fetch": {"rpm": 1}, "client_timeout_ms": 3000, "workers": 4});
    let (gate, key, _) = two_keys(&mock, config);
    let _first = open_upload(gate.addr, "/v1/fetch", &key, 2000);
    thread::sleep(Duration::from_millis(300));
    let mut second = open_upload(gate.addr, "/v1/fetch", &key, 2000);
    let answer = read_answer(&mut second, Duration::from_millis(1500));
    assert!(
        answer.starts_with("HTTP/1.1 429"),
        "no 429 within 1.5 s of sending the head: {answer:?}"
    );
    assert!(answer.contains("fetch.rpm"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after:"),
        "{answer}"
    );
}

/// Item 2: declared lengths no longer reserve the body budget. With the defaults (512 MiB
/// budget, 200 MiB bodies), three uploads that declared 512 MiB between them and sent one byte
/// each made every other request with a body fail with 503 "holding too many large request
/// bodies".
#[test]
fn declared_but_absent_bodies_do_not_use_up_the_body_budget() {
    let mock = MockUpstream::start();
    let (mut gate, slow, other) = two_keys(&mock, json!({}));
    let _held: Vec<TcpStream> = [200 << 20, 200 << 20, 112 << 20]
        .into_iter()
        .map(|len| open_upload(gate.addr, "/v1/messages", &slow, len))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &other)], MESSAGE);
    assert_eq!(r.status, 200, "{r:?}");
    // A body that really arrives is still budgeted and read whole.
    let padded = json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "x".repeat(300_000)}],
    });
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &other)],
        &padded.to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let upstream = mock.requests_to("/v1/messages");
    let last = upstream.last().expect("forwarded");
    assert_eq!(
        last.json()["messages"][0]["content"].as_str().map(str::len),
        Some(300_000)
    );
    gate.assert_healthy();
}

/// Item 2 with a small budget: two 1 MiB uploads trickling against a 2 MiB budget held all of
/// it, so another key's tiny request got 503.
#[test]
fn trickled_uploads_hold_only_what_arrived_of_a_small_budget() {
    let mock = MockUpstream::start();
    let config = json!({
        "max_body_bytes": 1 << 20,
        "max_inflight_body_bytes": 2 << 20,
        "client_timeout_ms": 1000,
        "body_grace_ms": 5000,
    });
    let (mut gate, slow, other) = two_keys(&mock, config);
    let until = Instant::now() + Duration::from_secs(3);
    let trickle = Trickle::start(gate.addr, "/v1/messages", &slow, 1 << 20, 2, until);
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", &other)], MESSAGE);
        assert_eq!(r.status, 200, "{r:?}");
        thread::sleep(Duration::from_millis(100));
    }
    drop(trickle);
    gate.assert_healthy();
}

/// tiny_http patch (9): an answer that says `Connection: close` ends its connection. Before it,
/// tiny_http dropped the header and kept the connection, reading (and throwing away) up to
/// 1 MiB of unread body at the client's pace and then serving the next request on it.
#[test]
fn an_answer_with_connection_close_ends_the_connection() {
    let (gate, key) =
        Gate::start_with_key(json!({"max_body_bytes": 1500, "max_inflight_body_bytes": 5000}));
    let mut s = open_upload(gate.addr, "/v1/messages", &key, 2000);
    let answer = read_answer(&mut s, Duration::from_secs(2));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // The rest of the body, then a second request on the same connection: never answered.
    let _ = s.write_all(" ".repeat(1999).as_bytes());
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let after = read_answer(&mut s, Duration::from_millis(1500));
    assert!(
        !after.contains("HTTP/1.1"),
        "the connection served another request: {after}"
    );
}
