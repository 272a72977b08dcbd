//! Chat Completions `messages` and `tools` → Anthropic `system`, `messages` and `tools` (the
//! *Messages* section of [`super`]'s docs). Content parts and turn merging are the shared
//! [`crate::openai::content`]; this module reads chat's own shapes. `messages` is read where it
//! lies in the client's text ([`Item`]): the text of a message is carried over as written.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::base::jsonspan::Item;
use crate::openai::body::{Block, Message, ResultContent, Str};
use crate::openai::content::{self, text_block, text_value, Turns};
use crate::openai::TranslateError;

fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

/// A string member's value; `None` when absent or not a string.
fn string<'a>(v: Item<'a>, key: &str) -> Option<Cow<'a, str>> {
    v.get(key).and_then(|s| s.as_str())
}

/// `messages` (a non-empty array) → (`system` blocks, Anthropic `messages`), merging
/// same-role neighbours.
pub fn convert<'a>(msgs: Item<'a>) -> Result<(Vec<Value>, Vec<Message<'a>>), TranslateError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (i, m) in msgs.items().enumerate() {
        let at = format!("messages[{i}]");
        if !m.is_object() {
            return Err(bad(&at, "each message must be an object"));
        }
        for key in ["audio", "function_call"] {
            if m.field(key).is_some() {
                return Err(bad(
                    format!("{at}.{key}"),
                    format!("`{key}` in messages is not supported"),
                ));
            }
        }
        let content = m.field("content");
        match string(m, "role").as_deref() {
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
fn parts<'a>(content: Item<'a>, at: &str) -> Result<Vec<(String, Item<'a>)>, TranslateError> {
    if !content.is_array() {
        return Err(bad(
            format!("{at}.content"),
            "`content` must be a string or an array of parts",
        ));
    }
    Ok(content
        .items()
        .enumerate()
        .map(|(j, part)| (format!("{at}.content[{j}]"), part))
        .collect())
}

/// The text of a `text` part (as written); any other part type is a 400 naming `….type`.
fn text_of<'a>(part: Item<'a>, pat: &str, what: &str) -> Result<Str<'a>, TranslateError> {
    if !part.get("type").is_some_and(|t| t.is_str("text")) {
        return Err(bad(
            format!("{pat}.type"),
            format!("{what} accept only text parts"),
        ));
    }
    part.get("text")
        .and_then(Str::of)
        .ok_or_else(|| bad(format!("{pat}.text"), "a text part needs a string `text`"))
}

/// `system` / `developer` content → system text blocks.
fn system_blocks(content: Option<Item>, at: &str) -> Result<Vec<Value>, TranslateError> {
    let Some(c) = content else {
        return Ok(vec![]);
    };
    if let Some(s) = c.as_str() {
        return Ok(text_value(&s, None).into_iter().collect());
    }
    let mut out = Vec::new();
    for (pat, part) in parts(c, at)? {
        let text = text_of(part, &pat, "system and developer messages")?;
        out.extend(text_value(&text.value(), Some(part)));
    }
    Ok(out)
}

/// `user` content → text, image and document blocks.
fn user_blocks<'a>(content: Option<Item<'a>>, at: &str) -> Result<Vec<Block<'a>>, TranslateError> {
    let Some(c) = content else {
        return Err(bad(
            format!("{at}.content"),
            "a user message needs `content`",
        ));
    };
    if let Some(s) = Str::of(c) {
        return Ok(text_block(s, None).into_iter().collect());
    }
    let mut out = Vec::new();
    for (pat, part) in parts(c, at)? {
        out.extend(user_part(part, &pat)?);
    }
    Ok(out)
}

