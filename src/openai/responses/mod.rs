//! `/v1/responses` (the OpenAI Responses API) ⇄ Anthropic Messages. This file owns the request
//! translation ([`translate_request`]), the stream translator ([`ResponsesStream`]) and the
//! non-streaming Response object ([`response_object`]). Pure: no I/O, tested with the golden
//! files in `tests/golden/responses/`.
//!
//! # Request parameters
//!
//! | parameter | what happens |
//! |---|---|
//! | `model` | required; resolved through the alias table; echoed as the client sent it |
//! | `input` | a string (one user message) or a list of items, see below |
//! | `instructions` | the first `system` block |
//! | `stream` | the client's choice; upstream is always streamed |
//! | `max_output_tokens` | `max_tokens`; default 8192, or 32000 when thinking is asked for |
//! | `reasoning.effort` | thinking, see the table below; `none` or absent: no thinking |
//! | `reasoning.summary` | on adaptive models, `auto`/`concise`/`detailed` ask for summarized thinking text (`thinking.display`) |
//! | `temperature` (0–2) | sent clamped to Anthropic's 0–1; dropped while thinking is on |
//! | `top_p` | sent only without `temperature` (newer models refuse both) and without thinking |
//! | `tools`, `tool_choice`, `parallel_tool_calls` | see the tools section |
//! | `text.format` | `json_schema` → `output_config.format`; `json_object` → a closing system line asking for one JSON object; `text` → nothing |
//! | `text.verbosity`, `metadata`, `user`, `safety_identifier`, `prompt_cache_key`, `prompt_cache_retention`, `service_tier`, `client_metadata`, `stream_options` | accepted; not sent upstream (`metadata` is echoed) |
//! | `store` | accepted and echoed; nothing is ever stored, so nothing is retrievable |
//! | `truncation` | `disabled` or `auto` accepted (we never truncate; a too-long input fails upstream) |
//! | `include` | accepted; `reasoning.encrypted_content` is always included anyway; `message.output_text.logprobs` → 400 |
//! | `top_logprobs` | 0 or null only |
//! | `previous_response_id`, `conversation`, `prompt`, `background: true`, `max_tool_calls` | 400: we keep no server-side state and cannot bound tool calls |
//! | anything else | 400 naming the parameter |
//!
//! # Input items
//!
//! - **Messages** (`{"type":"message",…}` or the shorthand `{"role":…,"content":…}`): `user`
//!   parts `input_text`, `input_image` (data URL → base64 image, `http(s)` URL → url image;
//!   `image_url` as a string or `{"url":…}`), `input_file` (a PDF as `file_data` — data URL or
//!   bare base64 with a `.pdf` filename — or `file_url`; `file_id` → 400, we store no files);
//!   `assistant` parts are text only; `system`/`developer` text joins the top-level `system`
//!   after `instructions`, in order, wherever the item sits. Empty texts are skipped (Anthropic
//!   rejects empty text blocks).
//! - **`function_call`** → assistant `tool_use` (id = `call_id` byte for byte; arguments that are
//!   not a JSON object become `{}`); **`custom_tool_call`** → `tool_use` with `{"input": …}`;
//!   **`function_call_output`** / **`custom_tool_call_output`** → user `tool_result` (string or
//!   text/image/file parts).
//! - **`reasoning`** → an assistant `thinking` / `redacted_thinking` block, only when its
//!   `encrypted_content` is ours (below); foreign or missing content is dropped, since Anthropic
//!   cannot verify it. **`web_search_call`** items are dropped (the results cannot be replayed).
//!   Any other item type → 400.
//! - Consecutive same-role turns are merged. Within a user turn the `tool_result`s lead; within
//!   an assistant turn the thinking blocks lead, as Anthropic requires.
//!
//! # `encrypted_content`
//!
//! A reasoning item's `encrypted_content` is `claudegate:v1:` followed by the standard base64
//! (with padding) of the JSON of the Anthropic block itself: `{"type":"thinking","thinking":…,
//! "signature":…}` or `{"type":"redacted_thinking","data":…}`. It carries the thinking text as
//! well as the signature, so a replay does not depend on the client keeping `summary` intact.
//! A thinking block without a signature gets `encrypted_content: null` (it could not be replayed).
//!
//! # Thinking
//!
//! | `reasoning.effort` | adaptive models (opus/sonnet ≥ 4.6, any Claude ≥ 5) | budget models (the rest) |
//! |---|---|---|
//! | `minimal` | `thinking: adaptive`, `output_config.effort: low` | `budget_tokens` 1024 |
//! | `low` | adaptive, effort `low` | 2048 |
//! | `medium` | adaptive, effort `medium` | 8192 |
//! | `high` | adaptive, effort `high` | 16384 |
//! | `xhigh` | adaptive, effort `xhigh` (opus ≥ 4.7, Claude ≥ 5) or `max` | 24576 |
//!
//! Budgets are cut to leave 1024 tokens for the answer (`budget ≤ max_tokens − 1024`); below
//! 1024 there is no thinking. A forced `tool_choice` (`required` or a named tool) drops
//! `thinking` (the effort stays). On budget models thinking is also dropped when the last
//! assistant turn calls a tool without a leading thinking block (its reasoning was not replayed),
//! which Anthropic would reject.
//!
//! # Tools
//!
//! - `function` → `{name, description, input_schema: parameters}` (`strict` ignored).
//! - `custom` (freeform, e.g. Codex's `apply_patch`) → a tool taking `{"input": string}`; a
//!   grammar is appended to the description. Calls come back as `custom_tool_call` items.
//! - `namespace` → its `function`/`custom` children, flattened to `<namespace>__<name>` (the
//!   namespace's trailing and the name's leading `_` trimmed, as Codex does); a name already
//!   taken gets `_2`, `_3`, …. Calls come back with `namespace` and the short `name`.
//! - `web_search` / `web_search_preview` (Codex declares it on every request) → Anthropic's
//!   `web_search_20250305` server tool: `max_uses` 3/5/10 by `search_context_size`
//!   low/medium/high, `filters.allowed_domains` and `user_location` kept. Declared with
//!   `external_web_access: false` (no live access, Codex's default) it is left out.
//! - `tool_search` is dropped: deferred tools are declared directly.
//! - Other hosted tools (`file_search`, `code_interpreter`, `computer_use_preview`,
//!   `image_generation`, `mcp`, `local_shell`, …) → 400 naming the type.
//! - `tool_choice`: `auto` → default, `none` → `none`, `required` → `any`, `{"type":"function"|
//!   "custom","name"}` → `tool`; `parallel_tool_calls: false` → `disable_parallel_tool_use`.
//!
//! # Output
//!
//! - Items get `output_index` 0, 1, 2… in the order we emit them, and ids
//!   `<prefix>_<response id without resp_>_<output_index>`: `rs_` reasoning (one per thinking
//!   block), `msg_` message (one per run of consecutive text blocks, with a single
//!   `output_text` part holding the whole run), `fc_` function call, `ctc_` custom tool call,
//!   `ws_` web search call (`action.query` and `action.sources` from the search).
//! - `web_search_result_location` citations become `url_citation` annotations over their text
//!   block's span of the part, counted in characters.
//! - A custom tool's input is sent as one delta when its block ends. Function arguments are
//!   re-serialised compactly at the end (`.done`), so the stream and the non-streaming object
//!   agree exactly (the collected message only keeps the parsed input).
//! - `stop_reason` `max_tokens` (or a full context window) gives `status: "incomplete"` with
//!   reason `max_output_tokens`, `refusal` reason `content_filter`; the final event is
//!   `response.completed` either way (the SDKs' `get_final_response()` needs it).
//! - An upstream failure after the first byte (an `error` event, or [`ResponsesStream::fail`])
//!   ends with `response.failed`: `error.code` is `rate_limit_exceeded` for a
//!   `rate_limit_error`, `invalid_prompt` for an `invalid_request_error`, else `server_error`;
//!   `output` lists the items finished so far.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{TranslateError, Translated};
use crate::anthropic::betas;
use crate::anthropic::event::Event;

