//! `/v1/chat/completions` ⇄ Anthropic Messages: pure translation, no I/O.
//!
//! This file owns two things:
//! - [`translate_request`]: an OpenAI Chat Completions body → an Anthropic Messages body
//!   (always `stream: true` upstream), or a 400 naming the parameter we cannot honour;
//! - [`ChatStream`] and [`completion`]: Anthropic events → `chat.completion.chunk`s, and the
//!   collected Anthropic message → one `chat.completion`. Both read the same fields the same
//!   way, so a streaming and a non-streaming client see the same text, reasoning, tool calls
//!   and usage numbers (the golden tests check this). Errors use
//!   [`crate::base::error::openai_type_of`] for their OpenAI `type`.
//!
//! # Request parameters
//!
//! Principle: a parameter we cannot honour is refused with a 400 naming it, never silently
//! dropped. A few are accepted and ignored because ignoring them cannot change the answer the
//! client relies on. `null` always means "absent". Unknown top-level parameters are refused,
//! as OpenAI itself does.
//!
//! | parameter | what happens |
//! |---|---|
//! | `model` | required (400 `model`); goes through the alias table; echoed back as sent |
//! | `messages` | required, non-empty (400 `messages`); see *Messages* below |
//! | `max_completion_tokens`, `max_tokens` | → `max_tokens` (the former wins). Absent: 8192, or with reasoning the effort's nominal budget + 8192 (see *Reasoning*) |
//! | `stop` | string or list → `stop_sequences` |
//! | `temperature` | 0..2; values above 1 are clamped to 1 (Anthropic's range is 0..1; values ≤ 1 mean the same in both, so they pass unchanged). Dropped when thinking is on, because Anthropic only accepts the default with thinking |
//! | `top_p` | 0..1, passed through; dropped when thinking is on (same reason) |
//! | `top_k` | not OpenAI, but common in OpenAI-compatible clients: passed through; dropped with thinking |
//! | `tools` | `function` tools → `{name, description, input_schema}` (no `parameters` → an empty object schema); `strict: true` → Anthropic strict tool use (+ structured-outputs beta). Other tool types → 400 `tools[i].type` |
//! | `tool_choice` | `auto` → auto, `none` → none, `required` → any, `{type: function, function: {name}}` → `{type: tool, name}`; anything else → 400. Without tools, `auto`/`none` are no-ops and a forced choice is a 400 |
//! | `parallel_tool_calls` | `false` → `disable_parallel_tool_use: true` on the tool choice (auto when none was given; not on `none`, where there are no calls to limit) |
//! | `response_format` | `text` → nothing; `json_schema` → `output_config.format` (structured outputs, + beta); `json_object` → a last system block requiring one JSON object and nothing else (Anthropic has no schema-less JSON mode) |
//! | `reasoning_effort` | → thinking, see *Reasoning* |
//! | `stream` | → [`super::Translated::stream`]; upstream is always streamed |
//! | `stream_options.include_usage` | → [`super::Translated::include_usage`]: a final `choices: []` chunk with usage |
//! | `n` | 1 accepted; anything else → 400 (one Anthropic call gives one choice) |
//! | `logprobs`, `top_logprobs` | `false` / 0 accepted; otherwise 400 (Anthropic has no log probabilities) |
//! | `logit_bias` | `{}` accepted; otherwise 400 |
//! | `frequency_penalty`, `presence_penalty` | 0 accepted; otherwise 400 (no equivalent) |
//! | `audio`, `prediction`, `web_search_options`, `functions`, `function_call` | 400 (no audio output, no predicted outputs, no hosted search; legacy `functions` must be sent as `tools`) |
//! | `modalities` | `["text"]` accepted; anything else 400 |
//! | `verbosity` | `medium` (the default) accepted; `low`/`high` 400 (no equivalent) |
//! | `user`, `safety_identifier` | accepted, dropped: `metadata.user_id` belongs to cloaking |
//! | `seed` | accepted, ignored: OpenAI gives no determinism guarantee either |
//! | `store`, `metadata` | accepted, ignored: they only concern OpenAI's dashboard storage |
//! | `service_tier` | accepted, ignored: the subscription has one tier |
//! | `prompt_cache_key` | accepted, ignored: a routing hint; Anthropic caches by prefix |
//!
//! # Messages
//!
//! - `system` and `developer` → the top-level `system` text blocks, in order (text parts only).
//! - `user` → text, `image_url` (`data:<type>;base64,…` → a base64 image; `http(s)://` → a
//!   URL image; `detail` dropped), `file` with a PDF (`file_data` as a data URL, or raw base64
//!   with a `filename` ending in `.pdf`) → a document. `input_audio`, `file_id` and unknown
//!   parts → 400 naming the part. `cache_control` on a part is kept.
//! - `assistant` → text (and a `refusal` string as text), then `tool_calls` → `tool_use`
//!   (ids byte for byte; `arguments` parsed, `""` meaning `{}`; unparsable or not an object →
//!   400). `reasoning_content` sent back by the client is dropped: without its signature
//!   Anthropic cannot take it back.
//! - `tool` → a `tool_result` for `tool_call_id` (byte for byte); string content as is, text
//!   parts joined with `\n` (never JSON-stringified).
//! - Consecutive messages of the same Anthropic role are merged into one turn. In a user
//!   turn the `tool_result`s are moved to the front (Anthropic requires them right after the
//!   `tool_use` turn), in an assistant turn the `tool_use`s to the back. Empty text is dropped
//!   (Anthropic refuses empty text blocks). Message `name` is ignored.
//!
//! # Reasoning
//!
//! `reasoning_effort` (`none`, `minimal`, `low`, `medium`, `high`, `xhigh`, `max`) depends on
//! the model family (read from the resolved model id):
//!
//! | effort | budget families: haiku-4-5, sonnet-4-5, opus ≤ 4.5, older and unknown ids | adaptive families: opus ≥ 4.6, sonnet ≥ 4.6, any family ≥ 5, mythos, fable |
//! |---|---|---|
//! | `none` | no thinking | no thinking |
//! | `minimal` | `budget_tokens` 1024 | `adaptive`, effort `low` |
//! | `low` | 2048 | effort `low` |
//! | `medium` | 8192 | effort `medium` |
//! | `high` | 16384 | effort `high` |
//! | `xhigh` | 24576 | effort `xhigh` on opus ≥ 4.7 (the only models that accept it), else `high` |
//! | `max` | 32000 | effort `max` |
//!
//! - The budget column is also each effort's *nominal budget*: with no client `max_tokens`,
//!   `max_tokens` = nominal budget + 8192, so the answer keeps the usual room after thinking.
//! - Budgets are clamped to `1024 ≤ budget < max_tokens`. A client `max_tokens` above 1024
//!   caps the budget at `max_tokens - 1` (as with OpenAI, reasoning counts against it); one
//!   at or below 1024 cannot hold the minimum budget, so `max_tokens` becomes 1024 + the
//!   client's value.
//! - Adaptive thinking adds `output_config.effort` and the `effort-2025-11-24` beta.
//! - Thinking is dropped (and `reasoning_effort` ignored) when Anthropic would refuse it:
//!   with a forced tool choice (`required` or a named function), and when the last
//!   assistant turn called a tool, because Anthropic then wants that turn's signed thinking
//!   block, which a Chat Completions client cannot keep.
//!
//! # Responses
//!
//! - `finish_reason`: `end_turn`, `stop_sequence`, `pause_turn` → `stop`; `max_tokens`,
//!   `model_context_window_exceeded` → `length`; `tool_use` → `tool_calls`; `refusal` →
//!   `content_filter`.
//! - Text blocks are concatenated into `content`; thinking text into `reasoning_content`;
//!   `redacted_thinking` and signatures are not shown.
//! - Usage: `prompt_tokens` = input + cache read + cache creation,
//!   `prompt_tokens_details.cached_tokens` = cache read, `completion_tokens` = output
//!   (thinking included). No `reasoning_tokens`: Anthropic does not report them apart.

