//! End-to-end tests of claudegate's OpenAI routes (`/v1/chat/completions`, `/v1/responses`)
//! with real clients: the official `openai` Python SDK (PyPI) and the Codex CLI (npm,
//! `@openai/codex`), at the versions pinned in `tests/e2e/`, installed into `target/e2e/` by
//! `tests/e2e/install.sh` (`make e2e-deps`, which `make test` runs first).
//!
//! Each test starts the mock Anthropic upstream, a claudegate in front of it logged in with a
//! stored OAuth token, and one client pointed at claudegate's `/v1`. The mock is scripted with
//! Anthropic SSE streams; the test checks both what the client made of the translated answer
//! and what the translated request looked like when it reached the upstream. Everything talks
//! only to loopback; Codex runs with a throwaway `HOME`/`CODEX_HOME` whose config
//! (`tests/e2e/codex/config.toml`) turns off every other connection it would make.
//!
//! A client that is not installed makes its tests print a loud SKIPPED banner and return;
//! `make test` sets `CLAUDEGATE_E2E_REQUIRED=1`, which turns that into a failure. Every client
//! process runs in its own process group and is killed at [`DEADLINE`]. With `E2E_DUMP=1` (and
//! `--nocapture`) every upstream request, the client's output and claudegate's log are printed.

use crate::common::e2e::{
    assert_upstream_saw_oauth_not_key as common_assert, dump_if_asked, gate_with_login,
    script_lines, DEADLINE, MODEL,
};
use crate::common::gate::{Gate, TempDir};
use crate::common::mock_upstream::{sse_error_event, MockUpstream, Recorded, Reply, SseEvent};
use crate::common::run::{
    e2e_dir, installed, pinned_npm, pinned_pip, repo, run_with_deadline, Run,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

// --- Where the clients are ----------------------------------------------------------------

/// The venv's python, if the openai SDK is installed in it (the script reports the version it
/// imports; [`run_sdk`] checks it against the pin).
fn sdk_python(test: &str) -> Option<PathBuf> {
    let py = installed(
        "the openai Python SDK",
        e2e_dir().join("venv/bin/python"),
        test,
    )?;
    // venv/lib/python3.X/site-packages/openai: the SDK, not just the venv (an older install
    // only had the anthropic SDK).
    let lib = e2e_dir().join("venv/lib");
    let package = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("site-packages/openai/__init__.py"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| lib.join("python3.X/site-packages/openai/__init__.py"));
    installed("the openai Python SDK", package, test)?;
    Some(py)
}

/// The installed Codex CLI, checked to be the pinned version.
pub(crate) fn codex(test: &str) -> Option<PathBuf> {
    let bin = installed(
        "the Codex CLI",
        e2e_dir().join("node/node_modules/.bin/codex"),
        test,
    )?;
    // `codex --version` writes under CODEX_HOME, so it gets a throwaway one.
    let home = TempDir::new();
    let run = run_with_deadline(
        Command::new(&bin)
            .arg("--version")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("CODEX_HOME", home.path()),
        Duration::from_secs(30),
    );
    let want = pinned_npm("@openai/codex");
    assert_eq!(
        run.stdout.trim(),
        format!("codex-cli {want}"),
        "{} is not Codex {want} (run `make e2e-deps`): {run:?}",
        bin.display()
    );
    Some(bin)
}

// --- Running a client with a deadline -------------------------------------------------------

// --- claudegate with a stored login ----------------------------------------------------------

/// The API root an OpenAI client is given: `http://127.0.0.1:PORT/v1`.
fn api_root(gate: &Gate) -> String {
    gate.url("/v1")
}

/// What claudegate must guarantee about every request that reached the upstream (the common
/// checks, [`common_assert`]), plus what the OpenAI doors promise: only `/v1/messages` was
/// called, always streamed, with a `max_tokens`, in a shape the real Messages API accepts.
pub(crate) fn assert_upstream_saw_oauth_not_key(mock: &MockUpstream, gate: &Gate, key: &str) {
    let reqs = mock.requests();
    common_assert(&reqs, gate, key);
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path_only()),
            ("POST", "/v1/messages"),
            "the OpenAI routes only call the Messages API: {} {}",
            r.method,
            r.path
        );
        let body = r.json();
        assert_eq!(body["stream"], true, "claudegate always streams upstream");
        assert!(
            body["max_tokens"].as_u64().is_some_and(|n| n > 0),
            "Anthropic requires max_tokens: {body}"
        );
        assert_valid_anthropic_messages(&body);
    }
}

