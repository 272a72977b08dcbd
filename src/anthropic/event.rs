//! One Anthropic stream event, and reading one from an SSE `event:`/`data:` pair.
//!
//! Everything inside claudegate speaks Anthropic Messages: a backend's answer is a sequence of
//! these events (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
//! `error`), whether it came from the upstream's SSE or from the CLI's `stream_event` lines.

use serde_json::Value;

/// One Anthropic stream event: its name (`message_start`, `content_block_delta`, …) and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// Parses one SSE event from its `event:`/`data:` lines (as delivered by the upstream).
pub fn parse_event(name: &str, data: &str) -> Option<Event> {
    let data: Value = serde_json::from_str(data).ok()?;
    let name = if name.is_empty() {
        data.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        name.to_string()
    };
    Some(Event { name, data })
}

/// An Anthropic `error` event, framed as SSE.
pub fn error_event(kind: &str, message: &str) -> Vec<u8> {
    let data = serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
    format!("event: error\ndata: {data}\n\n").into_bytes()
}

/// An `error` event's `error.type` and `error.message` (with defaults for a malformed one).
pub fn error_of(data: &Value) -> (String, String) {
    let kind = data
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let message = data
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error");
    (kind.to_string(), message.to_string())
}
