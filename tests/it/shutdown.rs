//! Stopping cleanly: SIGTERM or SIGINT to the real binary while requests are in flight.
//!
//! The promises: no new connection is taken in (the listener is closed, so a connect is
//! refused) and a request on an open keep-alive connection gets 503 with `Retry-After`;
//! requests in flight get up to `shutdown_grace_ms` to finish, and whatever is still running
//! then ends with an error in its caller's protocol (never a bare cut); the process then exits
//! 0 within the grace plus one second, with the usage counters and the audit line of every
//! finished request on disk. A second signal stops at once. As PID 1 (in a PID namespace of
//! its own, as in a container) SIGTERM is handled all the same.
//!
//! The clients are raw sockets (`Connection: close`, read to the end), so a response whose
//! framing was cut shows as incomplete instead of being smoothed over by a client library.
//! Every upstream reply is scripted per request: each client starts only once the mock has
//! the previous one's request, so replies cannot swap.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most a signalled server may take beyond its grace to exit.
const EXIT_MARGIN: Duration = Duration::from_secs(1);
/// How long a scripted upstream stays silent: far beyond any grace here.
const SILENCE_MS: u64 = 20_000;

/// A gate on the mock with `grace_ms` of shutdown grace, upstream timeouts far beyond the
/// tests and no request-rate limit.
fn gate(mock: &MockUpstream, grace_ms: u64) -> (Gate, String) {
    logged_in(
        &mock.url(),
        json!({
            "shutdown_grace_ms": grace_ms,
            "timeouts": {"response_ms": 30_000, "stream_idle_ms": 30_000},
            "limits": {"per_key_rpm": 0},
        }),
    )
}

/// One answer as it came off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    /// The body, de-chunked when it was chunked.
    body: String,
    /// Whether the body's framing was complete (the last chunk, or all of `Content-Length`).
    complete: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn events(&self) -> Vec<SseEvent> {
        parse_sse(&self.body)
    }
}

/// Parses what a server sent on one connection into its (first) answer.
fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return Answer {
            status: 0,
            head: text,
            body: String::new(),
            complete: false,
        };
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut answer = Answer {
        status,
        head: head.to_string(),
        body: String::new(),
        complete: false,
    };
    if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if size == 0 {
                answer.complete = true;
                break;
            }
            let Some(chunk) = after.get(..size) else {
                answer.body.push_str(after);
                break;
            };
            answer.body.push_str(chunk);
            rest = after.get(size + 2..).unwrap_or("");
        }
    } else {
        let len: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        answer.complete = rest.len() >= len;
        answer.body = rest.get(..len).unwrap_or(rest).to_string();
    }
    answer
}

/// Reads until the server closes (at most 15 s).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut out, mut buf) = (Vec::new(), [0u8; 8192]);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    out
}

/// A request head and body as raw bytes.
fn request_bytes(key: &str, path: &str, body: &Value, connection: &str) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nConnection: {connection}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request on a fresh connection (`Connection: close`), on a thread: its answer and when
/// it was complete.
fn send(addr: SocketAddr, key: &str, path: &str, body: Value) -> JoinHandle<(Answer, Instant)> {
    let bytes = request_bytes(key, path, &body, "close");
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&bytes).expect("send the request");
        let raw = read_to_close(&mut s);
        (parse(&raw), Instant::now())
    })
}

/// Starts `body` to `path` once the upstream has the reply for it queued, and waits until
/// the mock holds its request (the `n`th in all), so the next client cannot take its reply.
fn start(
    gate: &Gate,
    mock: &MockUpstream,
    key: &str,
    n: usize,
    (path, body, reply): (&str, Value, Reply),
) -> JoinHandle<(Answer, Instant)> {
    mock.enqueue("/v1/messages", reply);
    let client = send(gate.addr, key, path, body);
    assert!(
        mock.wait_for_requests(n, Duration::from_secs(5)),
        "request {n} ({path}) never reached the upstream; log:\n{}",
        gate.log()
    );
    client
}

