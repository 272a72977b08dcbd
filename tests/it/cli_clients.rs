//! Real clients end to end on the claude-cli backend (issue 16, item 5): each client talks to
//! claudegate, whose server-side `claude -p` (the REAL Claude Code CLI, locked down) talks to
//! the mock upstream. The mock is scripted to call the client's tool, then answer; the tool
//! runs in the CLIENT (never on this host), and its result resumes the parked server-side CLI.
//! Skipped (loudly) when a client is not installed, failed under `CLAUDEGATE_E2E_REQUIRED=1`.

use crate::cli_backend::World;
use crate::common::gate::TempDir;
use crate::common::mock_upstream::{sse_text_events, sse_tool_use_events, Reply};
use crate::e2e_clients::{claude_code, claude_result, run_claude};
use serde_json::json;

/// The model the clients name (Claude Code would resolve an alias itself), allowed as is.
const MODEL: &str = "claude-mock-sonnet-9";
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