/// `max_tokens` when the client sets no `max_output_tokens` and asks for no thinking.
const DEFAULT_MAX_TOKENS: u64 = 8192;
/// … and when it asks for thinking: room for both the thinking and the answer.
const DEFAULT_MAX_TOKENS_THINKING: u64 = 32000;
/// Anthropic's smallest thinking budget; also the room kept for the answer.
const MIN_BUDGET: u64 = 1024;
/// Marks `encrypted_content` we wrote (see the module docs).
const REASONING_PREFIX: &str = "claudegate:v1:";
/// Anthropic has no JSON mode: `text.format: json_object` becomes this closing system line.
const JSON_OBJECT_HINT: &str =
    "Respond with a single valid JSON object only, with no text before or after it.";

/// Every top-level parameter we accept; anything else is refused by name.
const ACCEPTED: &[&str] = &[
    "model",
    "input",
    "instructions",
    "stream",
    "stream_options",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "metadata",
    "store",
    "truncation",
    "include",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "client_metadata",
    "top_logprobs",
    "background",
    "previous_response_id",
    "conversation",
    "prompt",
    "max_tool_calls",
];

/// OpenAI's hosted web search tool, under all its names.
const WEB_SEARCH_TYPES: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
];

fn err(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

fn is_absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Translates a Responses request into an Anthropic Messages request (always streamed).
pub fn translate_request(
    req: &Value,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Translated, TranslateError> {
    let Some(obj) = req.as_object() else {
        return Err(TranslateError {
            param: None,
            message: "the request body must be a JSON object".into(),
        });
    };
    check_parameters(obj)?;
    let client_model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(err("model", "`model` is required and must be a string")),
    };
    let model = resolve(&client_model);
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err("stream", "`stream` must be a boolean")),
    };

    let tools = ToolTable::build(obj.get("tools"))?;
    let mut system = Vec::new();
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => push_text(&mut system, s),
        Some(_) => return Err(err("instructions", "`instructions` must be a string")),
    }
    let (item_system, messages) = convert_input(obj.get("input"), &tools)?;
    system.extend(item_system);
    let (format, json_object) = convert_text(obj.get("text"))?;
    if json_object {
        push_text(&mut system, JSON_OBJECT_HINT);
    }
    let tool_choice = convert_tool_choice(
        obj.get("tool_choice"),
        obj.get("parallel_tool_calls"),
        &tools,
    )?;
    let forced = tool_choice
        .as_ref()
        .and_then(|c| c["type"].as_str())
        .is_some_and(|t| t == "any" || t == "tool");
    let (effort, summary) = parse_reasoning(obj.get("reasoning"))?;
    let wants_thinking = effort.is_some_and(|e| e != "none");

    let max_tokens = match obj.get("max_output_tokens") {
        None | Some(Value::Null) if wants_thinking && !forced => DEFAULT_MAX_TOKENS_THINKING,
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n,
            _ => {
                return Err(err(
                    "max_output_tokens",
                    "`max_output_tokens` must be a positive integer",
                ))
            }
        },
    };
    let plan = plan_thinking(
        effort,
        summary,
        model_family(&model),
        forced,
        max_tokens,
        &messages,
    );
    let temperature = number_in(obj.get("temperature"), "temperature", 2.0)?;
    let top_p = number_in(obj.get("top_p"), "top_p", 1.0)?;

    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !tools.anthropic.is_empty() {
        body.insert("tools".into(), Value::Array(tools.anthropic.clone()));
    }
    if let Some(choice) = tool_choice {
        body.insert("tool_choice".into(), choice);
    }
    let mut betas = Vec::new();
    let mut output_config = Map::new();
    if let Some(level) = plan.effort {
        output_config.insert("effort".into(), json!(level));
        betas.push(betas::EFFORT);
    }
    if let Some(format) = format {
        output_config.insert("format".into(), format);
        betas.push(betas::STRUCTURED_OUTPUTS);
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }
    match plan.thinking {
        // Anthropic requires the default sampling while thinking.
        Some(thinking) => {
            body.insert("thinking".into(), thinking);
        }
        None => {
            if let Some(t) = temperature {
                body.insert("temperature".into(), json!(t.min(1.0)));
            } else if let Some(p) = top_p {
                body.insert("top_p".into(), json!(p));
            }
        }
    }
    body.insert("stream".into(), json!(true));

    Ok(Translated {
        body: Value::Object(body),
        stream,
        client_model,
        betas,
        include_usage: false,
    })
}

/// Refuses unknown parameters and the accepted ones whose values we cannot honour.
fn check_parameters(obj: &Map<String, Value>) -> Result<(), TranslateError> {
    if let Some(unknown) = obj.keys().find(|k| !ACCEPTED.contains(&k.as_str())) {
        return Err(err(
            unknown.as_str(),
            format!(
                "unsupported parameter `{unknown}`; claudegate's /v1/responses accepts: {}",
                ACCEPTED.join(", ")
            ),
        ));
    }
    let set = |k: &str| !is_absent(obj.get(k));
    if set("previous_response_id") {
        return Err(err(
            "previous_response_id",
            "claudegate keeps no server-side state, so `previous_response_id` cannot be resolved; \
             send the whole conversation in `input` (with `store: false`)",
        ));
    }
    if set("conversation") {
        return Err(err(
            "conversation",
            "claudegate keeps no conversations; send the whole conversation in `input`",
        ));
    }
    if set("prompt") {
        return Err(err(
            "prompt",
            "stored prompts are not supported; send `instructions` and `input` instead",
        ));
    }
    if obj
        .get("background")
        .is_some_and(|b| b != &json!(false) && !b.is_null())
    {
        return Err(err(
            "background",
            "background responses are not supported: claudegate stores no responses to poll",
        ));
    }
    if set("max_tool_calls") {
        return Err(err(
            "max_tool_calls",
            "`max_tool_calls` is not supported: the upstream cannot bound the number of tool calls",
        ));
    }
    if obj
        .get("top_logprobs")
        .is_some_and(|v| !v.is_null() && v.as_u64() != Some(0))
    {
        return Err(err("top_logprobs", "log probabilities are not available"));
    }
    match obj.get("truncation") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "disabled" || s == "auto" => {}
        Some(_) => {
            return Err(err(
                "truncation",
                "`truncation` must be \"disabled\" or \"auto\"",
            ))
        }
    }
    match obj.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                match v.as_str() {
                    Some("message.output_text.logprobs") => {
                        return Err(err(
                            format!("include[{i}]"),
                            "log probabilities are not available",
                        ))
                    }
                    Some(_) => {}
                    None => return Err(err(format!("include[{i}]"), "must be a string")),
                }
            }
        }
        Some(_) => return Err(err("include", "`include` must be a list of strings")),
    }
    Ok(())
}

