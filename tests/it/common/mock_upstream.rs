//! Mock Anthropic upstream for claudegate's integration tests.
//!
//! This module owns a small HTTP/1.1 server (std + serde_json only) that
//! impersonates `api.anthropic.com` and the OAuth token endpoint on
//! `127.0.0.1:<random port>`. Point claudegate's `upstream.base_url` at
//! [`MockUpstream::url`]. It stops accepting when the [`MockUpstream`] is dropped.
//!
//! Default behaviour (used whenever no queued [`Reply`] matches the path):
//! - `POST /v1/messages`: a Messages API response whose `model` echoes the request;
//!   with `"stream": true` an SSE stream framed exactly like Anthropic's
//!   (`message_start`, `content_block_start`, `ping`, `content_block_delta`*,
//!   `content_block_stop`, `message_delta`, `message_stop`), one chunk per event.
//!   The text is [`DEFAULT_TEXT_CHUNKS`] concatenated. Invalid JSON → 400.
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, N = max(1, body bytes / 4)
//!   (the same N is reported as `input_tokens` by the default messages replies).
//! - `POST /v1/oauth/token` (JSON body): `authorization_code` / `refresh_token` grants
//!   issue distinct tokens per call (`sk-ant-oat01-mock-<port>-<n>`,
//!   `sk-ant-ort01-mock-<port>-<n>`). A refresh token is rejected (400 `invalid_grant`)
//!   if empty, containing `invalid`, `revoked`, `expired` or `bad`, or already used once
//!   (refresh tokens rotate; see [`MockUpstream::allow_refresh_reuse`]). An
//!   authorization code is rejected if empty or containing `invalid` / `bad`.
//! - `GET /v1/models` and `GET /v1/models/{id}`: Anthropic-shaped model objects ([`MODELS`]),
//!   paged like Anthropic's (`limit`, default 20, and `after_id`; `has_more`, `first_id`,
//!   `last_id`). A test may replace the list while the server runs
//!   ([`MockUpstream::set_models`]), cap its pages ([`MockUpstream::cap_models_page`]), slow it
//!   down ([`MockUpstream::delay_models_ms`]) or make it fail ([`MockUpstream::fail_models`]).
//! - `GET /api/oauth/usage` (the subscription's usage windows, as Claude Code's `/usage` reads
//!   them): `five_hour` and `seven_day` windows with a utilisation in percent and an RFC 3339
//!   `resets_at`, `seven_day_opus`/`seven_day_sonnet` `null`, and `extra_usage`
//!   ([`default_usage`]). A test may serve its own answer ([`MockUpstream::set_usage`]) or a
//!   fixed reply instead, e.g. a 404 for an endpoint that is absent
//!   ([`MockUpstream::usage_reply`]).
//! - Anything else: 404 `not_found_error`.
//!
//! Every reply except [`Reply::raw`] carries `request-id: req_...` and
//! `anthropic-ratelimit-unified-*` headers; a reply's own headers override them.
//! JSON built by this module keeps Anthropic's key order (`"type"` first).
//! Tests script behaviour with [`MockUpstream::enqueue`] (FIFO per route) and inspect
//! traffic with [`MockUpstream::requests`]. While a reply waits (`delay_before_ms`, the
//! silence of `stall_after`) the mock watches its socket: a caller that closes the connection
//! then is counted ([`MockUpstream::hangups`]) and the wait ends.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Model used when a request does not name one.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-6";
/// Text deltas of the default stream; their concatenation is the default reply text.
pub const DEFAULT_TEXT_CHUNKS: &[&str] = &["Hello", " from", " the", " mock", " upstream."];
/// Maximum size of the request line plus headers (larger → 431 and close).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Maximum request body size (larger → 413 and close).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Models listed by `GET /v1/models`, as `(id, display_name)`.
pub const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-opus-4-6", "Claude Opus 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
];

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

// --- Recorded requests -------------------------------------------------------

/// One request as received by the mock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Request method, e.g. `POST`.
    pub method: String,
    /// Request target including the query string, e.g. `/v1/models?limit=2`.
    pub path: String,
    /// Headers in arrival order, names lowercased, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Raw body bytes (a chunked body is recorded de-chunked).
    pub body: Vec<u8>,
}

impl Recorded {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// All values of header `name` (case-insensitive), in arrival order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let matching = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        matching.map(|(_, v)| v.as_str()).collect()
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(self.path.as_str(), |(p, _)| p)
    }

    /// The query string (without `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics (test code) with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("recorded body is not JSON ({e}): {}", self.body_text()))
    }
}

// --- SSE events and Anthropic-shaped bodies ----------------------------------

/// One server-sent event, written as `event: <event>\ndata: <data>\n\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    /// Normally JSON text.
    pub data: String,
}

impl SseEvent {
    /// Event with the given name and data string.
    pub fn new(event: impl Into<String>, data: impl Into<String>) -> Self {
        let (event, data) = (event.into(), data.into());
        SseEvent { event, data }
    }

    /// The data parsed as JSON (`Value::Null` if it is not JSON).
    pub fn data_json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    /// Wire framing exactly as Anthropic sends it.
    pub fn to_wire(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.event, self.data)
    }
}

