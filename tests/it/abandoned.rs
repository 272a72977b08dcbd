//! Abandoned requests: a client that gives up while claudegate waits on a silent upstream (or a
//! silent `claude -p`) must not keep that call open. The upstream connection is closed, or the
//! CLI's process group killed, within 2 s of the client closing its socket, and the worker (and
//! the CLI slot) is free for the next request at once.
//!
//! The clients here are raw sockets that send one request and close after half a second, like
//! an SDK whose timeout fired. The mock counts a waiting reply whose caller closed the
//! connection ([`MockUpstream::wait_for_hangups`]); every wait in the mock is bounded (10 s),
//! and the gate runs one worker, so a worker still held shows as a follow-up that waits.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a scripted upstream stays silent: far longer than any assertion here waits.
const SILENCE_MS: u64 = 10_000;
/// How long the clients here wait before they give up.
const PATIENCE: Duration = Duration::from_millis(500);
/// Longest a client here waits for the call it will abandon to be under way.
const READY_WITHIN: Duration = Duration::from_secs(5);
/// The promise: the abandoned call is closed within this long after the client left.
const CLOSED_WITHIN: Duration = Duration::from_secs(2);

/// One worker (so a held worker blocks the next request), and upstream timeouts far beyond
/// the test, so only the client's departure can end the call.
fn gate(mock: &MockUpstream) -> (Gate, String) {
    logged_in(
        &mock.url(),
        json!({
            "workers": 1,
            "timeouts": {"response_ms": 30_000, "stream_idle_ms": 30_000},
            "limits": {"per_key_rpm": 0},
        }),
    )
}

/// Sends `body` to `path` on a fresh connection, reads whatever arrives for [`PATIENCE`] (and
/// until `ready()`, for at most 5 s), then closes the socket. Returns what arrived.
pub(crate) fn give_up_when(
    gate: &Gate,
    key: &str,
    path: &str,
    body: &Value,
    ready: impl Fn() -> bool,
) -> String {
    let body = body.to_string();
    let mut s = TcpStream::connect(gate.addr).expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < PATIENCE || (!ready() && started.elapsed() < READY_WITHIN) {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    drop(s);
    String::from_utf8_lossy(&got).into_owned()
}

/// [`give_up_when`] with nothing to wait for but [`PATIENCE`].
fn give_up(gate: &Gate, key: &str, path: &str, body: &Value) -> String {
    give_up_when(gate, key, path, body, || true)
}

/// The one worker answers a plain request at once.
fn assert_worker_free(gate: &Gate, key: &str) {
    let t = Instant::now();
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", key)],
        r#"{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        t.elapsed() < CLOSED_WITHIN,
        "the worker was still held: the next request took {:?}",
        t.elapsed()
    );
}