// The HTTP route is wired in a separate change; until then only the tests call this module.

use serde_json::{json, Map, Value};

use super::{TranslateError, Translated};
use crate::anthropic::betas;
use crate::anthropic::event::Event;

/// `max_tokens` when the client gives none and no reasoning is asked for.
const DEFAULT_MAX_TOKENS: u64 = 8192;
/// Anthropic's smallest `budget_tokens`.
const MIN_BUDGET: u64 = 1024;
/// The system block that stands in for `response_format: json_object`.
const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else: \
     no text before or after it and no Markdown code fences.";

/// Top-level parameters accepted and ignored (see the table above for why each is harmless).
const IGNORED_PARAMS: &[&str] = &[
    "user",
    "safety_identifier",
    "seed",
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
];

fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Translates a Chat Completions request into an Anthropic Messages request.
pub fn translate_request(
    req: &Value,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Translated, TranslateError> {
    let req = req
        .as_object()
        .ok_or_else(|| bad("body", "the request body must be a JSON object"))?;
    // `null` means absent everywhere, so drop nulls once here.
    let p: Map<String, Value> = req
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    refuse_unsupported(&p)?;

    let client_model = match p.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => return Err(bad("model", "`model` is required (a model id or alias)")),
    };
    let model = resolve(&client_model);
    let stream = opt_bool(&p, "stream")?.unwrap_or(false);
    let include_usage = match p.get("stream_options") {
        None => false,
        Some(o) if o.is_object() => o
            .get("include_usage")
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| bad("stream_options.include_usage", "must be a boolean"))
            })
            .transpose()?
            .unwrap_or(false),
        Some(_) => return Err(bad("stream_options", "must be an object")),
    };

    let msgs = match p.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => return Err(bad("messages", "`messages` must be a non-empty array")),
    };
    let (mut system, messages) = convert_messages(msgs)?;

    let mut betas = Vec::new();
    let mut body = Map::new();
    let mut output_config = Map::new();

    let (tools, strict_tools) = convert_tools(p.get("tools"))?;
    if strict_tools {
        betas.push(betas::STRUCTURED_OUTPUTS);
    }
    let tool_choice = convert_tool_choice(
        p.get("tool_choice"),
        opt_bool(&p, "parallel_tool_calls")?,
        !tools.is_empty(),
    )?;

    match response_format(p.get("response_format"))? {
        Format::Text => {}
        Format::JsonObject => system.push(json!({"type": "text", "text": JSON_OBJECT_INSTRUCTION})),
        Format::JsonSchema(schema) => {
            output_config.insert(
                "format".into(),
                json!({"type": "json_schema", "schema": schema}),
            );
            if !betas.contains(&betas::STRUCTURED_OUTPUTS) {
                betas.push(betas::STRUCTURED_OUTPUTS);
            }
        }
    }

    // Thinking: what the effort asks for, minus what Anthropic would refuse.
    let forced_tool = tool_choice
        .as_ref()
        .is_some_and(|c| matches!(c["type"].as_str(), Some("any" | "tool")));
    let effort = parse_effort(p.get("reasoning_effort"))?
        .filter(|_| !forced_tool && !continues_tool_call(&messages));
    let client_max = client_max_tokens(&p)?;
    let plan = plan_thinking(effort, thinking_style(&model), client_max);
    match &plan.thinking {
        Thinking::Off => {}
        Thinking::Budget(n) => {
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": n}),
            );
        }
        Thinking::Adaptive(level) => {
            body.insert("thinking".into(), json!({"type": "adaptive"}));
            output_config.insert("effort".into(), json!(level));
            betas.push(betas::EFFORT);
        }
    }

    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("max_tokens".into(), json!(plan.max_tokens));
    body.insert("stream".into(), json!(true));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    if let Some(stops) = stop_sequences(p.get("stop"))? {
        body.insert("stop_sequences".into(), stops);
    }
    sampling(&p, &mut body, !matches!(plan.thinking, Thinking::Off))?;
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice {
        body.insert("tool_choice".into(), choice);
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }

    Ok(Translated {
        body: Value::Object(body),
        stream,
        client_model,
        betas,
        include_usage,
    })
}

