//! The Anthropic request a front door builds, lean enough for a 1M-token history.
//!
//! A coding agent resends its whole conversation every turn, and almost all of its bytes are
//! text the translation only carries over: file contents, tool results, what was said. So the
//! conversation is not decoded into `serde_json::Value`s and encoded again. Each text stays the
//! JSON string the client wrote ([`Str::Raw`], a slice of the request body) and is copied into
//! the upstream request as it stands; everything else about a turn — its role, tool calls,
//! images, thinking — is small and is built as a `Value`, as before ([`Block::Json`]). The
//! rest of the request (model, system, tools, settings) is a map of `Value`s ([`Body::head`]).
//!
//! [`Body::to_json`] writes it all out in one pass ([`crate::base::jsonout`]), in the order
//! serde_json writes a map (sorted keys), so a request built from serde_json's own text goes
//! upstream byte for byte as it did when the whole request was one `Value`; [`Body::to_value`]
//! gives that `Value` (for the golden tests and the fuzz targets).

use serde_json::{json, Map, Value};

use crate::base::jsonout::Out;
use crate::base::jsonspan::{Item, Member};

/// A JSON string of the request: the client's own text, or one we made.
#[derive(Debug, Clone, PartialEq)]
pub enum Str<'a> {
    /// A JSON string literal as the client wrote it, quotes and escapes included.
    Raw(&'a str),
    Own(String),
}

impl<'a> Str<'a> {
    /// The string `item` holds, as written; `None` for anything else.
    pub fn of(item: Item<'a>) -> Option<Str<'a>> {
        item.is_string().then(|| Str::Raw(item.raw()))
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Str::Raw(raw) => *raw == "\"\"",
            Str::Own(s) => s.is_empty(),
        }
    }

    /// The string's value.
    pub fn value(&self) -> String {
        match self {
            Str::Raw(raw) => serde_json::from_str(raw).unwrap_or_default(),
            Str::Own(s) => s.clone(),
        }
    }

    fn write(&self, out: &mut Out) {
        match self {
            Str::Raw(raw) => out.raw(raw.as_bytes()),
            Str::Own(s) => out.string(s),
        }
    }

    /// Whether the string, written out, shows `"cache_control"` (see [`has_cache_control`]).
    fn shows_cache_control(&self) -> bool {
        match self {
            // Cheap test first: the text must end with it.
            Str::Raw(raw) => raw.ends_with("cache_control\"") && shows_marker(&self.value()),
            Str::Own(s) => shows_marker(s),
        }
    }
}

/// One content block of a turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Block<'a> {
    /// `{"type": "text", "text": …}`, with the client's `cache_control` if it set one.
    Text {
        text: Str<'a>,
        cache_control: Option<Value>,
    },
    /// `{"type": "tool_result", "tool_use_id": …, "content": …}`.
    ToolResult {
        tool_use_id: Str<'a>,
        content: Option<ResultContent<'a>>,
        cache_control: Option<Value>,
    },
    /// Any other block (tool calls, images, documents, thinking), built whole.
    Json(Value),
}

/// What a tool result holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultContent<'a> {
    Text(Str<'a>),
    Blocks(Vec<Block<'a>>),
}

impl Block<'_> {
    /// The block's `type`.
    pub fn kind(&self) -> &str {
        match self {
            Block::Text { .. } => "text",
            Block::ToolResult { .. } => "tool_result",
            Block::Json(v) => v["type"].as_str().unwrap_or(""),
        }
    }

    /// Sets the block's `cache_control`.
    pub fn mark(&mut self, marker: Value) {
        match self {
            Block::Text { cache_control, .. } | Block::ToolResult { cache_control, .. } => {
                *cache_control = Some(marker)
            }
            Block::Json(v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("cache_control".into(), marker);
                }
            }
        }
    }

    fn has_cache_control(&self) -> bool {
        match self {
            Block::Text {
                text,
                cache_control,
            } => cache_control.is_some() || text.shows_cache_control(),
            Block::ToolResult {
                tool_use_id,
                content,
                cache_control,
            } => {
                cache_control.is_some()
                    || tool_use_id.shows_cache_control()
                    || match content {
                        Some(ResultContent::Text(t)) => t.shows_cache_control(),
                        Some(ResultContent::Blocks(b)) => b.iter().any(Block::has_cache_control),
                        None => false,
                    }
            }
            Block::Json(v) => value_has_cache_control(v),
        }
    }

    /// Written as serde_json writes the same block as a map: keys in order.
    fn write(&self, out: &mut Out) {
        match self {
            Block::Text {
                text,
                cache_control,
            } => {
                open_block(cache_control.as_ref(), out);
                out.raw(b"\"text\":");
                text.write(out);
                out.raw(b",\"type\":\"text\"}");
            }
            Block::ToolResult {
                tool_use_id,
                content,
                cache_control,
            } => {
                open_block(cache_control.as_ref(), out);
                match content {
                    Some(ResultContent::Text(t)) => {
                        out.raw(b"\"content\":");
                        t.write(out);
                        out.byte(b',');
                    }
                    Some(ResultContent::Blocks(blocks)) => {
                        out.raw(b"\"content\":");
                        write_blocks(blocks, out);
                        out.byte(b',');
                    }
                    None => {}
                }
                out.raw(b"\"tool_use_id\":");
                tool_use_id.write(out);
                out.raw(b",\"type\":\"tool_result\"}");
            }
            Block::Json(v) => out.value(v),
        }
    }
}

