//! The OpenAI-compatible front doors: shared pieces for `/v1/chat/completions` ([`chat`]) and
//! `/v1/responses` ([`responses`]).
//!
//! Everything inside speaks Anthropic Messages. A front door translates the client's request
//! into an Anthropic request (always `stream: true` upstream), then feeds the upstream's events
//! one at a time to a translator state machine that yields the client's chunks or events. A
//! non-streaming client gets the same events collected into one message first, so both paths
//! report the same content and the same numbers. Translators do no I/O: they are pure and are
//! tested with golden files under `tests/golden/`.

pub mod chat;
pub mod front;
pub mod responses;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// One Anthropic stream event: its name (`message_start`, `content_block_delta`, …) and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

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

/// Collects a stream of Anthropic events into the complete Messages API response object, the
/// way the non-streaming API would have returned it.
#[derive(Debug, Default)]
pub struct Collector {
    message: Map<String, Value>,
    /// Content blocks by their upstream index. A map, not a list padded up to the index: an
    /// index of 10^11 from a broken upstream once allocated gigabytes (found by fuzzing), and
    /// indices may legitimately skip (the CLI backend drops its tool blocks).
    blocks: BTreeMap<usize, Value>,
    /// Partial JSON of `tool_use` / `server_tool_use` inputs, by block index.
    partial_json: BTreeMap<usize, String>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Feeds one event.
    pub fn push(&mut self, ev: &Event) {
        let d = &ev.data;
        match ev.name.as_str() {
            "message_start" => {
                if let Some(m) = d.get("message").and_then(Value::as_object) {
                    self.message = m.clone();
                }
            }
            "content_block_start" => {
                let i =
                    d.get("index").and_then(Value::as_u64).unwrap_or_else(|| {
                        self.blocks.keys().next_back().map_or(0, |k| *k as u64 + 1)
                    }) as usize;
                let block = d.get("content_block").cloned().unwrap_or(json!({}));
                self.partial_json.entry(i).or_default();
                self.blocks.insert(i, block);
            }
            "content_block_delta" => {
                let i = d.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let (Some(block), Some(delta)) = (self.blocks.get_mut(&i), d.get("delta")) else {
                    return;
                };
                let append = |block: &mut Value, key: &str, more: &str| {
                    let old = block
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    block[key] = Value::String(old + more);
                };
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        append(block, "text", delta["text"].as_str().unwrap_or(""))
                    }
                    Some("thinking_delta") => {
                        append(block, "thinking", delta["thinking"].as_str().unwrap_or(""))
                    }
                    Some("signature_delta") => append(
                        block,
                        "signature",
                        delta["signature"].as_str().unwrap_or(""),
                    ),
                    Some("input_json_delta") => {
                        if let Some(p) = self.partial_json.get_mut(&i) {
                            p.push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    Some("citations_delta") => {
                        if let Some(c) = delta.get("citation") {
                            if !block["citations"].is_array() {
                                block["citations"] = json!([]);
                            }
                            if let Some(a) = block["citations"].as_array_mut() {
                                a.push(c.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let i = d.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let partial = self.partial_json.get(&i).cloned().unwrap_or_default();
                if let Some(block) = self.blocks.get_mut(&i) {
                    if !partial.is_empty() {
                        block["input"] = serde_json::from_str(&partial).unwrap_or(json!({}));
                    }
                }
            }
            "message_delta" => {
                if let Some(delta) = d.get("delta").and_then(Value::as_object) {
                    for (k, v) in delta {
                        self.message.insert(k.clone(), v.clone());
                    }
                }
                if let Some(u) = d.get("usage").and_then(Value::as_object) {
                    let usage = self.message.entry("usage").or_insert(json!({}));
                    for (k, v) in u {
                        usage[k] = v.clone();
                    }
                }
            }
            _ => {}
        }
    }

    /// The complete message (`type: "message"`, `content`, `stop_reason`, `usage`, …).
    pub fn message(&self) -> Value {
        let mut m = self.message.clone();
        m.insert(
            "content".into(),
            Value::Array(
                self.blocks
                    .values()
                    .filter(|b| !b.is_null())
                    .cloned()
                    .collect(),
            ),
        );
        Value::Object(m)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, data: Value) -> Event {
        Event {
            name: name.into(),
            data,
        }
    }

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

    /// Found by fuzzing (`tests/fuzz`, target `chat_stream`): a block index of 10^11 from a
    /// broken upstream made the collector pad its block list up to it (gigabytes, then the
    /// whole process aborts on the failed allocation).
    #[test]
    fn collector_takes_a_huge_block_index_without_allocating_for_it() {
        let huge = 100_000_000_000u64;
        let mut c = Collector::new();
        c.push(&ev(
            "content_block_start",
            json!({"index": huge, "content_block": {"type": "text", "text": ""}}),
        ));
        c.push(&ev(
            "content_block_delta",
            json!({"index": huge, "delta": {"type": "text_delta", "text": "hi"}}),
        ));
        // Without an index, a block goes after the last one.
        c.push(&ev(
            "content_block_start",
            json!({"content_block": {"type": "text", "text": "next"}}),
        ));
        assert_eq!(
            c.message()["content"],
            json!([{"type": "text", "text": "hi"}, {"type": "text", "text": "next"}])
        );
    }

    #[test]
    fn collector_rebuilds_the_message() {
        let mut c = Collector::new();
        c.push(&ev("message_start", json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}})));
        c.push(&ev(
            "content_block_start",
            json!({"index":0,"content_block":{"type":"thinking","thinking":""}}),
        ));
        c.push(&ev(
            "content_block_delta",
            json!({"index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}),
        ));
        c.push(&ev(
            "content_block_delta",
            json!({"index":0,"delta":{"type":"signature_delta","signature":"SIG"}}),
        ));
        c.push(&ev("content_block_stop", json!({"index":0})));
        c.push(&ev("content_block_start", json!({"index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}})));
        c.push(&ev(
            "content_block_delta",
            json!({"index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}),
        ));
        c.push(&ev(
            "content_block_delta",
            json!({"index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}),
        ));
        c.push(&ev("content_block_stop", json!({"index":1})));
        c.push(&ev("message_delta", json!({"delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}})));
        let m = c.message();
        assert_eq!(
            m["content"][0],
            json!({"type":"thinking","thinking":"hm","signature":"SIG"})
        );
        assert_eq!(m["content"][1]["input"], json!({"a":1}));
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["usage"], json!({"input_tokens":5,"output_tokens":9}));
    }
}
