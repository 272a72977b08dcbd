//! The two OpenAI doors say the same thing upstream wherever they take the same thing: content
//! parts (images, PDFs), JSON mode, sampling and tool choice, through the real binary and the
//! mock upstream. Each case is a chat request and its Responses twin; the upstream must
//! receive the same fields from both, equal to what is written here.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};

struct Doors {
    mock: MockUpstream,
    gate: Gate,
    key: String,
}

impl Doors {
    fn start() -> Doors {
        let mock = MockUpstream::start();
        // No cloaking, so the system blocks are the client's alone.
        let config = json!({"limits": {"per_key_rpm": 0}, "cloaking": {"mode": "never"}});
        let (gate, key) = logged_in(&mock.url(), config);
        Doors { mock, gate, key }
    }

    /// The body the upstream received for `body` sent to `path`.
    fn upstream(&self, path: &str, body: &Value) -> Value {
        self.mock.clear();
        let r = post(
            &self.gate.url(path),
            &[("authorization", &format!("Bearer {}", self.key))],
            &body.to_string(),
        );
        assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
        self.mock
            .last_request()
            .expect("the upstream was called")
            .json()
    }

    /// `fields` of what the upstream received from each door: they must agree, and equal
    /// `want` (`null` for an absent field).
    fn agree(&self, chat: Value, responses: Value, fields: &[&str], want: Value) {
        let c = self.upstream("/v1/chat/completions", &chat);
        let r = self.upstream("/v1/responses", &responses);
        let pick = |b: &Value| -> Value {
            fields
                .iter()
                .map(|f| (f.to_string(), b.get(*f).cloned().unwrap_or(Value::Null)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        assert_eq!(
            pick(&c),
            pick(&r),
            "the doors disagree on {chat} / {responses}"
        );
        assert_eq!(pick(&c), want, "{chat}");
    }
}

fn chat_user(content: Value) -> Value {
    json!({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": content}]})
}

fn responses_user(content: Value) -> Value {
    json!({"model": "claude-sonnet-4-6", "input": [{"role": "user", "content": content}]})
}

/// Anthropic's `media_type` is the bare type: a data URL's parameters (`;charset=…`) are
/// dropped on both doors.
#[test]
fn images_become_the_same_blocks() {
    let d = Doors::start();
    let png = "data:image/png;charset=x;base64,iVBORw0KGgo=";
    let chat = chat_user(json!([
        {"type": "text", "text": "Look."},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]));
    let responses = responses_user(json!([
        {"type": "input_text", "text": "Look."},
        {"type": "input_image", "image_url": png},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "low"},
    ]));
    d.agree(
        chat,
        responses,
        &["messages"],
        json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Look."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                "cache_control": {"type": "ephemeral"}},
        ]}]}),
    );
}

/// PDFs by data URL, by bare base64 with a `.pdf` filename (titled with it), or by URL.
#[test]
fn pdfs_become_the_same_blocks() {
    let d = Doors::start();
    let chat = chat_user(json!([
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_data": "JVBERi0x", "filename": "B.PDF"}},
        {"type": "file", "file": {"file_url": "https://example.com/paper.pdf"}},
    ]));
    let responses = responses_user(json!([
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
        {"type": "input_file", "file_data": "JVBERi0x", "filename": "B.PDF"},
        {"type": "input_file", "file_url": "https://example.com/paper.pdf"},
    ]));
    let pdf = |data: &str| json!({"type": "base64", "media_type": "application/pdf", "data": data});
    d.agree(
        chat,
        responses,
        &["messages"],
        json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": pdf("JVBERi0="), "title": "a.pdf"},
            {"type": "document", "source": pdf("JVBERi0x"), "title": "B.PDF"},
            {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"},
                "cache_control": {"type": "ephemeral"}},
        ]}]}),
    );
}

#[test]
fn json_mode_adds_the_same_instruction() {
    let d = Doors::start();
    let mut chat = chat_user(json!("Name: Ann, age 3"));
    chat["messages"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"role": "system", "content": "Extract fields."}));
    chat["response_format"] = json!({"type": "json_object"});
    let mut responses = responses_user(json!("Name: Ann, age 3"));
    responses["instructions"] = json!("Extract fields.");
    responses["text"] = json!({"format": {"type": "json_object"}});
    d.agree(
        chat,
        responses,
        &["system"],
        json!({"system": [
            {"type": "text", "text": "Extract fields."},
            {"type": "text", "text": "Respond with a single valid JSON object and nothing else: no \
                text before or after it and no Markdown code fences.",
                "cache_control": {"type": "ephemeral"}},
        ]}),
    );
}

/// One sampling rule: temperature clamped to 0..1, `top_p` only without a temperature, both
/// dropped while thinking is on.
#[test]
fn sampling_follows_one_rule() {
    let d = Doors::start();
    let fields = ["temperature", "top_p"];
    for (sampling, effort, want) in [
        (
            json!({"temperature": 1.5, "top_p": 0.5}),
            "none",
            json!({"temperature": 1.0, "top_p": null}),
        ),
        (
            json!({"temperature": 0.3}),
            "none",
            json!({"temperature": 0.3, "top_p": null}),
        ),
        (
            json!({"top_p": 0.5}),
            "none",
            json!({"temperature": null, "top_p": 0.5}),
        ),
        (
            json!({"temperature": 0.3, "top_p": 0.5}),
            "low",
            json!({"temperature": null, "top_p": null}),
        ),
    ] {
        let mut chat = chat_user(json!("hi"));
        let mut responses = responses_user(json!("hi"));
        merge(&mut chat, &sampling);
        merge(&mut responses, &sampling);
        chat["reasoning_effort"] = json!(effort);
        responses["reasoning"] = json!({"effort": effort});
        d.agree(chat, responses, &fields, want);
    }
}

#[test]
fn tool_choice_and_parallel_calls_convert_the_same_way() {
    let d = Doors::start();
    let chat_tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let responses_tools = json!([{"type": "function", "name": "lookup"}]);
    for (chat_choice, responses_choice, parallel, want) in [
        (json!("auto"), json!("auto"), Value::Null, Value::Null),
        (
            json!("none"),
            json!("none"),
            Value::Null,
            json!({"type": "none"}),
        ),
        (
            json!("none"),
            json!("none"),
            json!(false),
            json!({"type": "none"}),
        ),
        (
            json!("required"),
            json!("required"),
            Value::Null,
            json!({"type": "any"}),
        ),
        (
            json!("auto"),
            json!("auto"),
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (
            Value::Null,
            Value::Null,
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (
            json!({"type": "function", "function": {"name": "lookup"}}),
            json!({"type": "function", "name": "lookup"}),
            json!(false),
            json!({"type": "tool", "name": "lookup", "disable_parallel_tool_use": true}),
        ),
    ] {
        let mut chat = chat_user(json!("hi"));
        let mut responses = responses_user(json!("hi"));
        chat["tools"] = chat_tools.clone();
        responses["tools"] = responses_tools.clone();
        for (k, v) in [
            ("tool_choice", &chat_choice),
            ("parallel_tool_calls", &parallel),
        ] {
            if !v.is_null() {
                chat[k] = v.clone();
            }
        }
        for (k, v) in [
            ("tool_choice", &responses_choice),
            ("parallel_tool_calls", &parallel),
        ] {
            if !v.is_null() {
                responses[k] = v.clone();
            }
        }
        d.agree(
            chat,
            responses,
            &["tool_choice"],
            json!({ "tool_choice": want }),
        );
    }
}
