//! HTTP plumbing shared by every route: error shapes in the caller's protocol, JSON replies,
//! CORS for local browser pages, and request-body reading under both a per-request limit and a
//! server-wide budget of body bytes held in memory.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use tiny_http::{Header, Request, Response};

/// Which API family the caller speaks; decides the shape of every error it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `{"error":{"message","type","code"}}`
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`
    Anthropic,
    /// The relay routes (`/v1/complete`, `/v1/fetch`): `{"ok":false,"error":"…"}`.
    Relay,
}

/// The kinds of failure a client can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    NotFound,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    RateLimited,
    Internal,
    NotImplemented,
    BadGateway,
    /// The account cannot serve (no login, login needs renewing); not an overload.
    Unavailable,
    Busy,
    GatewayTimeout,
}

impl ErrorKind {
    fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Timeout => 408,
            ErrorKind::TooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable | ErrorKind::Busy => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// Anthropic's `error.type` for this kind.
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::TooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal
            | ErrorKind::NotImplemented
            | ErrorKind::BadGateway
            | ErrorKind::Unavailable => "api_error",
            ErrorKind::Busy => "overloaded_error",
            ErrorKind::GatewayTimeout => "timeout_error",
        }
    }

    /// OpenAI's `error.type` and `error.code` for this kind.
    fn openai_type_code(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
            ErrorKind::Authentication => ("invalid_request_error", "invalid_api_key"),
            ErrorKind::NotFound => ("invalid_request_error", "not_found"),
            ErrorKind::MethodNotAllowed => ("invalid_request_error", "method_not_allowed"),
            ErrorKind::Timeout => ("invalid_request_error", "request_timeout"),
            ErrorKind::TooLarge => ("invalid_request_error", "request_too_large"),
            ErrorKind::RateLimited => ("rate_limit_error", "rate_limit_exceeded"),
            ErrorKind::Internal => ("server_error", "internal_error"),
            ErrorKind::NotImplemented => ("server_error", "not_implemented"),
            ErrorKind::BadGateway => ("server_error", "upstream_error"),
            ErrorKind::Unavailable => ("server_error", "account_unavailable"),
            ErrorKind::Busy => ("server_error", "server_busy"),
            ErrorKind::GatewayTimeout => ("server_error", "upstream_timeout"),
        }
    }
}

/// An error answer: status, kind and a message written for the person reading it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<u64>,
    /// The offending request parameter, for OpenAI-shaped errors.
    pub param: Option<String>,
    /// Extra headers (e.g. `Allow` on a 405).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
            param: None,
            headers: vec![],
        }
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn param(mut self, param: Option<String>) -> ApiError {
        self.param = param;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body in the caller's protocol.
    pub fn body(&self, protocol: Protocol) -> Vec<u8> {
        let v = match protocol {
            Protocol::Anthropic => serde_json::json!({
                "type": "error",
                "error": {"type": self.kind.anthropic_type(), "message": self.message},
            }),
            Protocol::OpenAi => {
                let (kind, code) = self.kind.openai_type_code();
                serde_json::json!({
                    "error": {"message": self.message, "type": kind, "param": self.param, "code": code},
                })
            }
            Protocol::Relay => serde_json::json!({"ok": false, "error": self.message}),
        };
        v.to_string().into_bytes()
    }

    /// The whole reply.
    pub fn reply(&self, protocol: Protocol) -> Reply {
        let mut reply = Reply::json(self.status(), self.body(protocol));
        if let Some(secs) = self.retry_after {
            reply.headers.push(("Retry-After", secs.to_string()));
        }
        reply.headers.extend(self.headers.iter().cloned());
        reply
    }
}

/// A complete (non-streaming) response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body,
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: vec![],
        }
    }
}

/// Writes `reply` (plus the CORS grant, if any) and consumes the request. Write errors mean
/// the client went away; there is nobody left to tell, so they are ignored.
pub fn send(rq: Request, reply: Reply, cors: &[(&'static str, String)]) {
    crate::observe::audit::note_first_byte();
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    for (name, value) in reply.headers.iter().chain(cors) {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    rq.respond(response).ok();
}

/// The value of the first header called `name` (case-insensitive).
pub fn header<'a>(rq: &'a Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The client's IP (unspecified for a Unix socket).
pub fn client_ip(rq: &Request) -> IpAddr {
    rq.remote_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Browser pages served from this machine may call us; others get no CORS grant. The origin
/// must be exactly `http(s)://localhost`, `127.0.0.1` or `[::1]`, with an optional port.
pub fn local_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let Some(rest) = rest else { return false };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && h != "[" && !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Headers granting CORS to a local origin; empty for any other origin or none.
pub fn cors_grant(rq: &Request) -> Vec<(&'static str, String)> {
    match header(rq, "Origin") {
        Some(origin) if local_origin(origin) => vec![
            ("Access-Control-Allow-Origin", origin.to_string()),
            ("Vary", "Origin".into()),
            (
                "Access-Control-Expose-Headers",
                "Retry-After, request-id, x-request-id".into(),
            ),
        ],
        _ => vec![],
    }
}