/// A number within `0..=max`, or nothing.
fn number_in(v: Option<&Value>, name: &str, max: f64) -> Result<Option<f64>, TranslateError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if (0.0..=max).contains(&n) => Ok(Some(n)),
            _ => Err(err(
                name,
                format!("`{name}` must be a number between 0 and {max}"),
            )),
        },
    }
}

/// `reasoning` → (effort, whether a summary is asked for).
fn parse_reasoning(v: Option<&Value>) -> Result<(Option<&str>, bool), TranslateError> {
    let r = match v {
        None | Some(Value::Null) => return Ok((None, false)),
        Some(Value::Object(r)) => r,
        Some(_) => return Err(err("reasoning", "`reasoning` must be an object")),
    };
    let effort = match r.get("effort") {
        None | Some(Value::Null) => None,
        Some(Value::String(e))
            if ["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e.as_str()) =>
        {
            Some(e.as_str())
        }
        Some(_) => {
            return Err(err(
                "reasoning.effort",
                "`reasoning.effort` must be none, minimal, low, medium, high or xhigh",
            ))
        }
    };
    // `generate_summary` is the deprecated name of `summary`.
    let summary = r.get("summary").or_else(|| r.get("generate_summary"));
    let summary = match summary {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "none" => false,
        Some(Value::String(s)) if ["auto", "concise", "detailed"].contains(&s.as_str()) => true,
        Some(_) => {
            return Err(err(
                "reasoning.summary",
                "`reasoning.summary` must be auto, concise, detailed or none",
            ))
        }
    };
    Ok((effort, summary))
}

/// What a model supports for thinking, read from its id.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Family {
    /// Takes `thinking: {"type":"adaptive"}` plus `output_config.effort` (and may refuse budgets).
    adaptive: bool,
    /// Accepts effort `xhigh`.
    xhigh: bool,
}

/// `claude-opus-4-6` → adaptive; `claude-sonnet-4-5-20250929`, `claude-3-7-sonnet-…`, unknown
/// names → budget. Dates (8 digits) and a `[1m]`-style suffix are ignored.
fn model_family(model: &str) -> Family {
    let id = model.split('[').next().unwrap_or("").to_ascii_lowercase();
    let budget = Family {
        adaptive: false,
        xhigh: false,
    };
    if !id.starts_with("claude-") {
        return budget;
    }
    let mut name = "";
    let mut version = Vec::new();
    for part in id.split('-').skip(1) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            if part.len() <= 2 {
                version.push(part.parse::<u32>().unwrap_or(0));
            }
        } else if name.is_empty() {
            name = part;
        }
    }
    let major = version.first().copied().unwrap_or(0);
    let minor = version.get(1).copied().unwrap_or(0);
    let big = name == "opus" || name == "sonnet";
    Family {
        adaptive: major >= 5 || (major == 4 && minor >= 6 && big),
        xhigh: major >= 5 || (major == 4 && minor >= 7 && name == "opus"),
    }
}

/// The thinking settings for one request.
struct ThinkingPlan {
    thinking: Option<Value>,
    effort: Option<&'static str>,
}

/// Applies the effort table of the module docs.
fn plan_thinking(
    effort: Option<&str>,
    summary: bool,
    family: Family,
    forced: bool,
    max_tokens: u64,
    messages: &[Value],
) -> ThinkingPlan {
    let none = ThinkingPlan {
        thinking: None,
        effort: None,
    };
    let Some(effort) = effort.filter(|e| *e != "none") else {
        return none;
    };
    if family.adaptive {
        let level = match effort {
            "minimal" | "low" => "low",
            "medium" => "medium",
            "high" => "high",
            _ if family.xhigh => "xhigh",
            _ => "max",
        };
        if forced {
            return ThinkingPlan {
                thinking: None,
                effort: Some(level),
            };
        }
        let mut thinking = json!({"type": "adaptive"});
        if summary {
            // Newer models omit the thinking text unless asked for it.
            thinking["display"] = json!("summarized");
        }
        return ThinkingPlan {
            thinking: Some(thinking),
            effort: Some(level),
        };
    }
    if forced || unsigned_tool_turn(messages) {
        return none;
    }
    let wanted = match effort {
        "minimal" => 1024,
        "low" => 2048,
        "medium" => 8192,
        "high" => 16384,
        _ => 24576,
    };
    let budget = wanted.min(max_tokens.saturating_sub(MIN_BUDGET));
    if budget < MIN_BUDGET {
        return none;
    }
    ThinkingPlan {
        thinking: Some(json!({"type": "enabled", "budget_tokens": budget})),
        effort: None,
    }
}

/// Whether the last assistant turn calls a tool without a leading thinking block: with manual
/// thinking on, Anthropic refuses such a tool loop.
fn unsigned_tool_turn(messages: &[Value]) -> bool {
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "assistant") else {
        return false;
    };
    let blocks = last["content"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    blocks.iter().any(|b| b["type"] == "tool_use") && !blocks.first().is_some_and(is_thinking)
}

fn is_thinking(block: &Value) -> bool {
    block["type"] == "thinking" || block["type"] == "redacted_thinking"
}

