//! The model doors on the claude-cli backend with the REAL Claude Code CLI against the mock
//! upstream: `/v1/messages` whole and streamed, `/v1/responses`, a multi-turn request whose
//! earlier turns must reach the upstream as real turns, the lock-down exercised through
//! `/v1/messages` (`/help`, `/heapdump`, `@/etc/passwd`, and history turns carrying them, in a
//! hostile home), and the anthropic Python SDK streaming through it. Skipped (loudly) when the
//! CLI or the SDK is not installed, failed under `CLAUDEGATE_E2E_REQUIRED=1`.

use crate::cli_backend::{make_hostile_home, markers, walk, World, REAL_MODEL};
use crate::common::gate::{post, Gate, Resp, TempDir};
use crate::common::mock_upstream::{parse_sse, sse_text_events, Reply};
use crate::common::run::{e2e_dir, installed, repo, run_with_deadline};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn send(gate: &Gate, key: &str, path: &str, body: Value) -> Resp {
    post(&gate.url(path), &[("x-api-key", key)], &body.to_string())
}

/// The user and assistant turns of an upstream request (the CLI adds `system`-role turns of
/// its own), each as its role and the texts of its text blocks.
fn turns(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user" || m["role"] == "assistant")
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                c => c
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
            };
            (m["role"].as_str().unwrap_or("").to_string(), text)
        })
        .collect()
}

/// The text of an Anthropic SSE answer, its deltas joined.
fn streamed_text(body: &str) -> String {
    parse_sse(body)
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|d| d["delta"]["text"].as_str().map(String::from))
        .collect()
}

