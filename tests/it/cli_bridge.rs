//! The tool bridge with the REAL Claude Code CLI and the real `claudegate mcp-bridge` against
//! the mock upstream, in a hostile home: the CLI, locked down as every call is, lists exactly
//! the request's tools through the bridge and hands a call to the server as JSON, with the
//! upstream's `tool_use` id. A client tool named like a built-in (`Bash`) runs nothing on the
//! host, and its arguments (a shell command) never reach a shell. Skipped (loudly) when the CLI
//! is not installed, failed under `CLAUDEGATE_E2E_REQUIRED=1`.

use crate::cli_backend::{make_hostile_home, markers, World};
use crate::common::gate::BIN;
use crate::common::mock_upstream::{sse_text_events, sse_tool_use_events, Reply};
use claudegate::backends::cli::bridge::{call_result, mcp_config, serve, Bridge, Catalogue};
use claudegate::backends::cli::{cli_args, tool_args, LOCKDOWN_ENV};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_real_cli_calls_a_client_tool_through_the_bridge_and_runs_nothing() {
    let Some(w) =
        World::new("the_real_cli_calls_a_client_tool_through_the_bridge_and_runs_nothing")
    else {
        return;
    };
    make_hostile_home(w.home.path(), w.outside.path());
    let canary = w.outside.path().join("PWNED_BY_TOOL_ARGS");
    let command = format!("touch {}", canary.display());
    // The model calls the client's `Bash`, with a shell command as its argument; after the
    // tool's result it answers in text.
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_tool_use_events(
            "claude-mock-9",
            "toolu_BRIDGE1",
            "mcp__cg__Bash",
            &[&json!({"command": command}).to_string()],
        )),
    );
    w.mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events("claude-mock-9", &["done"])),
    );

    // The call's private directory, as `calldir` makes it.
    let root = std::env::temp_dir().join(format!("cg-bridge-it-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&root)
        .unwrap();
    let work = root.join("work");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&work)
        .unwrap();
    let tmp = root.join("tmp");
    std::fs::DirBuilder::new().mode(0o700).create(&tmp).unwrap();
    std::fs::write(root.join("system.txt"), "You are a test.").unwrap();
    let bridge = Bridge::listen(&root).unwrap();
    let cfg_file = root.join("mcp.json");
    std::fs::write(
        &cfg_file,
        mcp_config(std::path::Path::new(BIN), &bridge.path, "").to_string(),
    )
    .unwrap();
    let cat = Catalogue::new(&[
        json!({"name": "Bash", "description": "the client's own", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}),
        json!({"name": "read file", "input_schema": {"type": "object"}}),
    ])
    .unwrap();

    let mut args = cli_args("sonnet", &root.join("system.txt"));
    // Two turns: the tool call and the answer after its result.
    if let Some(i) = args.iter().position(|a| a == "--max-turns") {
        args[i + 1] = "2".into();
    }
    args.extend(tool_args(&cfg_file, &cat.names.allowed()));
    let mut cmd = Command::new(&w.bin);
    cmd.args(&args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", w.home.path())
        // As the backend does (lockdown): the CLI's temp files go inside the call's directory,
        // not into the system's /tmp/claude-UID/, where they would outlive the test.
        .env("TMPDIR", &tmp)
        .env("CLAUDE_CODE_TMPDIR", &tmp)
        .env("ANTHROPIC_BASE_URL", w.mock.url())
        .env("ANTHROPIC_AUTH_TOKEN", "cg-test-upstream-token")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .envs(LOCKDOWN_ENV.iter().copied())
        .current_dir(&work)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"run it\"}]}}\n")
        .unwrap();
    drop(stdin);

    // Only the bridge the CLI started may connect: its command line names the subcommand.
    let is_bridge = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"mcp-bridge"))
    };
    let stream = bridge
        .accept(Instant::now() + Duration::from_secs(30), &is_bridge)
        .expect("the CLI started the bridge");
    let mut calls = Vec::new();
    let cli_pid = child.id();
    serve(stream, &cat, &mut |call, writer| {
        // The CLI waits for this answer: the memory a parked process would hold (reported).
        let status = std::fs::read_to_string(format!("/proc/{cli_pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("VmRSS: ?");
        eprintln!("the CLI waiting on a tool call: {rss}");
        writer
            .send(&call_result(&call.rpc_id, &json!("client ran it"), false))
            .unwrap();
        calls.push(call);
    });
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("bridge round trip: {:?}", started.elapsed());

    assert_eq!(calls.len(), 1, "{calls:?}\n{stdout}");
    assert_eq!(calls[0].name, "Bash");
    assert_eq!(calls[0].arguments, json!({"command": command}));
    assert_eq!(calls[0].tool_use_id.as_deref(), Some("toolu_BRIDGE1"));
    // The upstream saw exactly the client's tools, by their bridged names, and no built-in.
    let first = w.messages()[0].json();
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["mcp__cg__Bash", "mcp__cg__read_file"], "{first}");
    // The client's result went back upstream as the tool's result.
    let second = w.messages()[1].json();
    assert!(
        second["messages"].to_string().contains("client ran it"),
        "{second}"
    );
    let result: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap();
    assert_eq!(result["result"], "done", "{result}");
    // Nothing ran on the host: no canary, no hook, no settings' MCP server.
    assert!(!canary.exists(), "the tool's arguments reached a shell");
    assert_eq!(markers(w.outside.path()), Vec::<std::path::PathBuf>::new());
    std::fs::remove_dir_all(&root).ok();
}
