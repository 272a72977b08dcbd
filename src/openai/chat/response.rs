//! Anthropic answers → Chat Completions answers: [`ChatStream`] turns Anthropic stream events
//! into `chat.completion.chunk`s, [`completion`] turns the collected message into one
//! `chat.completion` (the *Responses* section of [`super`]'s docs). Both read the same fields
//! the same way, so a streaming and a non-streaming client see the same text, reasoning, tool
//! calls and usage numbers.

use serde_json::{json, Map, Value};

use crate::anthropic::event::Event;
use crate::openai::answer::{self, Ending};

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(super) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match answer::ending(stop_reason) {
        Ending::Stop => "stop",
        Ending::Length => "length",
        Ending::ToolCalls => "tool_calls",
        Ending::ContentFilter => "content_filter",
    }
}

/// Anthropic `usage` → OpenAI `usage`.
fn usage(u: &Value) -> Value {
    let c = answer::counts(u);
    json!({
        "prompt_tokens": c.input,
        "completion_tokens": c.output,
        "total_tokens": c.input + c.output,
        "prompt_tokens_details": {"cached_tokens": c.cached},
    })
}

/// Non-streaming: the complete Anthropic message (as built by
/// [`crate::anthropic::collector::Collector::message`])
/// → a `chat.completion` object.
pub fn completion(message: &Value, id: &str, created: u64, client_model: &str) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in message["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("thinking") => reasoning.push_str(block["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": input.to_string()},
                }));
            }
            _ => {}
        }
    }
    let mut msg = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !reasoning.is_empty() {
        msg["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": null,
            "finish_reason": finish_reason(message["stop_reason"].as_str()),
        }],
        "usage": usage(&message["usage"]),
    })
}

/// One streamed tool call: where it sits upstream and in the client's list.
#[derive(Debug)]
struct ToolCall {
    /// The Anthropic content-block index.
    block: u64,
    /// The OpenAI `tool_calls[].index`: 0, 1, … across the message.
    index: usize,
    /// The block's initial `input`, sent whole if no argument fragment arrives.
    start_input: Value,
    /// Whether a non-empty argument fragment has been sent.
    sent_args: bool,
}

/// Streaming: Anthropic events → `chat.completion.chunk`s.
#[derive(Debug)]
pub struct ChatStream {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// The role chunk has been sent.
    started: bool,
    tools: Vec<ToolCall>,
    stop_reason: Option<String>,
    /// Anthropic usage: `message_start`'s, overlaid key by key with `message_delta`'s (the
    /// same merge the collector does, so both paths report the same numbers).
    usage: Map<String, Value>,
    finish_sent: bool,
    /// `finish` or `fail` has run: nothing more is owed.
    ended: bool,
}

impl ChatStream {
    pub fn new(id: String, created: u64, client_model: String, include_usage: bool) -> ChatStream {
        ChatStream {
            id,
            created,
            model: client_model,
            include_usage,
            started: false,
            tools: Vec::new(),
            stop_reason: None,
            usage: Map::new(),
            finish_sent: false,
            ended: false,
        }
    }