/// Structural rules the real Messages API enforces, which the mock does not: only `user` and
/// `assistant` turns, tool names matching `^[a-zA-Z0-9_-]{1,64}$` with an object
/// `input_schema`, and every `tool_result` answering a `tool_use` of the turn just before it.
fn assert_valid_anthropic_messages(body: &Value) {
    let messages = body["messages"].as_array().expect("messages array");
    assert!(!messages.is_empty(), "{body}");
    assert_eq!(messages[0]["role"], "user", "the first turn is the user's");
    for m in messages {
        let role = m["role"].as_str().unwrap_or("");
        assert!(
            role == "user" || role == "assistant",
            "role {role:?} upstream: {m}"
        );
    }
    for (i, m) in messages.iter().enumerate() {
        let Some(blocks) = m["content"].as_array() else {
            continue;
        };
        let results: Vec<&Value> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .collect();
        if results.is_empty() {
            continue;
        }
        assert_eq!(m["role"], "user", "tool_result in a user turn: {m}");
        let prev: Vec<&str> = i
            .checked_sub(1)
            .and_then(|p| messages[p]["content"].as_array())
            .map(|b| {
                b.iter()
                    .filter(|b| b["type"] == "tool_use")
                    .filter_map(|b| b["id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for r in results {
            let id = r["tool_use_id"].as_str().unwrap_or("");
            assert!(
                prev.contains(&id),
                "tool_result {id} answers no tool_use of the previous turn ({prev:?}): {body}"
            );
        }
    }
    for t in body["tools"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("");
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        assert!(ok_name, "tool name {name:?} is not valid upstream: {t}");
        let server_tool = t["type"].as_str().is_some_and(|ty| ty != "custom");
        if !server_tool {
            assert_eq!(t["input_schema"]["type"], "object", "{t}");
        }
    }
}

/// The `/v1/messages` requests the upstream got.
pub(crate) fn upstream_messages(mock: &MockUpstream) -> Vec<Value> {
    mock.requests_to("/v1/messages")
        .iter()
        .map(Recorded::json)
        .collect()
}

/// All content blocks of all turns of an Anthropic request, with their turn's role.
pub(crate) fn blocks_of(body: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("").to_string();
        match &m["content"] {
            Value::String(s) => out.push((role, json!({"type": "text", "text": s}))),
            Value::Array(bs) => out.extend(bs.iter().map(|b| (role.clone(), b.clone()))),
            _ => {}
        }
    }
    out
}

/// The text of a `tool_result`'s content (a string or text blocks).
pub(crate) fn tool_result_text(block: &Value) -> String {
    match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

/// The user's turn in `body` holds the PNG `png_b64` as an Anthropic `image` block with a
/// base64 source, beside the text "What colour is this pixel?".
pub(crate) fn assert_image_sent(body: &Value, png_b64: &str) {
    let blocks = blocks_of(body);
    let (role, image) = blocks
        .iter()
        .find(|(_, b)| b["type"] == "image")
        .unwrap_or_else(|| panic!("an image block: {body}"));
    assert_eq!(role, "user");
    assert_eq!(
        image["source"],
        json!({"type": "base64", "media_type": "image/png", "data": png_b64}),
        "{image}"
    );
    assert!(
        blocks
            .iter()
            .any(|(_, b)| b["type"] == "text" && b["text"] == "What colour is this pixel?"),
        "{body}"
    );
}

/// The tool round trip a follow-up request `body` carries: the `tool_use` with `id` replayed in
/// an assistant turn, and the `tool_result` answering it in a user turn. Returns the call block
/// and the result's text.
pub(crate) fn replayed_tool_call(body: &Value, id: &str) -> (Value, String) {
    let blocks = blocks_of(body);
    let (role, call) = blocks
        .iter()
        .find(|(_, b)| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("the call is replayed: {body}"));
    assert_eq!(role, "assistant", "{body}");
    assert_eq!(call["id"], id, "{call}");
    let (role, result) = blocks
        .iter()
        .find(|(_, b)| b["type"] == "tool_result")
        .unwrap_or_else(|| panic!("a tool_result: {body}"));
    assert_eq!(role, "user", "{body}");
    assert_eq!(result["tool_use_id"], id, "{result}");
    (call.clone(), tool_result_text(result))
}

/// A second turn `body` after a reasoning answer ([`THOUGHT`] signed [`SIGNATURE`], then
/// "Hi!"), followed by the user's "And again.": the thinking block goes back unchanged and
/// first, as the Messages API requires.
pub(crate) fn assert_thinking_replayed(body: &Value) {
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "user, assistant, user: {body}");
    let assistant = messages[1]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("assistant blocks: {body}"));
    assert_eq!(
        assistant[0],
        json!({"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}),
        "the thinking block comes back unchanged, first: {}",
        messages[1]
    );
    assert!(
        assistant
            .iter()
            .any(|b| b["type"] == "text" && b["text"] == "Hi!"),
        "{}",
        messages[1]
    );
    assert!(messages[2].to_string().contains("And again."), "{body}");
}

// --- Anthropic streams the mock sends ---------------------------------------------------------

/// One content block of a scripted answer.
pub(crate) enum Block<'a> {
    Text(&'a [&'a str]),
    /// Thinking text, then its signature.
    Thinking(&'a str, &'a str),
    /// Tool id, name, input JSON fragments.
    ToolUse(&'a str, &'a str, &'a [&'a str]),
}

/// Usage a scripted answer reports: `message_start` has the input side, `message_delta` the
/// output tokens (as Anthropic sends them).
#[derive(Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) input: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_creation: u64,
    pub(crate) output: u64,
}

pub(crate) const USAGE: Usage = Usage {
    input: 12,
    cache_read: 0,
    cache_creation: 0,
    output: 9,
};

static MSG_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// An Anthropic SSE stream with `blocks` (indexes 0, 1, …), ending with `stop`.
pub(crate) fn anthropic_stream(blocks: &[Block], stop: &str, u: Usage) -> Vec<SseEvent> {
    let n = MSG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ev = |name: &str, data: Value| SseEvent::new(name, data.to_string());
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_01E2eOpenAi{n:012}"), "type": "message", "role": "assistant",
            "model": MODEL, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": u.input, "cache_creation_input_tokens": u.cache_creation,
                      "cache_read_input_tokens": u.cache_read, "output_tokens": 1}}}),
    )];
    for (i, b) in blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match b {
            Block::Text(chunks) => (
                json!({"type": "text", "text": ""}),
                chunks
                    .iter()
                    .map(|c| json!({"type": "text_delta", "text": c}))
                    .collect(),
            ),
            Block::Thinking(text, sig) => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                vec![
                    json!({"type": "thinking_delta", "thinking": text}),
                    json!({"type": "signature_delta", "signature": sig}),
                ],
            ),
            Block::ToolUse(id, name, parts) => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                parts
                    .iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
        };
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": start}),
        ));
        if i == 0 {
            out.push(ev("ping", json!({"type": "ping"})));
        }
        for d in deltas {
            out.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": d}),
            ));
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    out.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": u.output}}),
    ));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    out
}