/// The answer to a CORS preflight (`OPTIONS`): 204, with the grant only for local origins.
pub fn preflight(rq: &Request) -> (Reply, Vec<(&'static str, String)>) {
    let mut cors = cors_grant(rq);
    if !cors.is_empty() {
        cors.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()));
        // Echo the requested headers when they are plain header names: SDKs send many
        // (anthropic-*, x-stainless-*), and the origin is already known to be local.
        let asked = header(rq, "Access-Control-Request-Headers").unwrap_or("");
        let names_ok = asked.len() <= 2048
            && asked
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b));
        let allowed = if names_ok && !asked.trim().is_empty() {
            asked.to_string()
        } else {
            "authorization, x-api-key, content-type, anthropic-version, anthropic-beta".into()
        };
        cors.push(("Access-Control-Allow-Headers", allowed));
        cors.push(("Access-Control-Max-Age", "600".into()));
    }
    (Reply::empty(204), cors)
}

/// A server-wide budget of request-body bytes held in memory, so a burst of large uploads
/// cannot exhaust a small host. Reservations are returned when dropped.
pub struct BodyBudget {
    limit: u64,
    used: Mutex<u64>,
}

/// Bytes reserved from a [`BodyBudget`].
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    held: u64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> BodyBudget {
        BodyBudget {
            limit,
            used: Mutex::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn empty(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            held: 0,
        }
    }

    /// Bytes currently reserved.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        *self.lock()
    }
}

impl Reservation<'_> {
    /// Grows this reservation to at least `total` bytes; false if the budget cannot cover it.
    fn grow_to(&mut self, total: u64) -> bool {
        if total <= self.held {
            return true;
        }
        let mut used = self.budget.lock();
        let extra = total - self.held;
        if *used + extra > self.budget.limit {
            return false;
        }
        *used += extra;
        self.held = total;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.lock();
        *used = used.saturating_sub(self.held);
    }
}

/// A request body read into memory, with the budget it holds.
pub struct Body<'a> {
    pub bytes: Vec<u8>,
    _reservation: Reservation<'a>,
}

fn busy_reading() -> ApiError {
    ApiError::new(
        ErrorKind::Busy,
        "the server is holding too many large request bodies right now; retry shortly",
    )
    .retry_after(1)
}

fn read_failed(e: io::Error) -> ApiError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ApiError::new(
            ErrorKind::Timeout,
            "the request body did not arrive in time (client_timeout_ms)",
        ),
        _ => ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body could not be read (connection broken or bad chunked encoding)",
        ),
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        format!("request body is larger than the limit of {max} bytes (max_body_bytes)"),
    )
    .with_header("Connection", "close".into())
}

/// Reads the whole body: refused with 413 from `Content-Length` before reading, or while
/// reading a chunked body as soon as it passes `max`. Exactly one copy is held.
pub fn read_body<'a>(
    rq: &mut Request,
    max: u64,
    budget: &'a BodyBudget,
) -> Result<Body<'a>, ApiError> {
    let chunked = header(rq, "Transfer-Encoding").is_some();
    let declared = header(rq, "Content-Length");
    let mut reservation = budget.empty();
    if !chunked {
        let len = match declared {
            None => 0,
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                ApiError::new(ErrorKind::InvalidRequest, "Content-Length is not a number")
                    .with_header("Connection", "close".into())
            })?,
        };
        if len > max {
            return Err(too_large(max));
        }
        if !reservation.grow_to(len) {
            return Err(busy_reading());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        rq.as_reader()
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(read_failed)?;
        if (bytes.len() as u64) < len {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "the request body ended before Content-Length bytes arrived",
            ));
        }
        return Ok(Body {
            bytes,
            _reservation: reservation,
        });
    }
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let reader = rq.as_reader();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failed(e)),
        };
        let total = (bytes.len() + n) as u64;
        if total > max {
            return Err(too_large(max));
        }
        // Reserve ahead in doubling steps so the budget lock is taken O(log n) times.
        let ahead = (total * 2).max(64 * 1024).min(max);
        if total > reservation.held && !reservation.grow_to(ahead) && !reservation.grow_to(total) {
            return Err(busy_reading());
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    Ok(Body {
        bytes,
        _reservation: reservation,
    })
}

