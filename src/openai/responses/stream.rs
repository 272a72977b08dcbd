//! Anthropic stream events → Responses stream events: [`ResponsesStream`], the state machine
//! behind both the streamed answer and (replayed, in [`super::object`]) the non-streaming
//! Response object (the *Output* section of [`super`]'s docs), with the usage and echoed
//! request fields every Response object carries.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::items::encode_reasoning;
use super::tools::{ToolKind, ToolTable};
use crate::anthropic::event::Event;
use crate::openai::answer::{self, Ending};

/// One stream event for the client: its name and data.
type Out = Vec<(String, Value)>;

/// The message item being filled by a run of text blocks: one `output_text` part holding the
/// whole run (clients often read only `content[0]`).
struct OpenMessage {
    at: usize,
    id: String,
    text: String,
    /// Characters in `text` (annotation indices count characters).
    chars: usize,
    annotations: Vec<Value>,
}

/// A text block: where its text starts in the open message, once it has text.
#[derive(Default)]
struct TextBlock {
    start: Option<usize>,
    citations: Vec<Value>,
}

struct ThinkingBlock {
    at: usize,
    id: String,
    thinking: String,
    signature: String,
    summary_open: bool,
}

struct ToolBlock {
    at: usize,
    /// The item as announced, completed at the block's end.
    item: Value,
    custom: bool,
    json: String,
    start_input: Value,
}

struct SearchBlock {
    at: usize,
    id: String,
    server_id: String,
    json: String,
    start_input: Value,
}

/// A web search whose results have not arrived yet.
struct PendingSearch {
    at: usize,
    id: String,
    query: String,
}

/// The state of one upstream content block.
enum Block {
    Text(TextBlock),
    Thinking(ThinkingBlock),
    Tool(ToolBlock),
    Search(SearchBlock),
    /// Finished at its start, or not shown (unknown types).
    Other,
}

/// Turns Anthropic stream events into Responses stream events.
pub struct ResponsesStream {
    id: String,
    created: u64,
    model: String,
    /// Request fields echoed in every Response object.
    echo: Map<String, Value>,
    tools: ToolTable,
    seq: u64,
    /// Items by output_index; None while still open.
    output: Vec<Option<Value>>,
    blocks: BTreeMap<u64, Block>,
    message: Option<OpenMessage>,
    searches: BTreeMap<String, PendingSearch>,
    usage: Option<Map<String, Value>>,
    stop_reason: Option<String>,
    finished: bool,
}

impl ResponsesStream {
    /// `req` is the client's original request (fields are echoed in the response object).
    pub fn new(id: String, created: u64, req: &Value) -> ResponsesStream {
        ResponsesStream {
            id,
            created,
            model: req["model"].as_str().unwrap_or("").to_string(),
            echo: echo_fields(req),
            tools: ToolTable::build(req.get("tools")).unwrap_or_default(),
            seq: 0,
            output: Vec::new(),
            blocks: BTreeMap::new(),
            message: None,
            searches: BTreeMap::new(),
            usage: None,
            stop_reason: None,
            finished: false,
        }
    }

    /// The events to send before any upstream event: response.created, response.in_progress.
    pub fn start(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for name in ["response.created", "response.in_progress"] {
            let response = self.response("in_progress", Value::Null, Value::Null);
            self.emit(&mut out, name, json!({"response": response}));
        }
        out
    }

