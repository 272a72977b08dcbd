//! `claudegate health [--url URL]`: asks a running server's `GET /health` and exits 0 when it
//! answers 200, 1 otherwise. It is the container image's health check (`HEALTHCHECK` in
//! `contrib/Containerfile`): the image is `FROM scratch`, so it has no curl or shell, only this
//! binary. Without `--url` it asks the address the configuration says `serve` listens on.
//!
//! The whole check is bounded by [`TIMEOUT`], so a hung server makes the check fail rather than
//! pile up health-check processes. It speaks plain HTTP/1.1 over a `TcpStream` (no proxy, no
//! TLS: the server is local, and plain HTTP is all it serves), which keeps it a few hundred
//! bytes of the binary where an HTTP client agent of its own cost 8 KB.

use crate::config::Config;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The longest the whole check may take (connect, request, answer). `/health` is answered by
/// the accept loop itself, never queued behind a worker, so a healthy server answers in
/// milliseconds; the container's health-check timeout (10 s) stays above this.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The URL of `/health` on the address `serve` binds for `config`: a wildcard bind address
/// (`0.0.0.0`, `::`) is asked on loopback, the only address sure to reach it from inside.
pub fn local_url(config: &Config) -> String {
    let host = config.host.trim();
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    format!("http://{host}:{}/health", config.port)
}

/// `claudegate health`: `Ok` when `url` answers 200 within [`TIMEOUT`], else what went wrong.
pub fn check(url: &str) -> Result<(), String> {
    let status = get_status(url, Instant::now() + TIMEOUT).map_err(|e| {
        format!("GET {url} failed: {e} (is `claudegate serve` running on that address?)")
    })?;
    match status {
        200 => {
            println!("ok: GET {url} answered 200");
            Ok(())
        }
        s => Err(format!("GET {url} answered {s}, not 200")),
    }
}

/// `http://HOST[:PORT][/PATH]` split into the authority with a port (`HOST:PORT`, the form
/// `ToSocketAddrs` takes, brackets kept for IPv6), the `Host` header and the path.
fn split_url(url: &str) -> Result<(String, &str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("health --url wants an http:// URL (the server speaks plain HTTP), not {url:?}")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("health --url {url:?} has no usable host"));
    }
    // A port is there unless the authority is a bare name or a bracketed IPv6 literal.
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority, path))
}

/// The status code `GET url` answers, every step within `deadline`.
fn get_status(url: &str, deadline: Instant) -> Result<u16, String> {
    let (addr, host, path) = split_url(url)?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {} s", TIMEOUT.as_secs()))
    };
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    let mut last = format!("{addr} resolves to no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream.set_write_timeout(Some(left()?)).ok();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    // The status line is all that is needed: read until its end (a few dozen bytes).
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream.set_read_timeout(Some(left()?)).ok();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/") => code
            .parse()
            .map_err(|_| format!("the answer's status line is not HTTP: {line:?}")),
        _ => Err(format!("the answer is not HTTP: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_asked_on_loopback() {
        let mut c = Config::default();
        assert_eq!(local_url(&c), "http://127.0.0.1:8317/health");
        c.host = "0.0.0.0".into();
        c.port = 9000;
        assert_eq!(local_url(&c), "http://127.0.0.1:9000/health");
        c.host = "::".into();
        assert_eq!(local_url(&c), "http://[::1]:9000/health");
        c.host = "fd00::1".into();
        assert_eq!(local_url(&c), "http://[fd00::1]:9000/health");
        c.host = "localhost".into();
        assert_eq!(local_url(&c), "http://localhost:9000/health");
    }

    #[test]
    fn urls_split_into_address_host_and_path() {
        fn ok(u: &str) -> (String, &str, &str) {
            split_url(u).unwrap()
        }
        assert_eq!(
            ok("http://127.0.0.1:8317/health"),
            ("127.0.0.1:8317".into(), "127.0.0.1:8317", "/health")
        );
        assert_eq!(
            ok("http://example.com"),
            ("example.com:80".into(), "example.com", "/")
        );
        assert_eq!(ok("http://[::1]/h"), ("[::1]:80".into(), "[::1]", "/h"));
        assert_eq!(ok("http://[::1]:9/h"), ("[::1]:9".into(), "[::1]:9", "/h"));
        assert!(split_url("https://example.com/")
            .unwrap_err()
            .contains("http://"));
        assert!(split_url("http:///health").is_err());
    }
}