/// A text stream that breaks after two deltas with an Anthropic `error` event (overloaded).
fn broken_stream() -> Vec<SseEvent> {
    let mut ev = anthropic_stream(&[Block::Text(&["Partial", " answer"])], "end_turn", USAGE);
    // message_start, content_block_start, ping, two deltas; no block stop, no message_stop.
    ev.truncate(5);
    ev.push(sse_error_event("overloaded_error", "Overloaded"));
    ev
}

fn text_reply(chunks: &[&str]) -> Reply {
    Reply::sse(anthropic_stream(&[Block::Text(chunks)], "end_turn", USAGE))
}

// --- openai Python SDK --------------------------------------------------------------------------

/// Runs `tests/e2e/openai_sdk.py MODE BASE_URL KEY MODEL`; returns the run and its JSON lines
/// (the first, the SDK version, checked against the pin and removed).
fn run_sdk(python: &Path, mode: &str, base_url: &str, key: &str) -> (Run, Vec<Value>) {
    let home = TempDir::new();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/e2e/openai_sdk.py"))
        .args([mode, base_url, key, MODEL])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_deadline(&mut cmd, DEADLINE);
    let (version, lines) = script_lines(&run);
    assert_eq!(version["openai"], pinned_pip("openai"), "{}", run.stdout);
    (run, lines)
}

/// The line of step `name`; fails with the whole output if it is missing.
fn step<'a>(run: &Run, lines: &'a [Value], name: &str) -> &'a Value {
    lines.iter().find(|l| l["step"] == name).unwrap_or_else(|| {
        panic!(
            "no step {name:?} (status {:?})\n--- stdout:\n{}\n--- stderr:\n{}",
            run.status, run.stdout, run.stderr
        )
    })
}

/// One scenario: a fresh mock with `replies` queued, a gate, the script in `mode`; asserts the
/// script succeeded and the upstream traffic obeys the basic rules. Returns the script's lines
/// and the upstream's `/v1/messages` bodies.
fn sdk_scenario(test: &str, mode: &str, replies: Vec<Reply>) -> Option<(Vec<Value>, Vec<Value>)> {
    let python = sdk_python(test)?;
    let mock = MockUpstream::start();
    for r in replies {
        mock.enqueue("/v1/messages", r);
    }
    let (gate, key) = gate_with_login(&mock);
    let (run, lines) = run_sdk(&python, mode, &api_root(&gate), &key);
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    assert!(
        run.succeeded(),
        "openai_sdk.py {mode} failed (status {:?})\n--- stdout:\n{}\n--- stderr:\n{}\n--- claudegate log:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        gate.log()
    );
    assert_eq!(mock.queued(), 0, "every scripted reply was asked for");
    assert_upstream_saw_oauth_not_key(&mock, &gate, &key);
    Some((lines, upstream_messages(&mock)))
}

const HELLO: &[&str] = &["Hello", ", SDK", " user, from", " the mock."];

/// Non-streamed chat: text, finish reason and usage come back in OpenAI's shape; the system
/// message and `max_tokens` reach the upstream.
#[test]
fn openai_sdk_chat_through_claudegate() {
    let test = "openai_sdk_chat_through_claudegate";
    let Some((lines, up)) = sdk_scenario(test, "chat", vec![text_reply(HELLO)]) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "chat", "{lines:?}");
    assert_eq!(s["text"], HELLO.concat(), "{s}");
    assert_eq!(s["role"], "assistant", "{s}");
    assert_eq!(s["finish_reason"], "stop", "{s}");
    assert_eq!(s["object"], "chat.completion", "{s}");
    assert_eq!(s["model"], MODEL, "{s}");
    assert_eq!(s["choices"], 1, "{s}");
    assert_eq!(s["usage"]["prompt_tokens"], USAGE.input, "{s}");
    assert_eq!(s["usage"]["completion_tokens"], USAGE.output, "{s}");
    assert_eq!(
        s["usage"]["total_tokens"],
        USAGE.input + USAGE.output,
        "{s}"
    );

    assert_eq!(up.len(), 1, "{up:#?}");
    let body = &up[0];
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 256);
    assert!(
        body["system"].to_string().contains("You are terse."),
        "the system message goes to `system`: {body}"
    );
    let blocks = blocks_of(body);
    assert_eq!(blocks.len(), 1, "only the user's turn: {body}");
    assert_eq!(blocks[0].0, "user");
    assert_eq!(blocks[0].1["text"], "Say hello in five words.", "{body}");
}

/// Streamed chat: one chunk per upstream text delta, one id, the role first, `stop` last, no
/// usage unless asked for.
#[test]
fn openai_sdk_chat_stream_through_claudegate() {
    let test = "openai_sdk_chat_stream_through_claudegate";
    let Some((lines, up)) = sdk_scenario(test, "chat_stream", vec![text_reply(HELLO)]) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "chat_stream", "{lines:?}");
    assert_eq!(s["text"], HELLO.concat(), "{s}");
    assert_eq!(
        s["deltas"],
        HELLO.len(),
        "one content chunk per upstream delta: {s}"
    );
    assert_eq!(s["finish_reason"], "stop", "{s}");
    assert_eq!(s["ids"], 1, "every chunk has the same id: {s}");
    assert_eq!(s["roles"], json!(["assistant"]), "{s}");
    assert_eq!(s["objects"], json!(["chat.completion.chunk"]), "{s}");
    assert_eq!(s["usage_chunks"], 0, "no usage without include_usage: {s}");
    assert_eq!(up.len(), 1, "{up:#?}");
}

