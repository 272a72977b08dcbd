//! The one error type a request can end in, and its shape in each caller's protocol.
//!
//! Every failure a client can be told about is an [`ApiError`]: a kind (which fixes the HTTP
//! status), a message written for the person reading it, and optional details (`Retry-After`,
//! the offending parameter, extra headers). Each lower-level error converts into it with a
//! `From` impl beside its own type, so the mapping to HTTP happens in one place: here.
//! [`UpstreamError`], the failure to get an answer at all, lives here too: the SSE reader
//! below the backends reports it.

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
    /// A valid key without the scope the route needs (`/admin/accounts`, `/metrics`).
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    /// What came back is of a kind this route does not serve (`/v1/fetch`: a non-text page).
    UnsupportedMediaType,
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
    /// What an upstream error status means for a caller that only knows our kinds.
    pub fn of_upstream_status(status: u16) -> ErrorKind {
        match status {
            400 | 404 | 422 => ErrorKind::InvalidRequest,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::RateLimited,
            401 | 403 => ErrorKind::Unavailable,
            _ => ErrorKind::BadGateway,
        }
    }

    fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Timeout => 408,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable | ErrorKind::Busy => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// Anthropic's `error.type` for this kind (also what a stream's error event carries).
    pub fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
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
            // The type as `openai_type_of` maps Anthropic's `permission_error`; the code as
            // RFC 6750 names a token that lacks the scope a resource needs.
            ErrorKind::Forbidden => ("permission_error", "insufficient_scope"),
            ErrorKind::NotFound => ("invalid_request_error", "not_found"),
            ErrorKind::MethodNotAllowed => ("invalid_request_error", "method_not_allowed"),
            ErrorKind::Timeout => ("invalid_request_error", "request_timeout"),
            ErrorKind::TooLarge => ("invalid_request_error", "request_too_large"),
            ErrorKind::UnsupportedMediaType => ("invalid_request_error", "unsupported_media_type"),
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

/// Anthropic's `error.type` → OpenAI's `error.type`, for upstream errors shown to OpenAI clients.
pub fn openai_type_of(anthropic_type: &str) -> &'static str {
    match anthropic_type {
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            "invalid_request_error"
        }
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "rate_limit_error" => "rate_limit_error",
        "billing_error" => "insufficient_quota",
        // overloaded_error, api_error, timeout_error and anything new: the server's side.
        _ => "server_error",
    }
}

/// The longest `Retry-After` we ever send: eight days. A subscription's weekly window, once
/// rejected, resets up to seven days later, and a client should be told that real wait (a day
/// more covers clock skew and a reset announced just past the week); our own limits ask for
/// at most a day. A larger value, from a broken or hostile upstream, would only tell a client
/// never to come back. It is also the furthest reset time believed at all
/// ([`crate::anthropic::ratelimit::plausible_reset`]).
pub const MAX_RETRY_AFTER: u64 = 8 * 86_400;

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
    /// Set when this is the upstream's own error answer, relayed: its status and Anthropic
    /// `error.type` are kept as the upstream gave them (the relay protocol excepted, whose
    /// statuses are a fixed set: see [`ApiError::status_in`]).
    pub upstream: Option<Box<UpstreamStatus>>,
}