/// One user content part → an Anthropic block (`None` for empty text).
fn user_part<'a>(part: Item<'a>, pat: &str) -> Result<Option<Block<'a>>, TranslateError> {
    let block = match string(part, "type").as_deref() {
        Some("text") => return Ok(text_block(text_of(part, pat, "user messages")?, Some(part))),
        Some("image_url") => {
            // The spec has `{url, detail}`; some clients send the URL string itself.
            let url = match part.get("image_url") {
                Some(u) if u.is_string() => u.as_str(),
                Some(o) => string(o, "url"),
                None => None,
            }
            .ok_or_else(|| {
                bad(
                    format!("{pat}.image_url.url"),
                    "an image part needs `image_url.url`",
                )
            })?;
            content::image_block(&url, &format!("{pat}.image_url.url"))?
        }
        Some("file") => content::document_block(
            &part.get("file").map_or(Value::Null, |f| f.to_value()),
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
    Ok(Some(Block::Json(content::with_cache_control(block, part))))
}

/// `assistant` → text blocks, then one `tool_use` per tool call.
fn assistant_blocks<'a>(
    m: Item<'a>,
    content: Option<Item<'a>>,
    at: &str,
) -> Result<Vec<Block<'a>>, TranslateError> {
    let mut out = Vec::new();
    match content {
        None => {}
        Some(c) if c.is_string() => out.extend(Str::of(c).and_then(|s| text_block(s, None))),
        Some(c) => {
            for (pat, part) in parts(c, at)? {
                // A `refusal` part is what the assistant said; it goes back as text.
                let text = if part.get("type").is_some_and(|t| t.is_str("refusal")) {
                    part.get("refusal")
                        .and_then(Str::of)
                        .unwrap_or(Str::Own(String::new()))
                } else {
                    text_of(part, &pat, "assistant messages")?
                };
                out.extend(text_block(text, Some(part)));
            }
        }
    }
    if let Some(r) = m.get("refusal").and_then(Str::of) {
        out.extend(text_block(r, None));
    }
    if let Some(calls) = m.field("tool_calls") {
        if !calls.is_array() {
            return Err(bad(
                format!("{at}.tool_calls"),
                "`tool_calls` must be an array",
            ));
        }
        for (j, call) in calls.items().enumerate() {
            out.push(tool_use(call, &format!("{at}.tool_calls[{j}]"))?);
        }
    }
    Ok(out)
}

/// A required, non-empty string field of `v`, or a 400 naming `param`.
fn required<'a>(
    v: Item<'a>,
    key: &str,
    param: String,
    what: &str,
) -> Result<Cow<'a, str>, TranslateError> {
    string(v, key)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(param, what))
}

/// One assistant tool call → a `tool_use` block (id byte for byte, arguments parsed; a call
/// whose arguments are not a JSON object is refused: the client sent it, so it can fix it).
fn tool_use<'a>(call: Item<'a>, at: &str) -> Result<Block<'a>, TranslateError> {
    let kind = call.get("type").and_then(|t| t.as_str());
    if kind.as_deref().unwrap_or("function") != "function" {
        return Err(bad(
            format!("{at}.type"),
            "only `function` tool calls are supported",
        ));
    }
    let id = required(call, "id", format!("{at}.id"), "a tool call needs an `id`")?;
    let f = call.get("function");
    let name = match f {
        Some(f) => required(
            f,
            "name",
            format!("{at}.function.name"),
            "a tool call needs `function.name`",
        )?,
        None => {
            return Err(bad(
                format!("{at}.function.name"),
                "a tool call needs `function.name`",
            ))
        }
    };
    let arguments = f.and_then(|f| f.get("arguments")).map(|a| a.to_value());
    let input = content::tool_input(arguments.as_ref())
        .map_err(|why| bad(format!("{at}.function.arguments"), why))?;
    Ok(Block::Json(content::tool_use_block(
        id.into(),
        name.into(),
        input,
    )))
}

/// A `tool` message → a `tool_result` block: string content as is, text parts joined with
/// `\n` (never JSON-stringified).
fn tool_result<'a>(
    m: Item<'a>,
    content: Option<Item<'a>>,
    at: &str,
) -> Result<Block<'a>, TranslateError> {
    let id = m
        .get("tool_call_id")
        .filter(|id| id.is_string() && !id.is_str(""))
        .and_then(Str::of)
        .ok_or_else(|| {
            bad(
                format!("{at}.tool_call_id"),
                "a tool message needs `tool_call_id`",
            )
        })?;
    let text = match content {
        None => Str::Own(String::new()),
        Some(c) if c.is_string() => Str::of(c).unwrap_or(Str::Own(String::new())),
        Some(c) => Str::Own(
            parts(c, at)?
                .into_iter()
                .map(|(pat, part)| text_of(part, &pat, "tool messages").map(|t| t.value()))
                .collect::<Result<Vec<_>, _>>()?
                .join("\n"),
        ),
    };
    Ok(Block::ToolResult {
        tool_use_id: id,
        content: Some(ResultContent::Text(text)),
        cache_control: None,
    })
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
        let name = required_value(
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

/// A required, non-empty string field of a `Value`, or a 400 naming `param`.
fn required_value<'v>(
    v: &'v Value,
    key: &str,
    param: String,
    what: &str,
) -> Result<&'v str, TranslateError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(param, what))
}
