//! The non-streaming Response object: [`response_object`] replays the collected message
//! through [`ResponsesStream`], so the streamed and the non-streaming answers agree exactly.

use serde_json::{json, Value};

use super::stream::ResponsesStream;
use crate::anthropic::event::Event;

/// Non-streaming: the complete Anthropic message (from
/// [`crate::anthropic::collector::Collector::message`]) → the
/// final Response object, identical to what `response.completed` carries in a stream of the
/// same events (it is computed by replaying the message through [`ResponsesStream`]).
pub fn response_object(message: &Value, id: &str, created: u64, req: &Value) -> Value {
    let mut stream = ResponsesStream::new(id.to_string(), created, req);
    for ev in replay(message) {
        stream.on_event(&ev);
    }
    stream
        .finish()
        .pop()
        .map(|(_, data)| data["response"].clone())
        .unwrap_or(Value::Null)
}

/// A complete message → the stream events that would have carried it.
fn replay(message: &Value) -> Vec<Event> {
    let ev = |name: &str, data: Value| Event {
        name: name.to_string(),
        data,
    };
    let usage = message.get("usage").cloned().unwrap_or(Value::Null);
    let mut events = vec![ev("message_start", json!({"message": {"usage": usage}}))];
    let blocks = message["content"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, b) in blocks.iter().enumerate() {
        let delta = |d: Value| ev("content_block_delta", json!({"index": i, "delta": d}));
        let start = |block: Value| {
            ev(
                "content_block_start",
                json!({"index": i, "content_block": block}),
            )
        };
        match b["type"].as_str().unwrap_or("") {
            "text" => {
                events.push(start(json!({"type": "text", "text": ""})));
                for c in b["citations"].as_array().into_iter().flatten() {
                    events.push(delta(json!({"type": "citations_delta", "citation": c})));
                }
                events.push(delta(json!({"type": "text_delta", "text": b["text"]})));
            }
            "thinking" => {
                events.push(start(
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                ));
                events.push(delta(
                    json!({"type": "thinking_delta", "thinking": b["thinking"]}),
                ));
                events.push(delta(
                    json!({"type": "signature_delta", "signature": b["signature"]}),
                ));
            }
            kind @ ("tool_use" | "server_tool_use") => {
                events.push(start(
                    json!({"type": kind, "id": b["id"], "name": b["name"], "input": {}}),
                ));
                let input = b.get("input").cloned().unwrap_or(json!({}));
                events.push(delta(
                    json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                ));
            }
            _ => events.push(start(b.clone())),
        }
        events.push(ev("content_block_stop", json!({"index": i})));
    }
    events.push(ev(
        "message_delta",
        json!({"delta": {"stop_reason": message["stop_reason"]}, "usage": usage}),
    ));
    events
}
