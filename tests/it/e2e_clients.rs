//! End-to-end tests with real clients: the Claude Code CLI (npm) and the official `anthropic`
//! Python SDK (PyPI), at the versions pinned in `tests/e2e/`, installed into `target/e2e/` by
//! `tests/e2e/install.sh` (`make e2e-deps`, which `make test` runs first).
//!
//! Every client talks only to loopback: either straight to the mock Anthropic upstream
//! (`*_direct_to_mock`, which pins down what the client sends and that the mock satisfies it)
//! or to a real claudegate in front of that mock, logged in with a stored OAuth token.
//! No real account and no network are ever involved: Claude Code runs with a fresh temp
//! `HOME`, nonessential traffic, telemetry and the auto-updater off.
//!
//! A client that is not installed makes its tests print a loud SKIPPED banner and return;
//! `make test` sets `CLAUDEGATE_E2E_REQUIRED=1`, which turns that into a failure. Every client
//! process runs in its own process group and is killed at [`DEADLINE`].

use crate::common::e2e::{
    assert_upstream_saw_oauth_not_key, dump_if_asked, gate_with_login, DEADLINE, MODEL,
};
use crate::common::gate::{Gate, TempDir};
use crate::common::mock_upstream::{sse_tool_use_events, MockUpstream, Recorded, Reply};
use crate::common::run::{
    e2e_dir, installed, pinned_npm, pinned_pip, repo, run_with_deadline, Run,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

// --- Where the clients are ----------------------------------------------------------------

/// The installed Claude Code CLI, checked to be the pinned version.
pub(crate) fn claude_code(test: &str) -> Option<PathBuf> {
    let bin = installed(
        "Claude Code",
        e2e_dir().join("node/node_modules/.bin/claude"),
        test,
    )?;
    let run = run_with_deadline(
        Command::new(&bin)
            .arg("--version")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/nonexistent"),
        Duration::from_secs(30),
    );
    let want = pinned_npm("@anthropic-ai/claude-code");
    assert!(
        run.stdout.starts_with(&format!("{want} ")),
        "{} is not Claude Code {want} (run `make e2e-deps`): {run:?}",
        bin.display()
    );
    Some(bin)
}

/// The venv's python (the script checks the SDK version it imports).
fn sdk_python(test: &str) -> Option<PathBuf> {
    installed(
        "the anthropic Python SDK",
        e2e_dir().join("venv/bin/python"),
        test,
    )
}

// --- Running a client with a deadline -------------------------------------------------------

/// `claude ARGS…` in `work` with a fresh `home`, talking only to `base_url` with `token`.
pub(crate) fn run_claude(
    bin: &Path,
    base_url: &str,
    token: &str,
    work: &Path,
    args: &[&str],
) -> Run {
    let home = work.join("home");
    let tmp = work.join("tmp");
    let cwd = work.join("project");
    for d in [&home, &tmp, &cwd] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("TERM", "dumb")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_AUTH_TOKEN", token)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        // A failure shows at once instead of after minutes of backoff.
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .env("API_TIMEOUT_MS", "60000");
    run_with_deadline(&mut cmd, DEADLINE)
}

/// The `--output-format json` result object; asserts a successful run.
pub(crate) fn claude_result(run: &Run) -> Value {
    run.assert_success("claude -p");
    let v: Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "claude stdout is not one JSON object ({e}):\n{}\n--- stderr:\n{}",
            run.stdout, run.stderr
        )
    });
    assert_eq!(v["type"], "result", "{v}");
    assert_eq!(v["is_error"], false, "{v}");
    assert_eq!(v["subtype"], "success", "{v}");
    v
}

/// Runs `tests/e2e/anthropic_sdk.py BASE_URL KEY MODEL`; returns its JSON lines by `step`.
fn run_sdk_script(python: &Path, base_url: &str, key: &str) -> Vec<Value> {
    let home = TempDir::new();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/e2e/anthropic_sdk.py"))
        .args([base_url, key, MODEL])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_deadline(&mut cmd, DEADLINE);
    run.assert_success("tests/e2e/anthropic_sdk.py");
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let steps: Vec<&str> = lines.iter().filter_map(|l| l["step"].as_str()).collect();
    assert_eq!(
        steps,
        ["version", "stream", "count_tokens"],
        "{}\n--- stderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        lines[0]["anthropic"],
        pinned_pip("anthropic"),
        "{}",
        run.stdout
    );
    lines
}

