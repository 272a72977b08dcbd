//! An upstream event too large to hold (issue "Hardening II", item 5): one event made of many
//! `data:` lines, far beyond what claudegate accepts for one event (16 MiB). The translating
//! routes must stop reading and answer with their protocol's error long before the whole event
//! has arrived, so memory stays bounded; the `/v1/messages` pass-through forwards the lines as
//! they come and must stay bounded as well.
//!
//! The upstream here is a small std-only server that writes the stream as it goes (the mock
//! upstream would hold the whole 64 MiB event in memory first) and counts the bytes it managed
//! to send before claudegate hung up.

use crate::common::gate::*;
use crate::common::mock_upstream::{parse_sse, sse_text_events, SseEvent, DEFAULT_MODEL};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Each `data:` line of the big event carries this many bytes.
const LINE_BYTES: usize = 64 * 1024;
/// The big event's size: four times the 16 MiB claudegate accepts.
const EVENT_BYTES: u64 = 64 * MIB;

/// An upstream whose every answer is a text stream with one 64 MiB `content_block_delta` event
/// (many `data:` lines) in the middle, then a clean end.
struct BigEventUpstream {
    addr: SocketAddr,
    /// Bytes of the current answer written so far.
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl BigEventUpstream {
    fn start() -> BigEventUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopping) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || answer(conn, &counter));
            }
        });
        BigEventUpstream { addr, sent, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes the last answer managed to send; resets the count.
    fn take_sent(&self) -> u64 {
        self.sent.swap(0, Ordering::SeqCst)
    }
}

impl Drop for BigEventUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        TcpStream::connect(self.addr).ok(); // wakes the accept loop so it sees `stop`
    }
}

/// Reads one request (head and `content-length` body), then streams the answer, counting what
/// was written, until it is done or claudegate hangs up.
fn answer(conn: TcpStream, sent: &AtomicU64) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    conn.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().expect("clone the socket"));
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut out = conn;
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
                transfer-encoding: chunked\r\nrequest-id: req_big\r\nconnection: close\r\n\r\n";
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut write = |bytes: &[u8]| -> bool {
        let chunk = [format!("{:x}\r\n", bytes.len()).as_bytes(), bytes, b"\r\n"].concat();
        let ok = out.write_all(&chunk).is_ok();
        if ok {
            sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        ok
    };
    // message_start, content_block_start, (the ping is left out), the big delta, the rest.
    let events = sse_text_events(DEFAULT_MODEL, &["small"]);
    let wire = |evs: &[SseEvent]| evs.iter().map(SseEvent::to_wire).collect::<String>();
    if !write(wire(&events[..2]).as_bytes()) || !write(b"event: content_block_delta\n") {
        return;
    }
    let line = format!("data: {}\n", "x".repeat(LINE_BYTES - 7));
    for _ in 0..EVENT_BYTES / LINE_BYTES as u64 {
        if !write(line.as_bytes()) {
            return;
        }
    }
    if write(b"\n") && write(wire(&events[3..]).as_bytes()) {
        write(b""); // the last chunk
    }
}

/// The gate's peak resident memory so far, in MiB.
fn peak_mib(gate: &Gate) -> u64 {
    gate.proc_kb("VmHWM") / 1024
}

/// Asserts the answer was stopped well before the whole event was sent, and that the gate's
/// peak memory stayed far below what holding the event would take.
fn assert_stopped_early(up: &BigEventUpstream, gate: &Gate, what: &str) {
    let sent = up.take_sent();
    assert!(
        sent < EVENT_BYTES * 3 / 4,
        "{what}: the upstream sent {} MiB of a {} MiB event before claudegate stopped reading",
        sent / MIB,
        EVENT_BYTES / MIB
    );
    let peak = peak_mib(gate);
    assert!(peak < 48, "{what}: claudegate's peak memory was {peak} MiB");
}

/// The message of the failure names the limit, so an operator knows what happened.
fn says_too_large(message: &str) -> bool {
    message.contains("exceeded") && message.contains("16 MiB")
}

