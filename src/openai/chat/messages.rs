//! Chat Completions `messages` and `tools` → Anthropic `system`, `messages` and `tools` (the
//! *Messages* section of [`super`]'s docs). Content parts and turn merging are the shared
//! [`crate::openai::content`]; this module reads chat's own shapes.

use serde_json::{json, Map, Value};

use crate::openai::content::{self, text_block, Turns};
use crate::openai::TranslateError;

fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

/// `messages` → (`system` blocks, Anthropic `messages`), merging same-role neighbours.
pub fn convert(msgs: &[Value]) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
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
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => system.extend(system_blocks(content, &at)?),
            Some("user") => turns.push("user", user_blocks(content, &at)?),
            Some("assistant") => turns.push("assistant", assistant_blocks(m, content, &at)?),
            Some("tool") => turns.push("user", vec![tool_result(m, content, &at)?]),
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
        }
    }
    if turns.is_empty() {
        return Err(bad(
            "messages",
            "`messages` must contain a user or assistant message with content",
        ));
    }
    Ok((system, turns.finish()))
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
    let block = match part.get("type").and_then(Value::as_str) {
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
            content::image_block(url, &format!("{pat}.image_url.url"))?
        }
        Some("file") => content::document_block(
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
    Ok(Some(content::with_cache_control(block, part)))
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

/// A required, non-empty string field of `v`, or a 400 naming `param`.
fn required<'a>(
    v: &'a Value,
    key: &str,
    param: String,
    what: &str,
) -> Result<&'a str, TranslateError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(param, what))
}

/// One assistant tool call → a `tool_use` block (id byte for byte, arguments parsed; a call
/// whose arguments are not a JSON object is refused: the client sent it, so it can fix it).
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
    let id = required(call, "id", format!("{at}.id"), "a tool call needs an `id`")?;
    let f = call.get("function").unwrap_or(&Value::Null);
    let name = required(
        f,
        "name",
        format!("{at}.function.name"),
        "a tool call needs `function.name`",
    )?;
    let input = content::tool_input(f.get("arguments"))
        .map_err(|why| bad(format!("{at}.function.arguments"), why))?;
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// A `tool` message → a `tool_result` block: string content as is, text parts joined with
/// `\n` (never JSON-stringified).
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

/// `tools` → Anthropic tools, and whether any asked for strict schema adherence.
pub fn convert_tools(tools: Option<&Value>) -> Result<(Vec<Value>, bool), TranslateError> {
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
        let name = required(
            f,
            "name",
            format!("tools[{i}].function.name"),
            "a tool needs a name",
        )?;
        let schema = content::input_schema(
            f.get("parameters"),
            format!("tools[{i}].function.parameters"),
        )?;
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