/// `text` → (`output_config.format`, whether `json_object` was asked for).
fn convert_text(v: Option<&Value>) -> Result<(Option<Value>, bool), TranslateError> {
    let text = match v {
        None | Some(Value::Null) => return Ok((None, false)),
        Some(Value::Object(t)) => t,
        Some(_) => return Err(err("text", "`text` must be an object")),
    };
    let format = match text.get("format") {
        None | Some(Value::Null) => return Ok((None, false)),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(err("text.format", "`text.format` must be an object")),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok((None, false)),
        Some("json_object") => Ok((None, true)),
        Some("json_schema") => match format.get("schema") {
            Some(schema @ Value::Object(_)) => Ok((
                Some(json!({"type": "json_schema", "schema": schema})),
                false,
            )),
            _ => Err(err(
                "text.format.schema",
                "`text.format.schema` must be a JSON schema object",
            )),
        },
        _ => Err(err(
            "text.format.type",
            "`text.format.type` must be text, json_object or json_schema",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Input items
// ---------------------------------------------------------------------------------------------

/// Adds a text block unless the text is empty (Anthropic refuses empty text blocks).
fn push_text(blocks: &mut Vec<Value>, text: &str) {
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
}

/// Messages being assembled: consecutive same-role turns merge.
#[derive(Default)]
struct Turns {
    system: Vec<Value>,
    turns: Vec<(&'static str, Vec<Value>)>,
}

impl Turns {
    fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => self.turns.push((role, blocks)),
        }
    }

    /// The Anthropic `messages`: tool results lead user turns, thinking leads assistant turns.
    fn finish(self) -> Vec<Value> {
        self.turns
            .into_iter()
            .map(|(role, blocks)| {
                let leads: fn(&Value) -> bool = if role == "user" {
                    |b| b["type"] == "tool_result"
                } else {
                    is_thinking
                };
                let (mut first, rest): (Vec<Value>, Vec<Value>) =
                    blocks.into_iter().partition(leads);
                first.extend(rest);
                json!({"role": role, "content": first})
            })
            .collect()
    }
}

/// `input` → (system blocks from system/developer items, Anthropic messages).
fn convert_input(
    input: Option<&Value>,
    tools: &ToolTable,
) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut turns = Turns::default();
    match input {
        Some(Value::String(s)) if !s.is_empty() => {
            turns.push("user", vec![json!({"type": "text", "text": s})]);
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                convert_item(item, &format!("input[{i}]"), tools, &mut turns)?;
            }
        }
        None | Some(Value::Null) => return Err(err("input", "`input` is required")),
        Some(_) => {
            return Err(err(
                "input",
                "`input` must be a non-empty string or a list of items",
            ))
        }
    }
    let system = std::mem::take(&mut turns.system);
    let messages = turns.finish();
    if messages.is_empty() {
        return Err(err(
            "input",
            "`input` must contain at least one user or assistant message",
        ));
    }
    Ok((system, messages))
}

/// One input item into the turns.
fn convert_item(
    item: &Value,
    p: &str,
    tools: &ToolTable,
    turns: &mut Turns,
) -> Result<(), TranslateError> {
    if !item.is_object() {
        return Err(err(p, "each input item must be an object"));
    }
    let str_field = |k: &str| -> Result<&str, TranslateError> {
        item.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{p}.{k}"), format!("`{k}` must be a string")))
    };
    match item.get("type").and_then(Value::as_str) {
        None | Some("message") => convert_message(item, p, turns)?,
        Some(kind @ ("function_call" | "custom_tool_call")) => {
            let call_id = str_field("call_id")?;
            let name = str_field("name")?;
            let namespace = item.get("namespace").and_then(Value::as_str);
            let input = if kind == "function_call" {
                parse_arguments(item.get("arguments"))
            } else {
                json!({"input": str_field("input")?})
            };
            turns.push(
                "assistant",
                vec![json!({"type": "tool_use", "id": call_id,
                    "name": tools.flat_name(namespace, name), "input": input})],
            );
        }
        Some("function_call_output" | "custom_tool_call_output") => {
            let call_id = str_field("call_id")?;
            let mut result = json!({"type": "tool_result", "tool_use_id": call_id});
            let pp = format!("{p}.output");
            match item.get("output") {
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::String(s)) => result["content"] = json!(s),
                Some(Value::Array(_)) => {
                    let blocks = user_content(&item["output"], &pp)?;
                    if !blocks.is_empty() {
                        result["content"] = Value::Array(blocks);
                    }
                }
                None | Some(Value::Null) => {}
                // Not in the spec, but seen: a JSON value is passed on as its text.
                Some(other) => result["content"] = json!(other.to_string()),
            }
            turns.push("user", vec![result]);
        }
        Some("reasoning") => {
            // Foreign reasoning (e.g. from an OpenAI model) cannot be verified by Anthropic.
            if let Some(block) = item
                .get("encrypted_content")
                .and_then(Value::as_str)
                .and_then(decode_reasoning)
            {
                turns.push("assistant", vec![block]);
            }
        }
        // Anthropic's search results cannot be replayed; the text that used them stays.
        Some("web_search_call") => {}
        Some("item_reference") => {
            return Err(err(
                format!("{p}.type"),
                "item references are not supported: claudegate stores no items; send the items themselves",
            ))
        }
        Some(other) => {
            return Err(err(
                format!("{p}.type"),
                format!("input items of type `{other}` are not supported"),
            ))
        }
    }
    Ok(())
}

/// A message item (typed or shorthand).
fn convert_message(item: &Value, p: &str, turns: &mut Turns) -> Result<(), TranslateError> {
    let content = &item["content"];
    if !content.is_string() && !content.is_array() {
        return Err(err(
            format!("{p}.content"),
            "`content` must be a string or a list of parts",
        ));
    }
    match item.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => {
            for text in text_parts(content, p)? {
                push_text(&mut turns.system, &text);
            }
        }
        Some("user") => {
            let blocks = user_content(content, &format!("{p}.content"))?;
            turns.push("user", blocks);
        }
        Some("assistant") => {
            let mut blocks = Vec::new();
            for text in text_parts(content, p)? {
                push_text(&mut blocks, &text);
            }
            turns.push("assistant", blocks);
        }
        _ => {
            return Err(err(
                format!("{p}.role"),
                "`role` must be user, assistant, system or developer",
            ))
        }
    }
    Ok(())
}

/// The texts of a system/developer/assistant message: only text parts are allowed there.
fn text_parts(content: &Value, p: &str) -> Result<Vec<String>, TranslateError> {
    let Some(parts) = content.as_array() else {
        return Ok(vec![content.as_str().unwrap_or("").to_string()]);
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let field = match part["type"].as_str() {
            Some("input_text" | "output_text" | "text") => "text",
            Some("refusal") => "refusal",
            _ => {
                return Err(err(
                    format!("{p}.content[{j}].type"),
                    "only text parts are allowed in system, developer and assistant messages",
                ))
            }
        };
        out.push(part[field].as_str().unwrap_or("").to_string());
    }
    Ok(out)
}

/// User (or tool output) content → Anthropic blocks.
fn user_content(content: &Value, p: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    let Some(parts) = content.as_array() else {
        push_text(&mut blocks, content.as_str().unwrap_or(""));
        return Ok(blocks);
    };
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}[{j}]");
        match part["type"].as_str() {
            Some("input_text" | "output_text" | "text") => {
                push_text(&mut blocks, part["text"].as_str().unwrap_or(""))
            }
            Some("input_image") => blocks.push(image_block(part, &pp)?),
            Some("input_file") => blocks.push(file_block(part, &pp)?),
            Some(other) => {
                return Err(err(
                    format!("{pp}.type"),
                    format!("content parts of type `{other}` are not supported"),
                ))
            }
            None => return Err(err(format!("{pp}.type"), "each part needs a `type`")),
        }
    }
    Ok(blocks)
}

const NO_FILES: &str = "file ids are not supported: claudegate stores no files; send the content inline (a data URL) or as an https URL";

/// `input_image` → an Anthropic image block.
fn image_block(part: &Value, p: &str) -> Result<Value, TranslateError> {
    if !is_absent(part.get("file_id")) {
        return Err(err(format!("{p}.file_id"), NO_FILES));
    }
    let url = match part.get("image_url") {
        Some(Value::String(u)) => Some(u.as_str()),
        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
        _ => part.get("url").and_then(Value::as_str),
    };
    let Some(url) = url else {
        return Err(err(
            format!("{p}.image_url"),
            "`image_url` must be a data URL or an https URL",
        ));
    };
    let source = url_source(url, &format!("{p}.image_url"))?;
    Ok(json!({"type": "image", "source": source}))
}

/// A data URL → a base64 source; an http(s) URL → a url source.
fn url_source(url: &str, p: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest.split_once(',').unwrap_or(("", ""));
        return match header.strip_suffix(";base64") {
            Some(media_type) if !media_type.is_empty() && !data.is_empty() => {
                Ok(json!({"type": "base64", "media_type": media_type, "data": data}))
            }
            _ => Err(err(
                p,
                "data URLs must look like data:<media type>;base64,<data>",
            )),
        };
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(err(p, "expected a data URL or an http(s) URL"))
}

