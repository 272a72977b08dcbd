//! The CLI's transcript: its stream-json stdout read line by line into Anthropic stream events
//! (tool blocks dropped, except calls of the request's own tools through the bridge, which pass
//! on under the client's tool names), the stream completed from the final answer when the CLI did not
//! stream all of it, and its failures mapped to [`CliError`]s whose text never carries a
//! secret. Pure: no I/O, so it is tested on canned lines.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitStatus;

use serde_json::{json, Value};

use crate::anthropic::event::Event;
use crate::anthropic::usage::Usage;
use crate::backends::cli::bridge::ToolNames;
use crate::backends::cli::interface::{CliAnswer, CliError};

/// Longest CLI-provided text put into an error message.
const MAX_DETAIL: usize = 300;

/// What the CLI printed, read line by line (pure: no I/O, unit-tested on canned lines).
#[derive(Default)]
pub(super) struct Transcript {
    relay: Relay,
    /// `model` of the `system/init` line.
    init_model: Option<String>,
    /// The last real (non-synthetic) `assistant` message.
    assistant: Option<Value>,
    /// The `error` kind of a synthetic assistant message (`rate_limit`, `authentication_failed`…).
    error_kind: Option<String>,
    /// The final `result` line.
    result: Option<Value>,
    /// Non-JSON stdout lines (usage errors and the like), last few only.
    noise: Vec<String>,
}

impl Transcript {
    /// A transcript whose answer may call the request's tools (`names`, as bridged).
    pub(super) fn with_tools(names: ToolNames) -> Transcript {
        let mut t = Transcript::default();
        t.relay.names = names;
        t
    }

    /// Whether the answer so far ended with calls of the request's tools (`stop_reason:
    /// tool_use`): the client must run them, while the CLI waits on the bridge.
    pub(super) fn ends_in_tool_calls(&self) -> bool {
        self.relay.stopped
            && self.relay.stop_reason.as_deref() == Some("tool_use")
            && !self.relay.tool_ids.is_empty()
    }

    /// Whether the CLI's `assistant` lines hold calls of the client's tools that did not stream
    /// (the CLI got them through its non-streaming fallback): the answer must end at them
    /// once the CLI waits on the bridge ([`Transcript::end_at_unstreamed_calls`]).
    pub(super) fn has_unstreamed_calls(&self) -> bool {
        let Some(content) = self
            .assistant
            .as_ref()
            .and_then(|m| m["content"].as_array())
        else {
            return false;
        };
        !self.relay.stopped
            && content.iter().any(|b| {
                b["type"] == "tool_use"
                    && b["name"]
                        .as_str()
                        .is_some_and(|n| self.relay.names.from_upstream(n).is_some())
                    && !self.relay.tool_ids.iter().any(|t| b["id"] == t.as_str())
            })
    }

    /// The events that end the answer at the calls of [`Transcript::has_unstreamed_calls`],
    /// made from the CLI's `assistant` lines; afterwards the answer ends in tool calls.
    pub(super) fn end_at_unstreamed_calls(
        &mut self,
        requested_model: &str,
    ) -> Result<Vec<Event>, CliError> {
        let message = self.assistant.clone().unwrap_or_default();
        let model = self.model(requested_model);
        self.relay.usage.merge(&message["usage"]);
        let usage = self.relay.usage;
        self.relay.complete(&message, &model, usage, "tool_use")
    }

    /// The ids of the tool calls this answer passed on.
    pub(super) fn tool_ids(&self) -> Vec<String> {
        self.relay.tool_ids.clone()
    }

    /// The answer that ended in tool calls (see [`Transcript::ends_in_tool_calls`]), from what
    /// streamed: the CLI has printed no `result` line yet.
    pub(super) fn tool_answer(&self, requested_model: &str) -> CliAnswer {
        CliAnswer {
            model: self.model(requested_model),
            text: self
                .relay
                .blocks
                .values()
                .map(|(t, _)| t.as_str())
                .collect(),
            usage: self.relay.usage,
            duration_ms: 0,
        }
    }

