//! The Responses request: its top-level parameters checked and translated into an Anthropic
//! Messages request (the parameter table is in the module docs of [`super`]).

use serde_json::{json, Map, Value};

use super::items;
use super::tools::{self, ToolTable};
use crate::openai::body::Body;
use crate::openai::draft::{Draft, Format, Sampling};
use crate::openai::reasoning::ReasoningEffort;
use crate::openai::{Request, TranslateError, Translated};

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

fn err(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

fn is_absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// Translates a Responses request into an Anthropic Messages request (always streamed): the
/// tests' and fuzz targets' entry point; the server reads the body as a [`Request`] and calls
/// [`translate`].
pub fn translate_request(
    req: &Value,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Translated, TranslateError> {
    let not_object = TranslateError {
        param: None,
        message: "the request body must be a JSON object".into(),
    };
    crate::openai::translate_value(req, "input", not_object, |r| translate(r, resolve))
}

/// Translates a Responses request read from its JSON text.
pub fn translate<'a>(
    req: &Request<'a>,
    resolve: &dyn Fn(&str) -> String,
) -> Result<Translated<Body<'a>>, TranslateError> {
    let obj = &req.params;
    check_parameters(obj)?;
    let client_model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(err("model", "`model` is required and must be a string")),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err("stream", "`stream` must be a boolean")),
    };
    let mut d = Draft::new(client_model.clone(), resolve(&client_model), stream);

    let tools = ToolTable::build(obj.get("tools"))?;
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => items::push_text(&mut d.system, s),
        Some(_) => return Err(err("instructions", "`instructions` must be a string")),
    }
    let (item_system, messages) = items::convert_input(req.history, &tools)?;
    d.system.extend(item_system);
    d.messages = messages;
    d.format = convert_text(obj.get("text"))?;
    d.choice = tools::tool_choice(obj.get("tool_choice"), &tools)?;
    d.parallel = match obj.get("parallel_tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(err(
                "parallel_tool_calls",
                "`parallel_tool_calls` must be a boolean",
            ))
        }
    };
    d.tools = tools.anthropic;
    (d.effort, d.summary) = parse_reasoning(obj.get("reasoning"))?;
    d.max_tokens = match obj.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(err(
                    "max_output_tokens",
                    "`max_output_tokens` must be a positive integer",
                ))
            }
        },
    };
    d.sampling = Sampling::read(obj)?;
    d.finish()
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

/// `reasoning` → (effort, whether a summary is asked for).
fn parse_reasoning(v: Option<&Value>) -> Result<(Option<ReasoningEffort>, bool), TranslateError> {
    let r = match v {
        None | Some(Value::Null) => return Ok((None, false)),
        Some(Value::Object(r)) => r,
        Some(_) => return Err(err("reasoning", "`reasoning` must be an object")),
    };
    let effort = ReasoningEffort::parse(r.get("effort"), "reasoning.effort")?;
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

/// `text.format` → the answer's format.
fn convert_text(v: Option<&Value>) -> Result<Format, TranslateError> {
    let text = match v {
        None | Some(Value::Null) => return Ok(Format::Text),
        Some(Value::Object(t)) => t,
        Some(_) => return Err(err("text", "`text` must be an object")),
    };
    let format = match text.get("format") {
        None | Some(Value::Null) => return Ok(Format::Text),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(err("text.format", "`text.format` must be an object")),
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Format::Text),
        Some("json_object") => Ok(Format::JsonObject),
        Some("json_schema") => match format.get("schema") {
            Some(schema @ Value::Object(_)) => Ok(Format::JsonSchema(schema.clone())),
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