/// Parse an SSE body (from the mock, Anthropic or claudegate) into events.
/// Handles `\r\n`, multi-line `data:` (joined with `\n`) and `:` comments; a block
/// without `event:` is named `message`. An unterminated last block is dropped.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let (mut out, mut event, mut data, mut seen) = (Vec::new(), None, Vec::new(), false);
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if seen {
                let name = event.take().unwrap_or_else(|| "message".to_string());
                out.push(SseEvent::new(name, data.join("\n")));
            }
            (data, seen) = (Vec::new(), false);
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            _ => continue, // comments (empty field name) and unknown fields
        }
        seen = true;
    }
    out
}

/// `s` as a quoted, escaped JSON string literal.
fn q(s: &str) -> String {
    Value::from(s).to_string()
}

fn message_object(model: &str, content: &str, stop: &str, input: u64, output: u64) -> String {
    format!(
        r#"{{"id":"msg_01Mock{:016}","type":"message","role":"assistant","model":{},"content":{content},"stop_reason":{stop},"stop_sequence":null,"usage":{{"input_tokens":{input},"output_tokens":{output},"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}}"#,
        next_id(),
        q(model)
    )
}

/// Non-streaming Messages API response body (JSON text, Anthropic key order).
pub fn message_body(model: &str, text: &str, input_tokens: u64, output_tokens: u64) -> String {
    let content = format!(r#"[{{"type":"text","text":{}}}]"#, q(text));
    message_object(
        model,
        &content,
        r#""end_turn""#,
        input_tokens,
        output_tokens,
    )
}

/// Anthropic error body: `{"type":"error","error":{"type":<kind>,"message":<message>}}`.
pub fn error_body(kind: &str, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":{},"message":{}}}}}"#,
        q(kind),
        q(message)
    )
}

/// Mid-stream SSE error event, e.g. `sse_error_event("overloaded_error", "Overloaded")`.
pub fn sse_error_event(kind: &str, message: &str) -> SseEvent {
    SseEvent::new("error", error_body(kind, message))
}