/// `stream_options.include_usage`: a final chunk with `choices: []` and the usage, where
/// prompt_tokens counts cached input too (input + cache read + cache creation).
#[test]
fn openai_sdk_chat_stream_include_usage_through_claudegate() {
    let test = "openai_sdk_chat_stream_include_usage_through_claudegate";
    let usage = Usage {
        input: 100,
        cache_read: 30,
        cache_creation: 20,
        output: 7,
    };
    let reply = Reply::sse(anthropic_stream(
        &[Block::Text(&["Seven", " tokens", " here."])],
        "end_turn",
        usage,
    ));
    let Some((lines, _)) = sdk_scenario(test, "chat_usage", vec![reply]) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "chat_usage", "{lines:?}");
    assert_eq!(s["text"], "Seven tokens here.", "{s}");
    assert_eq!(
        s["last_choices"],
        json!([]),
        "the usage chunk has no choices: {s}"
    );
    let prompt = usage.input + usage.cache_read + usage.cache_creation;
    assert_eq!(s["last_usage"]["prompt_tokens"], prompt, "{s}");
    assert_eq!(s["last_usage"]["completion_tokens"], usage.output, "{s}");
    assert_eq!(
        s["last_usage"]["total_tokens"],
        prompt + usage.output,
        "{s}"
    );
    assert_eq!(
        s["earlier_usage"],
        json!([]),
        "only the last chunk has usage: {s}"
    );
}

const PARIS_ID: &str = "toolu_01E2eWeatherParis000001";
const TOKYO_ID: &str = "toolu_01E2eWeatherTokyo000002";
const WEATHER_FINAL: &[&str] = &["Paris is sunny", " and so is Tokyo."];

/// The mock's first answer: a text block, then two `get_weather` calls (Anthropic indexes
/// 1 and 2, which must become OpenAI tool call indexes 0 and 1).
fn two_weather_calls() -> Reply {
    Reply::sse(anthropic_stream(
        &[
            Block::Text(&["Checking both."]),
            Block::ToolUse(PARIS_ID, "get_weather", &["{\"city\":", " \"Paris\"}"]),
            Block::ToolUse(TOKYO_ID, "get_weather", &["{\"ci", "ty\": \"Tokyo\"}"]),
        ],
        "tool_use",
        USAGE,
    ))
}

/// The parallel tool round trip, streamed or not; checks the client's view and the second
/// upstream request (both `tool_use`s replayed, both `tool_result`s leading the user turn).
fn chat_parallel_tools(test: &str, mode: &str) {
    let replies = vec![two_weather_calls(), text_reply(WEATHER_FINAL)];
    let Some((lines, up)) = sdk_scenario(test, mode, replies) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], mode, "{lines:?}");
    assert_eq!(s["finish_reason"], "tool_calls", "{s}");
    assert_eq!(s["first_text"], "Checking both.", "{s}");
    assert_eq!(
        s["tool_calls"],
        json!([
            {"id": PARIS_ID, "name": "get_weather", "arguments": {"city": "Paris"}},
            {"id": TOKYO_ID, "name": "get_weather", "arguments": {"city": "Tokyo"}},
        ]),
        "{s}"
    );
    if mode == "chat_tools_stream" {
        assert_eq!(
            s["indexes"],
            json!([0, 1]),
            "tool call indexes count the calls, not Anthropic's blocks: {s}"
        );
    }
    let fin = &lines[1];
    assert_eq!(fin["step"], format!("{mode}_final"), "{lines:?}");
    assert_eq!(fin["text"], WEATHER_FINAL.concat(), "{fin}");
    assert_eq!(fin["finish_reason"], "stop", "{fin}");

    assert_eq!(up.len(), 2, "{up:#?}");
    let first = &up[0];
    let tools = first["tools"].as_array().expect("tools go upstream");
    assert_eq!(tools.len(), 1, "{first}");
    assert_eq!(tools[0]["name"], "get_weather");
    assert_eq!(
        tools[0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );

    let second = &up[1];
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "user, assistant, tool results: {second}");
    let assistant = &messages[1];
    assert_eq!(assistant["role"], "assistant", "{second}");
    let uses: Vec<(&str, &Value)> = assistant["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| (b["id"].as_str().unwrap_or(""), &b["input"]))
        .collect();
    assert_eq!(
        uses,
        [
            (PARIS_ID, &json!({"city": "Paris"})),
            (TOKYO_ID, &json!({"city": "Tokyo"}))
        ],
        "{assistant}"
    );
    let results = &messages[2];
    assert_eq!(results["role"], "user", "{second}");
    let content = results["content"].as_array().expect("blocks");
    assert!(content.len() >= 2, "{results}");
    // Both results lead the turn (the API rejects anything before them), in order.
    for (i, (id, city)) in [(PARIS_ID, "Paris"), (TOKYO_ID, "Tokyo")]
        .iter()
        .enumerate()
    {
        let b = &content[i];
        assert_eq!(b["type"], "tool_result", "{results}");
        assert_eq!(b["tool_use_id"], *id, "{results}");
        assert!(
            tool_result_text(b).contains(&format!("weather-in-{city}: sunny")),
            "{b}"
        );
    }
}

#[test]
fn openai_sdk_chat_parallel_tool_calls_through_claudegate() {
    chat_parallel_tools(
        "openai_sdk_chat_parallel_tool_calls_through_claudegate",
        "chat_tools",
    );
}

#[test]
fn openai_sdk_chat_stream_parallel_tool_calls_through_claudegate() {
    chat_parallel_tools(
        "openai_sdk_chat_stream_parallel_tool_calls_through_claudegate",
        "chat_tools_stream",
    );
}