/// `input_file` → an Anthropic document block (PDF only).
fn file_block(part: &Value, p: &str) -> Result<Value, TranslateError> {
    if !is_absent(part.get("file_id")) {
        return Err(err(format!("{p}.file_id"), NO_FILES));
    }
    let filename = part.get("filename").and_then(Value::as_str);
    let source = if let Some(data) = part.get("file_data").and_then(Value::as_str) {
        let pp = format!("{p}.file_data");
        let source = if data.starts_with("data:") {
            url_source(data, &pp)?
        } else if filename.is_some_and(|f| f.to_ascii_lowercase().ends_with(".pdf")) {
            json!({"type": "base64", "media_type": "application/pdf", "data": data})
        } else {
            return Err(err(
                pp,
                "`file_data` must be a data URL (or base64 with a .pdf filename)",
            ));
        };
        if source["media_type"] != "application/pdf" {
            return Err(err(pp, "only PDF files are supported"));
        }
        source
    } else if let Some(url) = part.get("file_url").and_then(Value::as_str) {
        let pp = format!("{p}.file_url");
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(err(pp, "`file_url` must be an http(s) URL"));
        }
        json!({"type": "url", "url": url})
    } else {
        return Err(err(
            format!("{p}.file_data"),
            "`input_file` needs `file_data` or `file_url`",
        ));
    };
    let mut block = json!({"type": "document", "source": source});
    if let Some(name) = filename.filter(|f| !f.is_empty()) {
        block["title"] = json!(name);
    }
    Ok(block)
}

/// `arguments` (a JSON string) → a `tool_use` input; anything but a JSON object becomes `{}`,
/// so a broken call in the history (e.g. one cut by max_tokens) does not wedge a session.
fn parse_arguments(args: Option<&Value>) -> Value {
    match args {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({}),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum ToolKind {
    Function,
    Custom,
    WebSearch,
}

/// How the client knows a tool we declared upstream.
#[derive(Debug, Clone)]
struct ClientTool {
    namespace: Option<String>,
    name: String,
    kind: ToolKind,
}

/// The client's tools, flattened for Anthropic, with the way back.
#[derive(Debug, Default)]
struct ToolTable {
    /// The Anthropic `tools`, in declaration order.
    anthropic: Vec<Value>,
    /// Anthropic tool name → the client's tool.
    by_flat: BTreeMap<String, ClientTool>,
    /// (namespace, name) → Anthropic tool name.
    by_qualified: BTreeMap<(String, String), String>,
}

/// Codex's flat name for a namespaced tool.
fn canonical_name(namespace: &str, name: &str) -> String {
    format!(
        "{}__{}",
        namespace.trim_end_matches('_'),
        name.trim_start_matches('_')
    )
}

impl ToolTable {
    fn build(tools: Option<&Value>) -> Result<ToolTable, TranslateError> {
        let list = match tools {
            None | Some(Value::Null) => return Ok(ToolTable::default()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(err("tools", "`tools` must be a list")),
        };
        // Top-level names first, so a flattened name never takes one of them.
        let mut taken = BTreeSet::new();
        for (i, tool) in list.iter().enumerate() {
            let p = format!("tools[{i}]");
            let kind = tool_type(tool, &p)?;
            let name = match kind {
                "function" | "custom" => required_str(tool, "name", &p)?,
                k if WEB_SEARCH_TYPES.contains(&k) => "web_search",
                _ => continue,
            };
            if !taken.insert(name.to_string()) {
                return Err(err(
                    format!("{p}.name"),
                    format!("two tools are named `{name}`"),
                ));
            }
        }
        let mut table = ToolTable::default();
        for (i, tool) in list.iter().enumerate() {
            let p = format!("tools[{i}]");
            match tool_type(tool, &p)? {
                "function" => table.add(tool, None, required_str(tool, "name", &p)?, false, &p)?,
                "custom" => table.add(tool, None, required_str(tool, "name", &p)?, true, &p)?,
                "namespace" => {
                    let namespace = required_str(tool, "name", &p)?;
                    let Some(children) = tool.get("tools").and_then(Value::as_array) else {
                        return Err(err(format!("{p}.tools"), "`tools` must be a list"));
                    };
                    for (j, child) in children.iter().enumerate() {
                        let cp = format!("{p}.tools[{j}]");
                        let custom = match tool_type(child, &cp)? {
                            "function" => false,
                            "custom" => true,
                            other => {
                                return Err(err(
                                    format!("{cp}.type"),
                                    format!("`{other}` tools are not supported inside a namespace"),
                                ))
                            }
                        };
                        let name = required_str(child, "name", &cp)?;
                        let flat = unique(canonical_name(namespace, name), &mut taken);
                        table
                            .by_qualified
                            .insert((namespace.to_string(), name.to_string()), flat.clone());
                        table.add(child, Some(namespace), &flat, custom, &cp)?;
                    }
                }
                k if WEB_SEARCH_TYPES.contains(&k) => table.add_web_search(tool),
                // Deferred tools are declared directly, so there is nothing to search for.
                "tool_search" => {}
                other => {
                    return Err(err(
                        format!("{p}.type"),
                        format!("the hosted tool `{other}` is not supported (only function, custom, namespace and web_search tools are)"),
                    ))
                }
            }
        }
        Ok(table)
    }

    /// Declares a function or custom tool under the Anthropic name `flat`.
    fn add(
        &mut self,
        tool: &Value,
        namespace: Option<&str>,
        flat: &str,
        custom: bool,
        p: &str,
    ) -> Result<(), TranslateError> {
        let mut description = tool
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let schema = if custom {
            if let Some(f) = tool.get("format").filter(|f| f["type"] == "grammar") {
                let syntax = f["syntax"].as_str().unwrap_or("lark");
                let definition = f["definition"].as_str().unwrap_or("");
                description.push_str(&format!(
                    "\n\nThe `input` string must follow this {syntax} grammar:\n```\n{definition}\n```"
                ));
            }
            json!({
                "type": "object",
                "properties": {"input": {"type": "string", "description": "The raw input for this tool: free-form text, not JSON."}},
                "required": ["input"],
                "additionalProperties": false
            })
        } else {
            match tool.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(_) => {
                    return Err(err(
                        format!("{p}.parameters"),
                        "`parameters` must be a JSON schema object",
                    ))
                }
            }
        };
        let mut out = json!({"name": flat, "input_schema": schema});
        let description = description.trim_start();
        if !description.is_empty() {
            out["description"] = json!(description);
        }
        self.anthropic.push(out);
        let name = tool["name"].as_str().unwrap_or(flat).to_string();
        let kind = if custom {
            ToolKind::Custom
        } else {
            ToolKind::Function
        };
        self.by_flat.insert(
            flat.to_string(),
            ClientTool {
                namespace: namespace.map(str::to_string),
                name,
                kind,
            },
        );
        Ok(())
    }

    /// OpenAI's hosted web search → Anthropic's server-side web search. A client that declares
    /// it with `external_web_access: false` (Codex's default) has ruled live searching out, so
    /// the tool is left out rather than widened into a live search.
    fn add_web_search(&mut self, tool: &Value) {
        if tool.get("external_web_access") == Some(&Value::Bool(false)) {
            return;
        }
        let max_uses = match tool["search_context_size"].as_str() {
            Some("low") => 3,
            Some("high") => 10,
            _ => 5,
        };
        let mut out =
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": max_uses});
        // Anthropic refuses an empty domain list.
        if let Some(d) = tool
            .pointer("/filters/allowed_domains")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
        {
            out["allowed_domains"] = json!(d);
        }
        if let Some(loc) = tool.get("user_location").and_then(Value::as_object) {
            let mut l = json!({"type": "approximate"});
            for k in ["city", "region", "country", "timezone"] {
                if let Some(v) = loc.get(k).and_then(Value::as_str) {
                    l[k] = json!(v);
                }
            }
            out["user_location"] = l;
        }
        self.anthropic.push(out);
        self.by_flat.insert(
            "web_search".into(),
            ClientTool {
                namespace: None,
                name: "web_search".into(),
                kind: ToolKind::WebSearch,
            },
        );
    }

    /// The Anthropic name of a tool the client calls `name` (in `namespace`).
    fn flat_name(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => self
                .by_qualified
                .get(&(ns.to_string(), name.to_string()))
                .cloned()
                .unwrap_or_else(|| canonical_name(ns, name)),
            None => name.to_string(),
        }
    }

    /// The client's view of an Anthropic tool name (unknown names pass as functions).
    fn client_tool(&self, flat: &str) -> ClientTool {
        self.by_flat.get(flat).cloned().unwrap_or(ClientTool {
            namespace: None,
            name: flat.to_string(),
            kind: ToolKind::Function,
        })
    }
}

fn tool_type<'a>(tool: &'a Value, p: &str) -> Result<&'a str, TranslateError> {
    tool.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{p}.type"), "each tool needs a `type`"))
}