/// A block's opening brace and its `cache_control` member, which sorts first.
fn open_block(cache_control: Option<&Value>, out: &mut Out) {
    out.byte(b'{');
    if let Some(cc) = cache_control {
        out.raw(b"\"cache_control\":");
        out.value(cc);
        out.byte(b',');
    }
}

fn write_blocks(blocks: &[Block], out: &mut Out) {
    out.array(blocks, |out, b| b.write(out));
}

/// One turn: `{"role": …, "content": [blocks]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    pub role: &'static str,
    pub content: Vec<Block<'a>>,
}

impl Message<'_> {
    fn write(&self, out: &mut Out) {
        out.raw(b"{\"content\":");
        write_blocks(&self.content, out);
        out.raw(b",\"role\":");
        out.string(self.role);
        out.byte(b'}');
    }
}

/// An Anthropic Messages request: `messages`, and every other member as a `Value`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body<'a> {
    /// Every member but `messages`.
    pub head: Map<String, Value>,
    pub messages: Vec<Message<'a>>,
}

impl Body<'_> {
    /// The request as JSON text; `size_hint` is the room to start with (the client's body
    /// length is a good one: the translated request is about as long).
    pub fn to_json(&self, size_hint: usize) -> Vec<u8> {
        self.to_json_with_members(size_hint).0
    }

    /// [`Body::to_json`], and where each top-level member's value went in the text (what
    /// [`crate::base::jsonspan::object_members`] would find, without scanning the text again).
    pub fn to_json_with_members(&self, size_hint: usize) -> (Vec<u8>, Vec<Member>) {
        let mut out = Out::with_capacity(size_hint + size_hint / 32 + 4096);
        let mut members = Vec::with_capacity(self.head.len() + 1);
        out.byte(b'{');
        let mut messages_done = false;
        let mut member = |out: &mut Out, key: &str, write: &dyn Fn(&mut Out)| {
            if !members.is_empty() {
                out.byte(b',');
            }
            out.string(key);
            out.byte(b':');
            let start = out.len();
            write(out);
            members.push(Member {
                key: key.to_string(),
                value: start..out.len(),
            });
        };
        for (k, v) in &self.head {
            if !messages_done && k.as_str() > "messages" {
                member(&mut out, "messages", &|out| self.write_messages(out));
                messages_done = true;
            }
            member(&mut out, k, &|out| out.value(v));
        }
        if !messages_done {
            member(&mut out, "messages", &|out| self.write_messages(out));
        }
        out.byte(b'}');
        (out.into_vec(), members)
    }

    fn write_messages(&self, out: &mut Out) {
        out.array(&self.messages, |out, m| m.write(out));
    }

    /// The request as one `Value` (what the translators built before; tests compare it).
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.to_json(0)).unwrap_or(Value::Null)
    }

    /// Whether the client set prompt caching breakpoints itself: a `cache_control` member
    /// anywhere. (This stands in for a search of the whole serialised body for
    /// `"cache_control"`, so a string that reads `cache_control`, or ends in `"cache_control`,
    /// counts too, as it did there.)
    pub fn has_cache_control(&self) -> bool {
        self.head
            .iter()
            .any(|(k, v)| shows_marker(k) || value_has_cache_control(v))
            || self
                .messages
                .iter()
                .any(|m| m.content.iter().any(Block::has_cache_control))
    }
}

/// `s` written as a JSON string contains `"cache_control"`: it is `cache_control`, or ends in
/// a quote followed by `cache_control` (serde_json writes that quote as `\"`).
fn shows_marker(s: &str) -> bool {
    s == "cache_control" || s.ends_with("\"cache_control")
}

fn value_has_cache_control(v: &Value) -> bool {
    match v {
        Value::String(s) => shows_marker(s),
        Value::Array(items) => items.iter().any(value_has_cache_control),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| shows_marker(k) || value_has_cache_control(v)),
        _ => false,
    }
}