/// An `image_url` data URL becomes an Anthropic `image` block with a base64 source.
#[test]
fn openai_sdk_chat_image_through_claudegate() {
    let test = "openai_sdk_chat_image_through_claudegate";
    let Some((lines, up)) = sdk_scenario(test, "chat_image", vec![text_reply(&["Red."])]) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["text"], "Red.", "{s}");
    let png = s["png_b64"].as_str().unwrap();
    assert_eq!(up.len(), 1);
    assert_image_sent(&up[0], png);
}

/// `responses.create`: output_text, status and usage; instructions and max_output_tokens
/// reach the upstream as `system` and `max_tokens`.
#[test]
fn openai_sdk_responses_create_through_claudegate() {
    let test = "openai_sdk_responses_create_through_claudegate";
    let Some((lines, up)) = sdk_scenario(test, "responses", vec![text_reply(HELLO)]) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "responses", "{lines:?}");
    assert_eq!(s["text"], HELLO.concat(), "{s}");
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["object"], "response", "{s}");
    assert_eq!(s["model"], MODEL, "{s}");
    assert_eq!(s["output_types"], json!(["message"]), "{s}");
    assert_eq!(s["usage"]["input_tokens"], USAGE.input, "{s}");
    assert_eq!(s["usage"]["output_tokens"], USAGE.output, "{s}");
    assert_eq!(
        s["usage"]["total_tokens"],
        USAGE.input + USAGE.output,
        "{s}"
    );

    assert_eq!(up.len(), 1, "{up:#?}");
    let body = &up[0];
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 256);
    assert!(
        body["system"].to_string().contains("You are terse."),
        "{body}"
    );
    let blocks = blocks_of(body);
    assert_eq!(blocks.len(), 1, "{body}");
    assert_eq!(blocks[0].1["text"], "Say hello in five words.", "{body}");
}

/// `responses.stream`: the SDK's event stream (created … deltas … completed) and final
/// response agree with the upstream's text.
#[test]
fn openai_sdk_responses_stream_through_claudegate() {
    let test = "openai_sdk_responses_stream_through_claudegate";
    let Some((lines, _)) = sdk_scenario(test, "responses_stream", vec![text_reply(HELLO)]) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "responses_stream", "{lines:?}");
    assert_eq!(s["text"], HELLO.concat(), "{s}");
    assert_eq!(s["deltas"], HELLO.len(), "{s}");
    assert_eq!(s["final_text"], HELLO.concat(), "{s}");
    assert_eq!(s["status"], "completed", "{s}");
    let types: Vec<&str> = s["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    for t in [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.output_item.done",
    ] {
        assert!(types.contains(&t), "{t} missing: {types:?}");
    }
    assert_eq!(s["usage"]["input_tokens"], USAGE.input, "{s}");
    assert_eq!(s["usage"]["output_tokens"], USAGE.output, "{s}");
}

const WEATHER_ID: &str = "toolu_01E2eRespWeather00000003";

/// Responses function-call round trip: a streamed `function_call` item, then its
/// `function_call_output` comes back and reaches the upstream as a `tool_result`.
#[test]
fn openai_sdk_responses_function_call_through_claudegate() {
    let test = "openai_sdk_responses_function_call_through_claudegate";
    let call = Reply::sse(anthropic_stream(
        &[Block::ToolUse(
            WEATHER_ID,
            "get_weather",
            &["{\"city\"", ": \"Paris\"}"],
        )],
        "tool_use",
        USAGE,
    ));
    let replies = vec![call, text_reply(&["Sunny in Paris."])];
    let Some((lines, up)) = sdk_scenario(test, "responses_tools", replies) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "responses_tools", "{lines:?}");
    assert_eq!(s["output_types"], json!(["function_call"]), "{s}");
    assert_eq!(
        s["calls"],
        json!([{"call_id": WEATHER_ID, "name": "get_weather", "arguments": {"city": "Paris"}}]),
        "{s}"
    );
    let types = s["event_types"].to_string();
    assert!(
        types.contains("response.function_call_arguments.delta"),
        "{types}"
    );
    let fin = &lines[1];
    assert_eq!(fin["text"], "Sunny in Paris.", "{fin}");
    assert_eq!(fin["status"], "completed", "{fin}");

    assert_eq!(up.len(), 2, "{up:#?}");
    let tools = up[0]["tools"].as_array().expect("tools go upstream");
    assert_eq!(tools[0]["name"], "get_weather");
    assert_eq!(tools[0]["input_schema"]["required"], json!(["city"]));
    let (call, result) = replayed_tool_call(&up[1], WEATHER_ID);
    assert_eq!(call["input"], json!({"city": "Paris"}));
    assert!(result.contains("weather-in-Paris: sunny"), "{result}");
}

pub(crate) const THOUGHT: &str = "The user wants a greeting; keep it short.";
pub(crate) const SIGNATURE: &str =
    "EqQBCkYIBxgCKkDe2eSignatureForClaudegateE2e0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH==";

/// Reasoning replay, stateless (`store: false`, `include: ["reasoning.encrypted_content"]`):
/// the reasoning item the client got back goes into the next input, and the upstream's next
/// request carries the thinking block unchanged (text and signature) before the text.
#[test]
fn openai_sdk_responses_reasoning_replay_through_claudegate() {
    let test = "openai_sdk_responses_reasoning_replay_through_claudegate";
    let first = Reply::sse(anthropic_stream(
        &[Block::Thinking(THOUGHT, SIGNATURE), Block::Text(&["Hi!"])],
        "end_turn",
        USAGE,
    ));
    let replies = vec![first, text_reply(&["Hi again!"])];
    let Some((lines, up)) = sdk_scenario(test, "responses_reasoning", replies) else {
        return;
    };
    let s = &lines[0];
    assert_eq!(s["step"], "responses_reasoning", "{lines:?}");
    assert_eq!(s["text"], "Hi!", "{s}");
    let output = s["output"].as_array().unwrap();
    let types: Vec<&str> = output.iter().filter_map(|o| o["type"].as_str()).collect();
    assert_eq!(types, ["reasoning", "message"], "{s}");
    let enc = output[0]["encrypted_content"].as_str().unwrap_or("");
    assert!(
        !enc.is_empty(),
        "include=[reasoning.encrypted_content] gives the item encrypted_content: {s}"
    );
    assert_eq!(lines[1]["text"], "Hi again!", "{}", lines[1]);

    assert_eq!(up.len(), 2, "{up:#?}");
    assert_thinking_replayed(&up[1]);
}