    /// One upstream Anthropic event in; zero or more (event name, data) out. An upstream
    /// `error` event ends the stream with `response.failed` (the caller need not call
    /// [`fail`](Self::fail) too; later calls return nothing).
    pub fn on_event(&mut self, ev: &Event) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let d = &ev.data;
        let index = d["index"].as_u64().unwrap_or(0);
        match ev.name.as_str() {
            "message_start" => self.merge_usage(d.pointer("/message/usage")),
            "content_block_start" => self.block_start(index, &d["content_block"], &mut out),
            "content_block_delta" => self.block_delta(index, &d["delta"], &mut out),
            "content_block_stop" => self.block_stop(index, &mut out),
            "message_delta" => {
                if let Some(reason) = d.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_string());
                }
                self.merge_usage(d.get("usage"));
            }
            "message_stop" => out = self.finish(),
            "error" => {
                let e = d.get("error").unwrap_or(d);
                out = self.fail(
                    e["type"].as_str().unwrap_or("api_error"),
                    e["message"].as_str().unwrap_or("upstream error"),
                );
            }
            _ => {}
        }
        out
    }

    /// Clean end: whatever is still owed, ending with `response.completed` (status
    /// `incomplete` with `incomplete_details.reason` when the output was cut).
    pub fn finish(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        // A clean stream has closed everything already; a short one is closed here.
        let open: Vec<u64> = self.blocks.keys().copied().collect();
        for index in open {
            self.block_stop(index, &mut out);
        }
        self.close_message(&mut out);
        for (_, search) in std::mem::take(&mut self.searches) {
            self.finish_search(search, None, &mut out);
        }
        let (status, details) = match answer::ending(self.stop_reason.as_deref()) {
            Ending::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
            Ending::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
            Ending::Stop | Ending::ToolCalls => ("completed", Value::Null),
        };
        self.finished = true;
        let response = self.response(status, details, Value::Null);
        self.emit(
            &mut out,
            "response.completed",
            json!({"response": response}),
        );
        out
    }

    /// Upstream failure after the first byte: ends with `response.failed` (with an `error`
    /// object); the caller then ends the stream.
    pub fn fail(&mut self, anthropic_type: &str, message: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        let code = match anthropic_type {
            "rate_limit_error" => "rate_limit_exceeded",
            "invalid_request_error" => "invalid_prompt",
            _ => "server_error",
        };
        let error = json!({"code": code, "message": message});
        let response = self.response("failed", Value::Null, error);
        self.emit(&mut out, "response.failed", json!({"response": response}));
        out
    }

    /// Adds `type` and `sequence_number` and queues the event.
    fn emit(&mut self, out: &mut Out, name: &str, mut data: Value) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push((name.to_string(), data));
    }

    /// The Response object as it stands.
    fn response(&self, status: &str, incomplete_details: Value, error: Value) -> Value {
        let mut r = self.echo.clone();
        let output: Vec<Value> = self.output.iter().flatten().cloned().collect();
        let usage = match (&self.usage, status) {
            (_, "in_progress") => Value::Null,
            (Some(u), _) => usage(u),
            (None, "completed" | "incomplete") => usage(&Map::new()),
            (None, _) => Value::Null,
        };
        for (k, v) in [
            ("id", json!(self.id)),
            ("object", json!("response")),
            ("created_at", json!(self.created)),
            ("status", json!(status)),
            ("error", error),
            ("incomplete_details", incomplete_details),
            ("model", json!(self.model)),
            ("output", Value::Array(output)),
            ("usage", usage),
        ] {
            r.insert(k.into(), v);
        }
        Value::Object(r)
    }

    fn merge_usage(&mut self, u: Option<&Value>) {
        if let Some(u) = u.and_then(Value::as_object) {
            let usage = self.usage.get_or_insert_with(Map::new);
            for (k, v) in u {
                usage.insert(k.clone(), v.clone());
            }
        }
    }

    /// Reserves the next output_index.
    fn open_item(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    fn item_id(&self, prefix: &str, at: usize) -> String {
        let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{base}_{at}")
    }

    /// Announces a new output item (`response.output_item.added`) at the next output_index,
    /// its id made from `prefix`; returns the index and the item as announced.
    fn add_item(&mut self, prefix: &str, mut item: Value, out: &mut Out) -> (usize, Value) {
        let at = self.open_item();
        item["id"] = json!(self.item_id(prefix, at));
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        );
        (at, item)
    }

    fn item_done(&mut self, at: usize, item: Value, out: &mut Out) {
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
        self.output[at] = Some(item);
    }

    /// Ends the current run of text: its part and the message item are done.
    fn close_message(&mut self, out: &mut Out) {
        let Some(m) = self.message.take() else { return };
        let ids = json!({"item_id": m.id, "output_index": m.at, "content_index": 0});
        let mut done = ids.clone();
        done["text"] = json!(m.text);
        done["logprobs"] = json!([]);
        self.emit(out, "response.output_text.done", done);
        let part = json!({"type": "output_text", "text": m.text, "annotations": m.annotations});
        let mut done = ids;
        done["part"] = part.clone();
        self.emit(out, "response.content_part.done", done);
        let item = json!({"id": m.id, "type": "message", "status": "completed",
            "role": "assistant", "content": [part]});
        self.item_done(m.at, item, out);
    }

    fn block_start(&mut self, index: u64, block: &Value, out: &mut Out) {
        // A start for an index that is still open (a broken upstream; found by fuzzing) would
        // replace its block and orphan its item, never `done`: close the open one first.
        if self.blocks.contains_key(&index) {
            self.block_stop(index, out);
        }
        let state = match block["type"].as_str().unwrap_or("") {
            "text" => {
                self.blocks.insert(index, Block::Text(TextBlock::default()));
                self.text_delta(index, block["text"].as_str().unwrap_or(""), out);
                return;
            }
            "thinking" => {
                self.close_message(out);
                let (at, item) =
                    self.add_item("rs", json!({"type": "reasoning", "summary": []}), out);
                self.blocks.insert(
                    index,
                    Block::Thinking(ThinkingBlock {
                        at,
                        id: item["id"].as_str().unwrap_or("").to_string(),
                        thinking: String::new(),
                        signature: block["signature"].as_str().unwrap_or("").to_string(),
                        summary_open: false,
                    }),
                );
                self.thinking_delta(index, block["thinking"].as_str().unwrap_or(""), out);
                return;
            }
            "redacted_thinking" => {
                self.close_message(out);
                let (at, mut item) =
                    self.add_item("rs", json!({"type": "reasoning", "summary": []}), out);
                let data = block["data"].as_str().unwrap_or("");
                item["encrypted_content"] = json!(encode_reasoning(
                    &json!({"type": "redacted_thinking", "data": data})
                ));
                self.item_done(at, item, out);
                Block::Other
            }
            "tool_use" => {
                self.close_message(out);
                let tool = self.tools.client_tool(block["name"].as_str().unwrap_or(""));
                let custom = tool.kind == ToolKind::Custom;
                let call_id = block["id"].as_str().unwrap_or("");
                let (prefix, mut item) = if custom {
                    (
                        "ctc",
                        json!({"type": "custom_tool_call", "status": "in_progress",
                        "call_id": call_id, "name": tool.name, "input": ""}),
                    )
                } else {
                    (
                        "fc",
                        json!({"type": "function_call", "status": "in_progress",
                        "arguments": "", "call_id": call_id, "name": tool.name}),
                    )
                };
                if let Some(ns) = tool.namespace {
                    item["namespace"] = json!(ns);
                }
                let (at, item) = self.add_item(prefix, item, out);
                Block::Tool(ToolBlock {
                    at,
                    item,
                    custom,
                    json: String::new(),
                    start_input: block["input"].clone(),
                })
            }
            "server_tool_use" if block["name"] == "web_search" => {
                self.close_message(out);
                let item = json!({"type": "web_search_call", "status": "in_progress"});
                let (at, item) = self.add_item("ws", item, out);
                let id = item["id"].as_str().unwrap_or("").to_string();
                self.emit(
                    out,
                    "response.web_search_call.in_progress",
                    json!({"output_index": at, "item_id": id}),
                );
                Block::Search(SearchBlock {
                    at,
                    id,
                    server_id: block["id"].as_str().unwrap_or("").to_string(),
                    json: String::new(),
                    start_input: block["input"].clone(),
                })
            }
            "web_search_tool_result" => {
                let key = block["tool_use_id"].as_str().unwrap_or("");
                if let Some(search) = self.searches.remove(key) {
                    self.finish_search(search, Some(&block["content"]), out);
                }
                Block::Other
            }
            _ => Block::Other,
        };
        self.blocks.insert(index, state);
    }

    fn block_delta(&mut self, index: u64, delta: &Value, out: &mut Out) {
        let s = |k: &str| delta[k].as_str().unwrap_or("").to_string();
        match delta["type"].as_str().unwrap_or("") {
            "text_delta" => return self.text_delta(index, &s("text"), out),
            "thinking_delta" => return self.thinking_delta(index, &s("thinking"), out),
            _ => {}
        }
        let Some(mut block) = self.blocks.remove(&index) else {
            return;
        };
        match (&mut block, delta["type"].as_str().unwrap_or("")) {
            (Block::Text(t), "citations_delta") => t.citations.push(delta["citation"].clone()),
            (Block::Thinking(t), "signature_delta") => t.signature.push_str(&s("signature")),
            (Block::Tool(t), "input_json_delta") => {
                let part = s("partial_json");
                t.json.push_str(&part);
                if !t.custom && !part.is_empty() {
                    let (at, id) = (t.at, t.item["id"].clone());
                    self.emit(
                        out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": at, "delta": part}),
                    );
                }
            }
            (Block::Search(t), "input_json_delta") => t.json.push_str(&s("partial_json")),
            _ => {}
        }
        self.blocks.insert(index, block);
    }

    fn text_delta(&mut self, index: u64, text: &str, out: &mut Out) {
        // Only a text block takes text; a text delta for another kind of block (a broken
        // upstream; found by fuzzing) must leave that block open, not drop it and its item.
        if text.is_empty() || !matches!(self.blocks.get(&index), Some(Block::Text(_))) {
            return;
        }
        let Some(Block::Text(mut block)) = self.blocks.remove(&index) else {
            return;
        };
        if self.message.is_none() {
            let item = json!({"type": "message", "status": "in_progress",
                "role": "assistant", "content": []});
            let (at, item) = self.add_item("msg", item, out);
            let id = item["id"].as_str().unwrap_or("").to_string();
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": at, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            self.message = Some(OpenMessage {
                at,
                id,
                text: String::new(),
                chars: 0,
                annotations: Vec::new(),
            });
        }
        let Some(m) = &mut self.message else { return };
        block.start.get_or_insert(m.chars);
        m.text.push_str(text);
        m.chars += text.chars().count();
        let data = json!({"item_id": m.id, "output_index": m.at, "content_index": 0,
            "delta": text, "logprobs": []});
        self.emit(out, "response.output_text.delta", data);
        self.blocks.insert(index, Block::Text(block));
    }

    fn thinking_delta(&mut self, index: u64, text: &str, out: &mut Out) {
        // As in `text_delta`: a thinking delta for another kind of block leaves it alone.
        if text.is_empty() || !matches!(self.blocks.get(&index), Some(Block::Thinking(_))) {
            return;
        }
        let Some(Block::Thinking(mut block)) = self.blocks.remove(&index) else {
            return;
        };
        let ids = json!({"item_id": block.id, "output_index": block.at, "summary_index": 0});
        if !block.summary_open {
            let mut data = ids.clone();
            data["part"] = json!({"type": "summary_text", "text": ""});
            self.emit(out, "response.reasoning_summary_part.added", data);
            block.summary_open = true;
        }
        block.thinking.push_str(text);
        let mut data = ids;
        data["delta"] = json!(text);
        self.emit(out, "response.reasoning_summary_text.delta", data);
        self.blocks.insert(index, Block::Thinking(block));
    }

    fn block_stop(&mut self, index: u64, out: &mut Out) {
        match self.blocks.remove(&index) {
            Some(Block::Text(t)) => self.text_stop(t, out),
            Some(Block::Thinking(t)) => self.thinking_stop(t, out),
            Some(Block::Tool(t)) => self.tool_stop(t, out),
            Some(Block::Search(s)) => {
                let input = parse_input(&s.json, &s.start_input);
                let query = input["query"].as_str().unwrap_or("").to_string();
                self.emit(
                    out,
                    "response.web_search_call.searching",
                    json!({"output_index": s.at, "item_id": s.id}),
                );
                let pending = PendingSearch {
                    at: s.at,
                    id: s.id,
                    query,
                };
                // A second search under a pending one's id (a broken upstream; found by
                // fuzzing) would orphan the first one's item: it ends without a result.
                if let Some(orphan) = self.searches.insert(s.server_id, pending) {
                    self.finish_search(orphan, None, out);
                }
            }
            Some(Block::Other) | None => {}
        }
    }

    /// A text block's citations become annotations over its span of the message text.
    fn text_stop(&mut self, t: TextBlock, out: &mut Out) {
        let (Some(start), Some(m)) = (t.start, &mut self.message) else {
            return;
        };
        let end = m.chars;
        let mut added = Vec::new();
        for c in t
            .citations
            .iter()
            .filter(|c| c["type"] == "web_search_result_location")
        {
            let a = json!({"type": "url_citation", "url": c["url"], "title": c["title"],
                "start_index": start, "end_index": end});
            added.push(
                json!({"item_id": m.id, "output_index": m.at, "content_index": 0,
                "annotation_index": m.annotations.len(), "annotation": a}),
            );
            m.annotations.push(a);
        }
        for data in added {
            self.emit(out, "response.output_text.annotation.added", data);
        }
    }

    fn thinking_stop(&mut self, t: ThinkingBlock, out: &mut Out) {
        let mut summary = Vec::new();
        if t.summary_open {
            let ids = json!({"item_id": t.id, "output_index": t.at, "summary_index": 0});
            let mut done = ids.clone();
            done["text"] = json!(t.thinking);
            self.emit(out, "response.reasoning_summary_text.done", done);
            let part = json!({"type": "summary_text", "text": t.thinking});
            let mut done = ids;
            done["part"] = part.clone();
            self.emit(out, "response.reasoning_summary_part.done", done);
            summary.push(part);
        }
        let content = if t.signature.is_empty() {
            Value::Null
        } else {
            json!(encode_reasoning(&json!({"type": "thinking",
                "thinking": t.thinking, "signature": t.signature})))
        };
        let item = json!({"id": t.id, "type": "reasoning", "summary": summary,
            "encrypted_content": content});
        self.item_done(t.at, item, out);
    }

    fn tool_stop(&mut self, t: ToolBlock, out: &mut Out) {
        let input = parse_input(&t.json, &t.start_input);
        let mut item = t.item;
        let ids = json!({"item_id": item["id"], "output_index": t.at});
        if t.custom {
            let text = match &input["input"] {
                Value::String(s) => s.clone(),
                Value::Null if input.as_object().is_some_and(Map::is_empty) => String::new(),
                _ => input.to_string(),
            };
            if !text.is_empty() {
                let mut delta = ids.clone();
                delta["delta"] = json!(text);
                self.emit(out, "response.custom_tool_call_input.delta", delta);
            }
            let mut done = ids;
            done["input"] = json!(text);
            self.emit(out, "response.custom_tool_call_input.done", done);
            item["input"] = json!(text);
        } else {
            let arguments = input.to_string();
            let mut done = ids;
            done["arguments"] = json!(arguments);
            self.emit(out, "response.function_call_arguments.done", done);
            item["arguments"] = json!(arguments);
        }
        item["status"] = json!("completed");
        self.item_done(t.at, item, out);
    }

    /// The search item is done: `result` is the `web_search_tool_result` content (a list of
    /// results, or an error object), None when it never came.
    fn finish_search(&mut self, s: PendingSearch, result: Option<&Value>, out: &mut Out) {
        let (status, sources) = match result {
            Some(Value::Array(results)) => {
                let sources: Vec<Value> = results
                    .iter()
                    .filter_map(|r| r["url"].as_str())
                    .map(|url| json!({"type": "url", "url": url}))
                    .collect();
                ("completed", sources)
            }
            Some(_) => ("failed", Vec::new()),
            None => ("incomplete", Vec::new()),
        };
        if status == "completed" {
            self.emit(
                out,
                "response.web_search_call.completed",
                json!({"output_index": s.at, "item_id": s.id}),
            );
        }
        let item = json!({"id": s.id, "type": "web_search_call", "status": status,
            "action": {"type": "search", "query": s.query, "sources": sources}});
        self.item_done(s.at, item, out);
    }
}

