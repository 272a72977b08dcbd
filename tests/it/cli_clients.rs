//! Real clients end to end on the claude-cli backend (issue 16, item 5): each client talks to
//! claudegate, whose server-side `claude -p` (the REAL Claude Code CLI, locked down) talks to
//! the mock upstream. The mock is scripted to call the client's tool, then answer; the tool
//! runs in the CLIENT (never on this host), and its result resumes the parked server-side CLI.
//! Skipped (loudly) when a client is not installed, failed under `CLAUDEGATE_E2E_REQUIRED=1`.

use crate::cli_backend::World;
use crate::common::gate::TempDir;
use crate::common::mock_upstream::{sse_text_events, sse_tool_use_events, Reply};
use crate::common::run::{e2e_dir, installed, repo, run_with_deadline};
use crate::e2e_clients::{claude_code, claude_result, run_claude};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// The model the clients name (Claude Code would resolve an alias itself), allowed as is: the
/// one the mock reports.
use crate::cli_backend::REAL_MODEL as MODEL;
const SECRET_WORD: &str = "MANGO-4412";

/// Claude Code pointed at claudegate (`ANTHROPIC_BASE_URL`, `ANTHROPIC_AUTH_TOKEN`, telemetry
/// off) with its own `Read` tool: the upstream asks for `Read` of a file in the client's
/// project; the client's Claude Code reads it and sends the result; the parked server-side CLI
/// takes it and answers.
#[test]
fn claude_code_as_a_client_reads_its_own_file_through_the_cli_backend() {
    let test = "claude_code_as_a_client_reads_its_own_file_through_the_cli_backend";
    let Some(w) = World::new(test) else {
        return;
    };
    let Some(client) = claude_code(test) else {
        return;
    };
    let (gate, key) = w.gate(json!({"allowed_models": ["sonnet", MODEL]}));
    let work = TempDir::new();
    let project = work.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let note = project.join("note.txt");
    std::fs::write(&note, format!("the secret word is {SECRET_WORD}\n")).unwrap();
    // What the SERVER-side CLI hears from the mock: a call of the bridged client tool, then
    // (after the client's result) the answer.
    let input = json!({"file_path": note.to_string_lossy()}).to_string();
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            MODEL,
            "toolu_01ClientRead",
            "mcp__cg__Read",
            &[&input],
        )),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(
            MODEL,
            &["The word", " is ", SECRET_WORD, "."],
        )),
    );
    let args = [
        "-p",
        "What does note.txt say?",
        "--output-format",
        "json",
        "--model",
        MODEL,
        "--tools",
        "Read",
        "--allowedTools",
        "Read",
        "--no-session-persistence",
    ];
    let run = run_claude(&client, &gate.url(""), &key, work.path(), &args);
    if !run.status.is_some_and(|s| s.success()) {
        panic!("{run:?}\n--- gate log:\n{}", gate.log());
    }
    let result = claude_result(&run);
    assert_eq!(
        result["result"],
        format!("The word is {SECRET_WORD}."),
        "{result}"
    );
    assert_eq!(result["num_turns"], 2, "{result}");
    // Upstream: the server-side CLI's call, then its resumed call carrying the client's result.
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    let second = msgs[1].json();
    let result_block = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result")
        .cloned()
        .unwrap_or_else(|| panic!("no tool_result upstream: {second}"));
    assert_eq!(result_block["tool_use_id"], "toolu_01ClientRead");
    assert!(
        result_block["content"].to_string().contains(SECRET_WORD),
        "the client's Read result reached the upstream: {result_block}"
    );
    // Upstream only ever saw the client's tools, bridged (Claude Code also declares its
    // `DeferredToolPlaceholder`), never a built-in.
    for m in &msgs {
        let names: Vec<String> = m.json()["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        assert!(names.contains(&"mcp__cg__Read".to_string()), "{names:?}");
        assert!(
            names.iter().all(|n| n.starts_with("mcp__cg__")),
            "{names:?}"
        );
    }
}

/// The anthropic Python SDK: a tool round trip (whole, then streamed) on the CLI backend.
#[test]
fn the_anthropic_sdk_makes_a_tool_round_trip_through_the_cli_backend() {
    let test = "the_anthropic_sdk_makes_a_tool_round_trip_through_the_cli_backend";
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
        Reply::sse(sse_tool_use_events(
            MODEL,
            "toolu_01SdkWeather",
            "mcp__cg__get_weather",
            &[r#"{"city": "Paris"}"#],
        )),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(MODEL, &["Sunny", " in Paris."])),
    );
    let home = TempDir::new();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/e2e/anthropic_sdk_tools.py"))
        .args([&gate.url(""), key.as_str(), "sonnet"])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_deadline(&mut cmd, Duration::from_secs(120));
    run.assert_success("tests/e2e/anthropic_sdk_tools.py");
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({"step": "call", "stop_reason": "tool_use", "name": "get_weather",
               "id": "toolu_01SdkWeather", "input": {"city": "Paris"}}),
        "{}",
        run.stdout
    );
    assert_eq!(
        lines[1],
        json!({"step": "answer", "text": "Sunny in Paris.", "stop_reason": "end_turn"}),
        "{}",
        run.stdout
    );
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].body_text().contains("sunny in Paris"));
}