    /// A chunk with the stream's envelope around `choices`.
    fn envelope(&self, choices: Value) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if self.include_usage {
            // OpenAI sends `usage: null` on every chunk but the last when usage is asked for.
            c["usage"] = Value::Null;
        }
        c
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        self.envelope(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        )
    }

    /// The opening chunk (`role: assistant`), once, before anything else.
    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn tool_at(&mut self, block: u64) -> Option<&mut ToolCall> {
        self.tools.iter_mut().find(|t| t.block == block)
    }

    /// One upstream Anthropic event in; zero or more `chat.completion.chunk` objects out (each
    /// sent as `data: <json>`). An `error` event yields nothing: the caller passes it to
    /// [`ChatStream::fail`].
    pub fn on_event(&mut self, ev: &Event) -> Vec<Value> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        let d = &ev.data;
        let block = d["index"].as_u64().unwrap_or(0);
        match ev.name.as_str() {
            "message_start" => {
                if let Some(u) = d["message"]["usage"].as_object() {
                    self.usage = u.clone();
                }
                self.start(&mut out);
            }
            "content_block_start" => {
                self.start(&mut out);
                let cb = &d["content_block"];
                match cb["type"].as_str() {
                    Some("text") => self.text(&mut out, "content", cb["text"].as_str()),
                    Some("thinking") => {
                        self.text(&mut out, "reasoning_content", cb["thinking"].as_str())
                    }
                    Some("tool_use") => {
                        let index = self.tools.len();
                        self.tools.push(ToolCall {
                            block,
                            index,
                            start_input: cb.get("input").cloned().unwrap_or_else(|| json!({})),
                            sent_args: false,
                        });
                        out.push(self.chunk(
                            json!({"tool_calls": [{
                                "index": index,
                                "id": cb["id"],
                                "type": "function",
                                "function": {"name": cb["name"], "arguments": ""},
                            }]}),
                            None,
                        ));
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                self.start(&mut out);
                let delta = &d["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => self.text(&mut out, "content", delta["text"].as_str()),
                    Some("thinking_delta") => {
                        self.text(&mut out, "reasoning_content", delta["thinking"].as_str())
                    }
                    Some("input_json_delta") => {
                        let frag = delta["partial_json"].as_str().unwrap_or("");
                        if let Some(index) =
                            self.tool_at(block).filter(|_| !frag.is_empty()).map(|t| {
                                t.sent_args = true;
                                t.index
                            })
                        {
                            out.push(self.args(index, frag));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                // A call whose arguments never streamed still owes valid JSON: its start input.
                if let Some(t) = self.tool_at(block).filter(|t| !t.sent_args) {
                    t.sent_args = true;
                    let (index, args) = (t.index, t.start_input.to_string());
                    out.push(self.args(index, &args));
                }
            }
            "message_delta" => {
                if let Some(u) = d["usage"].as_object() {
                    for (k, v) in u {
                        self.usage.insert(k.clone(), v.clone());
                    }
                }
                if let Some(r) = d["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_string());
                    self.start(&mut out);
                    self.finish_chunk(&mut out);
                }
            }
            _ => {} // ping, message_stop, error, unknown
        }
        out
    }

    /// A `content` or `reasoning_content` delta, skipped when empty.
    fn text(&self, out: &mut Vec<Value>, key: &str, text: Option<&str>) {
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push(self.chunk(json!({ key: t }), None));
        }
    }

    fn args(&self, index: usize, fragment: &str) -> Value {
        self.chunk(
            json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
            None,
        )
    }

    fn finish_chunk(&mut self, out: &mut Vec<Value>) {
        if !self.finish_sent {
            self.finish_sent = true;
            let reason = finish_reason(self.stop_reason.as_deref());
            out.push(self.chunk(json!({}), Some(reason)));
        }
    }

    /// Clean end of the upstream stream: whatever is still owed (finish chunk if not sent,
    /// then the usage chunk when include_usage); the caller then writes `data: [DONE]`.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.ended = true;
        self.start(&mut out);
        self.finish_chunk(&mut out);
        if self.include_usage {
            let mut c = self.envelope(json!([]));
            c["usage"] = usage(&Value::Object(self.usage.clone()));
            out.push(c);
        }
        out
    }

    /// Upstream failure after the first byte (an Anthropic `error` event, or the connection
    /// broke): the OpenAI error object to send in the stream; the caller then ends the stream
    /// WITHOUT `[DONE]`, so clients cannot mistake a cut answer for a complete one.
    pub fn fail(&mut self, anthropic_type: &str, message: &str) -> Value {
        self.ended = true;
        json!({"error": {
            "message": message,
            "type": crate::base::error::openai_type_of(anthropic_type),
            "param": null,
            "code": anthropic_type,
        }})
    }
}
