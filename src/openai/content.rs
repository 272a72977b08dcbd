//! Content both OpenAI doors take, turned into Anthropic blocks one way: text, images (a data
//! URL or an http(s) URL), PDFs (`file_data` as a data URL or bare base64 with a `.pdf`
//! filename, or `file_url`), tool calls from the history and tool schemas, and the
//! conversation they make up ([`Turns`]: same-role turns merged, blocks ordered as Anthropic
//! requires). Each door reads its own part shapes (chat's `image_url`/`file`, Responses'
//! `input_image`/`input_file`) and hands the pieces here, with the parameter path to name in a
//! 400. A conversation's text stays the client's JSON text ([`super::body::Str`]).

use serde_json::{json, Map, Value};

use super::body::{Block, Message, Str};
use super::reasoning::is_thinking;
use super::TranslateError;
use crate::base::jsonspan::Item;

/// Why a `file_id` is refused, on either door.
pub const NO_FILES: &str = "file ids are not supported: claudegate stores no files; send the \
     content inline (a data URL) or as an https URL";

/// A system text block (a `Value`: system prompts are small beside a history), with the
/// part's `cache_control`; `None` for empty text, which Anthropic refuses.
pub fn text_value(text: &str, part: Option<Item>) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    let mut b = json!({"type": "text", "text": text});
    if let Some(cc) = part.and_then(cache_control) {
        b["cache_control"] = cc;
    }
    Some(b)
}

/// A text block of the conversation, its text as the client wrote it, keeping the part's
/// `cache_control`; `None` for empty text, which Anthropic refuses.
pub fn text_block<'a>(text: Str<'a>, part: Option<Item<'a>>) -> Option<Block<'a>> {
    (!text.is_empty()).then(|| Block::Text {
        text,
        cache_control: part.and_then(cache_control),
    })
}

/// The `cache_control` of a part: clients mark their own prompt caching breakpoints that way,
/// and Anthropic takes the marker as is.
pub fn cache_control(part: Item) -> Option<Value> {
    part.get("cache_control").map(|cc| cc.to_value())
}

/// `block` with the `cache_control` of the part it came from.
pub fn with_cache_control(mut block: Value, part: Item) -> Value {
    if let Some(cc) = cache_control(part) {
        block["cache_control"] = cc;
    }
    block
}

/// A function tool's `parameters` → its Anthropic `input_schema` (none: a schema for an
/// empty object, as Anthropic requires one).
pub fn input_schema(parameters: Option<&Value>, param: String) -> Result<Value, TranslateError> {
    match parameters {
        None | Some(Value::Null) => Ok(json!({"type": "object", "properties": {}})),
        Some(s @ Value::Object(_)) => Ok(s.clone()),
        Some(_) => Err(TranslateError::new(
            param,
            "`parameters` must be a JSON Schema object",
        )),
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// A data URL → an Anthropic base64 source; an http(s) URL → a url source. Anthropic's
/// `media_type` is the bare type: data URL parameters (`;charset=…`) are dropped.
fn source(url: &str, param: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest.split_once(',').unwrap_or(("", ""));
        let media_type = header
            .strip_suffix(";base64")
            .and_then(|h| h.split(';').next())
            .unwrap_or("");
        if media_type.is_empty() || data.is_empty() {
            return Err(TranslateError::new(
                param,
                "data URLs must look like data:<media type>;base64,<data>",
            ));
        }
        return Ok(json!({"type": "base64", "media_type": media_type, "data": data}));
    }
    if is_http(url) {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(TranslateError::new(
        param,
        "expected a data URL or an http(s) URL",
    ))
}

/// An image URL (data or http(s)) → an Anthropic image block.
pub fn image_block(url: &str, param: &str) -> Result<Value, TranslateError> {
    Ok(json!({"type": "image", "source": source(url, param)?}))
}

/// A file (`file_data`, `filename`, `file_url`, `file_id`; fields of `file`, whose parameter
/// path is `at`) → an Anthropic PDF document block, titled with its filename.
pub fn document_block(file: &Value, at: &str) -> Result<Value, TranslateError> {
    if file.get("file_id").is_some_and(|v| !v.is_null()) {
        return Err(TranslateError::new(format!("{at}.file_id"), NO_FILES));
    }
    let filename = file.get("filename").and_then(Value::as_str);
    let source = if let Some(data) = file.get("file_data").and_then(Value::as_str) {
        let param = format!("{at}.file_data");
        let source = if data.starts_with("data:") {
            source(data, &param)?
        } else if filename.is_some_and(|f| f.to_ascii_lowercase().ends_with(".pdf")) {
            json!({"type": "base64", "media_type": "application/pdf", "data": data})
        } else {
            return Err(TranslateError::new(
                param,
                "`file_data` must be a data URL (or base64 with a .pdf filename)",
            ));
        };
        if source["media_type"] != "application/pdf" {
            return Err(TranslateError::new(param, "only PDF files are supported"));
        }
        source
    } else if let Some(url) = file.get("file_url").and_then(Value::as_str) {
        if !is_http(url) {
            return Err(TranslateError::new(
                format!("{at}.file_url"),
                "`file_url` must be an http(s) URL",
            ));
        }
        json!({"type": "url", "url": url})
    } else {
        return Err(TranslateError::new(
            format!("{at}.file_data"),
            "a file needs `file_data` or `file_url`",
        ));
    };
    let mut block = json!({"type": "document", "source": source});
    if let Some(name) = filename.filter(|f| !f.is_empty()) {
        block["title"] = json!(name);
    }
    Ok(block)
}

/// A `tool_use` block of the history. Built member by member because `json!` would copy
/// `input` (it serialises each value it is given), and an agent's tool inputs (files it
/// wrote) are a large part of a long history.
pub fn tool_use_block(id: Value, name: Value, input: Value) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), Value::from("tool_use"));
    block.insert("id".into(), id);
    block.insert("name".into(), name);
    block.insert("input".into(), input);
    Value::Object(block)
}