/// Upstream errors surface as the SDK's typed errors: a 400's message is kept (chat and
/// responses). Kept apart from the 429, which cools the account down.
#[test]
fn openai_sdk_upstream_400_is_bad_request_through_claudegate() {
    let test = "openai_sdk_upstream_400_is_bad_request_through_claudegate";
    let Some(python) = sdk_python(test) else {
        return;
    };
    let msg = "max_tokens: 99999999 > 64000, which is the maximum for claude-e2e";
    let mock = MockUpstream::start();
    for _ in 0..2 {
        mock.enqueue(
            "/v1/messages",
            Reply::error(400, "invalid_request_error", msg),
        );
    }
    let (gate, key) = gate_with_login(&mock);
    let (run, lines) = run_sdk(&python, "error_400", &api_root(&gate), &key);
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    run.assert_success("openai_sdk.py error_400");
    for name in ["error_400", "error_400_responses"] {
        let s = step(&run, &lines, name);
        assert_eq!(s["error"], "BadRequestError", "{s}");
        assert_eq!(s["status"], 400, "{s}");
        assert!(
            s["message"].as_str().unwrap_or("").contains(msg),
            "the upstream's message reaches the client: {s}"
        );
        assert!(
            s["body"]["message"].as_str().unwrap_or("").contains(msg),
            "OpenAI error shape: {s}"
        );
        assert!(
            s["content_type"]
                .as_str()
                .is_some_and(|c| c.starts_with("application/json")),
            "{s}"
        );
    }
    assert_eq!(mock.requests_to("/v1/messages").len(), 2);
    assert_upstream_saw_oauth_not_key(&mock, &gate, &key);
}

/// An upstream 429 with `retry-after` is the SDK's RateLimitError, with `retry-after` kept.
#[test]
fn openai_sdk_upstream_429_is_rate_limit_error_through_claudegate() {
    let test = "openai_sdk_upstream_429_is_rate_limit_error_through_claudegate";
    let Some(python) = sdk_python(test) else {
        return;
    };
    let mock = MockUpstream::start();
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "Number of requests exceeded").retry_after(17),
    );
    let (gate, key) = gate_with_login(&mock);
    let (run, lines) = run_sdk(&python, "error_429", &api_root(&gate), &key);
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    run.assert_success("openai_sdk.py error_429");
    let s = step(&run, &lines, "error_429");
    assert_eq!(s["error"], "RateLimitError", "{s}");
    assert_eq!(s["status"], 429, "{s}");
    assert_eq!(s["retry_after"], "17", "{s}");
    assert!(s["body"]["message"].is_string(), "OpenAI error shape: {s}");
    assert_eq!(
        mock.requests_to("/v1/messages").len(),
        1,
        "no retry of a 429"
    );
}

/// An upstream stream that breaks after some text (an Anthropic `error` event): the chat SDK
/// raises with the upstream's message after the text so far; a Responses stream ends with
/// `response.failed` carrying it. Never a quiet, clean-looking end.
#[test]
fn openai_sdk_stream_broken_mid_way_through_claudegate() {
    let test = "openai_sdk_stream_broken_mid_way_through_claudegate";
    let Some(python) = sdk_python(test) else {
        return;
    };
    for mode in ["chat_stream_error", "responses_stream_error"] {
        let mock = MockUpstream::start();
        mock.enqueue("/v1/messages", Reply::sse(broken_stream()));
        let (gate, key) = gate_with_login(&mock);
        let (run, lines) = run_sdk(&python, mode, &api_root(&gate), &key);
        dump_if_asked(&mock.requests(), &gate, Some(&run));
        run.assert_success(mode);
        let s = step(&run, &lines, mode);
        assert_eq!(s["text"], "Partial answer", "{s}");
        if mode == "chat_stream_error" {
            assert_eq!(s["error"], "APIError", "the SDK raises: {s}");
            assert!(
                s["message"].as_str().unwrap_or("").contains("Overloaded"),
                "{s}"
            );
        } else {
            let types = s["event_types"].as_array().unwrap();
            assert_eq!(types.last(), Some(&json!("response.failed")), "{s}");
            assert!(
                s["failure"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Overloaded"),
                "{s}"
            );
        }
        assert_eq!(mock.requests_to("/v1/messages").len(), 1, "{mode}");
    }
}

// --- Codex CLI ------------------------------------------------------------------------------------

/// `codex exec --json PROMPT` in a fresh work dir with a throwaway `HOME`/`CODEX_HOME` whose
/// `config.toml` makes claudegate (at `base_url`) the model provider on the Responses API.
pub(crate) fn run_codex(bin: &Path, base_url: &str, key: &str, prompt: &str) -> Run {
    let work = TempDir::new();
    let home = work.path().join("home");
    let tmp = work.path().join("tmp");
    let cwd = work.path().join("project");
    for d in [&home, &tmp, &cwd] {
        std::fs::create_dir_all(d).unwrap();
    }
    let template = std::fs::read_to_string(repo().join("tests/e2e/codex/config.toml")).unwrap();
    let config = template
        .replace("@BASE_URL@", base_url)
        .replace("@MODEL@", MODEL);
    std::fs::write(home.join("config.toml"), config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--json",
        "--color",
        "never",
        prompt,
    ])
    .current_dir(&cwd)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", &home)
    .env("CODEX_HOME", &home)
    .env("TMPDIR", &tmp)
    .env("TERM", "dumb")
    .env("NO_PROXY", "127.0.0.1,localhost")
    .env("CLAUDEGATE_KEY", key);
    run_with_deadline(&mut cmd, DEADLINE)
}