/// Marks the translated request for prompt caching, when the client marked nothing itself:
/// the last system block and the last block of the last user turn get an ephemeral
/// `cache_control`. OpenAI clients (Codex, agents) resend a long, stable prefix every turn;
/// without markers Anthropic caches none of it. At most two markers are added and the total
/// never exceeds Anthropic's limit of four.
pub fn add_cache_markers(body: &mut Body) {
    if body.has_cache_control() {
        return; // the client chose its own breakpoints
    }
    let marker = json!({"type": "ephemeral"});
    if let Some(last) = body
        .head
        .get_mut("system")
        .and_then(Value::as_array_mut)
        .and_then(|s| s.last_mut())
        .and_then(Value::as_object_mut)
    {
        last.insert("cache_control".into(), marker.clone());
    }
    // Thinking blocks cannot carry a marker; user turns never hold them.
    if let Some(block) = body
        .messages
        .iter_mut()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.last_mut())
    {
        block.mark(marker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::jsonspan::{Doc, Grammar};

    fn text(s: &str) -> Block<'static> {
        Block::Text {
            text: Str::Own(s.into()),
            cache_control: None,
        }
    }

    #[test]
    fn writes_what_serde_json_writes_for_the_same_value() {
        let src = r#"{"a":"line\none \"q\" é","id":"toolu_1"}"#;
        let doc = Doc::parse(src, Grammar::Value).unwrap();
        let a = doc.root().get("a").unwrap();
        let id = doc.root().get("id").unwrap();
        let mut head = Map::new();
        for (k, v) in [
            ("model", json!("m")),
            ("max_tokens", json!(10)),
            ("stream", json!(true)),
            ("system", json!([{"type": "text", "text": "s"}])),
        ] {
            head.insert(k.into(), v);
        }
        let body = Body {
            head,
            messages: vec![
                Message {
                    role: "user",
                    content: vec![
                        Block::Text {
                            text: Str::of(a).unwrap(),
                            cache_control: Some(json!({"type": "ephemeral"})),
                        },
                        Block::ToolResult {
                            tool_use_id: Str::of(id).unwrap(),
                            content: Some(ResultContent::Blocks(vec![text("r")])),
                            cache_control: None,
                        },
                    ],
                },
                Message {
                    role: "assistant",
                    content: vec![Block::Json(
                        json!({"type": "tool_use", "id": "t", "name": "f", "input": {}}),
                    )],
                },
            ],
        };
        let want = json!({"model": "m", "max_tokens": 10, "stream": true,
            "system": [{"type": "text", "text": "s"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "line\none \"q\" é", "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "r"}]}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]});
        assert_eq!(body.to_json(0), serde_json::to_vec(&want).unwrap());
        // The members noted while writing are the ones a scan of the text finds.
        let (text, members) = body.to_json_with_members(0);
        let text = String::from_utf8(text).unwrap();
        let found = crate::base::jsonspan::object_members(&text).unwrap();
        let spans = |m: &[Member]| {
            m.iter()
                .map(|m| (m.key.clone(), m.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(spans(&members), spans(&found));
        assert_eq!(body.to_value(), want);
    }

    #[test]
    fn cache_markers_are_added_only_when_the_client_set_none() {
        let mut b = Body::default();
        b.head.insert(
            "system".into(),
            json!([{"type":"text","text":"a"},{"type":"text","text":"b"}]),
        );
        b.messages = vec![
            Message {
                role: "user",
                content: vec![text("one")],
            },
            Message {
                role: "assistant",
                content: vec![text("x")],
            },
            Message {
                role: "user",
                content: vec![
                    text("two"),
                    Block::Json(json!({"type":"image","source":{}})),
                ],
            },
        ];
        add_cache_markers(&mut b);
        let v = b.to_value();
        assert_eq!(v["system"][1]["cache_control"], json!({"type":"ephemeral"}));
        assert!(v["system"][0].get("cache_control").is_none());
        assert_eq!(
            v["messages"][2]["content"][1]["cache_control"],
            json!({"type":"ephemeral"})
        );
        assert!(v["messages"][0]["content"][0]
            .get("cache_control")
            .is_none());
        assert_eq!(v.to_string().matches("cache_control").count(), 2);

        // The client's own marker anywhere (here on a tool): nothing added.
        let mut own = Body::default();
        own.head.insert(
            "tools".into(),
            json!([{"name": "t", "cache_control": {"type": "ephemeral"}}]),
        );
        own.messages = vec![Message {
            role: "user",
            content: vec![text("hi")],
        }];
        let before = own.clone();
        add_cache_markers(&mut own);
        assert_eq!(own, before);
        // As the textual search this replaces: a text that reads "cache_control" counts.
        let quirk = Body {
            messages: vec![Message {
                role: "user",
                content: vec![text("say \"cache_control")],
            }],
            ..Body::default()
        };
        assert!(quirk.has_cache_control());
    }
}
