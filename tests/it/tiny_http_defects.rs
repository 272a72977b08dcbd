//! Regression tests for the defects of tiny_http 0.12.0 that vendor/PATCHES.md fixes. Each one
//! fails (or the server dies) with the unpatched crate; see PATCHES.md for what was observed.

use crate::common::gate::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Defect 1: a declared-but-unsent huge body made tiny_http allocate the declared size when the
/// request was dropped, aborting the process.
#[test]
fn huge_content_length_does_not_kill_the_server() {
    let (mut gate, key) = Gate::start_with_key(json!({}));
    for head in [
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\nhello".to_string(),
        "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\nhello".to_string(),
        "POST /v1/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\nhello".to_string(),
        format!("POST /v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 99999999999999\r\n\r\nhello"),
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: wrong\r\nContent-Length: 99999999999999\r\n\r\nhello".to_string(),
    ] {
        let answer = raw_exchange(gate.addr, head.as_bytes(), Duration::from_millis(500));
        assert!(answer.starts_with("HTTP/1.1 "), "{head:?} got {answer:?}");
        std::thread::sleep(Duration::from_millis(100));
        gate.assert_healthy();
    }
    assert!(
        gate.proc_kb("VmHWM") < 64 * 1024,
        "peak RSS {} kB",
        gate.proc_kb("VmHWM")
    );
}

/// A small unread body is skipped so the keep-alive connection still serves the next request.
#[test]
fn unread_body_is_skipped_on_keep_alive() {
    let gate = Gate::spawn(Setup::new(json!({})));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = "b".repeat(5000);
    write!(
        s,
        "POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{body}"
    )
    .unwrap();
    assert_eq!(read_status(&mut s), Some(405));
    let mut rest = [0u8; 200];
    let _ = s.read(&mut rest); // the 405 body
    write!(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_status(&mut s), Some(200));
}

/// Defect 2: a burst of simultaneous keep-alive connections left some never served (lost
/// wake-up in the connection thread pool: tasks queued behind threads already claimed).
#[test]
fn connection_burst_is_served_completely() {
    for round in 0..3 {
        let gate = Gate::spawn(Setup::new(json!({})));
        let n = 24;
        let start = Arc::new(Barrier::new(n));
        let done = Arc::new(Barrier::new(n));
        let addr = gate.addr;
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (start, done) = (start.clone(), done.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    let status = read_status(&mut s);
                    // Every connection stays open (keep-alive) until all have been answered
                    // or given up, as a pool of real clients would.
                    done.wait();
                    status
                })
            })
            .collect();
        let statuses: Vec<Option<u16>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let served = statuses.iter().filter(|s| **s == Some(200)).count();
        assert_eq!(
            served, n,
            "round {round}: only {served} of {n} connections served in 3 s"
        );
    }
}

/// Defect 3: header lines and counts were unbounded (a giant header grew memory without limit).
#[test]
fn giant_header_line_is_cut_off() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nX-Big: ").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    for _ in 0..64 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent < 64, "the server kept reading a 64 MiB header line");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    gate.assert_healthy();
    assert!(
        gate.proc_kb("VmHWM") < 48 * 1024,
        "peak RSS {} kB",
        gate.proc_kb("VmHWM")
    );
}

#[test]
fn too_many_headers_get_431() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    let mut req = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let answer = raw_exchange(gate.addr, req.as_bytes(), Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // 90 headers are fine.
    let mut req = String::from("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..90 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let answer = raw_exchange(gate.addr, req.as_bytes(), Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    gate.assert_healthy();
}

/// Defect 4: no socket timeouts, so an idle connection held its thread forever.
#[test]
fn idle_connections_are_closed_by_the_timeout() {
    let gate = Gate::spawn(Setup::new(json!({"client_timeout_ms": 800})));
    // Never sends anything.
    let mut idle = TcpStream::connect(gate.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Sends one request, then stays idle on keep-alive.
    let mut kept = TcpStream::connect(gate.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_status(&mut kept), Some(200));
    let started = Instant::now();
    for s in [&mut idle, &mut kept] {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // the rest of the health body
                Err(e) => panic!("connection not closed by the server: {e}"),
            }
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
}

/// Slowloris: a head dripped byte by byte, each byte inside the read timeout, is still cut off
/// once the whole head takes longer than the timeout.
#[test]
fn slow_request_heads_are_cut_off() {
    let mut gate = Gate::spawn(Setup::new(json!({"client_timeout_ms": 1000})));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if s.write_all(&[b'X'; 70]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(0) = s.read(&mut buf) {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(closed, "a dripping head was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off after {:?}",
        started.elapsed()
    );
    gate.assert_healthy();
}

/// A body that stops arriving is answered 408 once the read timeout passes, freeing the worker.
#[test]
fn stalled_upload_times_out_with_408() {
    let (mut gate, key) = Gate::start_with_key(json!({"client_timeout_ms": 800, "workers": 1}));
    let mut s = TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\nContent-Length: 4000\r\n\r\n{{").unwrap();
    let started = Instant::now();
    assert_eq!(read_status(&mut s), Some(408));
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.contains("timeout_error"), "{rest}");
    gate.assert_healthy();
    let r = get(&gate.url("/v1/models"), &[("x-api-key", &key)]);
    assert_eq!(r.status, 200, "the single worker is free again");
}

/// Many idle keep-alive connections do not delay a new request.
#[test]
fn two_hundred_idle_connections_do_not_block_health() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(gate.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        gate.assert_healthy();
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_millis(200),
        "slowest /health {worst:?}"
    );
    drop(idle);
}

/// Defect 6: a request line with HTTP/2.0 deadlocked its connection thread (the 505 waited for
/// the request's own writer), leaking a thread per request and never answering.
#[test]
fn http2_request_line_gets_505_and_no_thread_leaks() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    gate.assert_healthy();
    std::thread::sleep(Duration::from_millis(300)); // the connection pool's threads are up
    let before = gate.proc_kb("Threads");
    for _ in 0..20 {
        let answer = raw_exchange(
            gate.addr,
            b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
            Duration::from_secs(2),
        );
        assert!(answer.starts_with("HTTP/1.1 505"), "{answer:?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = gate.proc_kb("Threads");
    // A leak costs one thread per request; allow a few pool threads still winding down.
    assert!(after < before + 8, "threads grew from {before} to {after}");
    gate.assert_healthy();
}