/// A chat stream (streamed and collected), a Responses stream and `/v1/complete` each meet one
/// 64 MiB upstream event of 64 KiB `data:` lines. Proves each ends in its protocol's error
/// naming the 16 MiB limit (a chat error chunk without `[DONE]`, `response.failed`, a 502
/// OpenAI error, a 502 `{ok:false}`) after the upstream sent less than three quarters of the
/// event, with claudegate's peak memory under 48 MiB; and that the `/v1/messages`
/// pass-through relays the same event whole, also within that memory.
#[test]
fn an_oversized_upstream_event_ends_the_answer_with_an_error_in_bounded_memory() {
    let up = BigEventUpstream::start();
    let (mut gate, key) = logged_in(&up.url(), json!({}));
    let auth = format!("Bearer {key}");
    let h = [("authorization", auth.as_str())];
    let started = Instant::now();

    // The pass-through forwards lines as they come: the whole event reaches the client.
    let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let l = post_lines(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        &body.to_string(),
    );
    assert_eq!(l.status, 200, "{:?}", l.headers);
    let relayed = l.lines.iter().filter(|x| x.starts_with("data: x")).count();
    assert_eq!(relayed as u64, EVENT_BYTES / LINE_BYTES as u64);
    assert_eq!(
        l.lines
            .iter()
            .rev()
            .find(|x| !x.is_empty())
            .map(String::as_str),
        Some(r#"data: {"type":"message_stop"}"#)
    );
    assert_eq!(up.take_sent() / MIB, EVENT_BYTES / MIB, "the whole stream");
    let peak = peak_mib(&gate);
    assert!(peak < 48, "relay: claudegate's peak memory was {peak} MiB");

    // Chat, streamed: chunks, then an error object and no [DONE].
    let chat = |stream: bool| {
        json!({"model": "sonnet", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
    };
    let l = post_lines(&gate.url("/v1/chat/completions"), &h, &chat(true));
    assert_eq!(l.status, 200, "{l:?}");
    assert_eq!(l.end, Ok(()), "{l:?}");
    let data: Vec<Value> = l
        .lines
        .iter()
        .filter_map(|x| x.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::from(d)))
        .collect();
    assert!(!data.contains(&Value::from("[DONE]")), "{l:?}");
    let last = data.last().cloned().unwrap_or_default();
    let message = last["error"]["message"].as_str().unwrap_or("");
    assert!(says_too_large(message), "chat stream: {last}");
    assert_stopped_early(&up, &gate, "chat stream");

    // Chat, collected: a 502 in OpenAI's shape.
    let r = post(&gate.url("/v1/chat/completions"), &h, &chat(false));
    let v = r.assert_openai_error(502);
    assert!(
        says_too_large(v["error"]["message"].as_str().unwrap_or("")),
        "chat: {v}"
    );
    assert_stopped_early(&up, &gate, "chat");

    // Responses, streamed: response.failed.
    let body = json!({"model": "sonnet", "stream": true, "input": "hi"}).to_string();
    let l = post_lines(&gate.url("/v1/responses"), &h, &body);
    assert_eq!(l.status, 200, "{l:?}");
    let events = parse_sse(&l.text());
    let failed = events.last().map(SseEvent::data_json).unwrap_or_default();
    assert_eq!(failed["type"], "response.failed", "{failed}");
    let message = failed["response"]["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(says_too_large(message), "responses stream: {failed}");
    assert_stopped_early(&up, &gate, "responses stream");

    // /v1/complete: a 502 {ok:false}.
    let r = post(
        &gate.url("/v1/complete"),
        &h,
        &json!({"prompt": "hi"}).to_string(),
    );
    let v = r.assert_relay_error(502);
    assert!(
        says_too_large(v["error"].as_str().unwrap_or("")),
        "complete: {v}"
    );
    assert_stopped_early(&up, &gate, "complete");

    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    gate.assert_healthy();
    assert!(!gate.log().contains("panicked"), "{}", gate.log());
}