// --- claudegate with a stored login ----------------------------------------------------------

fn base(gate: &Gate) -> String {
    gate.url("")
}

/// The common checks ([`assert_upstream_saw_oauth_not_key`]) on what `mock` received.
fn assert_no_key_upstream(mock: &MockUpstream, gate: &Gate, key: &str) {
    let reqs = mock.requests();
    dump_if_asked(&reqs, gate, None);
    assert_upstream_saw_oauth_not_key(&reqs, gate, key);
}

// --- Scenarios ------------------------------------------------------------------------------

/// The text the mock streams for a plain prompt.
const HELLO_CHUNKS: &[&str] = &["Hi there", " from the", " claudegate", " e2e mock."];

/// `claude -p "say hi"` against `base_url`; returns the `/v1/messages` request the mock got.
fn claude_says_hi(bin: &Path, mock: &MockUpstream, base_url: &str, token: &str) -> Recorded {
    mock.enqueue("/v1/messages", Reply::sse_text(MODEL, HELLO_CHUNKS));
    let work = TempDir::new();
    let args = [
        "-p",
        "say hi",
        "--output-format",
        "json",
        "--model",
        MODEL,
        "--no-session-persistence",
    ];
    let run = run_claude(bin, base_url, token, work.path(), &args);
    let result = claude_result(&run);
    assert_eq!(result["result"], HELLO_CHUNKS.concat(), "{result}");
    assert_eq!(result["num_turns"], 1, "{result}");

    let reqs = mock.requests_to("/v1/messages");
    assert_eq!(reqs.len(), 1, "one model call: {reqs:#?}");
    let r = reqs[0].clone();
    assert_eq!(r.method, "POST");
    let body = r.json();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["stream"], true, "Claude Code streams first");
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .expect("a user message")
        .to_string();
    assert!(last_user.contains("say hi"), "{last_user}");
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(tools.contains(&"Read"), "Claude Code's tools: {tools:?}");
    // Betas the body depends on (context_management, thinking, …) must reach the upstream.
    let betas = r.header("anthropic-beta").unwrap_or("");
    for beta in ["claude-code-20250219", "context-management-2025-06-27"] {
        assert!(betas.split(',').any(|b| b.trim() == beta), "{betas}");
    }
    r
}

/// The scripted tool call: Claude Code must run `Read` on `note.txt` and send its content back.
const TOOL_ID: &str = "toolu_01E2eReadNoteTxt000001";
const SECRET_WORD: &str = "PINEAPPLE-7731";
const FINAL_CHUNKS: &[&str] = &["The note", " says the word", " is PINEAPPLE-7731."];

/// A `Read` tool round trip against `base_url`; returns the two `/v1/messages` requests.
fn claude_reads_a_file(
    bin: &Path,
    mock: &MockUpstream,
    base_url: &str,
    token: &str,
) -> Vec<Recorded> {
    let work = TempDir::new();
    let project = work.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let note = project.join("note.txt");
    std::fs::write(&note, format!("the secret word is {SECRET_WORD}\n")).unwrap();

    let input = json!({"file_path": note.to_string_lossy()}).to_string();
    let (a, b) = input.split_at(12);
    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(MODEL, TOOL_ID, "Read", &[a, b])),
    );
    mock.enqueue("/v1/messages", Reply::sse_text(MODEL, FINAL_CHUNKS));

    let args = [
        "-p",
        "What does note.txt say?",
        "--output-format",
        "json",
        "--model",
        MODEL,
        "--allowedTools",
        "Read",
        "--no-session-persistence",
    ];
    let run = run_claude(bin, base_url, token, work.path(), &args);
    let result = claude_result(&run);
    assert_eq!(result["result"], FINAL_CHUNKS.concat(), "{result}");
    assert_eq!(result["num_turns"], 2, "{result}");
    assert_eq!(result["permission_denials"], json!([]), "{result}");

    let reqs = mock.requests_to("/v1/messages");
    assert_eq!(reqs.len(), 2, "tool call + final answer: {reqs:#?}");
    let second = reqs[1].json();
    let messages = second["messages"].as_array().expect("messages");
    let blocks: Vec<&Value> = messages
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .collect();
    let tool_use = blocks
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap_or_else(|| panic!("the assistant's tool_use is sent back: {second}"));
    assert_eq!(tool_use["id"], TOOL_ID);
    assert_eq!(tool_use["name"], "Read");
    assert_eq!(
        tool_use["input"]["file_path"],
        note.to_string_lossy().as_ref()
    );
    let tool_result = blocks
        .iter()
        .find(|b| b["type"] == "tool_result")
        .unwrap_or_else(|| panic!("a tool_result is sent: {second}"));
    assert_eq!(tool_result["tool_use_id"], TOOL_ID, "{tool_result}");
    assert_ne!(tool_result["is_error"], true, "{tool_result}");
    assert!(
        tool_result["content"].to_string().contains(SECRET_WORD),
        "the Read tool really read the file: {tool_result}"
    );
    reqs
}