/// Codex over `/v1/responses`: the upstream asks for Codex's shell tool (`exec_command`) with
/// `echo`; Codex runs it in its own sandbox (the client's host), sends the output back as a
/// `function_call_output`, and the parked server-side CLI answers.
#[test]
fn codex_runs_its_shell_tool_through_the_cli_backend() {
    let test = "codex_runs_its_shell_tool_through_the_cli_backend";
    let Some(w) = World::new(test) else {
        return;
    };
    let Some(bin) = crate::e2e_openai::codex(test) else {
        return;
    };
    let model = crate::common::e2e::MODEL;
    let (gate, key) = w.gate(json!({"allowed_models": ["sonnet", model]}));
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            MODEL,
            "toolu_01CodexShell",
            "mcp__cg__exec_command",
            &[r#"{"cmd": "echo claudegate-cli-e2e"}"#],
        )),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(
            MODEL,
            &["It printed", " claudegate-cli-e2e."],
        )),
    );
    let run = crate::e2e_openai::run_codex(
        &bin,
        &gate.url("/v1"),
        &key,
        "Run echo claudegate-cli-e2e and tell me what it printed.",
    );
    let events = crate::e2e_openai::codex_events(&run);
    assert!(
        run.succeeded() && events.iter().any(|e| e["type"] == "turn.completed"),
        "{run:?}\n--- claudegate log:\n{}",
        gate.log()
    );
    let runs = crate::e2e_openai::codex_items(&events, "command_execution");
    assert_eq!(runs.len(), 1, "{events:#?}");
    assert!(
        runs[0]["aggregated_output"]
            .as_str()
            .unwrap_or("")
            .contains("claudegate-cli-e2e"),
        "{}",
        runs[0]
    );
    let answers = crate::e2e_openai::codex_items(&events, "agent_message");
    assert_eq!(
        answers.last().map(|a| a["text"].clone()),
        Some(json!("It printed claudegate-cli-e2e.")),
        "{events:#?}"
    );
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(msgs[1].body_text().contains("claudegate-cli-e2e"));
}

/// An OpenAI-compatible agent: the Vercel AI SDK's chat provider, `streamText` with a tool and
/// two steps. The SDK runs `get_weather` itself and sends the result back; the parked
/// server-side CLI answers.
#[test]
fn the_ai_sdk_runs_a_streamed_tool_loop_through_the_cli_backend() {
    let test = "the_ai_sdk_runs_a_streamed_tool_loop_through_the_cli_backend";
    let Some(w) = World::new(test) else {
        return;
    };
    let Some(node) = crate::e2e_ai_sdk::node(test) else {
        return;
    };
    let model = crate::common::e2e::MODEL;
    let (gate, key) = w.gate(json!({"allowed_models": ["sonnet", model]}));
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            MODEL,
            "toolu_01AiSdkWeather",
            "mcp__cg__get_weather",
            &["{\"city\":", " \"Paris\"}"],
        )),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events(MODEL, &["Sunny", " in Paris."])),
    );
    let trap = crate::common::e2e::ProxyTrap::start();
    let (run, lines) =
        crate::e2e_ai_sdk::run_script(&node, "chat", "tools_stream", &gate.url("/v1"), &key, &trap);
    trap.assert_untouched("the AI SDK");
    assert!(
        run.succeeded() && !lines.iter().any(|l| l["step"] == "error"),
        "{run:?}\n--- claudegate log:\n{}",
        gate.log()
    );
    let s = lines
        .iter()
        .find(|l| l["step"] == "tools_stream")
        .unwrap_or_else(|| panic!("{lines:?}"));
    let steps = s["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{s}");
    assert_eq!(steps[0]["finishReason"], "tool-calls", "{s}");
    assert_eq!(
        steps[0]["toolCalls"],
        json!([{"id": "toolu_01AiSdkWeather", "name": "get_weather", "input": {"city": "Paris"}}]),
        "{s}"
    );
    assert_eq!(steps[1]["finishReason"], "stop", "{s}");
    assert_eq!(s["text"], "Sunny in Paris.", "{s}");
    let msgs = w.messages();
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(msgs[1].body_text().contains("weather-in-Paris: sunny, 21C"));
}
