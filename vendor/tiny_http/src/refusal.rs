//! claudegate patches (10) and (11): what tiny_http refuses before a request reaches the
//! application, and how it says so.
//!
//! - (10) A connection the admission hook turns away gets a short 503 written without blocking,
//!   and is closed ([`refuse`]).
//! - (11) A request head whose framing a front proxy could read differently is refused
//!   ([`framing_error`]); every answer tiny_http writes itself (400, 408, 417, 431, 503, 505)
//!   carries an error body and `Connection: close` ([`write_error`]). The body's shape is the
//!   application's: it installs [`ERROR_BODY`]; without it the body is the plain message.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::OnceLock;

use crate::connection::Connection;
use crate::{HTTPVersion, Header, StatusCode};

/// claudegate patch (11): renders the JSON body of an answer tiny_http writes itself, from its
/// status and a message saying what went wrong.
pub type ErrorBody = fn(status: u16, message: &str) -> Vec<u8>;

/// claudegate patch (11): the application's [`ErrorBody`], set once before the server starts.
pub static ERROR_BODY: OnceLock<ErrorBody> = OnceLock::new();

/// claudegate patch (11): a whole error answer: status line, an error body and
/// `Connection: close` (tiny_http closes the connection after each of its own answers).
/// `extra` holds more header lines, each ending in CRLF.
fn render(version: HTTPVersion, status: u16, message: &str, extra: &str) -> Vec<u8> {
    let (body, content_type) = match ERROR_BODY.get() {
        Some(render) => (render(status, message), "application/json"),
        None => (message.as_bytes().to_vec(), "text/plain; charset=utf-8"),
    };
    let reason = StatusCode(status).default_reason_phrase();
    let (major, minor, length) = (version.0, version.1, body.len());
    let mut answer = format!(
        "HTTP/{major}.{minor} {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {length}\r\n{extra}Connection: close\r\n\r\n"
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

/// claudegate patch (11): writes an error answer; the caller then closes the connection.
pub(crate) fn write_error<W: Write>(mut writer: W, ver: HTTPVersion, status: u16, message: &str) {
    writer.write_all(&render(ver, status, message, "")).ok();
    writer.flush().ok();
}

/// claudegate patch (10): turns a new connection away on the accept thread, which must never
/// wait on a client: a 503 in one non-blocking write (a fresh socket's send buffer holds it
/// whole), then the connection is closed. What the client already sent is read off first, also
/// without blocking, so that closing does not reset the connection and discard the answer
/// before the client reads it.
pub(crate) fn refuse(mut conn: Connection, message: &str) {
    let nonblocking = match &conn {
        Connection::Tcp(s) => s.set_nonblocking(true),
        #[cfg(unix)]
        Connection::Unix(s) => s.set_nonblocking(true),
    };
    if nonblocking.is_err() {
        return; // dropped unanswered rather than risk blocking the accept thread
    }
    let answer = render(HTTPVersion(1, 1), 503, message, "Retry-After: 1\r\n");
    conn.write(&answer).ok();
    conn.shutdown(Shutdown::Write).ok();
    let mut sink = [0u8; 4096];
    for _ in 0..4 {
        match conn.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// claudegate patch (11): why a request head's framing is refused, if it is. A front proxy and
/// tiny_http must agree where a body ends, or the rest of one request is read as the next
/// (request smuggling). tiny_http took the first `Content-Length`, ignored it when any
/// `Transfer-Encoding` was present, read a `Content-Length` it could not parse (`+5`, `5, 6`)
/// as no body at all, and decoded any `Transfer-Encoding` value as chunked. So: every
/// `Content-Length` must be one decimal number and all must agree; `Transfer-Encoding` may
/// appear once, as exactly `chunked`; and not both. Several equal `Content-Length` headers are
/// accepted (RFC 9110 §8.6 allows it, and nothing can disagree about them).
pub(crate) fn framing_error(headers: &[Header]) -> Option<&'static str> {
    let mut length = None;
    let mut chunked = false;
    for h in headers {
        if h.field.equiv("Content-Length") {
            let value = h.value.as_str();
            let n = match value.bytes().all(|b| b.is_ascii_digit()) {
                true => value.parse::<u64>().ok(),
                false => None,
            };
            let Some(n) = n else {
                return Some("invalid Content-Length header: send one decimal number of bytes");
            };
            if length.is_some_and(|l| l != n) {
                return Some(
                    "conflicting Content-Length headers: send one Content-Length, or all equal",
                );
            }
            length = Some(n);
        } else if h.field.equiv("Transfer-Encoding") {
            if chunked || !h.value.as_str().eq_ignore_ascii_case("chunked") {
                return Some(
                    "unsupported Transfer-Encoding: the only coding accepted is a single `chunked`",
                );
            }
            chunked = true;
        }
    }
    if length.is_some() && chunked {
        return Some(
            "both Content-Length and Transfer-Encoding: send one to say where the body ends",
        );
    }
    None
}