/// The text and token count the mock gives the SDK script.
const SDK_CHUNKS: &[&str] = &["Hello", ", SDK", " user, from", " the mock."];
const SDK_COUNT: u64 = 4242;

/// Runs the SDK script against `base_url`; returns the mock's (messages, count_tokens) requests.
fn sdk_streams_and_counts(
    python: &Path,
    mock: &MockUpstream,
    base_url: &str,
    key: &str,
) -> (Recorded, Recorded) {
    mock.enqueue("/v1/messages", Reply::sse_text(MODEL, SDK_CHUNKS));
    mock.enqueue(
        "/v1/messages/count_tokens",
        Reply::json(200, json!({"input_tokens": SDK_COUNT})),
    );
    let lines = run_sdk_script(python, base_url, key);
    let stream = &lines[1];
    assert_eq!(stream["text"], SDK_CHUNKS.concat(), "{stream}");
    assert_eq!(stream["final_text"], SDK_CHUNKS.concat(), "{stream}");
    assert_eq!(stream["deltas"], SDK_CHUNKS.len(), "{stream}");
    assert_eq!(stream["stop_reason"], "end_turn", "{stream}");
    assert_eq!(stream["model"], MODEL, "{stream}");
    assert_eq!(lines[2]["input_tokens"], SDK_COUNT, "{}", lines[2]);

    let msgs = mock.requests_to("/v1/messages");
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    let body = msgs[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], MODEL);
    assert!(
        body["messages"]
            .to_string()
            .contains("Say hello in five words."),
        "{body}"
    );
    let counts = mock.requests_to("/v1/messages/count_tokens");
    assert_eq!(counts.len(), 1, "{counts:#?}");
    let cbody = counts[0].json();
    assert_eq!(cbody["model"], MODEL);
    assert!(
        cbody["messages"]
            .to_string()
            .contains("Say hello in five words."),
        "{cbody}"
    );
    (msgs[0].clone(), counts[0].clone())
}

// --- Claude Code CLI --------------------------------------------------------------------------