/// The upstream's own error: the HTTP status it answered with and its `error.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    pub status: u16,
    pub error_type: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
            param: None,
            headers: vec![],
            upstream: None,
        }
    }

    /// The upstream's error answer (`status`, and Anthropic's error JSON or any other body),
    /// relayed in the caller's protocol. The kind is what the status means for the relay
    /// protocol's fixed set of statuses.
    pub fn from_upstream(status: u16, body: &[u8]) -> ApiError {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |pointer: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.pointer(pointer))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let error_type = field("/error/type").unwrap_or_else(|| "api_error".into());
        let message = field("/error/message").unwrap_or_else(|| {
            let text: String = String::from_utf8_lossy(body).chars().take(300).collect();
            format!("the upstream answered {status}: {text}")
        });
        ApiError {
            upstream: Some(Box::new(UpstreamStatus { status, error_type })),
            ..ApiError::new(ErrorKind::of_upstream_status(status), message)
        }
    }

    /// An `error` event inside an upstream stream that had not reached the client yet: its
    /// status is the one the upstream gives that error type as an answer.
    pub fn from_stream_error(error_type: &str, message: &str) -> ApiError {
        let status = match error_type {
            "rate_limit_error" => 429,
            "overloaded_error" => 529,
            "invalid_request_error" => 400,
            _ => 502,
        };
        let body =
            serde_json::json!({"type": "error", "error": {"type": error_type, "message": message}});
        ApiError::from_upstream(status, body.to_string().as_bytes())
    }

    /// `Retry-After`, between 1 s and [`MAX_RETRY_AFTER`] whatever the source said (an
    /// upstream's header included).
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.clamp(1, MAX_RETRY_AFTER));
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

    /// The HTTP status: the upstream's own for a relayed upstream error, else the kind's.
    pub fn status(&self) -> u16 {
        self.upstream
            .as_ref()
            .map_or(self.kind.status(), |u| u.status)
    }

    /// The status in `protocol`: the relay protocol answers only its fixed set of statuses
    /// (400, 401, 403, 404, 408, 413, 415, 429, 5xx of our own), so an upstream status becomes its kind's.
    pub fn status_in(&self, protocol: Protocol) -> u16 {
        match protocol {
            Protocol::Relay => self.kind.status(),
            Protocol::Anthropic | Protocol::OpenAi => self.status(),
        }
    }

    /// The JSON body in the caller's protocol.
    pub fn body(&self, protocol: Protocol) -> Vec<u8> {
        let upstream_type = self.upstream.as_ref().map(|u| u.error_type.as_str());
        let v = match protocol {
            Protocol::Anthropic => serde_json::json!({
                "type": "error",
                "error": {
                    "type": upstream_type.unwrap_or(self.kind.anthropic_type()),
                    "message": self.message,
                },
            }),
            Protocol::OpenAi => {
                let (kind, code) = match upstream_type {
                    Some(t) => (openai_type_of(t), t),
                    None => self.kind.openai_type_code(),
                };
                serde_json::json!({
                    "error": {"message": self.message, "type": kind, "param": self.param, "code": code},
                })
            }
            Protocol::Relay => serde_json::json!({"ok": false, "error": self.message}),
        };
        v.to_string().into_bytes()
    }
}

/// Whether a ureq failure is a timeout: ureq's own deadlines, or a socket read or write timeout
/// (which the OS reports as `TimedOut`, or as `WouldBlock` for `SO_RCVTIMEO`/`SO_SNDTIMEO`).
pub fn is_timeout(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        _ => false,
    }
}

/// A failure to get a response at all (no HTTP status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// A configured timeout fired (connect, response headers, or a silent body).
    Timeout(String),
    /// Connecting or talking to the upstream failed.
    Unreachable(String),
    /// The upstream's stream broke the limits of its framing (an event or a line too large
    /// to hold), so reading it stopped.
    Malformed(String),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Timeout(m) => write!(f, "upstream timeout: {m}"),
            UpstreamError::Unreachable(m) => write!(f, "upstream unreachable: {m}"),
            UpstreamError::Malformed(m) => write!(f, "upstream stream malformed: {m}"),
        }
    }
}

impl UpstreamError {
    pub fn from_ureq(e: ureq::Error) -> UpstreamError {
        match e {
            ureq::Error::Timeout(t) => UpstreamError::Timeout(format!("{t:?}")),
            ref timed_out if is_timeout(timed_out) => UpstreamError::Timeout(e.to_string()),
            other => UpstreamError::Unreachable(other.to_string()),
        }
    }

