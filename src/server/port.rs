//! Whether the configured `host:port` can be served, asked before a server starts there (by
//! `claudegate doctor`): free (we could bind it, the way `serve` does, and let go at once),
//! already served by a claudegate (its `/health` answers `200 {"status":"ok"}`, the intake's
//! own answer), taken by something else, or not bindable at all (an address this host does not
//! have, a port below 1024 without the privilege).
//!
//! The `/health` probe is one plain HTTP/1.1 request on a socket of its own, each step bounded
//! (connect, write, read), never through a proxy from the environment: the address is this
//! host's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most of a `/health` answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// What is at the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    /// Nothing listens there; `serve` can bind it.
    Free,
    /// A claudegate answers `/health` there; its version when the answer says it.
    Claudegate { version: Option<String> },
    /// Something else holds the port; what it answered (or did not).
    Other(String),
    /// The address cannot be bound, for a reason other than being in use.
    Unusable(String),
}

/// Looks at `host:port` as `serve` would bind it, waiting at most `within` for an answer.
pub fn probe(host: &str, port: u16, within: Duration) -> PortState {
    let addr = format!("{host}:{port}");
    match TcpListener::bind(&addr) {
        Ok(listener) => {
            drop(listener);
            PortState::Free
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => health(&addr, within),
        Err(e) => PortState::Unusable(format!("cannot bind {addr}: {e}")),
    }
}

/// Asks `GET /health` at `addr` (an unspecified address, `0.0.0.0` or `::`, is reached over
/// loopback).
fn health(addr: &str, within: Duration) -> PortState {
    let deadline = Instant::now() + within;
    let target = match addr.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) if a.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(loopback, a.port())
        }
        Some(a) => a,
        None => return PortState::Other(format!("{addr} is in use")),
    };
    let answer = ask_health(target, deadline);
    let said = match answer {
        Ok(said) => said,
        Err(e) => {
            return PortState::Other(format!(
                "{addr} is in use, and /health there got no HTTP answer ({e})"
            ))
        }
    };
    let (head, body) = said.split_once("\r\n\r\n").unwrap_or((&said, ""));
    let status = head.lines().next().unwrap_or("").trim();
    let json: Option<serde_json::Value> = serde_json::from_str(body.trim()).ok();
    match json {
        Some(v) if status.split(' ').nth(1) == Some("200") && v["status"] == "ok" => {
            PortState::Claudegate {
                version: v["version"].as_str().map(|s| s.chars().take(40).collect()),
            }
        }
        _ => {
            let shown: String = status.chars().take(60).collect();
            PortState::Other(format!(
                "{addr} is in use, and /health there answered {shown:?}"
            ))
        }
    }
}

/// One `GET /health`, every step bounded by `deadline`; the answer as text (at most
/// [`MAX_ANSWER`] bytes).
fn ask_health(target: SocketAddr, deadline: Instant) -> std::io::Result<String> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut conn = TcpStream::connect_timeout(&target, left())?;
    conn.set_write_timeout(Some(left()))?;
    conn.write_all(
        format!("GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while answer.len() < MAX_ANSWER {
        if Instant::now() >= deadline {
            break;
        }
        conn.set_read_timeout(Some(left()))?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if answer.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without answering",
        ));
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_and_an_unusable_address() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            probe("127.0.0.1", port, Duration::from_secs(1)),
            PortState::Free
        );
        // TEST-NET-1 (RFC 5737) is no address of this host.
        assert!(matches!(
            probe("192.0.2.1", port, Duration::from_secs(1)),
            PortState::Unusable(_)
        ));
    }

    #[test]
    fn a_silent_holder_is_something_else_within_the_wait() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let started = Instant::now();
        let seen = probe("127.0.0.1", port, Duration::from_millis(300));
        assert!(matches!(seen, PortState::Other(_)), "{seen:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