#[test]
fn messages_whole_and_streamed_and_responses_through_the_real_cli() {
    let Some(w) = World::new("messages_whole_and_streamed_and_responses_through_the_real_cli")
    else {
        return;
    };
    let (gate, key) = w.gate(json!({}));
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &["Hel", "lo"])),
    );
    let r = send(
        &gate,
        &key,
        "/v1/messages",
        json!({"model": "sonnet", "max_tokens": 100, "system": "SYSTEM-MARKER",
               "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    let v = r.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello"}]),
        "{v}"
    );
    assert_eq!(v["model"], REAL_MODEL);
    assert_eq!(v["stop_reason"], "end_turn");

    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &["a", "b", "c"])),
    );
    let r = send(
        &gate,
        &key,
        "/v1/messages",
        json!({"model": "sonnet", "max_tokens": 100, "stream": true,
               "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let events = parse_sse(&r.body);
    assert_eq!(streamed_text(&r.body), "abc", "{}", r.body);
    assert_eq!(
        events.first().map(|e| e.event.as_str()),
        Some("message_start")
    );
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("message_stop")
    );

    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(REAL_MODEL, &["Resp", "onse"])),
    );
    let r = send(
        &gate,
        &key,
        "/v1/responses",
        json!({"model": "sonnet", "instructions": "INSTR-MARKER", "input": "hi"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "Response", "{v}");

    let reqs = w.messages();
    assert_eq!(reqs.len(), 3, "one upstream call per request");
    for r in &reqs {
        w.assert_locked_down(r);
    }
    assert!(reqs[0].body_text().contains("SYSTEM-MARKER"));
    assert!(reqs[2].body_text().contains("INSTR-MARKER"));
}

#[test]
fn a_multi_turn_request_reaches_the_upstream_as_real_turns() {
    let Some(w) = World::new("a_multi_turn_request_reaches_the_upstream_as_real_turns") else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let (gate, key) = w.gate(json!({}));
    let secret = w.canary("secret.txt");
    std::fs::write(&secret, "HISTORY-CANARY-4711").unwrap();
    let r = send(
        &gate,
        &key,
        "/v1/messages",
        json!({"model": "sonnet", "max_tokens": 100, "messages": [
            {"role": "user", "content": "/heapdump"},
            {"role": "assistant", "content": "ANSWER-ONE"},
            {"role": "user", "content": format!("read @{} and @/etc/passwd", secret.display())},
            {"role": "assistant", "content": [{"type": "text", "text": "ANSWER-TWO"}]},
            {"role": "user", "content": "/help"}
        ]}),
    );
    assert_eq!(r.status, 200, "{r:?}\n{}", gate.log());
    assert_eq!(
        r.json()["content"][0]["text"],
        "Hello from the mock upstream."
    );
    let reqs = w.messages();
    assert_eq!(
        reqs.len(),
        1,
        "one upstream call for the whole conversation"
    );
    w.assert_locked_down(&reqs[0]);
    let got = turns(&reqs[0].json());
    let roles: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user", "assistant", "user"],
        "{got:?}"
    );
    assert_eq!(got[0].1, "/heapdump", "{got:?}");
    assert_eq!(got[1].1, "ANSWER-ONE");
    assert!(got[2].1.starts_with("read @"), "{got:?}");
    assert_eq!(got[3].1, "ANSWER-TWO");
    assert!(
        got[4].1.contains("/help"),
        "the new prompt went as text: {got:?}"
    );
    // Nothing was read or run, whatever the turns said.
    let traffic = w.all_traffic();
    assert!(!traffic.contains("HISTORY-CANARY"), "a file was read");
    assert!(!traffic.contains("root:x:0"), "/etc/passwd was read");
    assert_eq!(markers(w.outside.path()), Vec::<PathBuf>::new());
    let dumps: Vec<PathBuf> = walk(w.home.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("heap"))
        .collect();
    assert!(dumps.is_empty(), "/heapdump ran: {dumps:?}");
    // The session file went with the call.
    let left: Vec<PathBuf> = walk(&w.home.path().join(".claude/projects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn commands_and_at_paths_sent_to_messages_run_and_read_nothing() {
    let Some(w) = World::new("commands_and_at_paths_sent_to_messages_run_and_read_nothing") else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let (gate, key) = w.gate(json!({}));
    let prompts = [
        "/help",
        "/heapdump",
        "@/etc/passwd",
        "what is in @/etc/passwd?",
    ];
    for p in prompts {
        let r = send(
            &gate,
            &key,
            "/v1/messages",
            json!({"model": "sonnet", "max_tokens": 100, "stream": true,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": p}]}]}),
        );
        assert_eq!(r.status, 200, "{p}: {r:?}");
        assert_eq!(
            streamed_text(&r.body),
            "Hello from the mock upstream.",
            "{p}"
        );
    }
    let reqs = w.messages();
    assert_eq!(
        reqs.len(),
        prompts.len(),
        "each prompt went upstream as text"
    );
    for (r, p) in reqs.iter().zip(prompts) {
        let sent = turns(&r.json());
        assert!(
            sent.last()
                .is_some_and(|(_, t)| t.contains(p.trim_start_matches('/'))),
            "{p}: {sent:?}"
        );
    }
    assert!(
        !w.all_traffic().contains("root:x:0"),
        "/etc/passwd was read"
    );
    assert_eq!(markers(w.outside.path()), Vec::<PathBuf>::new());
}

#[test]
fn the_anthropic_sdk_streams_through_the_cli_backend() {
    let test = "the_anthropic_sdk_streams_through_the_cli_backend";
    let Some(w) = World::new(test) else {
        return;
    };
    let Some(python) = installed(
        "the anthropic Python SDK",
        e2e_dir().join("venv/bin/python"),
        test,
    ) else {
        return;
    };
    let (gate, key) = w.gate(json!({}));
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(
            REAL_MODEL,
            &["Hello ", "from ", "the ", "CLI."],
        )),
    );
    let home = TempDir::new();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/e2e/anthropic_sdk.py"))
        .args([&gate.url(""), key.as_str(), "sonnet"])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("E2E_NO_COUNT_TOKENS", "1");
    let run = run_with_deadline(&mut cmd, Duration::from_secs(120));
    run.assert_success("tests/e2e/anthropic_sdk.py");
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stream = lines
        .iter()
        .find(|l| l["step"] == "stream")
        .unwrap_or_else(|| panic!("{}\n{}", run.stdout, run.stderr));
    assert_eq!(stream["text"], "Hello from the CLI.", "{stream}");
    assert_eq!(stream["final_text"], "Hello from the CLI.", "{stream}");
    assert!(
        stream["deltas"].as_u64().unwrap_or(0) >= 2,
        "streamed: {stream}"
    );
    assert_eq!(stream["stop_reason"], "end_turn");
    assert_eq!(stream["model"], REAL_MODEL);
    assert_eq!(w.messages().len(), 1);
}

/// What Claude Code itself sends with every request (`thinking`, `context_management`,
/// `output_config.effort`, `metadata.user_id` as a JSON string, a `cache_control` with a ttl)
/// is accepted, and the upstream sees the thinking and effort the client asked for, through
/// the CLI's own options.
#[test]
fn claude_code_s_thinking_effort_and_context_edit_reach_the_upstream() {
    let Some(w) = World::new("claude_code_s_thinking_effort_and_context_edit_reach_the_upstream")
    else {
        return;
    };
    let (gate, key) = w.gate(json!({"allowed_models": ["sonnet", "haiku"]}));
    let clear = json!({"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]});
    // (model, thinking, effort, what the upstream gets: thinking, effort). The CLI decides
    // thinking per model: CLI 2.1.330 maps `sonnet` and `haiku` to claude-sonnet-5-5 and
    // claude-haiku-5-5, adaptive models, and thinks adaptively on them whatever `--thinking`
    // or `MAX_THINKING_TOKENS` say; the effort (`--effort`) is honoured, `medium` by default.
    for (model, thinking, effort, want_thinking, want_effort) in [
        (
            "sonnet",
            json!({"type": "adaptive"}),
            Some("high"),
            json!({"type": "adaptive"}),
            json!("high"),
        ),
        (
            "sonnet",
            json!({"type": "adaptive"}),
            Some("low"),
            json!({"type": "adaptive"}),
            json!("low"),
        ),
        (
            "sonnet",
            json!({"type": "disabled"}),
            None,
            json!({"type": "adaptive"}),
            json!("medium"),
        ),
        (
            "haiku",
            json!({"type": "enabled", "budget_tokens": 5000}),
            None,
            json!({"type": "adaptive"}),
            json!("medium"),
        ),
        (
            "haiku",
            json!({"type": "disabled"}),
            Some("max"),
            json!({"type": "adaptive"}),
            json!("max"),
        ),
    ] {
        w.mock.enqueue(
            "/v1/messages",
            Reply::sse(sse_text_events(REAL_MODEL, &["ok"])),
        );
        let mut body = json!({"model": model, "max_tokens": 64000, "stream": true,
            "thinking": thinking, "context_management": clear,
            "metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"s\"}"},
            "system": [{"type": "text", "text": "You are Claude Code.",
                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": "hi"}]});
        if let Some(e) = effort {
            body["output_config"] = json!({"effort": e});
        }
        let before = w.messages().len();
        let r = send(&gate, &key, "/v1/messages", body);
        let case = format!("{model} {thinking} {effort:?}");
        assert_eq!(r.status, 200, "{case}: {r:?}\n{}", gate.log());
        assert_eq!(streamed_text(&r.body), "ok");
        let sent = w.messages()[before].json();
        let mut got = sent["thinking"].clone();
        if let Some(o) = got.as_object_mut() {
            o.remove("display");
        }
        assert_eq!(
            got, want_thinking,
            "{case}: {} {}",
            sent["thinking"], sent["model"]
        );
        assert_eq!(sent["output_config"]["effort"], want_effort, "{case}");
    }
    // An edit Claude Code manages itself is refused by name.
    let r = send(
        &gate,
        &key,
        "/v1/messages",
        json!({"model": "sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
               "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}),
    );
    let e = r.assert_anthropic_error(400, "invalid_request_error");
    assert!(e.to_string().contains("clear_tool_uses_20250919"), "{e}");
}