/// Refuses the parameters we cannot honour, and any we do not know (OpenAI does the same, so
/// a typo is reported instead of quietly changing nothing).
fn refuse_unsupported(p: &Map<String, Value>) -> Result<(), TranslateError> {
    for (k, v) in p {
        let refused = match k.as_str() {
            "model"
            | "messages"
            | "max_tokens"
            | "max_completion_tokens"
            | "stop"
            | "temperature"
            | "top_p"
            | "top_k"
            | "tools"
            | "tool_choice"
            | "parallel_tool_calls"
            | "response_format"
            | "reasoning_effort"
            | "stream"
            | "stream_options" => None,
            k if IGNORED_PARAMS.contains(&k) => None,
            "n" => (v.as_u64() != Some(1))
                .then_some("only `n: 1` is supported: each request yields one choice"),
            "logprobs" => (v.as_bool() != Some(false))
                .then_some("log probabilities are not available from Anthropic models"),
            "top_logprobs" => (v.as_u64() != Some(0))
                .then_some("log probabilities are not available from Anthropic models"),
            "logit_bias" => (!v.as_object().is_some_and(Map::is_empty))
                .then_some("`logit_bias` is not supported by Anthropic models"),
            "frequency_penalty" | "presence_penalty" => (v.as_f64() != Some(0.0)).then_some(
                "frequency and presence penalties are not supported by Anthropic models",
            ),
            "modalities" => (v != &json!(["text"]))
                .then_some("only text output is supported (`modalities: [\"text\"]`)"),
            "verbosity" => (v.as_str() != Some("medium"))
                .then_some("`verbosity` is not supported by Anthropic models"),
            "audio" => Some("audio output is not supported"),
            "prediction" => Some("predicted outputs are not supported"),
            "web_search_options" => Some("web search is not supported on this route"),
            "functions" | "function_call" => {
                Some("legacy function calling is not supported: send `tools` and `tool_choice`")
            }
            _ => Some("unrecognized request argument"),
        };
        if let Some(why) = refused {
            return Err(bad(k.as_str(), format!("`{k}`: {why}")));
        }
    }
    Ok(())
}

fn opt_bool(p: &Map<String, Value>, key: &str) -> Result<Option<bool>, TranslateError> {
    p.get(key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| bad(key, format!("`{key}` must be a boolean")))
        })
        .transpose()
}

/// `max_completion_tokens` (OpenAI's current name) or else `max_tokens`.
fn client_max_tokens(p: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = p.get(key) {
            return match v.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n)),
                _ => Err(bad(key, format!("`{key}` must be a positive integer"))),
            };
        }
    }
    Ok(None)
}

/// `stop`: a string or a list of strings → `stop_sequences` (an empty list → none).
fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let list = match stop {
        None => return Ok(None),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("stop", "`stop` must be a string or a list of strings"))?,
        Some(_) => return Err(bad("stop", "`stop` must be a string or a list of strings")),
    };
    Ok((!list.is_empty()).then(|| json!(list)))
}

/// `temperature`, `top_p`, `top_k` → the body, unless thinking is on (Anthropic refuses
/// non-default sampling with thinking, so they are dropped rather than sent to fail).
fn sampling(
    p: &Map<String, Value>,
    body: &mut Map<String, Value>,
    thinking: bool,
) -> Result<(), TranslateError> {
    let number = |key: &str, max: f64| -> Result<Option<f64>, TranslateError> {
        match p.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if (0.0..=max).contains(&x) => Ok(Some(x)),
                _ => Err(bad(
                    key,
                    format!("`{key}` must be a number from 0 to {max}"),
                )),
            },
        }
    };
    // Validate even when thinking drops them: a bad value is the client's bug either way.
    let temperature = number("temperature", 2.0)?;
    let top_p = number("top_p", 1.0)?;
    let top_k = match p.get("top_k") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("top_k", "`top_k` must be a non-negative integer"))?,
        ),
    };
    if thinking {
        return Ok(());
    }
    if let Some(t) = temperature {
        body.insert("temperature".into(), json!(t.min(1.0)));
    }
    if let Some(x) = top_p {
        body.insert("top_p".into(), json!(x));
    }
    if let Some(k) = top_k {
        body.insert("top_k".into(), json!(k));
    }
    Ok(())
}

// --- messages --------------------------------------------------------------------------------