/// A tool block's input, as the Collector computes it: the streamed JSON if any (`{}` when it
/// does not parse, e.g. cut by max_tokens), else the input the block started with.
fn parse_input(streamed: &str, start: &Value) -> Value {
    if streamed.is_empty() {
        if start.is_object() {
            start.clone()
        } else {
            json!({})
        }
    } else {
        serde_json::from_str(streamed).unwrap_or_else(|_| json!({}))
    }
}

/// Anthropic usage → Responses usage.
fn usage(u: &Map<String, Value>) -> Value {
    let c = answer::counts(&Value::Object(u.clone()));
    json!({
        "input_tokens": c.input,
        "input_tokens_details": {"cached_tokens": c.cached},
        "output_tokens": c.output,
        // Anthropic does not report thinking tokens separately.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": c.input + c.output,
    })
}

/// The request fields every Response object echoes, with OpenAI's defaults.
fn echo_fields(req: &Value) -> Map<String, Value> {
    let field = |k: &str, default: Value| match req.get(k) {
        Some(v) if !v.is_null() => v.clone(),
        _ => default,
    };
    let reasoning = &req["reasoning"];
    let mut m = Map::new();
    for (k, v) in [
        ("instructions", field("instructions", Value::Null)),
        ("max_output_tokens", field("max_output_tokens", Value::Null)),
        ("metadata", field("metadata", json!({}))),
        (
            "parallel_tool_calls",
            field("parallel_tool_calls", json!(true)),
        ),
        ("previous_response_id", Value::Null),
        (
            "reasoning",
            json!({"effort": reasoning["effort"], "summary": reasoning["summary"]}),
        ),
        ("store", field("store", json!(true))),
        ("temperature", field("temperature", json!(1.0))),
        ("text", field("text", json!({"format": {"type": "text"}}))),
        ("tool_choice", field("tool_choice", json!("auto"))),
        ("tools", field("tools", json!([]))),
        ("top_p", field("top_p", json!(1.0))),
        ("truncation", field("truncation", json!("disabled"))),
    ] {
        m.insert(k.into(), v);
    }
    m
}