/// A tool call's `arguments` from the history (a JSON text, or the object itself; absent or
/// blank meaning `{}`) → the `tool_use` input; `Err` says why it is not a JSON object. What a
/// door does with an `Err` is its own policy.
pub fn tool_input(args: Option<&Value>) -> Result<Value, String> {
    match args {
        None | Some(Value::Null) => Ok(json!({})),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("`arguments` must be a JSON object".into()),
            Err(e) => Err(format!("`arguments` is not valid JSON: {e}")),
        },
        Some(_) => Err("`arguments` must be a JSON string".into()),
    }
}

/// The conversation being assembled: consecutive turns of one role merge into one (Anthropic
/// wants the roles to alternate), and empty turns are skipped.
#[derive(Default)]
pub struct Turns<'a> {
    turns: Vec<(&'static str, Vec<Block<'a>>)>,
}

impl<'a> Turns<'a> {
    pub fn push(&mut self, role: &'static str, blocks: Vec<Block<'a>>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => self.turns.push((role, blocks)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// The Anthropic `messages`. Inside a merged turn the order is stable except: a user turn
    /// opens with its `tool_result`s (Anthropic wants them straight after the `tool_use`
    /// turn), an assistant turn opens with its thinking blocks (Anthropic wants the signed
    /// thinking first) and ends with its `tool_use`s (the calls close the turn).
    pub fn finish(self) -> Vec<Message<'a>> {
        self.turns
            .into_iter()
            .map(|(role, mut blocks)| {
                let rank = |b: &Block| match role {
                    "user" if b.kind() == "tool_result" => 0,
                    "assistant" if is_thinking(b) => 0,
                    "assistant" if b.kind() == "tool_use" => 2,
                    _ => 1,
                };
                blocks.sort_by_key(rank); // stable: same-rank blocks keep their order
                Message {
                    role,
                    content: blocks,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_give_the_bare_media_type() {
        let b = image_block("data:image/png;charset=x;base64,AAAA", "p").unwrap();
        assert_eq!(
            b["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        for bad in [
            "data:image/png,AAAA",
            "data:;base64,AAAA",
            "data:image/png;base64,",
            "ftp://x",
        ] {
            assert_eq!(
                image_block(bad, "p").unwrap_err().param.as_deref(),
                Some("p"),
                "{bad}"
            );
        }
    }

    #[test]
    fn documents_are_pdfs_only() {
        let ok = |f: Value| document_block(&f, "f").unwrap();
        assert_eq!(
            ok(json!({"file_data": "JVBE", "filename": "x.PDF"}))["title"],
            "x.PDF"
        );
        assert_eq!(
            ok(json!({"file_url": "https://e/x.pdf"}))["source"]["type"],
            "url"
        );
        for (f, param) in [
            (json!({"file_id": "file-1"}), "f.file_id"),
            (
                json!({"file_data": "data:text/plain;base64,AAAA"}),
                "f.file_data",
            ),
            (
                json!({"file_data": "AAAA", "filename": "x.txt"}),
                "f.file_data",
            ),
            (json!({"file_url": "file:///etc/passwd"}), "f.file_url"),
            (json!({}), "f.file_data"),
        ] {
            let e = document_block(&f, "f").unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{f}");
        }
    }

    #[test]
    fn merged_turns_keep_the_order_anthropic_requires() {
        let b = |t: &str| Block::Json(json!({"type": t}));
        let mut turns = Turns::default();
        turns.push("user", vec![b("text")]);
        turns.push("assistant", vec![b("text"), b("tool_use")]);
        turns.push("assistant", vec![b("thinking"), b("text")]);
        turns.push("user", vec![]);
        turns.push("user", vec![b("text"), b("tool_result")]);
        let types = |m: &Message| -> Vec<String> {
            m.content.iter().map(|b| b.kind().to_string()).collect()
        };
        let m = turns.finish();
        assert_eq!(m.len(), 3);
        assert_eq!(types(&m[1]), ["thinking", "text", "text", "tool_use"]);
        assert_eq!(types(&m[2]), ["tool_result", "text"]);
    }

    #[test]
    fn tool_inputs() {
        assert_eq!(tool_input(None), Ok(json!({})));
        assert_eq!(tool_input(Some(&json!(" "))), Ok(json!({})));
        assert_eq!(tool_input(Some(&json!("{\"a\":1}"))), Ok(json!({"a": 1})));
        assert_eq!(tool_input(Some(&json!({"a": 1}))), Ok(json!({"a": 1})));
        assert!(tool_input(Some(&json!("[1]"))).is_err());
        assert!(tool_input(Some(&json!("{"))).is_err());
        assert!(tool_input(Some(&json!(3))).is_err());
    }
}