    /// From an error while reading a response body (ureq wraps its errors in io::Error).
    pub fn from_io(e: std::io::Error) -> UpstreamError {
        UpstreamError::from_ureq(ureq::Error::from(e))
    }
}

/// A transport failure as the caller's error: 504 for a timeout, 502 for the rest.
impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> ApiError {
        let kind = match e {
            UpstreamError::Timeout(_) => ErrorKind::GatewayTimeout,
            UpstreamError::Unreachable(_) | UpstreamError::Malformed(_) => ErrorKind::BadGateway,
        };
        ApiError::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn forbidden_is_403_with_a_permission_error_in_every_shape() {
        let e = ApiError::new(ErrorKind::Forbidden, "needs the admin scope");
        assert_eq!((e.status(), e.status_in(Protocol::Relay)), (403, 403));
        let a: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Anthropic)).unwrap();
        assert_eq!(a["error"]["type"], "permission_error");
        let o: serde_json::Value = serde_json::from_slice(&e.body(Protocol::OpenAi)).unwrap();
        assert_eq!(o["error"]["type"], openai_type_of("permission_error"));
        assert_eq!(o["error"]["code"], "insufficient_scope");
        assert_eq!(o["error"]["message"], "needs the admin scope");
    }

    #[test]
    fn unsupported_media_type_is_415_in_every_shape() {
        let e = ApiError::new(ErrorKind::UnsupportedMediaType, "not text");
        assert_eq!(e.status(), 415);
        assert_eq!(e.status_in(Protocol::Relay), 415);
        let a: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Anthropic)).unwrap();
        assert_eq!(a["error"]["type"], "invalid_request_error");
        let o: serde_json::Value = serde_json::from_slice(&e.body(Protocol::OpenAi)).unwrap();
        assert_eq!(o["error"]["code"], "unsupported_media_type");
        let r: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Relay)).unwrap();
        assert_eq!(r, serde_json::json!({"ok": false, "error": "not text"}));
    }

    #[test]
    fn error_types() {
        assert_eq!(
            openai_type_of("invalid_request_error"),
            "invalid_request_error"
        );
        assert_eq!(openai_type_of("rate_limit_error"), "rate_limit_error");
        assert_eq!(openai_type_of("overloaded_error"), "server_error");
        assert_eq!(openai_type_of("api_error"), "server_error");
        assert_eq!(
            openai_type_of("authentication_error"),
            "authentication_error"
        );
        assert_eq!(openai_type_of("something_new"), "server_error");
    }

    #[test]
    fn upstream_errors_keep_status_and_type_except_in_the_relay_shape() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
        let e = ApiError::from_upstream(529, body);
        assert_eq!(e.status(), 529);
        assert_eq!(e.status_in(Protocol::Relay), 502);
        let o: serde_json::Value = serde_json::from_slice(&e.body(Protocol::OpenAi)).unwrap();
        assert_eq!(o["error"]["type"], "server_error");
        assert_eq!(o["error"]["code"], "overloaded_error");
        assert_eq!(o["error"]["message"], "busy");
        let a: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Anthropic)).unwrap();
        assert_eq!(a["error"]["type"], "overloaded_error");
        let raw = ApiError::from_upstream(500, b"<html>oops</html>");
        assert_eq!(raw.message, "the upstream answered 500: <html>oops</html>");
        let limited = ApiError::from_stream_error("rate_limit_error", "slow down");
        assert_eq!(
            (limited.status(), limited.kind),
            (429, ErrorKind::RateLimited)
        );
    }

    #[test]
    fn retry_after_is_bounded_whatever_the_source_says() {
        let e = ApiError::new(ErrorKind::RateLimited, "x").retry_after(u64::MAX);
        assert_eq!(e.retry_after, Some(MAX_RETRY_AFTER));
        let e = ApiError::new(ErrorKind::RateLimited, "x").retry_after(0);
        assert_eq!(e.retry_after, Some(1));
    }
}