fn required_str<'a>(v: &'a Value, key: &str, p: &str) -> Result<&'a str, TranslateError> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(err(format!("{p}.{key}"), format!("`{key}` is required"))),
    }
}

/// `base`, or `base_2`, `base_3`, … whichever is free first; marks it taken.
fn unique(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// `tool_choice` and `parallel_tool_calls` → Anthropic's `tool_choice` (None: the default).
fn convert_tool_choice(
    choice: Option<&Value>,
    parallel: Option<&Value>,
    tools: &ToolTable,
) -> Result<Option<Value>, TranslateError> {
    let serial = match parallel {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => !b,
        Some(_) => {
            return Err(err(
                "parallel_tool_calls",
                "`parallel_tool_calls` must be a boolean",
            ))
        }
    };
    let bad = || {
        err(
            "tool_choice",
            "`tool_choice` must be auto, none, required or {\"type\":\"function\",\"name\":…}",
        )
    };
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => None,
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => return Err(bad()),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("auto") => None,
            Some("none") => Some(json!({"type": "none"})),
            Some("required") => Some(json!({"type": "any"})),
            Some("function" | "custom") => {
                let Some(name) = o.get("name").and_then(Value::as_str) else {
                    return Err(err("tool_choice.name", "`tool_choice.name` is required"));
                };
                let namespace = o.get("namespace").and_then(Value::as_str);
                let flat = tools.flat_name(namespace, name);
                if !tools.by_flat.contains_key(&flat) {
                    return Err(err(
                        "tool_choice.name",
                        format!("`{name}` is not one of the declared tools"),
                    ));
                }
                Some(json!({"type": "tool", "name": flat}))
            }
            Some(t) if WEB_SEARCH_TYPES.contains(&t) => {
                if !tools.by_flat.contains_key("web_search") {
                    return Err(err("tool_choice", "the web_search tool is not declared"));
                }
                Some(json!({"type": "tool", "name": "web_search"}))
            }
            Some(t) => {
                return Err(err(
                    "tool_choice.type",
                    format!("tool_choice of type `{t}` is not supported"),
                ))
            }
            None => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    };
    if tools.anthropic.is_empty() {
        return match choice {
            Some(c) if c["type"] != "none" => {
                Err(err("tool_choice", "`tool_choice` needs `tools`"))
            }
            _ => Ok(None),
        };
    }
    Ok(match choice {
        Some(c) if c["type"] == "none" => Some(c),
        Some(mut c) if serial => {
            c["disable_parallel_tool_use"] = json!(true);
            Some(c)
        }
        None if serial => Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        other => other,
    })
}

// ---------------------------------------------------------------------------------------------
// encrypted_content
// ---------------------------------------------------------------------------------------------

/// A thinking or redacted_thinking block → `encrypted_content` (see the module docs).
fn encode_reasoning(block: &Value) -> String {
    format!(
        "{REASONING_PREFIX}{}",
        crate::base::base64::encode(block.to_string().as_bytes())
    )
}