/// `messages` → (`system` blocks, Anthropic `messages`), merging same-role neighbours.
fn convert_messages(msgs: &[Value]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| bad(&at, "each message must be an object"))?;
        for key in ["audio", "function_call"] {
            if m.get(key).is_some_and(|v| !v.is_null()) {
                return Err(bad(
                    format!("{at}.{key}"),
                    format!("`{key}` in messages is not supported"),
                ));
            }
        }
        let content = m.get("content").filter(|v| !v.is_null());
        let (role, blocks) = match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                system.extend(system_blocks(content, &at)?);
                continue;
            }
            Some("user") => ("user", user_blocks(content, &at)?),
            Some("assistant") => ("assistant", assistant_blocks(m, content, &at)?),
            Some("tool") => ("user", vec![tool_result(m, content, &at)?]),
            Some("function") => {
                return Err(bad(
                    format!("{at}.role"),
                    "legacy `function` messages are not supported: use `tool`",
                ))
            }
            _ => {
                return Err(bad(
                    format!("{at}.role"),
                    "`role` must be system, developer, user, assistant or tool",
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(bad(
            "messages",
            "`messages` must contain a user or assistant message with content",
        ));
    }
    let messages = turns
        .into_iter()
        .map(|(role, blocks)| json!({"role": role, "content": order_blocks(role, blocks)}))
        .collect();
    Ok((system, messages))
}

/// Stable reordering inside a merged turn: a user turn opens with its `tool_result`s (Anthropic
/// requires them straight after the `tool_use` turn), an assistant turn ends with its
/// `tool_use`s (the calls close the turn).
fn order_blocks(role: &str, blocks: Vec<Value>) -> Vec<Value> {
    let (kind, first) = if role == "user" {
        ("tool_result", true)
    } else {
        ("tool_use", false)
    };
    let (matching, rest): (Vec<Value>, Vec<Value>) =
        blocks.into_iter().partition(|b| b["type"] == kind);
    if first {
        matching.into_iter().chain(rest).collect()
    } else {
        rest.into_iter().chain(matching).collect()
    }
}

/// A text block, keeping the part's `cache_control` (clients use it for prompt caching);
/// `None` for empty text, which Anthropic refuses.
fn text_block(text: &str, part: Option<&Value>) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    let mut b = json!({"type": "text", "text": text});
    if let Some(cc) = part.and_then(|p| p.get("cache_control")) {
        b["cache_control"] = cc.clone();
    }
    Some(b)
}

/// The parts of a content array, each with its parameter path.
fn parts<'a>(content: &'a Value, at: &str) -> Result<Vec<(String, &'a Value)>, TranslateError> {
    let arr = content.as_array().ok_or_else(|| {
        bad(
            format!("{at}.content"),
            "`content` must be a string or an array of parts",
        )
    })?;
    Ok(arr
        .iter()
        .enumerate()
        .map(|(j, part)| (format!("{at}.content[{j}]"), part))
        .collect())
}

/// The text of a `text` part; any other part type is a 400 naming `….type`.
fn text_of<'a>(part: &'a Value, pat: &str, what: &str) -> Result<&'a str, TranslateError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => part
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{pat}.text"), "a text part needs a string `text`")),
        _ => Err(bad(
            format!("{pat}.type"),
            format!("{what} accept only text parts"),
        )),
    }
}

/// `system` / `developer` content → system text blocks.
fn system_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Ok(vec![]),
        Some(Value::String(s)) => Ok(text_block(s, None).into_iter().collect()),
        Some(c) => {
            let mut out = Vec::new();
            for (pat, part) in parts(c, at)? {
                let text = text_of(part, &pat, "system and developer messages")?;
                out.extend(text_block(text, Some(part)));
            }
            Ok(out)
        }
    }
}

/// `user` content → text, image and document blocks.
fn user_blocks(content: Option<&Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        None => Err(bad(
            format!("{at}.content"),
            "a user message needs `content`",
        )),
        Some(Value::String(s)) => Ok(text_block(s, None).into_iter().collect()),
        Some(c) => {
            let mut out = Vec::new();
            for (pat, part) in parts(c, at)? {
                out.extend(user_part(part, &pat)?);
            }
            Ok(out)
        }
    }
}

/// One user content part → an Anthropic block (`None` for empty text).
fn user_part(part: &Value, pat: &str) -> Result<Option<Value>, TranslateError> {
    let mut block = match part.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(text_block(text_of(part, pat, "user messages")?, Some(part))),
        Some("image_url") => {
            // The spec has `{url, detail}`; some clients send the URL string itself.
            let url = match part.get("image_url") {
                Some(Value::String(u)) => Some(u.as_str()),
                Some(o) => o.get("url").and_then(Value::as_str),
                None => None,
            }
            .ok_or_else(|| {
                bad(
                    format!("{pat}.image_url.url"),
                    "an image part needs `image_url.url`",
                )
            })?;
            image_block(url, &format!("{pat}.image_url.url"))?
        }
        Some("file") => document_block(
            part.get("file").unwrap_or(&Value::Null),
            &format!("{pat}.file"),
        )?,
        Some("input_audio") => {
            return Err(bad(format!("{pat}.type"), "audio input is not supported"))
        }
        _ => {
            return Err(bad(
                format!("{pat}.type"),
                "unsupported content part type (supported: text, image_url, file)",
            ))
        }
    };
    if let Some(cc) = part.get("cache_control") {
        block["cache_control"] = cc.clone();
    }
    Ok(Some(block))
}

/// `data:<media type>[;…];base64,<data>` → (media type, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    let head = head.strip_suffix(";base64")?;
    let media = head.split(';').next().unwrap_or("");
    (!media.is_empty()).then_some((media, data))
}

