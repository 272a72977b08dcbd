//! Connection caps (`max_connections`, `max_connections_per_ip`, vendor patch 10) and the
//! open-files limit raised at start, against the real binary over raw loopback sockets. The
//! server listens on `[::]` so that 127.0.0.1 and ::1 are two client addresses.

use crate::common::gate::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gate's port on IPv4 loopback and on IPv6 loopback.
fn loopbacks(port: u16) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
    )
}

/// A `/health` on an open keep-alive connection: its status and how long it took.
fn health_on(s: &mut TcpStream) -> (Option<u16>, Duration) {
    let t = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").ok();
    let status = read_status(s);
    let mut body = [0u8; 15]; // {"status":"ok"}
    s.read_exact(&mut body).ok();
    (status, t.elapsed())
}

/// Five `/health` on an admitted connection, each well under the time a starved server took.
fn assert_health_stays_fast(served: &mut TcpStream) {
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (status, took) = health_on(served);
        assert_eq!(status, Some(200));
        worst = worst.max(took);
    }
    assert!(
        worst < Duration::from_millis(200),
        "slowest /health {worst:?}"
    );
}

/// A connection the server admitted: it answers `/health` and stays open (keep-alive).
fn admitted(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(health_on(&mut s).0, Some(200), "not admitted from {addr}");
    s
}

/// Opens a connection and sends nothing: what arrives before the server closes it (at most
/// 2 s), and how long that took.
fn refused(addr: SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

/// Asserts a refusal: a 503 at once, `Retry-After`, `Connection: close`, an OpenAI-shaped JSON
/// error naming `key`, and the connection closed. Returns the message.
fn assert_refused(addr: SocketAddr, key: &str) -> String {
    let (answer, took) = refused(addr);
    assert!(
        answer.starts_with("HTTP/1.1 503 "),
        "not refused: {answer:?}"
    );
    assert!(took < Duration::from_secs(1), "refusal took {took:?}");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    let head = format!("{}\r\n", head.to_ascii_lowercase());
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains(key), "{message}");
    message
}

#[test]
fn connections_over_the_per_ip_cap_are_refused_at_once() {
    let gate = Gate::spawn(Setup::new(json!({
        "host": "[::]", "max_connections": 20, "max_connections_per_ip": 3,
    })));
    let (v4, v6) = loopbacks(gate.addr.port());
    let mut served = admitted(v4);
    let mut idle: Vec<TcpStream> = (0..2).map(|_| admitted(v4)).collect();
    for _ in 0..5 {
        let message = assert_refused(v4, "max_connections_per_ip");
        assert!(message.contains("your address"), "{message}");
    }
    // Another address is not affected by this one's connections.
    let _other = admitted(v6);
    // The admitted connections stay fast while the extra ones are turned away.
    assert_health_stays_fast(&mut served);
    // Closing a connection frees its slot.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let close = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let answer = raw_exchange(v4, close, Duration::from_secs(2));
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never freed: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_over_the_global_cap_are_refused_at_once() {
    let gate = Gate::spawn(Setup::new(json!({
        "host": "[::]", "max_connections": 3, "max_connections_per_ip": 2,
        "metrics": {"public": true},
    })));
    let (v4, v6) = loopbacks(gate.addr.port());
    let mut served = admitted(v4);
    let _a = admitted(v4);
    let _b = admitted(v6);
    // ::1 holds one of its two, but all three of the server's are taken.
    for addr in [v6, v4, v6] {
        let message = assert_refused(addr, "max_connections");
        assert!(!message.contains("max_connections_per_ip"), "{message}");
    }
    assert_health_stays_fast(&mut served);
    // The metrics say so: three open, three refused.
    served
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let page = read_page(&mut served);
    for line in [
        "claudegate_connections_open 3",
        "claudegate_connections_refused_total 3",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} not in:\n{page}");
    }
}

/// Reads one `Content-Length` answer from `s`: its body.
fn read_page(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a Content-Length");
            if body.len() >= len {
                return body[..len].to_string();
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => panic!("the answer ended early: {text}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A claudegate started through `sh -c 'ulimit …; exec claudegate serve'`, killed on drop.
struct Limited {
    child: Child,
    addr: SocketAddr,
    log: Log,
    _setup: Setup,
}

impl Limited {
    fn start(ulimit: &str, config: Value) -> Limited {
        let setup = Setup::new(config);
        let script = format!("ulimit {ulimit} && exec \"$0\" --config \"$1\" serve");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(BIN)
            .arg(&setup.config_path)
            .env_remove("CLAUDEGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sh");
        match listening(&mut child, Duration::from_secs(15)) {
            Ok((addr, log)) => Limited {
                child,
                addr,
                log,
                _setup: setup,
            },
            Err(log) => {
                child.kill().ok();
                child.wait().ok();
                panic!("claudegate did not start; log:\n{}", log.lock().unwrap());
            }
        }
    }

    /// The soft and hard "Max open files" of the running server.
    fn open_files_limit(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))
            .expect("read /proc/PID/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a Max open files line")
            .to_string();
        let mut fields = line["Max open files".len()..].split_whitespace();
        let soft = fields.next().unwrap_or_default().to_string();
        let hard = fields.next().unwrap_or_default().to_string();
        (soft, hard)
    }

    /// How many file descriptors the server holds now.
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn the_open_files_limit_is_raised_at_start_and_logged() {
    let gate = Limited::start("-Sn 300", json!({}));
    let (soft, hard) = gate.open_files_limit();
    assert_eq!(soft, hard, "soft limit not raised to the hard one");
    assert_ne!(soft, "300");
    let log = gate.log();
    assert!(
        log.contains(&format!("open files limit raised from 300 to {hard}")),
        "{log}"
    );
}

/// The reported outage in small: more idle connections than file descriptors allow (each
/// costs two). The caps turn the extra ones away at once, the server never runs out of
/// descriptors, and `/health` on an admitted connection stays fast.
#[test]
fn a_connection_flood_under_a_small_ulimit_is_refused_not_starved() {
    let gate = Limited::start(
        "-n 256",
        json!({"max_connections": 80, "max_connections_per_ip": 80}),
    );
    let mut served = admitted(gate.addr);
    let opened: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(gate.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // every refusal has arrived by now
    let (mut idle, mut refusals) = (Vec::new(), 0);
    for mut s in opened {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(n) if buf[..n].starts_with(b"HTTP/1.1 503") => refusals += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => idle.push(s), // admitted
            other => panic!("neither admitted nor refused: {other:?}"),
        }
    }
    assert_eq!(idle.len(), 79, "admitted besides the first");
    assert_eq!(refusals, 150 - 79);
    assert!(gate.open_files() < 256, "{} descriptors", gate.open_files());
    assert_health_stays_fast(&mut served);
    let log = gate.log();
    assert!(!log.contains("Too many open files"), "{log}");
}