/// Baseline: the CLI straight against the mock (no claudegate), pinning down its wire format.
#[test]
fn claude_code_print_direct_to_mock() {
    let Some(bin) = claude_code("claude_code_print_direct_to_mock") else {
        return;
    };
    let mock = MockUpstream::start();
    let r = claude_says_hi(&bin, &mock, &mock.url(), "cgk_direct_placeholder");
    assert_eq!(
        r.path, "/v1/messages?beta=true",
        "the CLI uses the beta client"
    );
    assert_eq!(
        r.header("authorization"),
        Some("Bearer cgk_direct_placeholder"),
        "ANTHROPIC_AUTH_TOKEN is sent as a bearer token"
    );
    let ua = r.header("user-agent").unwrap_or("");
    assert!(
        ua.starts_with(&format!(
            "claude-cli/{} ",
            pinned_npm("@anthropic-ai/claude-code")
        )),
        "{ua}"
    );
    assert_eq!(r.header("x-app"), Some("cli"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    // Nothing but the model call: no telemetry, no update check, no OAuth, no count_tokens.
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/messages?beta=true"]);
}

#[test]
fn claude_code_tool_use_direct_to_mock() {
    let Some(bin) = claude_code("claude_code_tool_use_direct_to_mock") else {
        return;
    };
    let mock = MockUpstream::start();
    claude_reads_a_file(&bin, &mock, &mock.url(), "cgk_direct_placeholder");
}

/// (a) `claude -p "say hi"` through claudegate gets the upstream's answer.
#[test]
fn claude_code_print_through_claudegate() {
    let Some(bin) = claude_code("claude_code_print_through_claudegate") else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = gate_with_login(&mock);
    claude_says_hi(&bin, &mock, &base(&gate), &key);
    assert_no_key_upstream(&mock, &gate, &key);
}

/// (b) A scripted `Read` tool call through claudegate: the CLI runs the tool and sends a
/// `tool_result` with the scripted id; the final text comes back.
#[test]
fn claude_code_tool_use_through_claudegate() {
    let Some(bin) = claude_code("claude_code_tool_use_through_claudegate") else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = gate_with_login(&mock);
    claude_reads_a_file(&bin, &mock, &base(&gate), &key);
    assert_no_key_upstream(&mock, &gate, &key);
}

// --- anthropic Python SDK ---------------------------------------------------------------------

/// Baseline: the SDK script straight against the mock.
#[test]
fn anthropic_sdk_direct_to_mock() {
    let Some(python) = sdk_python("anthropic_sdk_direct_to_mock") else {
        return;
    };
    let mock = MockUpstream::start();
    let (msg, count) =
        sdk_streams_and_counts(&python, &mock, &mock.url(), "cgk_direct_placeholder");
    for r in [&msg, &count] {
        // This SDK sends its api_key as a bearer token, not as x-api-key.
        assert_eq!(
            r.header("authorization"),
            Some("Bearer cgk_direct_placeholder")
        );
        assert_eq!(r.header("x-api-key"), None);
        assert!(r.header("anthropic-version").is_some(), "{:?}", r.headers);
    }
    assert_eq!(msg.path, "/v1/messages");
    assert_eq!(count.path, "/v1/messages/count_tokens");
}

/// `messages.stream` and `messages.count_tokens` through claudegate.
#[test]
fn anthropic_sdk_through_claudegate() {
    let Some(python) = sdk_python("anthropic_sdk_through_claudegate") else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = gate_with_login(&mock);
    sdk_streams_and_counts(&python, &mock, &base(&gate), &key);
    assert_no_key_upstream(&mock, &gate, &key);
}

/// When the stream answers with something that is not an event stream, Claude Code retries
/// the same request without streaming (`"stream": false`, `x-stainless-timeout: 300`). Both
/// go through claudegate, which hands the upstream's answers over as they are.
#[test]
fn claude_code_non_streaming_fallback_through_claudegate() {
    let Some(bin) = claude_code("claude_code_non_streaming_fallback_through_claudegate") else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = gate_with_login(&mock);
    mock.enqueue(
        "/v1/messages",
        Reply::body(200, "text/plain", "this is not an event stream"),
    );
    mock.enqueue(
        "/v1/messages",
        Reply::message(MODEL, "A non-streamed answer."),
    );
    let work = TempDir::new();
    let args = ["-p", "say hi", "--output-format", "json", "--model", MODEL];
    let run = run_claude(&bin, &base(&gate), &key, work.path(), &args);
    let result = claude_result(&run);
    assert_eq!(result["result"], "A non-streamed answer.", "{result}");
    let reqs = mock.requests_to("/v1/messages");
    let streams: Vec<Value> = reqs.iter().map(|r| r.json()["stream"].clone()).collect();
    assert_eq!(
        streams,
        [json!(true), json!(false)],
        "stream, then the fallback"
    );
    assert_no_key_upstream(&mock, &gate, &key);
}

/// A wrong key: claudegate refuses it with 401 and forwards nothing; Claude Code reports an
/// authentication error (with claudegate's message) instead of hanging or retrying.
#[test]
fn claude_code_with_a_wrong_key_is_refused_through_claudegate() {
    let Some(bin) = claude_code("claude_code_with_a_wrong_key_is_refused_through_claudegate")
    else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, _key) = gate_with_login(&mock);
    let wrong = format!("cgk_{}", "0".repeat(64));
    let work = TempDir::new();
    let args = ["-p", "say hi", "--output-format", "json", "--model", MODEL];
    let run = run_claude(&bin, &base(&gate), &wrong, work.path(), &args);
    assert!(
        run.status.is_some_and(|s| !s.success()),
        "the CLI must fail: {run:?}"
    );
    let v: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"));
    assert_eq!(v["is_error"], true, "{v}");
    assert_eq!(v["api_error_status"], 401, "{v}");
    assert_eq!(v["api_error_type"], "authentication_error", "{v}");
    assert_eq!(
        mock.count(),
        0,
        "nothing may reach the upstream: {:#?}",
        mock.requests()
    );
    assert!(!gate.log().contains(&wrong));
}