/// Our `encrypted_content` → the block it carries; None for anything else.
fn decode_reasoning(content: &str) -> Option<Value> {
    let bytes = crate::base::base64::decode(content.strip_prefix(REASONING_PREFIX)?)?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    match v["type"].as_str()? {
        "thinking" => Some(json!({
            "type": "thinking",
            "thinking": v["thinking"].as_str()?,
            "signature": v["signature"].as_str()?,
        })),
        "redacted_thinking" => {
            Some(json!({"type": "redacted_thinking", "data": v["data"].as_str()?}))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

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
        let (status, details) = match self.stop_reason.as_deref() {
            Some("max_tokens" | "model_context_window_exceeded") => {
                ("incomplete", json!({"reason": "max_output_tokens"}))
            }
            Some("refusal") => ("incomplete", json!({"reason": "content_filter"})),
            _ => ("completed", Value::Null),
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
                let at = self.open_item();
                let id = self.item_id("rs", at);
                let item = json!({"id": id, "type": "reasoning", "summary": []});
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
                self.blocks.insert(
                    index,
                    Block::Thinking(ThinkingBlock {
                        at,
                        id,
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
                let at = self.open_item();
                let id = self.item_id("rs", at);
                let added = json!({"id": id, "type": "reasoning", "summary": []});
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": added}),
                );
                let data = block["data"].as_str().unwrap_or("");
                let content = encode_reasoning(&json!({"type": "redacted_thinking", "data": data}));
                let item = json!({"id": id, "type": "reasoning", "summary": [],
                    "encrypted_content": content});
                self.item_done(at, item, out);
                Block::Other
            }
            "tool_use" => {
                self.close_message(out);
                let at = self.open_item();
                let tool = self.tools.client_tool(block["name"].as_str().unwrap_or(""));
                let custom = tool.kind == ToolKind::Custom;
                let call_id = block["id"].as_str().unwrap_or("");
                let mut item = if custom {
                    json!({"id": self.item_id("ctc", at), "type": "custom_tool_call",
                        "status": "in_progress", "call_id": call_id, "name": tool.name, "input": ""})
                } else {
                    json!({"id": self.item_id("fc", at), "type": "function_call",
                        "status": "in_progress", "arguments": "", "call_id": call_id, "name": tool.name})
                };
                if let Some(ns) = tool.namespace {
                    item["namespace"] = json!(ns);
                }
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
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
                let at = self.open_item();
                let id = self.item_id("ws", at);
                let item = json!({"id": id, "type": "web_search_call", "status": "in_progress"});
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
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
            let at = self.open_item();
            let id = self.item_id("msg", at);
            let item = json!({"id": id, "type": "message", "status": "in_progress",
                "role": "assistant", "content": []});
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": at, "item": item}),
            );
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

/// Anthropic usage → Responses usage. Input counts cache reads and writes too.
fn usage(u: &Map<String, Value>) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let input = n("input_tokens") + cached + n("cache_creation_input_tokens");
    let output = n("output_tokens");
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        // Anthropic does not report thinking tokens separately.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
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

/// Non-streaming: the complete Anthropic message (from `super::Collector::message()`) → the
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::collector::Collector;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/responses");
    const ID: &str = "resp_test";
    const CREATED: u64 = 1_700_000_000;

    /// The default aliases, as the server's catalogue resolves them.
    fn resolve(model: &str) -> String {
        match model {
            "opus" => "claude-opus-4-8",
            "sonnet" => "claude-sonnet-4-6",
            "haiku" => "claude-haiku-4-5-20251001",
            other => other,
        }
        .to_string()
    }

    fn events(v: &Value) -> Vec<Event> {
        v.as_array()
            .expect("`events` is a list")
            .iter()
            .map(|e| Event {
                name: e[0].as_str().expect("event name").to_string(),
                data: e[1].clone(),
            })
            .collect()
    }

    fn pairs(out: &[(String, Value)]) -> Value {
        out.iter().map(|(n, d)| json!([n, d])).collect()
    }

    /// `request_*.json`: the translation, or the error.
    fn run_request(file: &Value) -> (Map<String, Value>, Vec<String>) {
        let mut got = Map::new();
        let mut problems = Vec::new();
        match translate_request(&file["request"], &resolve) {
            Ok(t) => {
                if t.body["stream"] != json!(true) {
                    problems.push("the upstream body is not streamed".to_string());
                }
                got.insert("expected".into(), t.body);
                got.insert(
                    "meta".into(),
                    json!({"stream": t.stream, "client_model": t.client_model,
                        "betas": t.betas, "include_usage": t.include_usage}),
                );
            }
            Err(e) => {
                got.insert(
                    "error".into(),
                    json!({"param": e.param, "message": e.message}),
                );
            }
        }
        (got, problems)
    }

    /// `stream_*.json`: the client events, and the non-streaming object for the same events.
    fn run_stream(file: &Value) -> (Map<String, Value>, Vec<String>) {
        let req = &file["request"];
        let upstream = events(&file["events"]);
        let mut stream = ResponsesStream::new(ID.into(), CREATED, req);
        let mut out = stream.start();
        for ev in &upstream {
            out.extend(stream.on_event(ev));
        }
        match file.get("fail") {
            Some(f) => {
                out.extend(stream.fail(f[0].as_str().unwrap_or(""), f[1].as_str().unwrap_or("")))
            }
            None => out.extend(stream.finish()),
        }
        assert!(
            stream.finish().is_empty(),
            "finish after the end sends nothing"
        );
        let mut collector = Collector::new();
        for ev in &upstream {
            collector.push(ev);
        }
        let mut problems = invariants(&out);
        let completed = out.last().is_some_and(|(n, _)| n == "response.completed");
        let non_stream = if completed {
            let object = response_object(&collector.message(), ID, CREATED, req);
            if out.last().map(|(_, d)| &d["response"]) != Some(&object) {
                problems.push(format!(
                    "stream and non-stream disagree\nstream:     {}\nnon-stream: {object}",
                    out.last()
                        .map(|(_, d)| d["response"].to_string())
                        .unwrap_or_default()
                ));
            }
            object
        } else {
            Value::Null
        };
        let mut got = Map::new();
        got.insert("expected_events".into(), pairs(&out));
        got.insert("expected_response".into(), non_stream);
        (got, problems)
    }

    /// What every Responses stream must satisfy, whatever the golden file says.
    fn invariants(out: &[(String, Value)]) -> Vec<String> {
        let mut problems = Vec::new();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        if names.get(..2) != Some(&["response.created", "response.in_progress"][..]) {
            problems.push("the stream must open with created, in_progress".into());
        }
        let terminal = ["response.completed", "response.failed"];
        if !names.last().is_some_and(|n| terminal.contains(n))
            || names.iter().filter(|n| terminal.contains(n)).count() != 1
        {
            problems.push("exactly one terminal event, last".into());
        }
        let mut added = Vec::new();
        let mut done: BTreeMap<u64, Value> = BTreeMap::new();
        for (i, (name, data)) in out.iter().enumerate() {
            if data["sequence_number"] != json!(i) || data["type"] != json!(name) {
                problems.push(format!("event {i} has a wrong sequence_number or type"));
            }
            let at = data["output_index"].as_u64().unwrap_or(u64::MAX);
            if name == "response.output_item.added" {
                added.push(at);
            } else if name == "response.output_item.done"
                && done.insert(at, data["item"].clone()).is_some()
            {
                problems.push(format!("item {at} done twice"));
            }
        }
        if added != (0..added.len() as u64).collect::<Vec<_>>() {
            problems.push(format!("output_index not contiguous: {added:?}"));
        }
        let ids: BTreeSet<String> = done.values().map(|i| i["id"].to_string()).collect();
        if ids.len() != done.len() {
            problems.push("item ids are not distinct".into());
        }
        if let Some((_, last)) = out.last() {
            let output: Vec<Value> = done.values().cloned().collect();
            if last["response"]["output"] != json!(output) {
                problems.push("the final output is not the list of done items".into());
            }
            if last["type"] == "response.completed" && done.len() != added.len() {
                problems.push("an item was added but never done".into());
            }
        }
        problems
    }

    #[test]
    fn golden_files() {
        let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
        let mut paths: Vec<_> = std::fs::read_dir(DIR)
            .expect("tests/golden/responses exists")
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        assert!(paths.len() > 20, "golden files missing");
        let mut failures = Vec::new();
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).expect("readable");
            let mut file: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            let (got, problems) = if name.starts_with("request_") {
                run_request(&file)
            } else if name.starts_with("stream_") {
                run_stream(&file)
            } else {
                panic!("{name}: golden files start with request_ or stream_");
            };
            failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
            if update {
                for k in ["expected", "meta", "error"] {
                    file.as_object_mut().unwrap().remove(k);
                }
                for (k, v) in got {
                    file[k.as_str()] = v;
                }
                let pretty = serde_json::to_string_pretty(&file).unwrap() + "\n";
                std::fs::write(&path, pretty).expect("writable");
                continue;
            }
            for (k, v) in &got {
                if file.get(k) != Some(v) {
                    failures.push(format!(
                        "{name}: `{k}` differs\nexpected: {}\nactual:   {v}",
                        file.get(k).map(Value::to_string).unwrap_or("(none)".into())
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    }

    #[test]
    fn reasoning_round_trips_byte_for_byte() {
        let block = json!({"type": "thinking", "thinking": "a \"quoted\" é\n\u{2028}",
            "signature": "Ep4B+/=\\u0000sig"});
        let content = encode_reasoning(&block);
        assert!(content.starts_with(REASONING_PREFIX));
        assert_eq!(decode_reasoning(&content), Some(block));
        let redacted = json!({"type": "redacted_thinking", "data": "EmwKAhgBEgy"});
        assert_eq!(
            decode_reasoning(&encode_reasoning(&redacted)),
            Some(redacted)
        );
        assert_eq!(decode_reasoning("gAAAAABoFvD0-openai-content"), None);
        assert_eq!(
            decode_reasoning("claudegate:v1:e30="),
            None,
            "{{}} is no block"
        );
    }

    #[test]
    fn model_families() {
        let f = |m| {
            let f = model_family(m);
            (f.adaptive, f.xhigh)
        };
        assert_eq!(f("claude-opus-4-8"), (true, true));
        assert_eq!(f("claude-opus-4-7"), (true, true));
        assert_eq!(f("claude-opus-4-6"), (true, false));
        assert_eq!(f("claude-sonnet-4-6"), (true, false));
        assert_eq!(f("claude-sonnet-4-6[1m]"), (true, false));
        assert_eq!(f("claude-sonnet-5"), (true, true));
        assert_eq!(f("claude-opus-5-20260101"), (true, true));
        assert_eq!(f("claude-sonnet-4-5-20250929"), (false, false));
        assert_eq!(f("claude-opus-4-5"), (false, false));
        assert_eq!(f("claude-haiku-4-5-20251001"), (false, false));
        assert_eq!(f("claude-3-7-sonnet-20250219"), (false, false));
        assert_eq!(f("my-model"), (false, false));
    }

    /// The loop Codex relies on: a response's output items, sent back as the next request's
    /// input, reproduce the upstream blocks exactly.
    #[test]
    fn output_items_replay_as_the_upstream_blocks() {
        let req = json!({"model": "claude-sonnet-4-5", "input": "go", "tools": [
            {"type": "namespace", "name": "mcp__fs__", "tools": [{"type": "function", "name": "read"}]},
            {"type": "custom", "name": "apply_patch"}]});
        let ev = |name: &str, data: Value| Event {
            name: name.into(),
            data,
        };
        let thinking = "Tricky: \"quotes\", \\ backslash, é, \u{1F600}, \u{2028}";
        let events = vec![
            ev(
                "message_start",
                json!({"message": {"usage": {"input_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "thinking_delta", "thinking": thinking}}),
            ),
            ev(
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "signature_delta", "signature": "Ep+/=\\\"sig"}}),
            ),
            ev("content_block_stop", json!({"index": 0})),
            ev(
                "content_block_start",
                json!({"index": 1, "content_block": {"type": "tool_use", "id": "toolu_01X", "name": "mcp__fs__read", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": \"ä.txt\"}"}}),
            ),
            ev("content_block_stop", json!({"index": 1})),
            ev(
                "content_block_start",
                json!({"index": 2, "content_block": {"type": "tool_use", "id": "toolu_02Y", "name": "apply_patch", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"input\": \"*** Begin Patch\\n\"}"}}),
            ),
            ev("content_block_stop", json!({"index": 2})),
            ev(
                "message_delta",
                json!({"delta": {"stop_reason": "tool_use"}}),
            ),
            ev("message_stop", json!({})),
        ];
        let mut stream = ResponsesStream::new(ID.into(), CREATED, &req);
        let mut collector = Collector::new();
        let mut out = stream.start();
        for e in &events {
            out.extend(stream.on_event(e));
            collector.push(e);
        }
        let output = out.last().unwrap().1["response"]["output"].clone();
        let mut input = vec![json!({"role": "user", "content": "go"})];
        input.extend(output.as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": "toolu_01X", "output": "x"}));
        input.push(
            json!({"type": "custom_tool_call_output", "call_id": "toolu_02Y", "output": "ok"}),
        );
        let mut next = req.clone();
        next["input"] = json!(input);
        next["reasoning"] = json!({"effort": "low"});
        let t = translate_request(&next, &resolve).unwrap();
        assert_eq!(
            t.body["messages"][1]["content"],
            collector.message()["content"]
        );
        assert!(
            t.body["thinking"].is_object(),
            "a signed tool turn keeps thinking on"
        );
    }

    /// Found by fuzzing (`tests/fuzz`, target `responses_stream`): a second
    /// `content_block_start` for an index still open replaced the open block, so the first call
    /// was added but never done, and `response.completed` left it hanging.
    #[test]
    fn a_reopened_block_index_still_closes_its_item() {
        let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
        let mut out = s.start();
        let tool = |id: &str| Event {
            name: "content_block_start".into(),
            data: json!({"index": 0, "content_block":
                {"type": "tool_use", "id": id, "name": "f", "input": {}}}),
        };
        out.extend(s.on_event(&tool("toolu_A")));
        out.extend(s.on_event(&tool("toolu_B")));
        out.extend(s.on_event(&Event {
            name: "message_stop".into(),
            data: json!({}),
        }));
        assert_eq!(invariants(&out), Vec::<String>::new());
        let output = &out.last().unwrap().1["response"]["output"];
        assert_eq!(output[0]["call_id"], "toolu_A");
        assert_eq!(output[1]["call_id"], "toolu_B");
    }

    /// Found by fuzzing (`tests/fuzz`, target `responses_stream`): a second web search under
    /// the id of one still waiting for its result replaced it, so the first search item was
    /// added but never done.
    #[test]
    fn a_repeated_search_id_still_closes_the_first_search() {
        let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
        let mut out = s.start();
        for index in 0..2 {
            for (name, data) in [
                (
                    "content_block_start",
                    json!({"index": index, "content_block": {"type":
                    "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
                ),
                ("content_block_stop", json!({"index": index})),
            ] {
                out.extend(s.on_event(&Event {
                    name: name.into(),
                    data,
                }));
            }
        }
        out.extend(s.finish());
        assert_eq!(invariants(&out), Vec::<String>::new());
    }

    /// Found by fuzzing (`tests/fuzz`, target `responses_stream`): a text or thinking delta
    /// for the index of a tool call removed the call's block, so its item was never done.
    #[test]
    fn a_delta_of_the_wrong_kind_leaves_the_block_open() {
        for delta in [
            json!({"type": "text_delta", "text": "x"}),
            json!({"type": "thinking_delta", "thinking": "x"}),
        ] {
            let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
            let mut out = s.start();
            for (name, data) in [
                (
                    "content_block_start",
                    json!({"index": 0, "content_block":
                    {"type": "tool_use", "id": "toolu_A", "name": "f", "input": {}}}),
                ),
                ("content_block_delta", json!({"index": 0, "delta": delta})),
                ("content_block_stop", json!({"index": 0})),
                ("message_stop", json!({})),
            ] {
                out.extend(s.on_event(&Event {
                    name: name.into(),
                    data,
                }));
            }
            assert_eq!(invariants(&out), Vec::<String>::new(), "{delta}");
            let output = &out.last().unwrap().1["response"]["output"];
            assert_eq!(output[0]["call_id"], "toolu_A");
        }
    }

    #[test]
    fn events_after_the_end_are_ignored() {
        let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
        s.start();
        assert_eq!(s.fail("overloaded_error", "Overloaded").len(), 1);
        assert!(s.fail("overloaded_error", "again").is_empty());
        assert!(s.finish().is_empty());
        let ev = Event {
            name: "message_stop".into(),
            data: json!({}),
        };
        assert!(s.on_event(&ev).is_empty());
    }
}