fn messages(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

fn chat(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-6", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

/// Abandons a request to `path` twice, once for each silence the upstream can keep: its
/// headers and then nothing, and nothing at all. Each time the mock must see its connection
/// closed within [`CLOSED_WITHIN`] and the one worker must be free. `head_first`: whether the
/// client gets its response head before the upstream's first event (a relayed stream).
fn abandon_during_both_silences(path: &str, body: &Value, head_first: bool) {
    let mock = MockUpstream::start();
    let (gate, key) = gate(&mock);
    let silences = [
        (
            "headers then silence",
            Reply::sse(vec![]).stall_after(0, SILENCE_MS),
            head_first,
        ),
        (
            "no headers",
            Reply::sse_text("claude-sonnet-4-6", &["late"]).delay_before_ms(SILENCE_MS),
            false,
        ),
    ];
    for (n, (what, reply, head)) in silences.into_iter().enumerate() {
        mock.enqueue("/v1/messages", reply);
        let got = give_up(&gate, &key, path, body);
        assert_eq!(got.starts_with("HTTP/1.1 200"), head, "{what}: {got}");
        assert!(
            mock.wait_for_hangups(n as u64 + 1, CLOSED_WITHIN),
            "{what}: the upstream call was still open {CLOSED_WITHIN:?} after the client \
             left; log:\n{}",
            gate.log()
        );
        assert_worker_free(&gate, &key);
    }
    // The books tell a client that left (499, never sent) from a failed upstream (502):
    // each abandoned request, then the request that found the worker free.
    assert_eq!(
        audit_statuses(&gate, 4),
        [499, 200, 499, 200],
        "log:\n{}",
        gate.log()
    );
}

/// The statuses of the first `n` audit lines, once the (asynchronous) writer has them.
fn audit_statuses(gate: &Gate, n: usize) -> Vec<u64> {
    let path = gate.setup.data_dir().join("audit.log");
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let statuses: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["status"].as_u64())
            .collect();
        if statuses.len() >= n || Instant::now() > deadline {
            return statuses;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_abandoned_stream_closes_its_silent_upstream_call() {
    abandon_during_both_silences("/v1/messages", &messages(true), true);
}

#[test]
fn an_abandoned_non_streaming_chat_closes_its_silent_upstream_call() {
    // The chat door always streams upstream and collects; its client sees nothing until the end.
    abandon_during_both_silences("/v1/chat/completions", &chat(false), false);
}

#[test]
fn a_client_that_says_connection_close_and_waits_gets_its_slow_answer() {
    // `Connection: close` makes tiny_http shut its read side down locally while the request is
    // still being answered; that is no hang-up of the client, which is still waiting.
    let mock = MockUpstream::start();
    let (gate, key) = gate(&mock);
    mock.enqueue(
        "/v1/messages",
        Reply::message("claude-sonnet-4-6", "worth the wait").delay_before_ms(1200),
    );
    let body = messages(false).to_string();
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gate\r\nx-api-key: {key}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let got = raw_exchange(gate.addr, request.as_bytes(), Duration::from_secs(10));
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("worth the wait"), "{got}");
    assert_eq!(mock.hangups(), 0);
}

/// Whether process `pid` still runs (a zombie waiting to be reaped counts as gone).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// A fake `claude` that, for a prompt containing "hang", writes its pid to `pid_file` and
/// sleeps (bounded: 30 s); any other prompt gets the chat-policy fake's canned answer.
fn hanging_claude(dir: &TempDir, pid_file: &Path) -> String {
    let answer = crate::chat_policy::fake_claude(dir);
    let bin = dir.path().join("hanging-claude");
    let script = format!(
        "#!/bin/sh\nprompt=$(cat)\ncase \"$prompt\" in *hang*) echo $$ > '{}'; exec sleep 30;; esac\n\
         printf '%s' \"$prompt\" | exec '{answer}'\n",
        pid_file.display()
    );
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin.to_string_lossy().into_owned()
}

#[test]
fn an_abandoned_cli_call_ends_its_claude_process() {
    let dir = TempDir::new();
    let home = TempDir::new();
    let pid_file = dir.path().join("pid");
    // One worker and one CLI slot, with a short queue wait: a slot still held answers 429.
    let (gate, key) = Gate::start_with_key(json!({
        "backend": "claude-cli",
        "workers": 1,
        "limits": {"per_key_rpm": 0},
        "cli": {"binary": hanging_claude(&dir, &pid_file), "home": home.path().to_string_lossy(),
            "allowed_models": ["sonnet"], "default_model": "sonnet", "timeout_ms": 20_000,
            "max_concurrent": 1, "queue_wait_ms": 300},
    }));
    let auth = format!("Bearer {key}");
    for (path, hang, ok) in [
        (
            "/v1/complete",
            json!({"prompt": "hang please", "model": "sonnet"}),
            json!({"prompt": "hi", "model": "sonnet"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "sonnet", "messages": [{"role": "user", "content": "hang please"}]}),
            json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        std::fs::remove_file(&pid_file).ok();
        give_up_when(&gate, &key, path, &hang, || pid_file.exists());
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid = pid.trim();
        assert!(
            !pid.is_empty(),
            "{path}: the fake CLI never started; log:\n{}",
            gate.log()
        );
        let deadline = Instant::now() + CLOSED_WITHIN;
        while running(pid) {
            assert!(
                Instant::now() < deadline,
                "{path}: the CLI still ran {CLOSED_WITHIN:?} after its client left; log:\n{}",
                gate.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
        let r = post(
            &gate.url(path),
            &[("authorization", &auth)],
            &ok.to_string(),
        );
        assert_eq!(
            r.status, 200,
            "{path}: the worker or CLI slot was still held: {r:?}"
        );
        assert!(
            t.elapsed() < CLOSED_WITHIN,
            "{path}: took {:?}",
            t.elapsed()
        );
    }
}