/// Codex's `--json` events (one object per stdout line).
pub(crate) fn codex_events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The completed items of type `kind`.
pub(crate) fn codex_items(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "item.completed" && e["item"]["type"] == kind)
        .map(|e| e["item"].clone())
        .collect()
}

/// One Codex scenario: fresh mock with `replies`, a gate, `codex exec PROMPT`; asserts Codex
/// succeeded and the upstream traffic obeys the basic rules. Returns Codex's events and the
/// upstream's `/v1/messages` bodies.
fn codex_scenario(
    test: &str,
    prompt: &str,
    replies: Vec<Reply>,
) -> Option<(Vec<Value>, Vec<Value>)> {
    let bin = codex(test)?;
    let mock = MockUpstream::start();
    for r in replies {
        mock.enqueue("/v1/messages", r);
    }
    let (gate, key) = gate_with_login(&mock);
    let run = run_codex(&bin, &api_root(&gate), &key, prompt);
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    let events = codex_events(&run);
    let failed = !run.succeeded()
        || events.iter().any(|e| e["type"] == "turn.failed")
        || !events.iter().any(|e| e["type"] == "turn.completed");
    assert!(
        !failed,
        "codex exec failed (status {:?}, after {:?})\n--- stdout:\n{}\n--- stderr:\n{}\n--- claudegate log:\n{}",
        run.status,
        run.elapsed,
        run.stdout,
        run.stderr,
        gate.log()
    );
    assert_eq!(mock.queued(), 0, "every scripted reply was asked for");
    assert_upstream_saw_oauth_not_key(&mock, &gate, &key);
    Some((events, upstream_messages(&mock)))
}

/// Codex's developer instructions reach the upstream (as system text or a user turn) and its
/// shell tool is declared with a `cmd` string parameter.
fn assert_codex_request_shape(body: &Value, prompt: &str) {
    assert_eq!(body["model"], MODEL);
    let text = body.to_string();
    assert!(
        text.contains("You are a coding agent running in the Codex CLI"),
        "Codex's instructions went missing: {}",
        &text[..text.len().min(2000)]
    );
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .expect("a user turn")
        .to_string();
    assert!(last_user.contains(prompt), "{last_user}");
    let tools = body["tools"].as_array().expect("Codex's tools go upstream");
    let exec = tools
        .iter()
        .find(|t| t["name"] == "exec_command")
        .unwrap_or_else(|| {
            let names: Vec<&Value> = tools.iter().map(|t| &t["name"]).collect();
            panic!("exec_command among the tools: {names:?}")
        });
    assert_eq!(
        exec["input_schema"]["properties"]["cmd"]["type"], "string",
        "{exec}"
    );
    assert_eq!(exec["input_schema"]["required"], json!(["cmd"]), "{exec}");
}

const CODEX_HELLO: &[&str] = &["Hello from", " claudegate", " to Codex."];

/// (a) A plain prompt: Codex prints the upstream's text as its answer.
#[test]
fn codex_exec_plain_prompt_through_claudegate() {
    let test = "codex_exec_plain_prompt_through_claudegate";
    let prompt = "Say hello to the e2e test.";
    let Some((events, up)) = codex_scenario(test, prompt, vec![text_reply(CODEX_HELLO)]) else {
        return;
    };
    let answers = codex_items(&events, "agent_message");
    let texts: Vec<&Value> = answers.iter().map(|a| &a["text"]).collect();
    assert_eq!(texts, [&json!(CODEX_HELLO.concat())], "{events:#?}");
    assert_eq!(up.len(), 1, "{up:#?}");
    assert_codex_request_shape(&up[0], prompt);
}

const SHELL_ID: &str = "toolu_01E2eCodexShell000000004";
const SHELL_WORD: &str = "claudegate-e2e";
const SHELL_FINAL: &[&str] = &["The command printed", " claudegate-e2e."];

/// Checks Codex ran `echo claudegate-e2e` and the result went back as a `tool_result` for
/// [`SHELL_ID`]; returns the second upstream request.
fn assert_shell_round_trip(events: &[Value], up: &[Value]) -> Value {
    let runs = codex_items(events, "command_execution");
    assert_eq!(runs.len(), 1, "{events:#?}");
    assert!(
        runs[0]["command"]
            .as_str()
            .unwrap_or("")
            .contains("echo claudegate-e2e"),
        "{}",
        runs[0]
    );
    assert_eq!(runs[0]["exit_code"], 0, "{}", runs[0]);
    assert!(
        runs[0]["aggregated_output"]
            .as_str()
            .unwrap_or("")
            .contains(SHELL_WORD),
        "{}",
        runs[0]
    );
    let answers = codex_items(events, "agent_message");
    assert_eq!(
        answers.last().map(|a| &a["text"]),
        Some(&json!(SHELL_FINAL.concat())),
        "{events:#?}"
    );

    assert_eq!(up.len(), 2, "tool call + final answer: {up:#?}");
    let (call, result) = replayed_tool_call(&up[1], SHELL_ID);
    assert_eq!(call["name"], "exec_command");
    assert_eq!(call["input"]["cmd"], "echo claudegate-e2e");
    assert!(
        result.contains(SHELL_WORD),
        "the command's output goes back: {result}"
    );
    up[1].clone()
}

