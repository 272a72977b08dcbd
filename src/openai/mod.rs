//! The OpenAI-compatible front doors: `/v1/chat/completions` ([`chat`]) and `/v1/responses`
//! ([`responses`]), and what they share. Both backends get the same translation: the CLI
//! backend takes the translated Anthropic request as the OAuth backend does.
//!
//! Everything inside speaks Anthropic Messages. A front door translates the client's request
//! into an Anthropic request (always `stream: true` upstream), then feeds the upstream's events
//! one at a time to a translator state machine that yields the client's chunks or events. A
//! non-streaming client gets the same events collected into one message first, so both paths
//! report the same content and the same numbers. Translators do no I/O: they are pure and are
//! tested with golden files under `tests/golden/`.
//!
//! Each fact the two doors share lives once: the chat parameter policy ([`params`]), the
//! reasoning plan ([`reasoning`]), content parts and turn order ([`content`]), tool choice,
//! JSON mode, sampling and betas ([`draft`]), and stop reasons and usage ([`answer`]).

pub mod answer;
pub mod chat;
pub mod content;
pub mod draft;
pub mod params;
pub mod reasoning;
pub mod responses;

use serde_json::{json, Value};

use crate::base::error::{ApiError, ErrorKind};

/// A request the translator cannot honour: rendered as a 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// The offending parameter, e.g. `n` or `messages[2].content[0].type`.
    pub param: Option<String>,
    pub message: String,
}

impl TranslateError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

/// A refused request as the caller's error: a 400 naming the parameter.
impl From<TranslateError> for ApiError {
    fn from(e: TranslateError) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest, e.message).param(e.param)
    }
}

/// What every translated request carries besides the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The Anthropic Messages request, with `"stream": true`.
    pub body: Value,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The model name as the client gave it (echoed back in responses).
    pub client_model: String,
    /// Betas the translated body needs beyond the defaults (e.g. structured outputs).
    pub betas: Vec<&'static str>,
    /// Chat only: `stream_options.include_usage` (a final usage chunk before `[DONE]`).
    pub include_usage: bool,
}

/// Marks the translated request for prompt caching, when the client marked nothing itself:
/// the last system block and the last block of the last user turn get an ephemeral
/// `cache_control`. OpenAI clients (Codex, agents) resend a long, stable prefix every turn;
/// without markers Anthropic caches none of it. At most two markers are added and the total
/// never exceeds Anthropic's limit of four.
pub fn add_cache_markers(body: &mut Value) {
    if body.to_string().contains("\"cache_control\"") {
        return; // the client chose its own breakpoints
    }
    let marker = json!({"type": "ephemeral"});
    if let Some(last) = body
        .get_mut("system")
        .and_then(Value::as_array_mut)
        .and_then(|s| s.last_mut())
    {
        if last.is_object() {
            last["cache_control"] = marker.clone();
        }
    }
    let last_user = body
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .and_then(|m| m.iter_mut().rev().find(|m| m["role"] == "user"));
    if let Some(msg) = last_user {
        if let Some(text) = msg["content"].as_str().map(str::to_string) {
            msg["content"] = json!([{"type": "text", "text": text}]);
        }
        let block = msg["content"].as_array_mut().and_then(|c| c.last_mut());
        // Thinking blocks cannot carry a marker; user turns never hold them.
        if let Some(block) = block.filter(|b| b.is_object()) {
            block["cache_control"] = marker;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_markers_are_added_only_when_the_client_set_none() {
        let mut b = json!({"system": [{"type":"text","text":"a"},{"type":"text","text":"b"}],
            "messages": [{"role":"user","content":"one"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"two"},{"type":"image","source":{}}]}]});
        add_cache_markers(&mut b);
        assert_eq!(b["system"][1]["cache_control"], json!({"type":"ephemeral"}));
        assert!(b["system"][0].get("cache_control").is_none());
        assert_eq!(
            b["messages"][2]["content"][1]["cache_control"],
            json!({"type":"ephemeral"})
        );
        assert_eq!(
            b["messages"][0]["content"], "one",
            "earlier turns untouched"
        );
        assert_eq!(b.to_string().matches("cache_control").count(), 2);

        let mut b = json!({"messages": [{"role":"user","content":"hi"}]});
        add_cache_markers(&mut b);
        assert_eq!(
            b["messages"][0]["content"],
            json!([{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}])
        );

        let mut own = json!({"messages": [{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}], "system":[{"type":"text","text":"s"}]});
        let before = own.clone();
        add_cache_markers(&mut own);
        assert_eq!(own, before);
    }
}