    /// Reads one stdout line; returns the stream events to pass on.
    pub(super) fn feed(&mut self, line: &str) -> Vec<Event> {
        let Ok(mut v) = serde_json::from_str::<Value>(line) else {
            if !line.trim().is_empty() {
                self.noise.push(line.chars().take(1000).collect());
                if self.noise.len() > 5 {
                    self.noise.remove(0);
                }
            }
            return Vec::new();
        };
        match v["type"].as_str() {
            Some("stream_event") => return self.relay.push(v["event"].take()),
            Some("system") if v["subtype"] == "init" => {
                self.init_model = v["model"].as_str().map(String::from);
            }
            Some("assistant") => {
                let synthetic = v["message"]["model"] == "<synthetic>"
                    || v["is_api_error_message"] == true
                    || v.get("error").is_some_and(|e| !e.is_null());
                if synthetic {
                    self.error_kind = v["error"].as_str().map(String::from);
                } else {
                    self.add_assistant(&v["message"]);
                }
            }
            Some("result") => self.result = Some(v),
            _ => {}
        }
        Vec::new()
    }

    /// Keeps the final assistant message. The CLI prints one `assistant` line per content
    /// block (same message id, that block only), so blocks of the same message are appended.
    fn add_assistant(&mut self, message: &Value) {
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        match &mut self.assistant {
            Some(m) if m["id"] == message["id"] && !message["id"].is_null() => {
                if let Some(content) = m["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => self.assistant = Some(message.clone()),
        }
    }

    /// The real model id: from the stream, the assistant message, `modelUsage` or the init
    /// line, in that order; `[1m]`-style suffixes removed.
    fn model(&self, requested: &str) -> String {
        let usage_key = self.result.as_ref().and_then(|r| {
            r["modelUsage"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
        });
        let id = [
            self.relay.model.clone(),
            self.assistant
                .as_ref()
                .and_then(|m| m["model"].as_str().map(String::from)),
            usage_key,
            self.init_model.clone(),
        ]
        .into_iter()
        .flatten()
        .find(|m| !m.is_empty() && m != "<synthetic>")
        .unwrap_or_else(|| requested.to_string());
        match id.find('[') {
            Some(i) if id.ends_with(']') && i > 0 => id[..i].to_string(),
            _ => id,
        }
    }

    /// Turns the finished transcript (and how the CLI exited, with the tail of its stderr) into
    /// the answer or the error, completing the event stream when the CLI got its answer without
    /// streaming all of it.
    pub(super) fn finish(
        self,
        status: ExitStatus,
        stderr: &str,
        requested_model: &str,
        on_event: &mut dyn FnMut(&Event) -> bool,
        how_to_log_in: &str,
    ) -> Result<CliAnswer, CliError> {
        let status = status.code();
        let Some(result) = &self.result else {
            return Err(self.failure_without_result(status, stderr, how_to_log_in));
        };
        let as_string = |v: &Value| v.as_str().map(str::to_string);
        let detail = as_string(&result["result"])
            .or_else(|| {
                result["errors"].as_array().map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .unwrap_or_default();
        if result["is_error"] != false || status.is_some_and(|c| c != 0) {
            return Err(classify(
                self.error_kind.as_deref(),
                result["api_error_status"].as_u64(),
                result["subtype"].as_str().unwrap_or(""),
                &detail,
                how_to_log_in,
            ));
        }
        let mut usage = Usage::default();
        usage.merge(&result["usage"]);
        let model = self.model(requested_model);
        let text = match as_string(&result["result"]) {
            Some(t) => t,
            None => self
                .assistant
                .as_ref()
                .map(crate::anthropic::collector::text_of)
                .unwrap_or_default(),
        };
        let stop_reason = result["stop_reason"].as_str().unwrap_or("end_turn");
        let final_message = self.assistant.clone().unwrap_or_else(
            || json!({"content": [{"type": "text", "text": text}], "stop_reason": stop_reason}),
        );
        let mut relay = self.relay;
        for ev in relay.complete(&final_message, &model, usage, stop_reason)? {
            if !on_event(&ev) {
                return Err(CliError::Failed("client went away".into()));
            }
        }
        Ok(CliAnswer {
            model,
            text,
            usage,
            duration_ms: 0,
        })
    }

    /// The CLI ended without its `result` line: a crash, a usage error or a refused start.
    fn failure_without_result(
        &self,
        status: Option<i32>,
        stderr: &str,
        how_to_log_in: &str,
    ) -> CliError {
        let said: Vec<&str> = self
            .noise
            .iter()
            .map(String::as_str)
            .chain(stderr.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let last = said.iter().rev().take(3).rev().cloned().collect::<Vec<_>>();
        if says_not_logged_in(&said.join("\n")) {
            return CliError::NotLoggedIn(how_to_log_in.to_string());
        }
        let code = status.map_or("no status".to_string(), |c| format!("status {c}"));
        let detail = short(&last.join(" | "));
        CliError::Failed(if detail.is_empty() {
            format!("the Claude Code CLI exited ({code}) without an answer")
        } else {
            format!("the Claude Code CLI exited ({code}) without an answer: {detail}")
        })
    }
}

/// Whether what the CLI printed (outside its JSON) says it is not logged in: a run that ended
/// without an answer, or `claude auth status` without a login state.
pub(super) fn says_not_logged_in(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.contains("not logged in") || lower.contains("/login")
}

/// Maps a failed `result` to an error. The CLI says `subtype: success` even for API errors,
/// so only `is_error`, the synthetic message's `error` kind, `api_error_status` and the text
/// count.
fn classify(
    kind: Option<&str>,
    api_status: Option<u64>,
    subtype: &str,
    detail: &str,
    how_to_log_in: &str,
) -> CliError {
    let lower = detail.to_lowercase();
    let said = short(detail);
    // Any one sign counts: the synthetic message's `error` kind, the status, or the words.
    let says = |want_kind: &str, want_status: u64, words: &[&str]| {
        kind == Some(want_kind)
            || api_status == Some(want_status)
            || words.iter().any(|w| lower.contains(w))
    };
    let limited = [
        "rate limit",
        "usage limit",
        "hit your limit",
        "limit reached",
    ];
    if says("rate_limit", 429, &limited) {
        return CliError::RateLimited(format!("the upstream is limiting this account: {said}"));
    }
    let logged_out = [
        "not logged in",
        "please run /login",
        "invalid api key",
        "oauth token has expired",
        "token has expired",
        "failed to authenticate",
    ];
    if says("authentication_failed", 401, &logged_out) {
        return CliError::NotLoggedIn(format!("{how_to_log_in} (the CLI said: {said})"));
    }
    if lower.contains("timed out") || kind == Some("timeout") {
        return CliError::Timeout;
    }
    if subtype == "error_max_turns" {
        return CliError::Failed(
            "the model asked to use a tool, but this backend runs Claude Code with every tool \
             turned off"
                .into(),
        );
    }
    if said.is_empty() {
        return CliError::Failed(format!("the Claude Code CLI failed ({subtype})"));
    }
    CliError::Failed(format!("the Claude Code CLI failed: {said}"))
}

/// Whether a content block type is a tool call of some kind (never passed on).
fn is_tool_block(kind: &str) -> bool {
    kind == "tool_use" || kind.ends_with("_tool_use")
}

/// Passes on the first message's stream events, minus tool blocks, and remembers what it
/// passed so the stream can be completed from the final answer.
#[derive(Default)]
struct Relay {
    started: bool,
    stopped: bool,
    /// A second `message_start` came (a retry after a broken stream): ignore the rest.
    ignoring: bool,
    model: Option<String>,
    /// The request's tools as bridged: a `tool_use` of one of them passes on, renamed.
    names: ToolNames,
    /// Indices of tool blocks (dropped).
    skip: HashSet<u64>,
    /// The ids of the tool calls passed on.
    tool_ids: Vec<String>,
    /// `stop_reason` of the passed `message_delta`.
    stop_reason: Option<String>,
    /// The usage of `message_start` and `message_delta`.
    usage: Usage,
    /// Text streamed per block index, and whether that block was closed.
    blocks: BTreeMap<u64, (String, bool)>,
    /// A `message_delta` was passed on.
    delta_sent: bool,
    /// The upstream turn just ended calling only tools that are not the client's (a built-in
    /// the CLI refuses): the CLI makes another upstream call, whose events continue this
    /// message (its `message_start` swallowed, its block indices moved up by `offset`).
    between: bool,
    /// Added to the block indices of a continued turn.
    offset: u64,
    /// One past the highest block index seen (offset included).
    next_index: u64,
}

impl Relay {
    /// Takes one stream event (edited in place: block indices moved, tool names renamed).
    fn push(&mut self, mut event: Value) -> Vec<Event> {
        let name = event["type"].as_str().unwrap_or("").to_string();
        if self.ignoring || self.stopped {
            return Vec::new();
        }
        let index = event["index"].as_u64().map(|i| i + self.offset);
        if let Some(i) = index {
            event["index"] = i.into();
            self.next_index = self.next_index.max(i + 1);
        }
        match name.as_str() {
            "message_start" if self.between => {
                self.between = false;
                self.offset = self.next_index;
                self.usage.merge(&event["message"]["usage"]);
                return Vec::new();
            }
            "message_start" if self.started => {
                self.ignoring = true;
                return Vec::new();
            }
            "message_start" => {
                self.started = true;
                self.model = event["message"]["model"].as_str().map(String::from);
                self.usage.merge(&event["message"]["usage"]);
            }
            _ if !self.started => return Vec::new(),
            "content_block_start" => {
                let i = index.unwrap_or(0);
                let kind = event["content_block"]["type"].as_str().unwrap_or("");
                let upstream = event["content_block"]["name"].as_str().unwrap_or("");
                let ours = self.names.from_upstream(upstream).map(String::from);
                match ours {
                    Some(client) if kind == "tool_use" => {
                        // A call of the client's tool: passed on under the client's name.
                        event["content_block"]["name"] = client.into();
                        if let Some(id) = event["content_block"]["id"].as_str() {
                            self.tool_ids.push(id.to_string());
                        }
                        self.blocks.insert(i, (String::new(), false));
                        return vec![Event { name, data: event }];
                    }
                    _ if is_tool_block(kind) => {
                        self.skip.insert(i);
                        return Vec::new();
                    }
                    _ => {}
                }
                let text = event["content_block"]["text"].as_str().unwrap_or("");
                self.blocks.insert(i, (text.to_string(), false));
            }
            "content_block_delta" | "content_block_stop" => {
                let i = index.unwrap_or(0);
                if self.skip.contains(&i) {
                    return Vec::new();
                }
                if let Some((text, closed)) = self.blocks.get_mut(&i) {
                    if name == "content_block_stop" {
                        *closed = true;
                    } else if let Some(t) = event["delta"]["text"].as_str() {
                        text.push_str(t);
                    }
                }
            }
            // A turn that called only tools that are not the client's: the CLI answers those
            // itself (refusing them) and calls the upstream again, which continues this answer.
            "message_delta"
                if event["delta"]["stop_reason"] == "tool_use"
                    && self.tool_ids.is_empty()
                    && !self.names.is_empty() =>
            {
                self.usage.merge(&event["usage"]);
                self.between = true;
                return Vec::new();
            }
            "message_stop" if self.between => return Vec::new(),
            "message_delta" => {
                self.delta_sent = true;
                self.stop_reason = event["delta"]["stop_reason"].as_str().map(String::from);
                self.usage.merge(&event["usage"]);
            }
            "message_stop" => self.stopped = true,
            // `ping` carries nothing; an `error` event is not the end: the CLI retries, and
            // the final result decides what the caller hears.
            _ => return Vec::new(),
        }
        vec![Event { name, data: event }]
    }

    /// The events still missing for a complete stream of `message` (none when the CLI streamed
    /// everything). A streamed text that the final answer does not continue cannot be mended.
    fn complete(
        &mut self,
        message: &Value,
        model: &str,
        usage: Usage,
        stop_reason: &str,
    ) -> Result<Vec<Event>, CliError> {
        if self.stopped {
            return Ok(Vec::new());
        }
        let ev = |data: Value| Event {
            name: data["type"].as_str().unwrap_or("").to_string(),
            data,
        };
        let mut out = Vec::new();
        if !self.started {
            let id = message["id"].as_str().unwrap_or("msg_claude_cli");
            out.push(ev(json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": usage.input, "output_tokens": 0,
                          "cache_read_input_tokens": usage.cache_read,
                          "cache_creation_input_tokens": usage.cache_creation}}})));
        }
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        let broken = || CliError::Failed("the answer stream broke and could not be mended".into());
        for (i, block) in blocks.iter().enumerate() {
            let i = i as u64 + self.offset;
            let kind = block["type"].as_str().unwrap_or("");
            let upstream = block["name"].as_str().unwrap_or("");
            let client = self.names.from_upstream(upstream).map(String::from);
            if let (Some(client), "tool_use", None) = (client, kind, self.blocks.get(&i)) {
                // A call of the client's tool that never streamed: made up whole.
                let id = block["id"].as_str().unwrap_or("").to_string();
                out.push(ev(json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": id, "name": client, "input": {}}})));
                out.push(ev(json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta",
                              "partial_json": block["input"].to_string()}})));
                out.push(ev(json!({"type": "content_block_stop", "index": i})));
                self.tool_ids.push(id);
                continue;
            }
            if self.skip.contains(&i) || (is_tool_block(kind) && !self.blocks.contains_key(&i)) {
                continue;
            }
            match self.blocks.get(&i) {
                Some((_, true)) => {}
                Some((_, false)) if kind != "text" => {
                    out.push(ev(json!({"type": "content_block_stop", "index": i})));
                }
                Some((streamed, false)) => {
                    let full = block["text"].as_str().ok_or_else(broken)?;
                    let rest = full.strip_prefix(streamed.as_str()).ok_or_else(broken)?;
                    if !rest.is_empty() {
                        out.push(ev(json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "text_delta", "text": rest}})));
                    }
                    out.push(ev(json!({"type": "content_block_stop", "index": i})));
                }
                None if kind == "text" => {
                    out.push(ev(json!({"type": "content_block_start", "index": i,
                        "content_block": {"type": "text", "text": ""}})));
                    out.push(ev(json!({"type": "content_block_delta", "index": i,
                        "delta": {"type": "text_delta", "text": block["text"]}})));
                    out.push(ev(json!({"type": "content_block_stop", "index": i})));
                }
                // Thinking and other blocks that never streamed: the answer is complete
                // without them, and their signatures cannot be replayed faithfully.
                None => {}
            }
        }
        if !self.delta_sent {
            self.delta_sent = true;
            self.stop_reason = Some(stop_reason.to_string());
            out.push(ev(json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": usage.output}})));
        }
        out.push(ev(json!({"type": "message_stop"})));
        self.stopped = true;
        Ok(out)
    }
}

// --- Keeping secrets out of error messages ----------------------------------------------------

/// Redacted, single-line and at most [`MAX_DETAIL`] characters.
fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = crate::base::redact::redact(&one_line);
    if clean.chars().count() > MAX_DETAIL {
        let cut: String = clean.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else {
        clean
    }
}