/// An `image_url` URL → an Anthropic image block.
fn image_block(url: &str, param: &str) -> Result<Value, TranslateError> {
    if url.starts_with("data:") {
        let (media, data) = parse_data_url(url)
            .ok_or_else(|| bad(param, "a data URL must look like data:image/png;base64,…"))?;
        let source = json!({"type": "base64", "media_type": media, "data": data});
        return Ok(json!({"type": "image", "source": source}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(bad(
        param,
        "an image URL must be a base64 data URL or an http(s) URL",
    ))
}

/// A `file` part → an Anthropic PDF document block.
fn document_block(file: &Value, at: &str) -> Result<Value, TranslateError> {
    if file.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            format!("{at}.file_id"),
            "uploaded files are not supported: send `file_data`",
        ));
    }
    let param = format!("{at}.file_data");
    let data = file
        .get("file_data")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&param, "a file part needs `file_data`"))?;
    let pdf_name = file
        .get("filename")
        .and_then(Value::as_str)
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".pdf"));
    let data = if data.starts_with("data:") {
        match parse_data_url(data) {
            Some(("application/pdf", d)) => d,
            _ => {
                return Err(bad(
                    &param,
                    "only PDF files are supported (data:application/pdf;base64,…)",
                ))
            }
        }
    } else if pdf_name {
        data
    } else {
        return Err(bad(
            &param,
            "only PDF files are supported: a data:application/pdf URL, or base64 with a .pdf filename",
        ));
    };
    let source = json!({"type": "base64", "media_type": "application/pdf", "data": data});
    Ok(json!({"type": "document", "source": source}))
}

/// `assistant` → text blocks, then one `tool_use` per tool call.
fn assistant_blocks(
    m: &Map<String, Value>,
    content: Option<&Value>,
    at: &str,
) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    match content {
        None => {}
        Some(Value::String(s)) => out.extend(text_block(s, None)),
        Some(c) => {
            for (pat, part) in parts(c, at)? {
                // A `refusal` part is what the assistant said; it goes back as text.
                let text = match part.get("type").and_then(Value::as_str) {
                    Some("refusal") => part.get("refusal").and_then(Value::as_str).unwrap_or(""),
                    _ => text_of(part, &pat, "assistant messages")?,
                };
                out.extend(text_block(text, Some(part)));
            }
        }
    }
    if let Some(r) = m.get("refusal").and_then(Value::as_str) {
        out.extend(text_block(r, None));
    }
    if let Some(calls) = m.get("tool_calls").filter(|v| !v.is_null()) {
        let calls = calls
            .as_array()
            .ok_or_else(|| bad(format!("{at}.tool_calls"), "`tool_calls` must be an array"))?;
        for (j, call) in calls.iter().enumerate() {
            out.push(tool_use(call, &format!("{at}.tool_calls[{j}]"))?);
        }
    }
    Ok(out)
}

/// One assistant tool call → a `tool_use` block (id byte for byte, arguments parsed).
fn tool_use(call: &Value, at: &str) -> Result<Value, TranslateError> {
    if call
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
        != "function"
    {
        return Err(bad(
            format!("{at}.type"),
            "only `function` tool calls are supported",
        ));
    }
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("{at}.id"), "a tool call needs an `id`"))?;
    let f = call.get("function").unwrap_or(&Value::Null);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                format!("{at}.function.name"),
                "a tool call needs `function.name`",
            )
        })?;
    let param = format!("{at}.function.arguments");
    let input = match f.get("arguments") {
        None | Some(Value::Null) => json!({}),
        // Some clients send the object itself rather than its JSON text.
        Some(Value::Object(o)) => Value::Object(o.clone()),
        // A call without arguments is often sent as "".
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err(bad(param, "`arguments` must be a JSON object")),
            Err(e) => return Err(bad(param, format!("`arguments` is not valid JSON: {e}"))),
        },
        Some(_) => return Err(bad(param, "`arguments` must be a JSON string")),
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// A `tool` message → a `tool_result` block.
fn tool_result(
    m: &Map<String, Value>,
    content: Option<&Value>,
    at: &str,
) -> Result<Value, TranslateError> {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                format!("{at}.tool_call_id"),
                "a tool message needs `tool_call_id`",
            )
        })?;
    let text = match content {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(c) => parts(c, at)?
            .into_iter()
            .map(|(pat, part)| text_of(part, &pat, "tool messages"))
            .collect::<Result<Vec<_>, _>>()?
            .join("\n"),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": text}))
}

/// Whether the last assistant turn called a tool. With thinking on, Anthropic then requires
/// that turn to open with its signed thinking block ("a final `assistant` message must start
/// with a thinking block"), which a Chat Completions client cannot send back.
fn continues_tool_call(messages: &[Value]) -> bool {
    messages
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .and_then(|m| m["content"].as_array())
        .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_use"))
}

// --- tools -----------------------------------------------------------------------------------

/// `tools` → Anthropic tools, and whether any asked for strict schema adherence.
fn convert_tools(tools: Option<&Value>) -> Result<(Vec<Value>, bool), TranslateError> {
    let Some(tools) = tools else {
        return Ok((vec![], false));
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("tools", "`tools` must be an array"))?;
    let mut out = Vec::new();
    let mut strict = false;
    for (i, t) in tools.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(
                format!("tools[{i}].type"),
                "only `function` tools are supported",
            ));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("tools[{i}].function.name"), "a tool needs a name"))?;
        let schema = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(s @ Value::Object(_)) => s.clone(),
            Some(_) => {
                return Err(bad(
                    format!("tools[{i}].function.parameters"),
                    "`parameters` must be a JSON Schema object",
                ))
            }
        };
        let mut tool = json!({"name": name, "input_schema": schema});
        if let Some(d) = f.get("description").and_then(Value::as_str) {
            tool["description"] = json!(d);
        }
        if f.get("strict").and_then(Value::as_bool) == Some(true) {
            tool["strict"] = json!(true);
            strict = true;
        }
        out.push(tool);
    }
    Ok((out, strict))
}

