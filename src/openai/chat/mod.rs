//! `/v1/chat/completions` ⇄ Anthropic Messages: pure translation, no I/O. The route
//! (`routes::openai`) serves the door on both backends through these translators (on the CLI
//! backend after the [`super::params`] check for that backend).
//!
//! - [`translate_request`]: an OpenAI Chat Completions body → an Anthropic Messages body
//!   (always `stream: true` upstream), or a 400 naming the parameter we cannot honour;
//!   `messages` and `tools` are read in [`messages`];
//! - [`ChatStream`] and [`completion`] ([`response`]): Anthropic events →
//!   `chat.completion.chunk`s, and the collected Anthropic message → one `chat.completion`.
//!   Errors use [`crate::base::error::openai_type_of`] for their OpenAI `type`.
//!
//! # Request parameters
//!
//! Which top-level parameters are accepted, ignored or refused (and why) is the one policy
//! in [`super::params`], shared with the CLI backend. The ones used translate so:
//!
//! | parameter | becomes |
//! |---|---|
//! | `model` | required; goes through the alias table; echoed back as sent |
//! | `messages` | required, non-empty; see *Messages* below |
//! | `max_completion_tokens`, `max_tokens` | `max_tokens` (the former wins); absent: see [`super::reasoning`] |
//! | `stop` | a string or a list → `stop_sequences` |
//! | `temperature`, `top_p`, `top_k` | the sampling rule of [`super::draft`] (one for both doors) |
//! | `tools` | `function` tools → `{name, description, input_schema}` (no `parameters` → an empty object schema); `strict: true` → Anthropic strict tool use (+ structured-outputs beta). Other tool types → 400 `tools[i].type` |
//! | `tool_choice` | `auto`, `none`, `required`, `{type: function, function: {name}}`; converted as [`super::draft`] says |
//! | `parallel_tool_calls` | `false` → `disable_parallel_tool_use` ([`super::draft`]) |
//! | `response_format` | `text` → nothing; `json_schema` → `output_config.format` (+ beta); `json_object` → JSON mode ([`super::draft`]) |
//! | `reasoning_effort` | the reasoning plan of [`super::reasoning`], the same table as `/v1/responses` |
//! | `stream` | → [`super::Translated::stream`]; upstream is always streamed |
//! | `stream_options.include_usage` | → [`super::Translated::include_usage`]: a final `choices: []` chunk with usage |
//!
//! # Messages
//!
//! - `system` and `developer` → the top-level `system` text blocks, in order (text parts only).
//! - `user` → text, `image_url` (a data URL or an `http(s)` URL; `detail` dropped), `file` (a
//!   PDF: `file_data` as a data URL or bare base64 with a `.pdf` `filename`, or `file_url`)
//!   → the shared blocks of [`super::content`]. `input_audio`, `file_id` and unknown parts →
//!   400 naming the part. `cache_control` on a part is kept.
//! - `assistant` → text (and a `refusal` string as text), then `tool_calls` → `tool_use`
//!   (ids byte for byte; `arguments` parsed, `""` meaning `{}`; unparsable or not an object →
//!   400). `reasoning_content` sent back by the client is dropped: without its signature
//!   Anthropic cannot take it back.
//! - `tool` → a `tool_result` for `tool_call_id` (byte for byte); string content as is, text
//!   parts joined with `\n` (never JSON-stringified).
//! - Consecutive messages of the same Anthropic role are merged into one turn, ordered as
//!   [`super::content::Turns`] says. Empty text is dropped (Anthropic refuses empty text
//!   blocks). Message `name` is ignored.
//!
//! # Responses
//!
//! - `finish_reason` ([`super::answer::ending`]): `end_turn`, `stop_sequence`, `pause_turn` →
//!   `stop`; `max_tokens`, `model_context_window_exceeded` → `length`; `tool_use` →
//!   `tool_calls`; `refusal` → `content_filter`.
//! - Text blocks are concatenated into `content`; thinking text into `reasoning_content`;
//!   `redacted_thinking` and signatures are not shown.
//! - Usage ([`super::answer::counts`]): `prompt_tokens` = input + cache read + cache
//!   creation, `prompt_tokens_details.cached_tokens` = cache read, `completion_tokens` =
//!   output (thinking included). No `reasoning_tokens`: Anthropic does not report them apart.

pub mod messages;
pub mod response;

pub use response::{completion, ChatStream};

use serde_json::Value;

use super::body::Body;
use super::draft::{Choice, Draft, Format, Sampling};
use super::params::{ChatRequest, OAUTH};
use super::reasoning::ReasoningEffort;
use super::{Request, TranslateError, Translated};

fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

/// Translates a Chat Completions request into an Anthropic Messages request (the tests' and
/// fuzz targets' entry point; the server reads the body as a [`Request`] and calls
/// [`translate`]).
pub fn translate_request(
    req: &Value,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Translated, TranslateError> {
    let not_object = bad("body", "the request body must be a JSON object");
    super::translate_value(req, "messages", not_object, |r| translate(r, resolve))
}

/// Translates a Chat Completions request read from its JSON text.
pub fn translate<'a>(
    req: &Request<'a>,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Translated<Body<'a>>, TranslateError> {
    let r = ChatRequest::read_split(&req.params, req.history, &OAUTH)?;
    let mut d = Draft::new(r.model.clone(), resolve(&r.model), r.stream);
    d.include_usage = r.include_usage;
    d.max_tokens = r.max_tokens;
    if let Some(messages) = req.history {
        (d.system, d.messages) = messages::convert(messages)?;
    }
    (d.tools, d.strict_tools) = messages::convert_tools(r.get("tools"))?;
    d.choice = tool_choice(r.get("tool_choice"))?;
    d.parallel = match r.get("parallel_tool_calls") {
        None => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| {
            bad(
                "parallel_tool_calls",
                "`parallel_tool_calls` must be a boolean",
            )
        })?),
    };
    d.format = response_format(r.get("response_format"))?;
    d.effort = ReasoningEffort::parse(r.get("reasoning_effort"), "reasoning_effort")?;
    d.stop_sequences = stop_sequences(r.get("stop"))?;
    d.sampling = Sampling::read(r.params())?;
    d.finish()
}

/// `tool_choice` as the client wrote it.
fn tool_choice(v: Option<&Value>) -> Result<Option<Choice>, TranslateError> {
    let wrong = || {
        bad(
            "tool_choice",
            "`tool_choice` must be auto, none, required or a {type: function, function: {name}} object",
        )
    };
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Choice::mode(s).map(Some).ok_or_else(wrong),
        Some(o) if o["type"] == "function" => {
            let name = o["function"]["name"].as_str().ok_or_else(|| {
                bad(
                    "tool_choice.function.name",
                    "a named tool choice needs `function.name`",
                )
            })?;
            Ok(Some(Choice::Tool {
                name: name.to_string(),
                asked: name.to_string(),
                param: "tool_choice.function.name".into(),
            }))
        }
        Some(_) => Err(wrong()),
    }
}

/// `stop`: a string or a list of strings (an empty list → none).
fn stop_sequences(stop: Option<&Value>) -> Result<Vec<String>, TranslateError> {
    let wrong = || bad("stop", "`stop` must be a string or a list of strings");
    match stop {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(wrong),
        Some(_) => Err(wrong()),
    }
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

#[cfg(test)]
mod tests;
