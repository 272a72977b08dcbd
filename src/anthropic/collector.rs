//! Collecting a stream of Anthropic events into the complete Messages response object, the way
//! the non-streaming API would have returned it. Every non-streaming answer claudegate gives is
//! built this way, so streaming and non-streaming clients see the same content and numbers.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::event::Event;

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

/// The text of a message: its `text` blocks joined, everything else (thinking, tool calls)
/// left out.
pub fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect()
        })
        .unwrap_or_default()
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