/// `tool_choice` + `parallel_tool_calls` → Anthropic `tool_choice`.
fn convert_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
    have_tools: bool,
) -> Result<Option<Value>, TranslateError> {
    let wrong = || {
        bad(
            "tool_choice",
            "`tool_choice` must be auto, none, required or a {type: function, function: {name}} object",
        )
    };
    let mut out = match choice {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            _ => return Err(wrong()),
        }),
        Some(Value::Object(o)) => Some(match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        bad(
                            "tool_choice.function.name",
                            "a named tool choice needs `function.name`",
                        )
                    })?;
                json!({"type": "tool", "name": name})
            }
            _ => return Err(wrong()),
        }),
        Some(_) => return Err(wrong()),
    };
    if !have_tools {
        // Nothing to choose from: `auto`/`none` mean "no call" already; forcing one is an error.
        return match out {
            Some(c) if matches!(c["type"].as_str(), Some("any" | "tool")) => Err(bad(
                "tool_choice",
                "`tool_choice` forces a tool call but no `tools` are given",
            )),
            _ => Ok(None),
        };
    }
    if parallel == Some(false) {
        let c = out.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(out)
}

// --- response_format -------------------------------------------------------------------------

enum Format {
    Text,
    JsonObject,
    JsonSchema(Value),
}

fn response_format(rf: Option<&Value>) -> Result<Format, TranslateError> {
    let Some(rf) = rf else {
        return Ok(Format::Text);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Format::Text),
        Some("json_object") => Ok(Format::JsonObject),
        Some("json_schema") => match rf.get("json_schema").and_then(|j| j.get("schema")) {
            Some(s @ Value::Object(_)) => Ok(Format::JsonSchema(s.clone())),
            _ => Err(bad(
                "response_format.json_schema.schema",
                "`json_schema` needs a `schema` object",
            )),
        },
        _ => Err(bad(
            "response_format.type",
            "`response_format.type` must be text, json_object or json_schema",
        )),
    }
}

// --- reasoning -------------------------------------------------------------------------------

/// OpenAI's `reasoning_effort` levels above `none`, plus `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effort {
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

impl Effort {
    /// Budget for budget-style models, and the nominal budget that sizes a default
    /// `max_tokens` on every model.
    fn budget(self) -> u64 {
        match self {
            Effort::Minimal => 1024,
            Effort::Low => 2048,
            Effort::Medium => 8192,
            Effort::High => 16384,
            Effort::XHigh => 24576,
            Effort::Max => 32000,
        }
    }
}

/// `reasoning_effort` → `None` for absent or `none`.
fn parse_effort(v: Option<&Value>) -> Result<Option<Effort>, TranslateError> {
    let Some(v) = v else { return Ok(None) };
    Ok(Some(match v.as_str() {
        Some("none") => return Ok(None),
        Some("minimal") => Effort::Minimal,
        Some("low") => Effort::Low,
        Some("medium") => Effort::Medium,
        Some("high") => Effort::High,
        Some("xhigh") => Effort::XHigh,
        Some("max") => Effort::Max,
        _ => {
            return Err(bad(
                "reasoning_effort",
                "`reasoning_effort` must be none, minimal, low, medium, high, xhigh or max",
            ))
        }
    }))
}

/// How a model family takes thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThinkingStyle {
    /// `thinking: {type: enabled, budget_tokens}`.
    Budget,
    /// `thinking: {type: adaptive}` + `output_config.effort`; whether effort `xhigh` exists.
    Adaptive { xhigh: bool },
}

/// The thinking style of a model id such as `claude-sonnet-4-6`, `claude-haiku-4-5-20251001`
/// or `claude-3-7-sonnet-20250219`. Ids we cannot read get the budget style, which every
/// thinking model before 4.6 takes.
fn thinking_style(model: &str) -> ThinkingStyle {
    let id = model.to_ascii_lowercase();
    let mut family = None;
    let mut version = Vec::new();
    for part in id.split(['-', '.', '@', ':', '/', '_']) {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            // Eight digits is a snapshot date, not a version.
            if part.len() < 8 && version.len() < 2 {
                version.push(part.parse::<u32>().unwrap_or(0));
            }
        } else if family.is_none() && ["opus", "sonnet", "haiku", "mythos", "fable"].contains(&part)
        {
            family = Some(part);
        }
    }
    let v = (
        version.first().copied().unwrap_or(0),
        version.get(1).copied().unwrap_or(0),
    );
    let adaptive = match family {
        Some("mythos" | "fable") => true,
        Some("opus" | "sonnet") => v >= (4, 6),
        Some(_) => v.0 >= 5,
        None => false,
    };
    if adaptive {
        ThinkingStyle::Adaptive {
            xhigh: family == Some("opus") && v >= (4, 7),
        }
    } else {
        ThinkingStyle::Budget
    }
}

#[derive(Debug, PartialEq)]
enum Thinking {
    Off,
    Budget(u64),
    Adaptive(&'static str),
}

#[derive(Debug, PartialEq)]
struct ThinkingPlan {
    thinking: Thinking,
    max_tokens: u64,
}

/// Effort + model style + the client's `max_tokens` → thinking and the `max_tokens` to send.
fn plan_thinking(
    effort: Option<Effort>,
    style: ThinkingStyle,
    client_max: Option<u64>,
) -> ThinkingPlan {
    let Some(effort) = effort else {
        return ThinkingPlan {
            thinking: Thinking::Off,
            max_tokens: client_max.unwrap_or(DEFAULT_MAX_TOKENS),
        };
    };
    let nominal = effort.budget();
    match style {
        ThinkingStyle::Adaptive { xhigh } => {
            let level = match effort {
                Effort::Minimal | Effort::Low => "low",
                Effort::Medium => "medium",
                Effort::High => "high",
                Effort::XHigh if xhigh => "xhigh",
                Effort::XHigh => "high",
                Effort::Max => "max",
            };
            ThinkingPlan {
                thinking: Thinking::Adaptive(level),
                max_tokens: client_max.unwrap_or(nominal + DEFAULT_MAX_TOKENS),
            }
        }
        ThinkingStyle::Budget => {
            let (budget, max_tokens) = match client_max {
                None => (nominal, nominal + DEFAULT_MAX_TOKENS),
                Some(m) if m > MIN_BUDGET => (nominal.min(m - 1), m),
                Some(m) => (MIN_BUDGET, MIN_BUDGET + m),
            };
            ThinkingPlan {
                thinking: Thinking::Budget(budget),
                max_tokens,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and a stream that never said.
        _ => "stop",
    }
}

/// Anthropic `usage` → OpenAI `usage` (cache reads and writes are prompt tokens too).
fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = n("cache_read_input_tokens");
    let prompt = n("input_tokens") + cache_read + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    })
}

