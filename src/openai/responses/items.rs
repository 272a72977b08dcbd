//! Responses `input` items → Anthropic `system` and `messages` (the *Input items* and
//! *`encrypted_content`* sections of [`super`]'s docs). Content parts and turn merging are the
//! shared [`crate::openai::content`]; this module reads the Responses shapes. `input` is read
//! where it lies in the client's text ([`Item`]): texts and tool outputs are carried over as
//! written.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::tools::ToolTable;
use crate::base::jsonspan::Item;
use crate::openai::body::{Block, Message, ResultContent, Str};
use crate::openai::content::{self, text_block, text_value, Turns, NO_FILES};
use crate::openai::TranslateError;

/// Marks `encrypted_content` we wrote.
pub(super) const REASONING_PREFIX: &str = "claudegate:v1:";

/// Adds a text block unless the text is empty (Anthropic refuses empty text blocks).
pub(super) fn push_text(blocks: &mut Vec<Value>, text: &str) {
    blocks.extend(text_value(text, None));
}

/// A string member's value; `None` when absent or not a string.
fn string<'a>(v: Item<'a>, key: &str) -> Option<Cow<'a, str>> {
    v.get(key).and_then(|s| s.as_str())
}

/// `input` → (system blocks from system/developer items, Anthropic messages).
pub(super) fn convert_input<'a>(
    input: Option<Item<'a>>,
    tools: &ToolTable,
) -> Result<(Vec<Value>, Vec<Message<'a>>), TranslateError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    match input {
        Some(s) if s.is_string() && !s.is_str("") => {
            turns.push(
                "user",
                Str::of(s)
                    .and_then(|s| text_block(s, None))
                    .into_iter()
                    .collect(),
            );
        }
        Some(items) if items.is_array() => {
            for (i, item) in items.items().enumerate() {
                let p = format!("input[{i}]");
                convert_item(item, &p, tools, &mut system, &mut turns)?;
            }
        }
        None => return Err(TranslateError::new("input", "`input` is required")),
        Some(v) if v.is_null() => return Err(TranslateError::new("input", "`input` is required")),
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
fn convert_item<'a>(
    item: Item<'a>,
    p: &str,
    tools: &ToolTable,
    system: &mut Vec<Value>,
    turns: &mut Turns<'a>,
) -> Result<(), TranslateError> {
    if !item.is_object() {
        return Err(TranslateError::new(p, "each input item must be an object"));
    }
    let not_string =
        |k: &str| TranslateError::new(format!("{p}.{k}"), format!("`{k}` must be a string"));
    let str_field = |k: &str| -> Result<Cow<'a, str>, TranslateError> {
        string(item, k).ok_or_else(|| not_string(k))
    };
    match string(item, "type").as_deref() {
        // A `type` that is not a string reads as none, as it did from a `Value`.
        None | Some("message") => convert_message(item, p, system, turns)?,
        Some(kind @ ("function_call" | "custom_tool_call")) => {
            let call_id = str_field("call_id")?;
            let name = str_field("name")?;
            let namespace = string(item, "namespace");
            let input = if kind == "function_call" {
                // Arguments that are not a JSON object (e.g. a call cut by max_tokens, replayed
                // from the history) become `{}`, so one broken call does not wedge a session.
                let arguments = item.get("arguments").map(|a| a.to_value());
                content::tool_input(arguments.as_ref()).unwrap_or_else(|_| json!({}))
            } else {
                json!({"input": str_field("input")?})
            };
            turns.push(
                "assistant",
                vec![Block::Json(content::tool_use_block(
                    call_id.into(),
                    tools.flat_name(namespace.as_deref(), &name).into(),
                    input,
                ))],
            );
        }
        Some("function_call_output" | "custom_tool_call_output") => {
            // Kept as written (no unescaping): the id goes back out in the same JSON text.
            let tool_use_id = item
                .get("call_id")
                .and_then(Str::of)
                .ok_or_else(|| not_string("call_id"))?;
            let pp = format!("{p}.output");
            let content = match item.get("output") {
                Some(o) if o.is_str("") => None,
                Some(o) if o.is_string() => Str::of(o).map(ResultContent::Text),
                Some(o) if o.is_array() => {
                    let blocks = user_content(o, &pp)?;
                    (!blocks.is_empty()).then_some(ResultContent::Blocks(blocks))
                }
                None => None,
                Some(o) if o.is_null() => None,
                // Not in the spec, but seen: a JSON value is passed on as its text.
                Some(other) => Some(ResultContent::Text(Str::Own(other.to_value().to_string()))),
            };
            turns.push(
                "user",
                vec![Block::ToolResult {
                    tool_use_id,
                    content,
                    cache_control: None,
                }],
            );
        }
        Some("reasoning") => {
            // Foreign reasoning (e.g. from an OpenAI model) cannot be verified by Anthropic.
            if let Some(block) = string(item, "encrypted_content")
                .as_deref()
                .and_then(decode_reasoning)
            {
                turns.push("assistant", vec![Block::Json(block)]);
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
fn convert_message<'a>(
    item: Item<'a>,
    p: &str,
    system: &mut Vec<Value>,
    turns: &mut Turns<'a>,
) -> Result<(), TranslateError> {
    let content = match item.get("content") {
        Some(c) if c.is_string() || c.is_array() => c,
        _ => {
            return Err(TranslateError::new(
                format!("{p}.content"),
                "`content` must be a string or a list of parts",
            ))
        }
    };
    match string(item, "role").as_deref() {
        Some("system" | "developer") => system.extend(
            text_parts(content, p)?
                .into_iter()
                .filter_map(|(text, part)| text_value(&text.value(), part)),
        ),
        Some("user") => turns.push("user", user_content(content, &format!("{p}.content"))?),
        Some("assistant") => turns.push(
            "assistant",
            text_parts(content, p)?
                .into_iter()
                .filter_map(|(text, part)| text_block(text, part))
                .collect(),
        ),
        _ => {
            return Err(TranslateError::new(
                format!("{p}.role"),
                "`role` must be user, assistant, system or developer",
            ))
        }
    }
    Ok(())
}

/// The texts of a system/developer/assistant message, each with the part it came from: only
/// text parts are allowed there. Empty texts are kept (the caller drops them).
fn text_parts<'a>(
    content: Item<'a>,
    p: &str,
) -> Result<Vec<(Str<'a>, Option<Item<'a>>)>, TranslateError> {
    if !content.is_array() {
        return Ok(vec![(
            Str::of(content).unwrap_or(Str::Own(String::new())),
            None,
        )]);
    }
    let mut out = Vec::new();
    for (j, part) in content.items().enumerate() {
        let field = match string(part, "type").as_deref() {
            Some("input_text" | "output_text" | "text") => "text",
            Some("refusal") => "refusal",
            _ => {
                return Err(TranslateError::new(
                    format!("{p}.content[{j}].type"),
                    "only text parts are allowed in system, developer and assistant messages",
                ))
            }
        };
        let text = part.get(field).and_then(Str::of);
        out.push((text.unwrap_or(Str::Own(String::new())), Some(part)));
    }
    Ok(out)
}

/// User (or tool output) content → Anthropic blocks.
fn user_content<'a>(content: Item<'a>, p: &str) -> Result<Vec<Block<'a>>, TranslateError> {
    if !content.is_array() {
        let text = Str::of(content).unwrap_or(Str::Own(String::new()));
        return Ok(text_block(text, None).into_iter().collect());
    }
    let mut blocks = Vec::new();
    for (j, part) in content.items().enumerate() {
        let pp = format!("{p}[{j}]");
        let block = match string(part, "type").as_deref() {
            Some("input_text" | "output_text" | "text") => {
                let text = part.get("text").and_then(Str::of);
                blocks.extend(text_block(
                    text.unwrap_or(Str::Own(String::new())),
                    Some(part),
                ));
                continue;
            }
            Some("input_image") => image(part, &pp)?,
            Some("input_file") => content::document_block(&part.to_value(), &pp)?,
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
        blocks.push(Block::Json(content::with_cache_control(block, part)));
    }
    Ok(blocks)
}

