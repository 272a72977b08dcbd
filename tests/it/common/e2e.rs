//! What the end-to-end tests of real clients (`e2e_clients`, `e2e_openai`, `e2e_ai_sdk`,
//! `e2e_opencode`) share: the deadline for a client process, the model they ask for, the gate
//! they talk to (with a scripted mock and the trap, for one run), the checks every client's
//! traffic must pass on its way through claudegate, and a proxy trap that catches any
//! connection a client tries beyond loopback.

use std::time::Duration;

use serde_json::{json, Value};

use super::gate::{logged_in, Gate, STORED_ACCESS_TOKEN};
use super::mock_upstream::{MockUpstream, Recorded, Reply};
use super::run::Run;

/// Longest any client process may run before it (and its process group) is killed.
pub const DEADLINE: Duration = Duration::from_secs(120);
/// The model the tests ask for (one the mock knows).
pub const MODEL: &str = "claude-sonnet-4-6";
/// The stored login claudegate must use towards the upstream.
pub const ACCESS_TOKEN: &str = STORED_ACCESS_TOKEN;

/// claudegate in front of `mock`, logged in with [`ACCESS_TOKEN`]; returns it and a key.
pub fn gate_with_login(mock: &MockUpstream) -> (Gate, String) {
    logged_in(&mock.url(), json!({}))
}

/// A scripted client run's surroundings: the mock with replies queued for `/v1/messages`
/// (`scripted` of them, for [`assert_only_scripted_calls`]), claudegate logged in in front of
/// it and its key, and the proxy trap the client is pointed at.
pub struct Scripted {
    pub trap: ProxyTrap,
    pub gate: Gate,
    pub key: String,
    pub mock: MockUpstream,
    pub scripted: usize,
}

/// A fresh mock answering `/v1/messages` with `replies` in turn, a gate in front of it and a
/// proxy trap.
pub fn scripted(replies: Vec<Reply>) -> Scripted {
    let mock = MockUpstream::start();
    let scripted = replies.len();
    for r in replies {
        mock.enqueue("/v1/messages", r);
    }
    let (gate, key) = gate_with_login(&mock);
    Scripted {
        trap: ProxyTrap::start(),
        gate,
        key,
        mock,
        scripted,
    }
}

/// The JSON lines a test script (`tests/e2e/*.py`, `*.mjs`) printed: its first line, the
/// `version` step naming what it loaded, and the rest.
pub fn script_lines(run: &Run) -> (Value, Vec<Value>) {
    let mut lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n--- stderr:\n{}", run.stderr))
        })
        .collect();
    assert!(
        !lines.is_empty() && lines[0]["step"] == "version",
        "{run:?}"
    );
    let version = lines.remove(0);
    (version, lines)
}

/// Every reply scripted on `mock` was asked for, and the upstream saw those `scripted`
/// requests and nothing else: the client made no call the test did not expect.
pub fn assert_only_scripted_calls(mock: &MockUpstream, scripted: usize) {
    assert_eq!(mock.queued(), 0, "every scripted reply was asked for");
    let reqs = mock.requests();
    assert_eq!(
        reqs.len(),
        scripted,
        "the upstream saw exactly the scripted calls: {:?}",
        reqs.iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}

/// What claudegate must guarantee about every request that reached the upstream: the
/// caller's key never appears in it (header or body), the stored OAuth token is the
/// credential of every Messages call, and neither secret is logged.
pub fn assert_upstream_saw_oauth_not_key(reqs: &[Recorded], gate: &Gate, key: &str) {
    assert!(!reqs.is_empty(), "nothing reached the upstream");
    for r in reqs {
        for (name, value) in &r.headers {
            assert!(
                !value.contains(key) && !value.contains("cgk_"),
                "the claudegate key reached the upstream in header {name}: {} {}",
                r.method,
                r.path
            );
        }
        assert!(
            !r.body_text().contains(key),
            "the claudegate key reached the upstream in a body: {} {}",
            r.method,
            r.path
        );
        if r.path_only().starts_with("/v1/messages") {
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {ACCESS_TOKEN}").as_str()),
                "{} {}: {:?}",
                r.method,
                r.path,
                r.headers
            );
            assert!(r.header("anthropic-version").is_some(), "{:?}", r.headers);
        }
    }
    let log = gate.log();
    assert!(!log.contains(key), "the key was logged:\n{log}");
    assert!(!log.contains(ACCESS_TOKEN), "the token was logged:\n{log}");
}

/// With `E2E_DUMP=1` (and `--nocapture`), prints every request the upstream got, the client's
/// output and the gate's log: the quickest way to see a client's traffic after claudegate.
pub fn dump_if_asked(reqs: &[Recorded], gate: &Gate, run: Option<&Run>) {
    if std::env::var_os("E2E_DUMP").is_none() {
        return;
    }
    for r in reqs {
        eprintln!("==== {} {}", r.method, r.path);
        for (n, v) in &r.headers {
            eprintln!("  {n}: {v}");
        }
        eprintln!("  body: {}", r.body_text());
    }
    if let Some(run) = run {
        eprintln!(
            "==== client stdout:\n{}\n==== client stderr:\n{}",
            run.stdout, run.stderr
        );
    }
    eprintln!("==== claudegate log:\n{}", gate.log());
}

/// A stand-in HTTP(S) proxy on loopback that refuses everything and remembers what was asked
/// (`CONNECT host:443 …` or `GET http://…`). A client started with `HTTP(S)_PROXY` pointing
/// here and `NO_PROXY` naming loopback reaches claudegate directly, and any other connection it
/// tries over HTTP shows up in [`ProxyTrap::seen`] instead of leaving the machine.
pub struct ProxyTrap {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ProxyTrap {
    pub fn start() -> ProxyTrap {
        use std::io::{BufRead, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy trap");
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut line = String::new();
                let mut reader = std::io::BufReader::new(&conn);
                reader.read_line(&mut line).ok();
                let line = line.trim().to_string();
                seen2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(if line.is_empty() {
                        "<no request line>".into()
                    } else {
                        line
                    });
                let refusal =
                    "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                conn.write_all(refusal.as_bytes()).ok();
            }
        });
        ProxyTrap { addr, seen, stop }
    }

    /// `http://127.0.0.1:PORT`, for `HTTP_PROXY` and `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first line of every request the trap got.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails naming every connection a client tried beyond loopback.
    pub fn assert_untouched(&self, client: &str) {
        let seen = self.seen();
        assert!(
            seen.is_empty(),
            "{client} tried to reach beyond loopback (through the proxy trap): {seen:?}"
        );
    }
}

impl Drop for ProxyTrap {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the blocking accept so the thread ends.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