/// A response written by hand on the raw connection, for bodies relayed as they arrive: the
/// status line and headers go out at once, then the body in chunks, flushed when the caller
/// says (per SSE event). tiny_http's own `Response` buffers 8 KiB, which would hold events back.
/// The head of a raw response: status line, the headers that are safe to pass on, CORS, and
/// `framing` (one header line saying how the body ends).
fn head(
    status: u16,
    http10: bool,
    headers: &[(String, String)],
    cors: &[(&'static str, String)],
    framing: &str,
) -> String {
    let reason = tiny_http::StatusCode(status).default_reason_phrase();
    let mut head = format!(
        "HTTP/1.{} {status} {reason}\r\n",
        if http10 { 0 } else { 1 }
    );
    let cors = cors.iter().map(|(n, v)| (*n, v.as_str()));
    for (name, value) in headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(cors)
    {
        // Header values come from the upstream; never let one smuggle a line break, nor a
        // framing header of its own (we frame the body ourselves).
        if !name.contains(['\r', '\n', ':'])
            && !value.contains(['\r', '\n'])
            && !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
        {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str(framing);
    head.push_str("\r\n");
    head
}

pub struct RawResponse {
    w: Box<dyn Write + Send>,
    chunked: bool,
}

impl RawResponse {
    /// Writes the head. HTTP/1.1 clients get chunked framing; HTTP/1.0 clients a body ended by
    /// closing the connection. The request body must already have been read.
    pub fn start(
        rq: Request,
        status: u16,
        headers: &[(String, String)],
        cors: &[(&'static str, String)],
    ) -> io::Result<RawResponse> {
        let http10 = rq.http_version() == &tiny_http::HTTPVersion(1, 0);
        let mut w = rq.into_writer();
        let framing = if http10 {
            "Connection: close\r\n"
        } else {
            "Transfer-Encoding: chunked\r\n"
        };
        let head = head(status, http10, headers, cors, framing);
        crate::observe::audit::note_first_byte();
        w.write_all(head.as_bytes())?;
        w.flush()?;
        Ok(RawResponse {
            w,
            chunked: !http10,
        })
    }

    /// Sends a complete answer: head with Content-Length and body in one write.
    pub fn whole(
        rq: Request,
        status: u16,
        headers: &[(String, String)],
        cors: &[(&'static str, String)],
        body: &[u8],
    ) -> io::Result<()> {
        let http10 = rq.http_version() == &tiny_http::HTTPVersion(1, 0);
        let mut w = rq.into_writer();
        let length = format!("Content-Length: {}\r\n", body.len());
        let mut bytes = head(status, http10, headers, cors, &length).into_bytes();
        bytes.extend_from_slice(body);
        crate::observe::audit::note_first_byte();
        w.write_all(&bytes)?;
        w.flush()
    }

    /// Writes `data` as one chunk (not flushed).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            write!(self.w, "{:x}\r\n", data.len())?;
            self.w.write_all(data)?;
            self.w.write_all(b"\r\n")
        } else {
            self.w.write_all(data)
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Ends the body properly (the terminating chunk) and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunked {
            self.w.write_all(b"0\r\n\r\n")?;
        }
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_origins_only() {
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:5173",
            "http://[::1]",
        ] {
            assert!(local_origin(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.com",
            "http://evil.com",
            "null",
            "http://127.0.0.1.nip.io",
            "http://localhost:abc",
            "ftp://localhost",
            "http://localhost:123456",
            "http://user@localhost",
        ] {
            assert!(!local_origin(bad), "{bad}");
        }
    }

    #[test]
    fn error_shapes() {
        let e = ApiError::new(ErrorKind::Authentication, "nope");
        let a: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Anthropic)).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "authentication_error");
        let o: serde_json::Value = serde_json::from_slice(&e.body(Protocol::OpenAi)).unwrap();
        assert_eq!(o["error"]["message"], "nope");
        assert_eq!(o["error"]["code"], "invalid_api_key");
        assert_eq!(e.status(), 401);
    }

    #[test]
    fn budget_reserves_and_releases() {
        let b = BodyBudget::new(100);
        let mut r = b.empty();
        assert!(r.grow_to(60));
        let mut r2 = b.empty();
        assert!(!r2.grow_to(50));
        drop(r);
        assert!(r2.grow_to(50));
        assert_eq!(b.used(), 50);
    }
}