fn messages(stream: bool) -> Value {
    json!({"model": DEFAULT_MODEL, "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

fn chat(stream: bool) -> Value {
    json!({"model": DEFAULT_MODEL, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

fn responses() -> Value {
    json!({"model": DEFAULT_MODEL, "stream": true, "input": "hi"})
}

/// Waits for the server to exit; fails unless it exits 0 by `latest`.
fn assert_exits_zero_by(gate: &mut Gate, latest: Instant) {
    let left = latest.saturating_duration_since(Instant::now());
    let status = gate.wait_exit(left + Duration::from_millis(50));
    let now = Instant::now();
    match status {
        Some(s) if s.code() == Some(0) => assert!(
            now <= latest + Duration::from_millis(50),
            "exited 0, but {:?} late; log:\n{}",
            now - latest,
            gate.log()
        ),
        Some(s) => panic!(
            "exited with {s} (signal {:?}); log:\n{}",
            s.signal(),
            gate.log()
        ),
        None => panic!("still running at its deadline; log:\n{}", gate.log()),
    }
}

/// Fails unless a new connection to `addr` is refused within a second.
fn assert_connections_refused(gate: &mut Gate) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect(gate.addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            _ if Instant::now() >= deadline => panic!(
                "new connections were still taken in a second after the signal; log:\n{}",
                gate.log()
            ),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(gate.alive(), "refused only because the server had died");
}

/// The audit lines on disk: (route, status) each.
fn audit_lines(gate: &Gate) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(gate.setup.data_dir().join("audit.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let route = v["route"].as_str().unwrap_or_default().to_string();
            (route, v["status"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// The saved daily count of the key `app`.
fn saved_count(gate: &Gate) -> u64 {
    let text = std::fs::read_to_string(gate.setup.data_dir().join("usage.json"))
        .unwrap_or_else(|e| panic!("usage.json was not saved ({e}); log:\n{}", gate.log()));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["keys"]["app"]["today"].as_u64().unwrap_or(0)
}

/// Asserts the message of a shutdown error names it.
fn says_shutting_down(message: &str, what: &str) {
    assert!(
        message.contains("shutting down"),
        "{what}: the message does not say the server is shutting down: {message}"
    );
}

#[test]
fn work_in_flight_finishes_within_the_grace_and_the_books_are_saved() {
    let mock = MockUpstream::start();
    let grace = Duration::from_millis(4000);
    let (mut gate, key) = gate(&mock, grace.as_millis() as u64);
    // A keep-alive connection, used once before the signal.
    let mut kept = TcpStream::connect(gate.addr).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: gate\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut kept), Some(200));
    let mut body = [0u8; 15];
    kept.read_exact(&mut body).unwrap(); // {"status":"ok"}

    // A stream that takes about 1.5 s, a chat stream and a slow non-streaming answer.
    let events = sse_text_events(DEFAULT_MODEL, &["one", " two", " three", " four", " five"]);
    let stream = start(
        &gate,
        &mock,
        &key,
        1,
        (
            "/v1/messages",
            messages(true),
            Reply::sse(events.clone()).delay_ms(150),
        ),
    );
    let chat_stream = start(
        &gate,
        &mock,
        &key,
        2,
        (
            "/v1/chat/completions",
            chat(true),
            Reply::sse(events).delay_ms(100),
        ),
    );
    let whole = start(
        &gate,
        &mock,
        &key,
        3,
        (
            "/v1/messages",
            messages(false),
            Reply::message(DEFAULT_MODEL, "worth the wait").delay_before_ms(800),
        ),
    );
    let signalled = Instant::now();
    gate.signal("TERM");

    assert_connections_refused(&mut gate);
    // The open keep-alive connection: its next request is refused with 503 and closed.
    kept.write_all(&request_bytes(
        &key,
        "/v1/messages",
        &messages(false),
        "keep-alive",
    ))
    .unwrap();
    let refused = parse(&read_to_close(&mut kept));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    assert_eq!(
        refused.header("connection").as_deref(),
        Some("close"),
        "{refused:?}"
    );
    let v = refused.json();
    assert_eq!(v["type"], "error", "{v}");
    says_shutting_down(v["error"]["message"].as_str().unwrap_or(""), "keep-alive");

    let (a, _) = stream.join().unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.complete, "the stream was cut: {a:?}");
    let names: Vec<String> = a.events().into_iter().map(|e| e.event).collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("message_stop"),
        "{a:?}"
    );
    let (c, _) = chat_stream.join().unwrap();
    assert_eq!(c.status, 200, "{c:?}");
    assert!(c.complete && c.body.contains("data: [DONE]"), "{c:?}");
    let (w, _) = whole.join().unwrap();
    assert_eq!(w.status, 200, "{w:?}");
    assert!(w.complete && w.body.contains("worth the wait"), "{w:?}");

    assert_exits_zero_by(&mut gate, signalled + grace + EXIT_MARGIN);
    // Done well inside the grace: the process did not sit out the rest of it.
    assert!(
        signalled.elapsed() < Duration::from_millis(3500),
        "took {:?} to stop after its work was done",
        signalled.elapsed()
    );
    assert_eq!(saved_count(&gate), 3, "usage.json");
    let lines = audit_lines(&gate);
    assert_eq!(
        lines.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [200, 200, 200],
        "{lines:?}"
    );
    assert!(gate.log().contains("SIGTERM"), "log:\n{}", gate.log());
}

#[test]
fn work_that_outlasts_the_grace_ends_with_an_error_in_its_protocol() {
    let mock = MockUpstream::start();
    let grace = Duration::from_millis(1000);
    let (mut gate, key) = gate(&mock, grace.as_millis() as u64);
    let stalled = || Reply::sse_text(DEFAULT_MODEL, DEFAULT_TEXT_CHUNKS).stall_after(3, SILENCE_MS);
    let silent = || Reply::message(DEFAULT_MODEL, "never").delay_before_ms(SILENCE_MS);
    let calls = [
        ("/v1/messages", messages(true), stalled()),
        ("/v1/chat/completions", chat(true), stalled()),
        ("/v1/responses", responses(), stalled()),
        ("/v1/messages", messages(false), silent()),
        ("/v1/chat/completions", chat(false), stalled()),
        ("/v1/complete", json!({"prompt": "hi"}), silent()),
    ];
    let clients: Vec<_> = calls
        .into_iter()
        .enumerate()
        .map(|(i, call)| start(&gate, &mock, &key, i + 1, call))
        .collect();
    let signalled = Instant::now();
    gate.signal("TERM");
    let answers: Vec<Answer> = clients
        .into_iter()
        .map(|c| {
            let (answer, at) = c.join().unwrap();
            assert!(
                at <= signalled + grace + EXIT_MARGIN,
                "answered {:?} after the signal: {answer:?}",
                at - signalled
            );
            assert!(answer.complete, "a bare cut: {answer:?}");
            answer
        })
        .collect();

    // Anthropic stream: an `error` event after what had been relayed.
    let a = &answers[0];
    assert_eq!(a.status, 200, "{a:?}");
    let events = a.events();
    let last = events.last().expect("events");
    assert_eq!(last.event, "error", "{a:?}");
    assert_eq!(
        last.data_json()["error"]["type"],
        "overloaded_error",
        "{a:?}"
    );
    says_shutting_down(
        last.data_json()["error"]["message"].as_str().unwrap(),
        "stream",
    );
    assert!(events.iter().any(|e| e.event == "message_start"), "{a:?}");
    // Chat stream: an error chunk, and no [DONE] that would pass it off as finished.
    let c = &answers[1];
    assert_eq!(c.status, 200, "{c:?}");
    let error = c
        .events()
        .into_iter()
        .map(|e| e.data_json())
        .find(|d| d.get("error").is_some())
        .unwrap_or_else(|| panic!("no error chunk: {c:?}"));
    says_shutting_down(error["error"]["message"].as_str().unwrap(), "chat stream");
    assert!(!c.body.contains("[DONE]"), "{c:?}");
    // Responses stream: `response.failed`.
    let r = &answers[2];
    assert_eq!(r.status, 200, "{r:?}");
    let failed = r
        .events()
        .into_iter()
        .find(|e| e.event == "response.failed")
        .unwrap_or_else(|| panic!("no response.failed: {r:?}"));
    says_shutting_down(
        failed.data_json()["response"]["error"]["message"]
            .as_str()
            .unwrap(),
        "responses stream",
    );
    // The three that had sent nothing yet: 503 + Retry-After, in their own shapes.
    for (answer, what) in answers[3..].iter().zip(["messages", "chat", "complete"]) {
        assert_eq!(answer.status, 503, "{what}: {answer:?}");
        assert!(answer.header("retry-after").is_some(), "{what}: {answer:?}");
        let v = answer.json();
        let message = match what {
            "messages" => {
                assert_eq!(v["type"], "error", "{v}");
                v["error"]["message"].as_str()
            }
            "chat" => v["error"]["message"].as_str(),
            _ => {
                assert_eq!(v["ok"], false, "{v}");
                v["error"].as_str()
            }
        };
        says_shutting_down(message.unwrap_or(""), what);
    }

    assert_exits_zero_by(&mut gate, signalled + grace + EXIT_MARGIN);
    assert_eq!(saved_count(&gate), 6, "usage.json");
    let statuses: Vec<u64> = audit_lines(&gate).iter().map(|(_, s)| *s).collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 200, 200, 503, 503, 503], "{statuses:?}");
}

#[test]
fn a_second_signal_stops_at_once() {
    let mock = MockUpstream::start();
    let (mut gate, key) = gate(&mock, 10_000);
    let stalled = Reply::sse_text(DEFAULT_MODEL, DEFAULT_TEXT_CHUNKS).stall_after(3, SILENCE_MS);
    let client = start(
        &gate,
        &mock,
        &key,
        1,
        ("/v1/messages", messages(true), stalled),
    );
    gate.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(gate.alive(), "the first signal must drain, not stop");
    let second = Instant::now();
    gate.signal("TERM");
    let status = gate
        .wait_exit(Duration::from_secs(1))
        .unwrap_or_else(|| panic!("still running a second after the second signal"));
    assert!(second.elapsed() < Duration::from_secs(1));
    // Stopped, not finished: the exit code a shell gives a process ended by SIGTERM.
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "{status}; log:\n{}",
        gate.log()
    );
    client.join().unwrap();
    assert_eq!(saved_count(&gate), 1, "usage.json");
    assert!(
        gate.log().contains("received again"),
        "log:\n{}",
        gate.log()
    );
}

#[test]
fn sigint_stops_like_sigterm() {
    let mock = MockUpstream::start();
    let grace = Duration::from_millis(3000);
    let (mut gate, key) = gate(&mock, grace.as_millis() as u64);
    let slow = Reply::message(DEFAULT_MODEL, "still answered").delay_before_ms(500);
    let client = start(
        &gate,
        &mock,
        &key,
        1,
        ("/v1/messages", messages(false), slow),
    );
    let signalled = Instant::now();
    gate.signal("INT");
    assert_connections_refused(&mut gate);
    let (answer, _) = client.join().unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("still answered"), "{answer:?}");
    assert_exits_zero_by(&mut gate, signalled + grace + EXIT_MARGIN);
    assert_eq!(saved_count(&gate), 1);
    assert_eq!(audit_lines(&gate).len(), 1);
    assert!(gate.log().contains("SIGINT"), "log:\n{}", gate.log());
}

/// A fake `claude`: a prompt holding "hang" appends its pid and its blocked-signal mask to
/// `pids` and sleeps (30 s at most); any other prompt is answered after 300 ms.
fn slow_or_hanging_claude(dir: &TempDir) -> String {
    let answer = crate::chat_policy::fake_claude(dir);
    let bin = dir.path().join("slow-claude");
    let pids = dir.path().join("pids");
    let script = format!(
        "#!/bin/sh\nprompt=$(cat)\ncase \"$prompt\" in *hang*) \
         echo \"$$ $(grep SigBlk /proc/$$/status | cut -f2)\" >> '{}'; exec sleep 30;; esac\n\
         sleep 0.3\nprintf '%s' \"$prompt\" | exec '{answer}'\n",
        pids.display()
    );
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin.to_string_lossy().into_owned()
}

/// The lines `slow_or_hanging_claude` wrote: (pid, blocked-signal mask).
fn hung(pids: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(pids)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect()
}

/// Whether process `pid` still runs (a zombie waiting to be reaped counts as gone).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn cli_calls_finish_within_the_grace_or_end_with_their_claude_process() {
    let dir = TempDir::new();
    let home = TempDir::new();
    let grace = Duration::from_millis(1000);
    let (mut gate, key) = Gate::start_with_key(json!({
        "backend": "claude-cli",
        "shutdown_grace_ms": grace.as_millis() as u64,
        "limits": {"per_key_rpm": 0},
        "cli": {"binary": slow_or_hanging_claude(&dir), "home": home.path().to_string_lossy(),
            "allowed_models": ["sonnet"], "default_model": "sonnet", "timeout_ms": 20_000,
            "max_concurrent": 4},
    }));
    let pids = dir.path().join("pids");
    let hang_chat = json!({"model": "sonnet", "stream": true,
        "messages": [{"role": "user", "content": "hang please"}]});
    let clients = [
        send(
            gate.addr,
            &key,
            "/v1/complete",
            json!({"prompt": "hang please"}),
        ),
        send(gate.addr, &key, "/v1/chat/completions", hang_chat),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while hung(&pids).len() < 2 {
        assert!(Instant::now() < deadline, "the fake CLI never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let slow = send(gate.addr, &key, "/v1/complete", json!({"prompt": "hi"}));
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    gate.signal("TERM");

    let (answer, _) = slow.join().unwrap();
    assert_eq!(
        answer.status, 200,
        "a call that ends within the grace: {answer:?}"
    );
    assert_eq!(answer.json()["text"], "ok", "{answer:?}");
    let [complete, chat] = clients.map(|c| c.join().unwrap().0);
    let v = complete.json();
    assert_eq!(complete.status, 503, "{complete:?}");
    says_shutting_down(v["error"].as_str().unwrap_or(""), "complete");
    // Nothing had been streamed yet: a proper error response, OpenAI-shaped.
    assert_eq!(chat.status, 503, "{chat:?}");
    says_shutting_down(
        chat.json()["error"]["message"].as_str().unwrap_or(""),
        "chat",
    );
    assert_exits_zero_by(&mut gate, signalled + grace + EXIT_MARGIN);
    for (pid, mask) in hung(&pids) {
        assert!(!running(&pid), "claude {pid} outlived the server");
        // The server blocks SIGTERM and SIGINT for itself only: its children start with no
        // signal blocked, so a service manager can still stop them.
        assert_eq!(
            u64::from_str_radix(&mask, 16),
            Ok(0),
            "claude started with signals blocked"
        );
    }
    assert_eq!(saved_count(&gate), 3, "usage.json");
}

/// Whether this host lets an unprivileged user make a PID namespace (`unshare -U -p`).
fn pid_namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["-Upf", "--map-root-user", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn as_pid_1_sigterm_is_handled() {
    if !pid_namespaces_work() {
        crate::common::run::skip_unless_required(
            "as_pid_1_sigterm_is_handled",
            "no PID namespaces here (`unshare -Upf --map-root-user` fails), as in some containers",
        );
        return;
    }
    let setup = Setup::new(json!({"shutdown_grace_ms": 1000}));
    // `unshare --fork` starts claudegate as PID 1 of a new PID namespace and waits for it.
    let mut child = std::process::Command::new("unshare")
        .args(["-Upf", "--map-root-user", "--kill-child"])
        .arg(BIN)
        .arg("--config")
        .arg(&setup.config_path)
        .arg("serve")
        .env_remove("CLAUDEGATE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run unshare");
    let (_, log) = listening(&mut child, Duration::from_secs(15)).unwrap_or_else(|log| {
        child.kill().ok();
        panic!("claudegate did not start; log:\n{}", log.lock().unwrap());
    });
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let pid1 = std::fs::read_to_string(&children).unwrap_or_default();
    let pid1 = pid1
        .split_whitespace()
        .next()
        .expect("claudegate's host pid");
    let signalled = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", pid1])
        .status()
        .unwrap();
    let deadline = signalled + Duration::from_secs(2);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if status.is_none() {
        child.kill().ok();
        child.wait().ok();
    }
    let log = log.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("PID 1 ignored SIGTERM; log:\n{log}"));
    assert_eq!(status.code(), Some(0), "{status}; log:\n{log}");
    assert!(log.contains("SIGTERM"), "log:\n{log}");
}
