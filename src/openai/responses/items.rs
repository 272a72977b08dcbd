//! Responses `input` items → Anthropic `system` and `messages` (the *Input items* and
//! *`encrypted_content`* sections of [`super`]'s docs). Content parts and turn merging are the
//! shared [`crate::openai::content`]; this module reads the Responses shapes.

use serde_json::{json, Value};

use super::tools::ToolTable;
use crate::openai::content::{self, text_block, Turns, NO_FILES};
use crate::openai::TranslateError;

/// Marks `encrypted_content` we wrote.
pub(super) const REASONING_PREFIX: &str = "claudegate:v1:";

/// Adds a text block unless the text is empty (Anthropic refuses empty text blocks).
pub(super) fn push_text(blocks: &mut Vec<Value>, text: &str) {
    blocks.extend(text_block(text, None));
}

/// `input` → (system blocks from system/developer items, Anthropic messages).
pub(super) fn convert_input(
    input: Option<&Value>,
    tools: &ToolTable,
) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    match input {
        Some(Value::String(s)) if !s.is_empty() => {
            turns.push("user", vec![json!({"type": "text", "text": s})]);
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("input[{i}]");
                convert_item(item, &p, tools, &mut system, &mut turns)?;
            }
        }
        None | Some(Value::Null) => {
            return Err(TranslateError::new("input", "`input` is required"))
        }
        Some(_) => {
            return Err(TranslateError::new(
                "input",
                "`input` must be a non-empty string or a list of items",
            ))
        }
    }
    if turns.is_empty() {
        return Err(TranslateError::new(
            "input",
            "`input` must contain at least one user or assistant message",
        ));
    }
    Ok((system, turns.finish()))
}

/// One input item into the system blocks or the turns.
fn convert_item(
    item: &Value,
    p: &str,
    tools: &ToolTable,
    system: &mut Vec<Value>,
    turns: &mut Turns,
) -> Result<(), TranslateError> {
    if !item.is_object() {
        return Err(TranslateError::new(p, "each input item must be an object"));
    }
    let str_field = |k: &str| -> Result<&str, TranslateError> {
        item.get(k).and_then(Value::as_str).ok_or_else(|| {
            TranslateError::new(format!("{p}.{k}"), format!("`{k}` must be a string"))
        })
    };
    match item.get("type").and_then(Value::as_str) {
        None | Some("message") => convert_message(item, p, system, turns)?,
        Some(kind @ ("function_call" | "custom_tool_call")) => {
            let call_id = str_field("call_id")?;
            let name = str_field("name")?;
            let namespace = item.get("namespace").and_then(Value::as_str);
            let input = if kind == "function_call" {
                // Arguments that are not a JSON object (e.g. a call cut by max_tokens, replayed
                // from the history) become `{}`, so one broken call does not wedge a session.
                content::tool_input(item.get("arguments")).unwrap_or_else(|_| json!({}))
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
            return Err(TranslateError::new(
                format!("{p}.type"),
                "item references are not supported: claudegate stores no items; send the items themselves (a client that sends references, such as the Vercel AI SDK's Responses provider, sends the items instead when given `store: false`)",
            ))
        }
        Some(other) => {
            return Err(TranslateError::new(
                format!("{p}.type"),
                format!("input items of type `{other}` are not supported"),
            ))
        }
    }
    Ok(())
}

/// A message item (typed or shorthand).
fn convert_message(
    item: &Value,
    p: &str,
    system: &mut Vec<Value>,
    turns: &mut Turns,
) -> Result<(), TranslateError> {
    let content = &item["content"];
    if !content.is_string() && !content.is_array() {
        return Err(TranslateError::new(
            format!("{p}.content"),
            "`content` must be a string or a list of parts",
        ));
    }
    match item.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => system.extend(text_parts(content, p)?),
        Some("user") => turns.push("user", user_content(content, &format!("{p}.content"))?),
        Some("assistant") => turns.push("assistant", text_parts(content, p)?),
        _ => {
            return Err(TranslateError::new(
                format!("{p}.role"),
                "`role` must be user, assistant, system or developer",
            ))
        }
    }
    Ok(())
}

/// The text blocks of a system/developer/assistant message: only text parts are allowed there.
fn text_parts(content: &Value, p: &str) -> Result<Vec<Value>, TranslateError> {
    let Some(parts) = content.as_array() else {
        return Ok(text_block(content.as_str().unwrap_or(""), None)
            .into_iter()
            .collect());
    };
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let field = match part["type"].as_str() {
            Some("input_text" | "output_text" | "text") => "text",
            Some("refusal") => "refusal",
            _ => {
                return Err(TranslateError::new(
                    format!("{p}.content[{j}].type"),
                    "only text parts are allowed in system, developer and assistant messages",
                ))
            }
        };
        out.extend(text_block(part[field].as_str().unwrap_or(""), Some(part)));
    }
    Ok(out)
}

/// User (or tool output) content → Anthropic blocks.
fn user_content(content: &Value, p: &str) -> Result<Vec<Value>, TranslateError> {
    let Some(parts) = content.as_array() else {
        return Ok(text_block(content.as_str().unwrap_or(""), None)
            .into_iter()
            .collect());
    };
    let mut blocks = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{p}[{j}]");
        let block = match part["type"].as_str() {
            Some("input_text" | "output_text" | "text") => {
                blocks.extend(text_block(part["text"].as_str().unwrap_or(""), Some(part)));
                continue;
            }
            Some("input_image") => image(part, &pp)?,
            Some("input_file") => content::document_block(part, &pp)?,
            Some(other) => {
                return Err(TranslateError::new(
                    format!("{pp}.type"),
                    format!("content parts of type `{other}` are not supported"),
                ))
            }
            None => {
                return Err(TranslateError::new(
                    format!("{pp}.type"),
                    "each part needs a `type`",
                ))
            }
        };
        blocks.push(content::with_cache_control(block, part));
    }
    Ok(blocks)
}

/// `input_image` → an Anthropic image block (`image_url` as a string or `{"url": …}`).
fn image(part: &Value, p: &str) -> Result<Value, TranslateError> {
    if part.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(TranslateError::new(format!("{p}.file_id"), NO_FILES));
    }
    let url = match part.get("image_url") {
        Some(Value::String(u)) => Some(u.as_str()),
        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
        _ => part.get("url").and_then(Value::as_str),
    };
    let Some(url) = url else {
        return Err(TranslateError::new(
            format!("{p}.image_url"),
            "`image_url` must be a data URL or an https URL",
        ));
    };
    content::image_block(url, &format!("{p}.image_url"))
}

/// A thinking or redacted_thinking block → `encrypted_content` (see the module docs).
pub(super) fn encode_reasoning(block: &Value) -> String {
    format!(
        "{REASONING_PREFIX}{}",
        crate::base::base64::encode(block.to_string().as_bytes())
    )
}

/// Our `encrypted_content` → the block it carries; None for anything else.
pub(super) fn decode_reasoning(content: &str) -> Option<Value> {
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