/// Non-streaming: the complete Anthropic message (as built by `super::Collector::message()`)
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

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    //! Golden files under `tests/golden/chat/`:
    //! - `request_*.json`: `{"request", "expected", "expected_betas"?, "expected_stream"?,
    //!   "expected_include_usage"?}` or `{"request", "error": {"param"}}`;
    //! - `stream_*.json`: `{"include_usage", "events": [[name, data], …], "expected_chunks",
    //!   "expected_completion"}`. Chunks are written without their envelope (`id`, `object`,
    //!   `created`, `model`), which the runner checks on every chunk. An `error` event is
    //!   passed to `fail`, whose object ends the expected chunks; `expected_completion` is then
    //!   `null` (the non-streaming path answers with an error instead).
    //!
    //! `UPDATE_GOLDEN=1` rewrites the expected parts from the code's output: review every diff.

    use super::*;
    use crate::anthropic::collector::Collector;
    use std::path::Path;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/chat");
    const ID: &str = "chatcmpl-test";
    const CREATED: u64 = 1_700_000_000;
    const MODEL: &str = "client-model";

    fn resolve(name: &str) -> String {
        let c =
            crate::anthropic::catalogue::Catalogue::new(crate::config::Config::default().models, 0);
        c.resolve(name).to_string()
    }

    fn update() -> bool {
        std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
    }

    fn write(path: &Path, v: &Value) {
        let text = serde_json::to_string_pretty(v).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn golden_files() {
        let mut files: Vec<_> = std::fs::read_dir(DIR)
            .expect("tests/golden/chat")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        assert!(files.len() >= 20, "golden cases missing");
        let mut failures = Vec::new();
        for path in &files {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let result = if name.starts_with("request_") {
                run_request(path, case)
            } else if name.starts_with("stream_") {
                run_stream(path, case)
            } else {
                Err("unknown golden file kind".to_string())
            };
            if let Err(e) = result {
                failures.push(format!("{name}: {e}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    }

    fn diff(what: &str, got: &Value, want: &Value) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "{what} differs\n got: {}\nwant: {}",
                serde_json::to_string(got).unwrap(),
                serde_json::to_string(want).unwrap()
            ))
        }
    }

    fn run_request(path: &Path, mut case: Value) -> Result<(), String> {
        let got = translate_request(&case["request"], &resolve);
        if let Some(want) = case.get("error") {
            return match got {
                Err(e) => diff("error param", &json!(e.param), &want["param"]),
                Ok(t) => Err(format!("expected an error, got {}", t.body)),
            };
        }
        let t = got.map_err(|e| format!("unexpected error {e:?}"))?;
        let client_model = case["request"]["model"].as_str().unwrap_or("").to_string();
        if t.client_model != client_model {
            return Err(format!("client_model {}", t.client_model));
        }
        if t.body["stream"] != json!(true) {
            return Err("upstream body must stream".into());
        }
        let betas = json!(t.betas);
        let stream = json!(t.stream);
        let include_usage = json!(t.include_usage);
        if update() {
            case["expected"] = t.body;
            case["expected_betas"] = betas;
            case["expected_stream"] = stream;
            case["expected_include_usage"] = include_usage;
            write(path, &case);
            return Ok(());
        }
        diff("body", &t.body, &case["expected"])?;
        diff(
            "betas",
            &betas,
            case.get("expected_betas").unwrap_or(&json!([])),
        )?;
        diff(
            "stream",
            &stream,
            case.get("expected_stream").unwrap_or(&json!(false)),
        )?;
        diff(
            "include_usage",
            &include_usage,
            case.get("expected_include_usage").unwrap_or(&json!(false)),
        )
    }

    fn run_stream(path: &Path, mut case: Value) -> Result<(), String> {
        let include_usage = case["include_usage"].as_bool().unwrap_or(false);
        let mut s = ChatStream::new(ID.into(), CREATED, MODEL.into(), include_usage);
        let mut collector = Collector::new();
        let mut chunks = Vec::new();
        let mut failed = false;
        for e in case["events"].as_array().ok_or("no events")? {
            let ev = Event {
                name: e[0].as_str().unwrap().to_string(),
                data: e[1].clone(),
            };
            collector.push(&ev);
            if ev.name == "error" {
                let err = &ev.data["error"];
                chunks.push(s.fail(
                    err["type"].as_str().unwrap(),
                    err["message"].as_str().unwrap(),
                ));
                failed = true;
                break;
            }
            chunks.extend(s.on_event(&ev));
        }
        if !failed {
            chunks.extend(s.finish());
        }
        assert!(s.finish().is_empty(), "finish must be idempotent");

        // The envelope, checked on every chunk here rather than in every file.
        let mut bare = Vec::new();
        for c in &chunks {
            if c.get("error").is_some() {
                bare.push(c.clone());
                continue;
            }
            if c["id"] != ID
                || c["object"] != "chat.completion.chunk"
                || c["created"] != CREATED
                || c["model"] != MODEL
            {
                return Err(format!("bad chunk envelope {c}"));
            }
            if c["choices"]
                .as_array()
                .is_some_and(|a| a.iter().any(|ch| ch["index"] != 0))
            {
                return Err(format!("choice index must be 0: {c}"));
            }
            let mut c = c.as_object().unwrap().clone();
            for k in ["id", "object", "created", "model"] {
                c.remove(k);
            }
            bare.push(Value::Object(c));
        }
        let completion = if failed {
            Value::Null
        } else {
            completion(&collector.message(), ID, CREATED, MODEL)
        };
        if !failed {
            agree(&chunks, &completion)?;
        }
        if update() {
            case["expected_chunks"] = Value::Array(bare);
            case["expected_completion"] = completion;
            write(path, &case);
            return Ok(());
        }
        diff("chunks", &Value::Array(bare), &case["expected_chunks"])?;
        diff("completion", &completion, &case["expected_completion"])
    }

    /// The streamed chunks, folded up, say what the non-streaming completion says.
    fn agree(chunks: &[Value], completion: &Value) -> Result<(), String> {
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut calls: Vec<(Value, Value, String)> = Vec::new();
        let mut finish = Value::Null;
        let mut usage = Value::Null;
        for c in chunks {
            if c["choices"].as_array().is_some_and(Vec::is_empty) {
                usage = c["usage"].clone();
            }
            for ch in c["choices"].as_array().into_iter().flatten() {
                let d = &ch["delta"];
                content += d["content"].as_str().unwrap_or("");
                reasoning += d["reasoning_content"].as_str().unwrap_or("");
                for tc in d["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap() as usize;
                    if tc.get("id").is_some() {
                        if i != calls.len() {
                            return Err(format!("tool call index {i} is not contiguous"));
                        }
                        calls.push((
                            tc["id"].clone(),
                            tc["function"]["name"].clone(),
                            String::new(),
                        ));
                    }
                    let call = calls.get_mut(i).ok_or("arguments before the call")?;
                    call.2 += tc["function"]["arguments"].as_str().unwrap_or("");
                }
                if !ch["finish_reason"].is_null() {
                    finish = ch["finish_reason"].clone();
                }
            }
        }
        let m = &completion["choices"][0]["message"];
        diff(
            "content",
            &json!(content),
            &json!(m["content"].as_str().unwrap_or("")),
        )?;
        diff(
            "reasoning",
            &json!(reasoning),
            &json!(m["reasoning_content"].as_str().unwrap_or("")),
        )?;
        let want_calls: Vec<Value> = m["tool_calls"].as_array().cloned().unwrap_or_default();
        if calls.len() != want_calls.len() {
            return Err("tool call count differs".into());
        }
        for ((id, name, args), want) in calls.iter().zip(&want_calls) {
            diff("tool call id", id, &want["id"])?;
            diff("tool call name", name, &want["function"]["name"])?;
            let parsed: Value = serde_json::from_str(args)
                .map_err(|e| format!("streamed arguments {args:?}: {e}"))?;
            let want_args: Value =
                serde_json::from_str(want["function"]["arguments"].as_str().unwrap()).unwrap();
            diff("tool call arguments", &parsed, &want_args)?;
        }
        diff(
            "finish_reason",
            &finish,
            &completion["choices"][0]["finish_reason"],
        )?;
        if !usage.is_null() {
            diff("usage", &usage, &completion["usage"])?;
        }
        Ok(())
    }

    #[test]
    fn thinking_styles() {
        use ThinkingStyle::*;
        let cases = [
            ("claude-sonnet-4-6", Adaptive { xhigh: false }),
            ("claude-opus-4-6", Adaptive { xhigh: false }),
            ("claude-opus-4-7", Adaptive { xhigh: true }),
            ("claude-opus-4-8", Adaptive { xhigh: true }),
            ("claude-sonnet-5", Adaptive { xhigh: false }),
            ("claude-opus-5", Adaptive { xhigh: true }),
            ("claude-mythos-preview", Adaptive { xhigh: false }),
            ("claude-sonnet-4-5-20250929", Budget),
            ("claude-haiku-4-5-20251001", Budget),
            ("claude-haiku-4-5", Budget),
            ("claude-opus-4-5-20251101", Budget),
            ("claude-opus-4-20250514", Budget),
            ("claude-3-7-sonnet-20250219", Budget),
            ("anthropic.claude-opus-4-6-v1", Adaptive { xhigh: false }),
            ("my-model", Budget),
        ];
        for (id, want) in cases {
            assert_eq!(thinking_style(id), want, "{id}");
        }
    }

    #[test]
    fn budget_clamping() {
        let plan = |e, m| plan_thinking(Some(e), ThinkingStyle::Budget, m);
        // No client limit: nominal budget, room for the answer on top.
        assert_eq!(
            plan(Effort::High, None),
            ThinkingPlan {
                thinking: Thinking::Budget(16384),
                max_tokens: 24576
            }
        );
        // A client limit caps the budget below it.
        assert_eq!(
            plan(Effort::High, Some(4000)),
            ThinkingPlan {
                thinking: Thinking::Budget(3999),
                max_tokens: 4000
            }
        );
        assert_eq!(
            plan(Effort::Low, Some(4000)),
            ThinkingPlan {
                thinking: Thinking::Budget(2048),
                max_tokens: 4000
            }
        );
        // Too small to hold the minimum budget: raised.
        assert_eq!(
            plan(Effort::Minimal, Some(1024)),
            ThinkingPlan {
                thinking: Thinking::Budget(1024),
                max_tokens: 2048
            }
        );
        assert_eq!(
            plan(Effort::Medium, Some(1025)),
            ThinkingPlan {
                thinking: Thinking::Budget(1024),
                max_tokens: 1025
            }
        );
    }

    #[test]
    fn finish_reasons() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(Some(a)), o);
        }
    }
}