/// `input_image` → an Anthropic image block (`image_url` as a string or `{"url": …}`).
fn image(part: Item, p: &str) -> Result<Value, TranslateError> {
    if part.field("file_id").is_some() {
        return Err(TranslateError::new(format!("{p}.file_id"), NO_FILES));
    }
    let url = match part.get("image_url") {
        Some(u) if u.is_string() => u.as_str(),
        Some(o) if o.is_object() => string(o, "url"),
        _ => string(part, "url"),
    };
    let Some(url) = url else {
        return Err(TranslateError::new(
            format!("{p}.image_url"),
            "`image_url` must be a data URL or an https URL",
        ));
    };
    content::image_block(&url, &format!("{p}.image_url"))
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
    let Value::Object(mut v) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    // The strings are moved into the block, not copied: a thinking block can be long.
    let mut take = |key: &str| match v.remove(key) {
        Some(s @ Value::String(_)) => Some(s),
        _ => None,
    };
    let kind = take("type")?;
    let mut block = serde_json::Map::new();
    match kind.as_str()? {
        "thinking" => {
            block.insert("thinking".into(), take("thinking")?);
            block.insert("signature".into(), take("signature")?);
        }
        "redacted_thinking" => {
            block.insert("data".into(), take("data")?);
        }
        _ => return None,
    }
    block.insert("type".into(), kind);
    Some(Value::Object(block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::jsonspan::{Doc, Grammar};
    use crate::openai::body::Body;

    /// A tool result must name its call by a string `call_id`, which goes over as written.
    #[test]
    fn a_tool_result_needs_its_call_id() {
        let convert = |output: Value| {
            let input = json!([
                {"type": "function_call", "call_id": "toolu_\u{e9}", "name": "f", "arguments": "{}"},
                output,
            ])
            .to_string();
            let doc = Doc::parse(&input, Grammar::Value).unwrap();
            convert_input(Some(doc.root()), &ToolTable::default()).map(|(_, messages)| {
                let body = Body {
                    messages,
                    ..Body::default()
                };
                body.to_value()["messages"].clone()
            })
        };
        for call_id in [None, Some(json!(7)), Some(json!(null))] {
            let mut output = json!({"type": "function_call_output", "output": "x"});
            if let Some(id) = call_id {
                output["call_id"] = id;
            }
            let e = convert(output).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("input[1].call_id"));
            assert_eq!(e.message, "`call_id` must be a string");
        }
        let output =
            json!({"type": "function_call_output", "call_id": "toolu_\u{e9}", "output": "x"});
        let turns = convert(output).unwrap();
        assert_eq!(turns[1]["content"][0]["tool_use_id"], "toolu_\u{e9}");
    }
}
