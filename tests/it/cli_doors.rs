//! The three model doors on the claude-cli backend, through the real binary with a fake
//! `claude` (fast, exact): `/v1/messages` (Anthropic shape), `/v1/chat/completions` and
//! `/v1/responses` all become one Anthropic request for the CLI backend and answer from its
//! events, streamed or collected; earlier turns go to the CLI as a resumed session file; what
//! the CLI cannot honour is refused with a 400 naming it in the caller's protocol before
//! anything runs; `count_tokens` is a 501 naming why. What the real Claude Code CLI does with
//! the same requests is tested in `cli_backend.rs`.

use crate::chat_policy::fake_claude;
use crate::common::gate::*;
use crate::common::mock_upstream::parse_sse;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A gate on the claude-cli backend whose fake `claude` records its argv, its stdin and the
/// session file `--resume` names (into the fake's directory), then answers "ok".
struct World {
    dir: TempDir,
    home: TempDir,
    gate: Gate,
    key: String,
}

impl World {
    fn new() -> World {
        let dir = TempDir::new();
        let home = TempDir::new();
        fake_claude(&dir); // writes answer.jsonl (and a `claude` replaced below)
        let rec = dir.path().display().to_string();
        let script = format!(
            r#"#!/bin/sh
printf '%s\0' "$@" > "{rec}/argv"
prev=""; for a in "$@"; do [ "$prev" = "--resume" ] && cp "$HOME"/.claude/projects/*/"$a.jsonl" "{rec}/session"; prev="$a"; done
cat > "{rec}/stdin"
cat "{rec}/answer.jsonl"
"#
        );
        let bin = dir.path().join("claude");
        std::fs::write(&bin, script).unwrap();
        let (gate, key) = Gate::start_with_key(json!({"backend": "claude-cli", "cli": {
            "binary": bin.to_string_lossy(), "home": home.path().to_string_lossy(),
            "allowed_models": ["sonnet", "haiku"]}}));
        World {
            dir,
            home,
            gate,
            key,
        }
    }

    fn post(&self, path: &str, body: Value) -> Resp {
        post(
            &self.gate.url(path),
            &[("x-api-key", &self.key)],
            &body.to_string(),
        )
    }

    fn recorded(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn ran(&self) -> bool {
        self.dir.path().join("argv").exists()
    }

    fn forget(&self) {
        for f in ["argv", "stdin", "session"] {
            std::fs::remove_file(self.dir.path().join(f)).ok();
        }
    }

    fn argv(&self) -> Vec<String> {
        self.recorded("argv")
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The prompt's content blocks (the one stream-json line on stdin).
    fn prompt(&self) -> Value {
        let line: Value = serde_json::from_str(&self.recorded("stdin")).unwrap();
        line["message"]["content"].clone()
    }

    /// The earlier turns the session file held, as `(role, content)`.
    fn session(&self) -> Vec<(String, Value)> {
        self.recorded("session")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|l| {
                (
                    l["type"].as_str().unwrap_or("").to_string(),
                    l["message"]["content"].clone(),
                )
            })
            .collect()
    }

    fn projects_left(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.home.path().join(".claude/projects"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

fn conversation() -> Value {
    json!([
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": [{"type": "text", "text": "three"}]}
    ])
}

#[test]
fn messages_answers_in_anthropic_shape_streamed_and_whole() {
    let w = World::new();
    let r = w.post(
        "/v1/messages",
        json!({"model": "sonnet", "max_tokens": 50, "system": "S", "messages": conversation()}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", w.gate.log());
    let v = r.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["content"], json!([{"type": "text", "text": "ok"}]));
    assert_eq!(
        v["model"], "claude-sonnet-4-6",
        "the model the CLI reported"
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 2);
    // The earlier turns went as a session file the CLI resumes; the last one is the prompt.
    assert!(w.argv().contains(&"--resume".to_string()), "{:?}", w.argv());
    assert_eq!(
        w.session(),
        [
            ("user".to_string(), json!([{"type": "text", "text": "one"}])),
            (
                "assistant".to_string(),
                json!([{"type": "text", "text": "two"}])
            )
        ]
    );
    assert_eq!(w.prompt(), json!([{"type": "text", "text": "three"}]));
    assert!(w.projects_left().is_empty(), "{:?}", w.projects_left());

    w.forget();
    let r = w.post(
        "/v1/messages",
        json!({"model": "sonnet", "max_tokens": 50, "stream": true,
               "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let names: Vec<String> = parse_sse(&r.body).into_iter().map(|e| e.event).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{}",
        r.body
    );
    assert!(r.body.contains("\"text_delta\""), "{}", r.body);
    assert!(
        !w.argv().contains(&"--resume".to_string()),
        "one turn, no session"
    );
}

#[test]
fn responses_and_chat_use_the_same_path() {
    let w = World::new();
    let r = w.post(
        "/v1/responses",
        json!({"model": "sonnet", "instructions": "I", "input": "hi"}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", w.gate.log());
    let v = r.json();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "ok", "{v}");
    assert_eq!(w.prompt(), json!([{"type": "text", "text": "hi"}]));

    let r = w.post(
        "/v1/responses",
        json!({"model": "sonnet", "input": "hi", "stream": true}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let events: Vec<String> = parse_sse(&r.body).into_iter().map(|e| e.event).collect();
    assert_eq!(events.first().map(String::as_str), Some("response.created"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("response.completed")
    );
    assert!(r.body.contains("response.output_text.delta"), "{}", r.body);

    // Chat: a conversation keeps its turns now (it was one flattened prompt before).
    w.forget();
    let r = w.post(
        "/v1/chat/completions",
        json!({"model": "sonnet", "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["choices"][0]["message"]["content"], "ok");
    assert_eq!(w.session().len(), 2, "{}", w.recorded("session"));
    assert_eq!(w.prompt(), json!([{"type": "text", "text": "three"}]));
}

#[test]
fn what_the_cli_cannot_honour_is_refused_by_name_in_each_protocol() {
    let w = World::new();
    let user = json!([{"role": "user", "content": "hi"}]);
    let tool_turns = json!([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]}
    ]);
    for (extra, param) in [
        (json!({"temperature": 0.2}), "temperature"),
        (json!({"stop_sequences": ["x"]}), "stop_sequences"),
        (
            json!({"tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
                   "tool_choice": {"type": "any"}}),
            "tool_choice",
        ),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 12}}),
            "thinking.budget_tokens",
        ),
        (json!({"messages": tool_turns}), "tool"),
        (json!({"model": "opus"}), "model"),
    ] {
        let mut body = json!({"model": "sonnet", "max_tokens": 50, "messages": user});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let v = w
            .post("/v1/messages", body)
            .assert_anthropic_error(400, "invalid_request_error");
        assert!(v.to_string().contains(param), "{param}: {v}");
    }
    for (body, param) in [
        (
            json!({"model": "sonnet", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}}),
            "text.format",
        ),
        (
            json!({"model": "sonnet", "input": "hi", "temperature": 0.5}),
            "temperature",
        ),
        (
            json!({"model": "sonnet", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {}}], "tool_choice": "required"}),
            "tool_choice",
        ),
    ] {
        let v = w.post("/v1/responses", body).assert_openai_error(400);
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let v = w
        .post(
            "/v1/chat/completions",
            json!({"model": "sonnet", "messages": user, "top_p": 0.5}),
        )
        .assert_openai_error(400);
    assert_eq!(v["error"]["param"], "top_p", "{v}");
    assert!(!w.ran(), "nothing ran: {:?}", w.argv());
    let v = w
        .post(
            "/v1/messages/count_tokens",
            json!({"model": "sonnet", "messages": user}),
        )
        .assert_anthropic_error(501, "api_error");
    assert!(v.to_string().contains("count tokens"), "{v}");
}

#[test]
fn images_are_passed_to_the_cli() {
    let w = World::new();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let r = w.post(
        "/v1/chat/completions",
        json!({"model": "sonnet", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is it?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}]}]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let p = w.prompt();
    assert_eq!(p[1]["type"], "image", "{p}");
    assert_eq!(p[1]["source"]["data"], png, "{p}");
}