/// A full single-block stream; `block` is the `content_block` JSON, `deltas` the delta JSONs.
fn block_stream(
    model: &str,
    input: u64,
    block: &str,
    deltas: &[String],
    stop: &str,
    output: u64,
) -> Vec<SseEvent> {
    let start = message_object(model, "[]", "null", input, 1);
    let mut ev = vec![
        SseEvent::new(
            "message_start",
            format!(r#"{{"type":"message_start","message":{start}}}"#),
        ),
        SseEvent::new(
            "content_block_start",
            format!(r#"{{"type":"content_block_start","index":0,"content_block":{block}}}"#),
        ),
        SseEvent::new("ping", r#"{"type": "ping"}"#),
    ];
    for d in deltas {
        let data = format!(r#"{{"type":"content_block_delta","index":0,"delta":{d}}}"#);
        ev.push(SseEvent::new("content_block_delta", data));
    }
    ev.push(SseEvent::new(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    ev.push(SseEvent::new(
        "message_delta",
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":{},"stop_sequence":null}},"usage":{{"output_tokens":{output}}}}}"#,
            q(stop)
        ),
    ));
    ev.push(SseEvent::new("message_stop", r#"{"type":"message_stop"}"#));
    ev
}

/// Standard text stream with `input_tokens` = 12; see [`sse_text_events_with_usage`].
pub fn sse_text_events(model: &str, chunks: &[&str]) -> Vec<SseEvent> {
    sse_text_events_with_usage(model, chunks, 12)
}

/// Standard text stream: `message_start`, `content_block_start`, `ping`, one
/// `content_block_delta` (`text_delta`) per chunk, `content_block_stop`,
/// `message_delta` (`end_turn`, output_tokens = number of chunks), `message_stop`.
pub fn sse_text_events_with_usage(
    model: &str,
    chunks: &[&str],
    input_tokens: u64,
) -> Vec<SseEvent> {
    let deltas: Vec<String> = chunks
        .iter()
        .map(|c| format!(r#"{{"type":"text_delta","text":{}}}"#, q(c)))
        .collect();
    let block = r#"{"type":"text","text":""}"#;
    block_stream(
        model,
        input_tokens,
        block,
        &deltas,
        "end_turn",
        chunks.len() as u64,
    )
}

/// Tool-use stream: one `tool_use` block whose input arrives as `input_json_delta`
/// fragments `json_chunks`; stop_reason `tool_use`.
pub fn sse_tool_use_events(
    model: &str,
    tool_id: &str,
    tool_name: &str,
    json_chunks: &[&str],
) -> Vec<SseEvent> {
    let deltas: Vec<String> = json_chunks
        .iter()
        .map(|c| format!(r#"{{"type":"input_json_delta","partial_json":{}}}"#, q(c)))
        .collect();
    let block = format!(
        r#"{{"type":"tool_use","id":{},"name":{},"input":{{}}}}"#,
        q(tool_id),
        q(tool_name)
    );
    block_stream(
        model,
        12,
        &block,
        &deltas,
        "tool_use",
        json_chunks.len() as u64 + 1,
    )
}

// --- Replies -----------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum SseEnd {
    Complete,
    Stall(usize, Duration),
    Reset(usize),
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(String, Vec<u8>), // content type, body
    Sse {
        events: Vec<SseEvent>,
        delay: Duration,
        stamp: bool,
        end: SseEnd,
    },
    Raw(Vec<u8>),
}

/// A scripted response: build with a constructor, refine with the builder methods.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    delay_before: Duration,
    close: bool,
}

impl Reply {
    fn with(status: u16, body: Body) -> Self {
        let (headers, delay_before) = (Vec::new(), Duration::ZERO);
        Reply {
            status,
            headers,
            body,
            delay_before,
            close: false,
        }
    }

    /// JSON response (`content-type: application/json`) from a `Value`.
    pub fn json(status: u16, body: Value) -> Self {
        Self::body(status, "application/json", body.to_string())
    }

    /// Arbitrary body, sent with `content-length`.
    pub fn body(status: u16, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self::with(status, Body::Bytes(content_type.to_string(), bytes.into()))
    }

    /// Anthropic error JSON, e.g. `Reply::error(429, "rate_limit_error", "slow down")`.
    /// A 429 also gets `anthropic-ratelimit-unified-status: rejected`.
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        let r = Self::body(status, "application/json", error_body(kind, message));
        match status {
            429 => r.header("anthropic-ratelimit-unified-status", "rejected"),
            _ => r,
        }
    }

    /// 200 non-streaming message with the given text.
    pub fn message(model: &str, text: &str) -> Self {
        let words = text.split_whitespace().count() as u64;
        Self::body(
            200,
            "application/json",
            message_body(model, text, 12, words),
        )
    }

    /// 200 SSE stream of `events` (chunked, one chunk per event, flushed each time).
    pub fn sse(events: Vec<SseEvent>) -> Self {
        let (delay, end) = (Duration::ZERO, SseEnd::Complete);
        Self::with(
            200,
            Body::Sse {
                events,
                delay,
                stamp: false,
                end,
            },
        )
    }

    /// 200 SSE stream of [`sse_text_events`]`(model, chunks)`.
    pub fn sse_text(model: &str, chunks: &[&str]) -> Self {
        Self::sse(sse_text_events(model, chunks))
    }

    /// Write exactly `bytes` to the socket (no status line or headers added), then close.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Self {
        Self::with(0, Body::Raw(bytes.into()))
    }

    /// 200 SSE headers plus one event (`message_start`), then silence for `ms`, then
    /// close without the terminating chunk.
    pub fn stall_after_headers(ms: u64) -> Self {
        Self::sse_text(DEFAULT_MODEL, DEFAULT_TEXT_CHUNKS).stall_after(1, ms)
    }

    /// SSE stream that sends the first `after` events of `events`, then drops the
    /// connection without the terminating chunk.
    pub fn reset_mid_stream(events: Vec<SseEvent>, after: usize) -> Self {
        Self::sse(events).reset_after(after)
    }

    /// Add a response header (replaces a default header of the same name; setting
    /// `content-length` or `transfer-encoding` yourself breaks framing on purpose).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// One usage window's unified headers: `anthropic-ratelimit-unified-{window}-status`,
    /// `-utilization` (a fraction) and `-reset` (Unix seconds), as Anthropic sends them.
    pub fn window(self, window: &str, status: &str, utilization: f64, reset: u64) -> Self {
        let name = |field: &str| format!("anthropic-ratelimit-unified-{window}-{field}");
        self.header(&name("status"), status)
            .header(&name("utilization"), &utilization.to_string())
            .header(&name("reset"), &reset.to_string())
    }

    /// The overall unified answer: `-status`, `-reset` and `-representative-claim`.
    pub fn unified(self, status: &str, reset: u64, claim: &str) -> Self {
        self.header("anthropic-ratelimit-unified-status", status)
            .header("anthropic-ratelimit-unified-reset", &reset.to_string())
            .header("anthropic-ratelimit-unified-representative-claim", claim)
    }

    /// Shorthand for `.header("retry-after", secs)`.
    pub fn retry_after(self, secs: u64) -> Self {
        self.header("retry-after", &secs.to_string())
    }

    /// Change the status code (ignored by raw replies).
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// SSE only: sleep `ms` between consecutive events.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        if let Body::Sse { delay, .. } = &mut self.body {
            *delay = Duration::from_millis(ms);
        }
        self
    }

    /// Wait `ms` (or until the caller closes) before writing anything (any reply kind).
    pub fn delay_before_ms(mut self, ms: u64) -> Self {
        self.delay_before = Duration::from_millis(ms);
        self
    }

    /// SSE only: append `"emitted_at_us":<unix micros>` to each JSON-object event data
    /// at the moment the event is written.
    pub fn stamp_emitted_at(mut self) -> Self {
        if let Body::Sse { stamp, .. } = &mut self.body {
            *stamp = true;
        }
        self
    }

    /// SSE only: after `events` events go silent for `ms` (or until the caller closes), then
    /// close (no terminating chunk).
    pub fn stall_after(mut self, events: usize, ms: u64) -> Self {
        if let Body::Sse { end, .. } = &mut self.body {
            *end = SseEnd::Stall(events, Duration::from_millis(ms));
        }
        self
    }

    /// SSE only: after `events` events drop the connection (no terminating chunk).
    pub fn reset_after(mut self, events: usize) -> Self {
        if let Body::Sse { end, .. } = &mut self.body {
            *end = SseEnd::Reset(events);
        }
        self
    }

    /// Send `connection: close` and close the connection after this reply.
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }
}

// --- The subscription's refusals -----------------------------------------------------------
//
// Refusals of a subscription login that are not rate limits, with the status, `error.type` and
// message Anthropic answers them with, as quoted in public issue trackers. Each body carries a
// top-level `request_id`, as Anthropic's error bodies do.

/// 400 `invalid_request_error`: a request Anthropic counts as a third-party app's, on a plan
/// that must pay for those from extra usage (anthropics/claude-code#45048 and #45911,
/// ianjwhite99/opencode-with-claude#91; the credit's amount varies: $20, $100, $200).
pub const THIRD_PARTY_MESSAGE: &str = "Third-party apps now draw from your extra usage, not your plan limits. We've added a $200 credit to get you started. Claim it at claude.ai/settings/usage and keep going.";
/// 429 `rate_limit_error`: the 1M-token context window on a plan without extra usage
/// (anthropics/claude-code#42616 and #50784, Wei-Shaw/sub2api#572).
pub const LONG_CONTEXT_MESSAGE: &str = "Extra usage is required for long context requests.";
/// 403 `permission_error`: an organisation that does not allow subscription (OAuth) access;
/// Claude Code shows it as `oauth_org_not_allowed` (anthropics/claude-code#63685 and #65714,
/// Wei-Shaw/claude-relay-service#991).
pub const OAUTH_NOT_ALLOWED_MESSAGE: &str =
    "OAuth authentication is currently not allowed for this organization.";
/// 400 `invalid_request_error`: an organisation Anthropic has disabled
/// (router-for-me/CLIProxyAPI#2442 and #3409, anthropics/claude-code#60648).
pub const ORGANIZATION_DISABLED_MESSAGE: &str = "This organization has been disabled.";

/// An Anthropic error reply with a top-level `request_id`, as the refusals come.
fn refusal(status: u16, kind: &str, message: &str) -> Reply {
    let body = format!(
        r#"{{"type":"error","error":{{"type":{},"message":{}}},"request_id":"req_011Mock{:016}"}}"#,
        q(kind),
        q(message),
        next_id()
    );
    Reply::body(status, "application/json", body)
}

impl Reply {
    /// 400: third-party apps draw from extra usage ([`THIRD_PARTY_MESSAGE`]).
    pub fn third_party_extra_usage() -> Self {
        refusal(400, "invalid_request_error", THIRD_PARTY_MESSAGE)
    }

    /// 429: extra usage is required for long context ([`LONG_CONTEXT_MESSAGE`]). The account's
    /// own windows are fine (`unified-status: allowed`), and the reply names a `retry-after`,
    /// so a proxy that takes every 429 for a rate limit benches the account on it (as
    /// sub2api#572 reports). Whether Anthropic sends a `retry-after` with it is not documented.
    pub fn long_context_extra_usage() -> Self {
        refusal(429, "rate_limit_error", LONG_CONTEXT_MESSAGE)
            .header("anthropic-ratelimit-unified-status", "allowed")
            .retry_after(30)
    }

    /// 403: OAuth is not allowed for this organisation ([`OAUTH_NOT_ALLOWED_MESSAGE`]).
    pub fn oauth_not_allowed() -> Self {
        refusal(403, "permission_error", OAUTH_NOT_ALLOWED_MESSAGE)
    }

    /// 400: the organisation has been disabled ([`ORGANIZATION_DISABLED_MESSAGE`]).
    pub fn organization_disabled() -> Self {
        refusal(400, "invalid_request_error", ORGANIZATION_DISABLED_MESSAGE)
    }
}

// --- The server --------------------------------------------------------------

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    port: u16,
    requests: Mutex<Vec<Recorded>>,
    /// (path or prefix, is_prefix, reply), in enqueue order.
    queue: Mutex<Vec<(String, bool, Reply)>>,
    tokens_issued: AtomicU64,
    used_refresh: Mutex<HashSet<String>>,
    refresh_reuse: AtomicBool,
    /// Waits cut short because the caller closed the connection.
    hangups: AtomicU64,
    /// The list `GET /v1/models` serves; `None`: [`MODELS`].
    models: Mutex<Option<Vec<Value>>>,
    /// While set, every `GET /v1/models…` gets this reply (until cleared).
    models_reply: Mutex<Option<Reply>>,
    /// Wait before the models endpoint's own answer, in ms.
    models_delay_ms: AtomicU64,
    /// Most models in one page, whatever `limit` asks (0: no cap).
    models_page: AtomicU64,
    /// What `GET /api/oauth/usage` answers; `None`: [`default_usage`].
    usage: Mutex<Option<Value>>,
    /// While set, every `GET /api/oauth/usage` gets this reply (until cleared).
    usage_reply: Mutex<Option<Reply>>,
}

/// A running mock Anthropic server (one thread per connection); stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Bind `127.0.0.1:0` and start serving.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("mock upstream: bind");
        let addr = listener.local_addr().expect("mock upstream: local_addr");
        let shared = Arc::new(Shared {
            port: addr.port(),
            ..Shared::default()
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("mock-upstream-accept".into())
            .spawn(move || accept_loop(listener, s))
            .expect("mock upstream: spawn accept thread");
        MockUpstream {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue `reply` for the next request whose path (without query) equals `path`.
    pub fn enqueue(&self, path: &str, reply: Reply) {
        lock(&self.shared.queue).push((path.to_string(), false, reply));
    }

    /// Queue `reply` for the next request whose path (without query) starts with `prefix`.
    pub fn enqueue_prefix(&self, prefix: &str, reply: Reply) {
        lock(&self.shared.queue).push((prefix.to_string(), true, reply));
    }

    /// Number of queued replies not yet consumed.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    /// Drop all queued replies.
    pub fn clear_queue(&self) {
        lock(&self.shared.queue).clear();
    }

    /// All recorded requests, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Recorded requests whose path (without query) equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let all = lock(&self.shared.requests);
        all.iter()
            .filter(|r| r.path_only() == path)
            .cloned()
            .collect()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().cloned()
    }

    /// Number of recorded requests.
    pub fn count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Forget recorded requests (queued replies are kept).
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Poll until at least `n` requests were recorded; false on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        poll_until(timeout, || self.count() >= n)
    }

    /// Number of token pairs issued by the OAuth endpoint so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// How many replies were waiting (`delay_before_ms`, a `stall_after` silence) when the
    /// caller closed its connection.
    pub fn hangups(&self) -> u64 {
        self.shared.hangups.load(Ordering::SeqCst)
    }

    /// Poll until at least `n` waiting replies saw their caller close; false on timeout.
    pub fn wait_for_hangups(&self, n: u64, timeout: Duration) -> bool {
        poll_until(timeout, || self.hangups() >= n)
    }

    /// Accept (true) or reject (false, the default) reuse of an already-used refresh token.
    pub fn allow_refresh_reuse(&self, allow: bool) {
        self.shared.refresh_reuse.store(allow, Ordering::SeqCst);
    }

    /// Replace the list `GET /v1/models` (and `/v1/models/{id}`) serves from now on, newest
    /// first as Anthropic lists them; build entries with [`model_info`] or by hand.
    pub fn set_models(&self, models: Vec<Value>) {
        *lock(&self.shared.models) = Some(models);
    }

    /// The list `GET /v1/models` serves now.
    pub fn models(&self) -> Vec<Value> {
        models_of(&self.shared)
    }

    /// Answer every `GET /v1/models…` with `reply` (e.g. a 500) until called with `None`.
    /// Queued replies ([`MockUpstream::enqueue`]) still go first.
    pub fn fail_models(&self, reply: Option<Reply>) {
        *lock(&self.shared.models_reply) = reply;
    }

    /// Wait `ms` (or until the caller closes) before the models endpoint answers.
    pub fn delay_models_ms(&self, ms: u64) {
        self.shared.models_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Serve at most `n` models per page, whatever `limit` asks (0: no cap), so a caller
    /// must follow `has_more` / `after_id` to see them all.
    pub fn cap_models_page(&self, n: u64) {
        self.shared.models_page.store(n, Ordering::SeqCst);
    }
}

impl MockUpstream {
    /// Serve `body` (any JSON, odd fields included) from `GET /api/oauth/usage` from now on.
    pub fn set_usage(&self, body: Value) {
        *lock(&self.shared.usage) = Some(body);
    }

    /// Answer every `GET /api/oauth/usage` with `reply` (e.g. a 404: the endpoint is absent)
    /// until called with `None`. Queued replies still go first.
    pub fn usage_reply(&self, reply: Option<Reply>) {
        *lock(&self.shared.usage_reply) = reply;
    }
}

/// The usage endpoint's default answer: 5-hour window 1 % used (as the default headers say),
/// weekly 12 %, no model-specific windows, no extra usage.
pub fn default_usage() -> Value {
    let at = |secs: u64| rfc3339_micros(unix_micros() / 1_000_000 + secs);
    json!({
        "five_hour": {"utilization": 1.0, "resets_at": at(5 * 3600)},
        "seven_day": {"utilization": 12.0, "resets_at": at(4 * 86_400)},
        "seven_day_oauth_apps": null,
        "seven_day_opus": null,
        "seven_day_sonnet": null,
        "extra_usage": {"is_enabled": false, "monthly_limit": null, "used_credits": null,
                        "utilization": null},
    })
}

/// `2026-01-28T07:59:59.571404+00:00`, the way the usage endpoint writes its times.
pub fn rfc3339_micros(unix: u64) -> String {
    claudegate::base::clock::rfc3339(unix).replace('Z', ".571404+00:00")
}

fn usage_reply(shared: &Shared) -> Reply {
    if let Some(reply) = lock(&shared.usage_reply).clone() {
        return reply;
    }
    let body = lock(&shared.usage).clone().unwrap_or_else(default_usage);
    Reply::json(200, body)
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); join only if the wake-up connection got through.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let (Some(h), true) = (self.accept.take(), woke) {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                let s = Arc::clone(&shared);
                let name = "mock-upstream-conn".to_string();
                let _ = thread::Builder::new()
                    .name(name)
                    .spawn(move || serve_connection(stream, &s));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Polls `done` every 5 ms until it holds (true) or `timeout` passes (false).
fn poll_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Sleep `dur` in small steps; false if the mock was stopped meanwhile.
fn sleep_unless_stopped(dur: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + dur;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

/// Waits `dur` while watching `out` for the caller closing it: false if it did (counted in
/// `hangups`) or the mock was stopped. Peeks, so a byte the caller sent stays unread.
fn wait_watching(out: &TcpStream, dur: Duration, shared: &Shared) -> bool {
    let deadline = Instant::now() + dur;
    let mut byte = [0u8; 1];
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        let step = (deadline - now).min(Duration::from_millis(20));
        let _ = out.set_read_timeout(Some(step));
        match out.peek(&mut byte) {
            Ok(0) => {}
            Ok(_) => {
                thread::sleep(step);
                continue;
            }
            Err(e) if is_timeout(&e) => continue,
            Err(_) => {}
        }
        shared.hangups.fetch_add(1, Ordering::SeqCst);
        return false;
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let (mut reader, mut out) = (BufReader::new(read_half), stream);
    loop {
        // Wait for the next request, waking up regularly to notice shutdown.
        let _ = out.set_read_timeout(Some(Duration::from_millis(100)));
        loop {
            match reader.fill_buf() {
                Ok([]) => return,
                Ok(_) => break,
                Err(e) if is_timeout(&e) && !shared.stop.load(Ordering::SeqCst) => continue,
                Err(_) => return,
            }
        }
        let _ = out.set_read_timeout(Some(Duration::from_secs(30)));
        let (rec, keep_alive) = match read_request(&mut reader, &mut out) {
            Ok(r) => r,
            Err(ReadErr::Io) => return,
            Err(ReadErr::Bad(status, msg)) => {
                let kind = if status == 400 {
                    "invalid_request_error"
                } else {
                    "request_too_large"
                };
                let _ = write_reply(
                    &mut out,
                    shared,
                    &Reply::error(status, kind, msg).close_connection(),
                );
                return;
            }
        };
        lock(&shared.requests).push(rec.clone());
        let mut reply =
            take_queued(shared, rec.path_only()).unwrap_or_else(|| default_reply(shared, &rec));
        reply.close |= !keep_alive;
        match write_reply(&mut out, shared, &reply) {
            Ok(true) if !reply.close => continue,
            _ => return, // dropping both handles closes the socket
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    use io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

fn take_queued(shared: &Shared, path: &str) -> Option<Reply> {
    let mut q = lock(&shared.queue);
    let i = q.iter().position(|(p, prefix, _)| {
        if *prefix {
            path.starts_with(p.as_str())
        } else {
            p == path
        }
    })?;
    Some(q.remove(i).2)
}

// --- HTTP/1.1 request parsing ------------------------------------------------

enum ReadErr {
    /// Connection-level failure or EOF: just close.
    Io,
    /// Malformed request: answer with this status, then close.
    Bad(u16, &'static str),
}

/// Read one line of at most `limit` bytes; returns it without CR/LF, and its raw length.
fn read_line(r: &mut impl BufRead, limit: usize) -> Result<(String, usize), ReadErr> {
    let mut buf = Vec::new();
    let n = Read::take(&mut *r, limit as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|_| ReadErr::Io)?;
    if n > limit {
        return Err(ReadErr::Bad(431, "request line or headers too large"));
    }
    if buf.pop() != Some(b'\n') {
        return Err(ReadErr::Io); // EOF in the middle of a line
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), n))
}

/// Parse one request; returns it and whether the connection may be kept alive.
fn read_request(
    r: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
) -> Result<(Recorded, bool), ReadErr> {
    let (mut used, mut lines) = (0, Vec::new());
    loop {
        let (line, n) = read_line(r, MAX_HEADER_BYTES - used)?;
        used += n;
        if used >= MAX_HEADER_BYTES {
            return Err(ReadErr::Bad(431, "request headers too large"));
        }
        match (line.is_empty(), lines.is_empty()) {
            (true, true) => continue, // tolerate stray CRLF between requests
            (true, false) => break,
            _ => lines.push(line),
        }
    }
    let mut parts = lines[0].split_whitespace();
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadErr::Bad(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadErr::Bad(400, "unsupported HTTP version"));
    }
    let mut headers = Vec::new();
    for l in &lines[1..] {
        let Some((name, value)) = l.split_once(':') else {
            return Err(ReadErr::Bad(400, "malformed header line"));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let (method, path) = (method.to_string(), path.to_string());
    let mut rec = Recorded {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let conn = rec.header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" {
        conn.contains("keep-alive")
    } else {
        !conn.contains("close")
    };
    if rec
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadErr::Io)?;
    }
    if rec
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        rec.body = read_chunked(r)?;
    } else if let Some(cl) = rec.header("content-length") {
        let len: usize = cl
            .parse()
            .map_err(|_| ReadErr::Bad(400, "invalid content-length"))?;
        if len > MAX_BODY_BYTES {
            return Err(ReadErr::Bad(413, "request body too large"));
        }
        let mut body = Vec::new();
        Read::take(&mut *r, len as u64)
            .read_to_end(&mut body)
            .map_err(|_| ReadErr::Io)?;
        if body.len() != len {
            return Err(ReadErr::Io);
        }
        rec.body = body;
    }
    Ok((rec, keep_alive))
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, ReadErr> {
    let mut body = Vec::new();
    loop {
        let (line, _) = read_line(r, 4096)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| ReadErr::Bad(400, "invalid chunk size"))?;
        if size == 0 {
            while !read_line(r, MAX_HEADER_BYTES)?.0.is_empty() {} // skip trailers
            return Ok(body);
        }
        if size > MAX_BODY_BYTES - body.len() {
            return Err(ReadErr::Bad(413, "request body too large"));
        }
        let (start, mut crlf) = (body.len(), [0u8; 2]);
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).map_err(|_| ReadErr::Io)?;
        r.read_exact(&mut crlf).map_err(|_| ReadErr::Io)?;
        if &crlf != b"\r\n" {
            return Err(ReadErr::Bad(400, "missing CRLF after chunk data"));
        }
    }
}

// --- Response writing --------------------------------------------------------

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Unknown",
    }
}

/// Write the status line and headers: `defaults` plus request-id, rate-limit and
/// connection headers, minus any the reply overrides, then the reply's own headers.
fn write_head(
    out: &mut TcpStream,
    reply: &Reply,
    mut defaults: Vec<(&str, String)>,
) -> io::Result<()> {
    let reset = (unix_micros() / 1_000_000 + 5 * 3600).to_string();
    defaults.extend([
        ("request-id", format!("req_01Mock{:016}", next_id())),
        ("anthropic-ratelimit-unified-status", "allowed".into()),
        ("anthropic-ratelimit-unified-5h-status", "allowed".into()),
        ("anthropic-ratelimit-unified-5h-utilization", "0.01".into()),
        ("anthropic-ratelimit-unified-5h-reset", reset.clone()),
        ("anthropic-ratelimit-unified-reset", reset),
        (
            "anthropic-ratelimit-unified-representative-claim",
            "five_hour".into(),
        ),
    ]);
    if reply.close {
        defaults.push(("connection", "close".into()));
    }
    defaults.retain(|(n, _)| !reply.headers.iter().any(|(c, _)| c.eq_ignore_ascii_case(n)));
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    let custom = reply.headers.iter().map(|(n, v)| (n.as_str(), v));
    for (n, v) in defaults.iter().map(|(n, v)| (*n, v)).chain(custom) {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

/// Append `"emitted_at_us"` to a JSON-object data string (other data is left alone).
fn stamped(data: &str) -> String {
    let t = data.trim_end();
    match t.strip_suffix('}') {
        Some(inner) if t.starts_with('{') => {
            let sep = if inner.trim_end() == "{" { "" } else { "," };
            format!(r#"{inner}{sep}"emitted_at_us":{}}}"#, unix_micros())
        }
        _ => data.to_string(),
    }
}

/// Write `reply`; Ok(true) if the connection is still usable for another request.
fn write_reply(out: &mut TcpStream, shared: &Shared, reply: &Reply) -> io::Result<bool> {
    if !reply.delay_before.is_zero() && !wait_watching(out, reply.delay_before, shared) {
        return Ok(false);
    }
    match &reply.body {
        Body::Raw(bytes) => {
            out.write_all(bytes)?;
            out.flush()?;
            Ok(false)
        }
        Body::Bytes(content_type, bytes) => {
            let defaults = vec![
                ("content-type", content_type.clone()),
                ("content-length", bytes.len().to_string()),
            ];
            write_head(out, reply, defaults)?;
            out.write_all(bytes)?;
            out.flush()?;
            Ok(true)
        }
        Body::Sse {
            events,
            delay,
            stamp,
            end,
        } => {
            let defaults = vec![
                (
                    "content-type",
                    "text/event-stream; charset=utf-8".to_string(),
                ),
                ("cache-control", "no-cache".to_string()),
                ("transfer-encoding", "chunked".to_string()),
            ];
            write_head(out, reply, defaults)?;
            out.flush()?;
            let limit = match *end {
                SseEnd::Complete => events.len(),
                SseEnd::Stall(after, _) | SseEnd::Reset(after) => after.min(events.len()),
            };
            for (i, ev) in events[..limit].iter().enumerate() {
                if i > 0 && !sleep_unless_stopped(*delay, &shared.stop) {
                    return Ok(false);
                }
                let data = if *stamp {
                    stamped(&ev.data)
                } else {
                    ev.data.clone()
                };
                let wire = SseEvent::new(ev.event.as_str(), data).to_wire();
                out.write_all(format!("{:x}\r\n{wire}\r\n", wire.len()).as_bytes())?;
                out.flush()?;
            }
            match *end {
                SseEnd::Complete => {
                    out.write_all(b"0\r\n\r\n")?;
                    out.flush()?;
                    Ok(true)
                }
                SseEnd::Stall(_, dur) => {
                    wait_watching(out, dur, shared);
                    Ok(false)
                }
                SseEnd::Reset(_) => Ok(false),
            }
        }
    }
}

// --- Default routes ----------------------------------------------------------

fn estimate_tokens(body: &[u8]) -> u64 {
    (body.len() as u64 / 4).max(1)
}

fn model_json(id: &str, name: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"})
}

/// A model object as Anthropic's models endpoint lists it (without the optional
/// `max_input_tokens`, `max_tokens` and `capabilities`; add them to the value to test those).
pub fn model_info(id: &str, display_name: &str, created_at: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": display_name, "created_at": created_at})
}

/// The list the models endpoint serves now.
fn models_of(shared: &Shared) -> Vec<Value> {
    lock(&shared.models).clone().unwrap_or_else(|| {
        MODELS
            .iter()
            .map(|(id, name)| model_json(id, name))
            .collect()
    })
}

/// The value of `name` in a query string (no percent-decoding: model ids need none).
fn query_param<'a>(rec: &'a Recorded, name: &str) -> Option<&'a str> {
    rec.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `GET /v1/models` and `/v1/models/{id}`: the sticky reply if one is set, else the current
/// list (paged), after the configured delay.
fn models_reply(shared: &Shared, rec: &Recorded) -> Reply {
    if let Some(reply) = lock(&shared.models_reply).clone() {
        return reply;
    }
    let delay = shared.models_delay_ms.load(Ordering::SeqCst);
    let models = models_of(shared);
    let id_of = |m: &Value| m["id"].as_str().unwrap_or("").to_string();
    let reply = if let Some(id) = rec.path_only().strip_prefix("/v1/models/") {
        match models.iter().find(|m| id_of(m) == id) {
            Some(m) => Reply::json(200, m.clone()),
            None => Reply::error(404, "not_found_error", &format!("model: {id}")),
        }
    } else {
        let limit = query_param(rec, "limit").and_then(|l| l.parse::<u64>().ok());
        if limit.is_some_and(|l| !(1..=1000).contains(&l)) {
            return Reply::error(400, "invalid_request_error", "limit: must be 1 to 1000");
        }
        let mut page = limit.unwrap_or(20);
        let cap = shared.models_page.load(Ordering::SeqCst);
        if cap > 0 {
            page = page.min(cap);
        }
        let start = match query_param(rec, "after_id") {
            Some(after) => match models.iter().position(|m| id_of(m) == after) {
                Some(i) => i + 1,
                None => return Reply::error(400, "invalid_request_error", "after_id: unknown"),
            },
            None => 0,
        };
        let data: Vec<Value> = models
            .iter()
            .skip(start)
            .take(page as usize)
            .cloned()
            .collect();
        let has_more = start + data.len() < models.len();
        let (first, last) = (data.first().map(id_of), data.last().map(id_of));
        Reply::json(
            200,
            json!({"data": data, "has_more": has_more, "first_id": first, "last_id": last}),
        )
    };
    reply.delay_before_ms(delay)
}

fn default_reply(shared: &Shared, rec: &Recorded) -> Reply {
    match (rec.method.as_str(), rec.path_only()) {
        ("POST", "/v1/messages") => default_messages(rec),
        ("POST", "/v1/messages/count_tokens") => {
            Reply::json(200, json!({"input_tokens": estimate_tokens(&rec.body)}))
        }
        ("POST", "/v1/oauth/token") => oauth_reply(shared, rec),
        ("GET", "/api/oauth/usage") => usage_reply(shared),
        ("GET", p) if p == "/v1/models" || p.starts_with("/v1/models/") => {
            models_reply(shared, rec)
        }
        (m, p) => Reply::error(404, "not_found_error", &format!("Not found: {m} {p}")),
    }
}

fn default_messages(rec: &Recorded) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return Reply::error(
            400,
            "invalid_request_error",
            "request body is not valid JSON",
        );
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_MODEL);
    let input = estimate_tokens(&rec.body);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        Reply::sse(sse_text_events_with_usage(
            model,
            DEFAULT_TEXT_CHUNKS,
            input,
        ))
    } else {
        let body = message_body(
            model,
            &DEFAULT_TEXT_CHUNKS.concat(),
            input,
            DEFAULT_TEXT_CHUNKS.len() as u64,
        );
        Reply::body(200, "application/json", body)
    }
}

fn oauth_error(error: &str, description: &str) -> Reply {
    Reply::json(
        400,
        json!({"error": error, "error_description": description}),
    )
}

fn oauth_reply(shared: &Shared, rec: &Recorded) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
        return oauth_error("invalid_request", "body must be JSON");
    };
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match field("grant_type").as_str() {
        "authorization_code" => {
            let code = field("code");
            if code.is_empty() || code.contains("invalid") || code.contains("bad") {
                return oauth_error("invalid_grant", "Invalid authorization code");
            }
        }
        "refresh_token" => {
            let rt = field("refresh_token");
            let bad = rt.is_empty()
                || ["invalid", "revoked", "expired", "bad"]
                    .iter()
                    .any(|w| rt.contains(w));
            let mut used = lock(&shared.used_refresh);
            if bad || (used.contains(&rt) && !shared.refresh_reuse.load(Ordering::SeqCst)) {
                return oauth_error("invalid_grant", "Refresh token not found or invalid");
            }
            used.insert(rt);
        }
        other => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("unsupported grant_type {other:?}"),
            )
        }
    }
    let (n, port) = (
        shared.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1,
        shared.port,
    );
    Reply::json(
        200,
        json!({
            "token_type": "Bearer",
            "access_token": format!("sk-ant-oat01-mock-{port}-{n}"),
            "refresh_token": format!("sk-ant-ort01-mock-{port}-{n}"),
            "expires_in": 28800,
            "scope": "user:inference user:profile",
            "account": {"uuid": "00000000-0000-4000-8000-00000000a001", "email_address": "user@example.com"},
            "organization": {"uuid": "00000000-0000-4000-8000-00000000b001", "name": "Mock Org"},
        }),
    )
}