/// (b) A shell-tool round trip: the upstream asks for `exec_command` (the tool Codex declares
/// for shell commands) with `echo claudegate-e2e`; Codex runs it, sends the output back, and
/// prints the final answer.
#[test]
fn codex_exec_shell_tool_round_trip_through_claudegate() {
    let test = "codex_exec_shell_tool_round_trip_through_claudegate";
    let prompt = "Run echo claudegate-e2e and tell me what it printed.";
    let call = Reply::sse(anthropic_stream(
        &[
            Block::Text(&["I'll run it."]),
            Block::ToolUse(
                SHELL_ID,
                "exec_command",
                &["{\"cmd\": \"echo clau", "degate-e2e\"}"],
            ),
        ],
        "tool_use",
        USAGE,
    ));
    let replies = vec![call, text_reply(SHELL_FINAL)];
    let Some((events, up)) = codex_scenario(test, prompt, replies) else {
        return;
    };
    assert_codex_request_shape(&up[0], prompt);
    assert_shell_round_trip(&events, &up);
}

/// (c) The same with a thinking block before the call: Codex stores the reasoning item
/// (`store: false`, `include: ["reasoning.encrypted_content"]`) and replays it, so the
/// upstream's second request carries the thinking block unchanged before the `tool_use`, as
/// the Messages API requires when thinking is on.
#[test]
fn codex_exec_reasoning_replay_through_claudegate() {
    let test = "codex_exec_reasoning_replay_through_claudegate";
    let prompt = "Think, then run echo claudegate-e2e.";
    let call = Reply::sse(anthropic_stream(
        &[
            Block::Thinking(THOUGHT, SIGNATURE),
            Block::ToolUse(
                SHELL_ID,
                "exec_command",
                &["{\"cmd\": \"echo claudegate-e2e\"}"],
            ),
        ],
        "tool_use",
        USAGE,
    ));
    let replies = vec![call, text_reply(SHELL_FINAL)];
    let Some((events, up)) = codex_scenario(test, prompt, replies) else {
        return;
    };
    let second = assert_shell_round_trip(&events, &up);
    let messages = second["messages"].as_array().unwrap();
    let assistant = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("an assistant turn: {second}"));
    let blocks = assistant["content"].as_array().expect("assistant blocks");
    assert_eq!(
        blocks[0],
        json!({"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}),
        "the thinking block comes back unchanged, first: {assistant}"
    );
    assert!(
        blocks
            .iter()
            .any(|b| b["type"] == "tool_use" && b["id"] == SHELL_ID),
        "thinking and tool_use in the same assistant turn: {assistant}"
    );
}

/// Upstream failures reach Codex as failed turns naming them: a stream broken by an
/// `overloaded_error` event (the message shows), and a 429 (one request, no retry loop).
#[test]
fn codex_exec_reports_upstream_errors_through_claudegate() {
    let test = "codex_exec_reports_upstream_errors_through_claudegate";
    let Some(bin) = codex(test) else {
        return;
    };
    let cases = [
        (Reply::sse(broken_stream()), "Overloaded"),
        (
            Reply::error(429, "rate_limit_error", "Number of requests exceeded").retry_after(17),
            "429",
        ),
    ];
    for (reply, want) in cases {
        let mock = MockUpstream::start();
        mock.enqueue("/v1/messages", reply);
        let (gate, key) = gate_with_login(&mock);
        let run = run_codex(&bin, &api_root(&gate), &key, "Say hi.");
        dump_if_asked(&mock.requests(), &gate, Some(&run));
        assert!(
            run.status.is_some_and(|s| !s.success()),
            "codex exec fails: {run:?}"
        );
        let events = codex_events(&run);
        let failed = events
            .iter()
            .find(|e| e["type"] == "turn.failed")
            .unwrap_or_else(|| panic!("a failed turn: {run:?}"));
        assert!(
            failed["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(want),
            "{failed}"
        );
        assert!(
            codex_items(&events, "agent_message").is_empty(),
            "{events:#?}"
        );
        assert_eq!(mock.requests_to("/v1/messages").len(), 1, "{run:?}");
    }
}

/// (d) A call to one of Codex's namespaced tools: claudegate declares
/// `multi_agent_v1 / close_agent` upstream as `multi_agent_v1__close_agent` and must hand the
/// call back to Codex as `namespace` + `name`, so Codex's own handler answers (about the bad
/// agent id) instead of "unsupported call"; the replayed call keeps the flat name.
#[test]
fn codex_exec_namespaced_tool_call_through_claudegate() {
    let test = "codex_exec_namespaced_tool_call_through_claudegate";
    let id = "toolu_01E2eCodexNamespace00005";
    let call = Reply::sse(anthropic_stream(
        &[Block::ToolUse(
            id,
            "multi_agent_v1__close_agent",
            &["{\"target\": \"agent-does-not-exist\"}"],
        )],
        "tool_use",
        USAGE,
    ));
    let replies = vec![call, text_reply(&["No such agent."])];
    let Some((events, up)) = codex_scenario(test, "Close agent-does-not-exist.", replies) else {
        return;
    };
    let answers = codex_items(&events, "agent_message");
    assert_eq!(
        answers.last().map(|a| &a["text"]),
        Some(&json!("No such agent.")),
        "{events:#?}"
    );
    let tools: Vec<&str> = up[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(tools.contains(&"multi_agent_v1__close_agent"), "{tools:?}");
    assert_eq!(up.len(), 2, "{up:#?}");
    let (call, text) = replayed_tool_call(&up[1], id);
    assert_eq!(call["name"], "multi_agent_v1__close_agent");
    assert!(
        !text.contains("unsupported call") && text.contains("agent-does-not-exist"),
        "Codex's close_agent handler answered: {text}"
    );
}
