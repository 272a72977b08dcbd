//! End-to-end tests with OpenCode (the `opencode` CLI, npm `opencode-linux-x64`: the native
//! binary the `opencode-ai` package installs on Linux x64), pinned in `tests/e2e/node22/` and
//! installed into `target/e2e/node22/` by `tests/e2e/install.sh` (`make e2e-deps`).
//!
//! OpenCode runs non-interactively (`opencode run --format json PROMPT`) in a fresh project
//! directory, with `HOME` and the XDG directories in a temp dir, configured through
//! `OPENCODE_CONFIG_CONTENT` with one of two providers pointed at claudegate: an
//! OpenAI-compatible one (`@ai-sdk/openai-compatible`, claudegate's `/v1/chat/completions`) or
//! the Anthropic one (claudegate's `/v1/messages`). Everything else it would reach for is off:
//! auto-update, the models.dev fetch, plugins, LSP downloads, sharing, Claude Code's files
//! (the `OPENCODE_DISABLE_*` variables and the config). Any HTTP(S) connection it still tried
//! would go through `HTTP(S)_PROXY`, set to a trap on loopback that fails the test; the mock
//! must see exactly the scripted calls.
//!
//! A client that is not installed makes its tests print a loud SKIPPED banner and return;
//! `make test` sets `CLAUDEGATE_E2E_REQUIRED=1`, which turns that into a failure. With
//! `E2E_DUMP=1` (and `--nocapture`) every upstream request, OpenCode's output and claudegate's
//! log are printed.

use crate::common::e2e::{
    assert_only_scripted_calls, assert_upstream_saw_oauth_not_key as common_assert, dump_if_asked,
    scripted, ProxyTrap, Scripted, DEADLINE, MODEL,
};
use crate::common::gate::{Gate, TempDir};
use crate::common::mock_upstream::Reply;
use crate::common::run::{installed, node22_dir, pinned_node22, run_with_deadline, Run};
use crate::e2e_openai::{
    anthropic_stream, assert_upstream_saw_oauth_not_key as openai_assert, replayed_tool_call,
    upstream_messages, Block, USAGE,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The installed OpenCode binary, checked to be the pinned version.
fn opencode(test: &str) -> Option<PathBuf> {
    let bin = installed(
        "OpenCode",
        node22_dir().join("node_modules/opencode-linux-x64/bin/opencode"),
        test,
    )?;
    let home = TempDir::new();
    let trap = ProxyTrap::start();
    let mut cmd = Command::new(&bin);
    cmd.arg("--version");
    isolate(&mut cmd, home.path(), &trap);
    let run = run_with_deadline(&mut cmd, Duration::from_secs(30));
    trap.assert_untouched("`opencode --version`");
    let want = pinned_node22("opencode-linux-x64");
    assert_eq!(
        run.stdout.trim(),
        want,
        "{} is not OpenCode {want} (run `make e2e-deps`): {run:?}",
        bin.display()
    );
    Some(bin)
}

/// A clean environment for OpenCode: `HOME` and every XDG directory under `home`, everything
/// that would reach beyond loopback turned off, and any HTTP(S) it still tried sent to `trap`.
fn isolate(cmd: &mut Command, home: &Path, trap: &ProxyTrap) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("TMPDIR", home.join("tmp"))
        .env("TERM", "dumb")
        .env("NO_COLOR", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1")
        .env("OPENCODE_PURE", "1")
        .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        .env("OPENCODE_DISABLE_SHARE", "1")
        .env("OPENCODE_DISABLE_CLAUDE_CODE", "1")
        .env("OPENCODE_DISABLE_EXTERNAL_SKILLS", "1")
        .env("OPENCODE_DISABLE_EMBEDDED_WEB_UI", "1")
        .env("OPENCODE_DISABLE_TERMINAL_TITLE", "1");
    std::fs::create_dir_all(home.join("tmp")).unwrap();
    let url = trap.url();
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ] {
        cmd.env(var, &url);
    }
}

/// The provider OpenCode is given: an OpenAI-compatible one on claudegate's chat door, or
/// the Anthropic one on its Messages door.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Provider {
    OpenAi,
    Anthropic,
}

/// OpenCode's config (`OPENCODE_CONFIG_CONTENT`): the provider pointed at `gate`, the key read
/// from `CLAUDEGATE_KEY`, the model for both the session and titles, and the features that
/// would reach the network off.
fn config(provider: Provider, gate: &Gate) -> Value {
    let base = gate.url("/v1");
    let (id, provider_config) = match provider {
        Provider::OpenAi => (
            "claudegate",
            json!({
                "npm": "@ai-sdk/openai-compatible",
                "name": "claudegate",
                "options": {"baseURL": base, "apiKey": "{env:CLAUDEGATE_KEY}"},
                "models": {MODEL: {"name": "Claude via claudegate", "tool_call": true,
                                   "limit": {"context": 200000, "output": 8192}}},
            }),
        ),
        Provider::Anthropic => (
            "anthropic",
            json!({"options": {"baseURL": base, "apiKey": "{env:CLAUDEGATE_KEY}"}}),
        ),
    };
    json!({
        "model": format!("{id}/{MODEL}"),
        "small_model": format!("{id}/{MODEL}"),
        "provider": {id: provider_config},
        "enabled_providers": [id],
        "autoupdate": false,
        "share": "disabled",
        "lsp": false,
        "formatter": false,
        "snapshot": false,
        "plugin": [],
    })
}

/// A fresh project directory holding `files`, and a `HOME` beside it.
struct Project {
    /// Holds both; removed when the project is dropped.
    _work: TempDir,
    home: PathBuf,
    dir: PathBuf,
}

impl Project {
    /// With `plugin_marked`, the config directory is marked as having OpenCode's plugin SDK
    /// installed ([`mark_plugin_installed`]), as every scenario needs to stay offline.
    fn new(files: &[(&str, &str)], plugin_marked: bool) -> Project {
        let work = TempDir::new();
        let home = work.path().join("home");
        let dir = work.path().join("project");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        if plugin_marked {
            mark_plugin_installed(&home.join(".config/opencode"));
        }
        Project {
            _work: work,
            home,
            dir,
        }
    }
}

/// `opencode run --format json PROMPT` in `project`, with `provider` pointed at `gate`.
fn run_opencode(
    bin: &Path,
    provider: Provider,
    gate: &Gate,
    key: &str,
    trap: &ProxyTrap,
    project: &Project,
    prompt: &str,
) -> Run {
    let mut cmd = Command::new(bin);
    // `--title`: OpenCode would otherwise ask the model for a session title, a second call
    // racing the first for the scripted replies. `--print-logs` puts its log on stderr, for
    // the failure message.
    cmd.args(["run", "--format", "json", "--title", "claudegate e2e"])
        .args(["--print-logs", "--log-level", "INFO", prompt]);
    isolate(&mut cmd, &project.home, trap);
    cmd.current_dir(&project.dir)
        .env(
            "OPENCODE_CONFIG_CONTENT",
            config(provider, gate).to_string(),
        )
        .env("CLAUDEGATE_KEY", key);
    run_with_deadline(&mut cmd, DEADLINE)
}

/// OpenCode installs its plugin SDK (`@opencode-ai/plugin`) into every config directory it
/// loads, from the npm registry, in the background and with no switch to turn it off. It skips
/// a directory whose `node_modules` exists and whose `package-lock.json` lists every dependency
/// of its `package.json`: this writes such a directory, so OpenCode finds nothing to install.
fn mark_plugin_installed(config_dir: &Path) {
    std::fs::create_dir_all(config_dir.join("node_modules")).unwrap();
    let deps = json!({"@opencode-ai/plugin": pinned_node22("opencode-linux-x64")});
    let package = json!({"dependencies": deps});
    let lock = json!({"lockfileVersion": 3, "packages": {"": {"dependencies": deps}}});
    std::fs::write(config_dir.join("package.json"), package.to_string()).unwrap();
    std::fs::write(config_dir.join("package-lock.json"), lock.to_string()).unwrap();
}

/// OpenCode's `--format json` events (one object per stdout line).
fn events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// One OpenCode run: a fresh mock with `replies` queued, a gate, the proxy trap, a project
/// holding `files`, `opencode run PROMPT`; asserts it succeeded, asked for every scripted reply
/// and nothing else, touched nothing beyond loopback, and that the upstream traffic obeys
/// claudegate's rules. Returns OpenCode's events, the upstream bodies and the project.
fn scenario(
    test: &str,
    provider: Provider,
    files: &[(&str, &str)],
    prompt: &str,
    replies: Vec<Reply>,
) -> Option<(Vec<Value>, Vec<Value>, Project)> {
    let bin = opencode(test)?;
    let Scripted {
        trap,
        gate,
        key,
        mock,
        scripted: expected,
    } = scripted(replies);
    let project = Project::new(files, true);
    let run = run_opencode(&bin, provider, &gate, &key, &trap, &project, prompt);
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    let events = events(&run);
    let failed = !run.succeeded() || events.iter().any(|e| e["type"] == "error");
    assert!(
        !failed,
        "opencode run ({provider:?}) failed (status {:?}, after {:?})\n--- stdout:\n{}\n--- stderr:\n{}\n--- claudegate log:\n{}",
        run.status,
        run.elapsed,
        run.stdout,
        run.stderr,
        gate.log()
    );
    trap.assert_untouched("OpenCode");
    assert_only_scripted_calls(&mock, expected);
    let reqs = mock.requests();
    match provider {
        Provider::OpenAi => openai_assert(&mock, &gate, &key),
        Provider::Anthropic => {
            common_assert(&reqs, &gate, &key);
            for r in &reqs {
                assert_eq!((r.method.as_str(), r.path_only()), ("POST", "/v1/messages"));
                assert_eq!(r.json()["stream"], true, "OpenCode streams");
            }
        }
    }
    Some((events, upstream_messages(&mock), project))
}

/// The text parts OpenCode printed, in order.
fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "text")
        .filter_map(|e| e["part"]["text"].as_str().map(str::to_string))
        .collect()
}

/// The `step_finish` parts, in order.
fn finishes(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "step_finish")
        .map(|e| e["part"].clone())
        .collect()
}

/// What OpenCode sent for its session: its own system prompt, the prompt as the last user
/// turn, and its tools (among them `read`, with a `filePath` string).
fn assert_request_shape(body: &Value, prompt: &str) {
    assert_eq!(body["model"], MODEL);
    assert!(
        body["system"].to_string().contains("You are OpenCode"),
        "OpenCode's system prompt goes to `system`: {}",
        &body["system"].to_string()[..200.min(body["system"].to_string().len())]
    );
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .expect("a user turn")
        .to_string();
    assert!(last_user.contains(prompt), "{last_user}");
    let tools = body["tools"]
        .as_array()
        .expect("OpenCode's tools go upstream");
    let read = tools
        .iter()
        .find(|t| t["name"] == "read")
        .unwrap_or_else(|| panic!("read among the tools: {tools:?}"));
    assert_eq!(
        read["input_schema"]["properties"]["filePath"]["type"], "string",
        "{read}"
    );
}

fn sse(blocks: &[Block], stop: &str) -> Reply {
    Reply::sse(anthropic_stream(blocks, stop, USAGE))
}

const HELLO: &[&str] = &["Hello from", " claudegate", " to OpenCode."];

/// A plain prompt: OpenCode prints the upstream's text as its answer, with the token counts,
/// after one upstream call carrying its system prompt, the prompt and its tools.
fn plain_prompt(test: &str, provider: Provider) {
    let prompt = "Say hello to the e2e test.";
    let replies = vec![sse(&[Block::Text(HELLO)], "end_turn")];
    let Some((events, up, _project)) = scenario(test, provider, &[], prompt, replies) else {
        return;
    };
    assert_eq!(texts(&events), [HELLO.concat()], "{events:#?}");
    let fin = finishes(&events);
    assert_eq!(fin.len(), 1, "{events:#?}");
    assert_eq!(fin[0]["reason"], "stop", "{}", fin[0]);
    assert_eq!(fin[0]["tokens"]["input"], USAGE.input, "{}", fin[0]);
    assert_eq!(fin[0]["tokens"]["output"], USAGE.output, "{}", fin[0]);
    assert_eq!(up.len(), 1, "{up:#?}");
    assert_request_shape(&up[0], prompt);
}

#[test]
fn opencode_openai_compatible_plain_prompt_through_claudegate() {
    plain_prompt(
        "opencode_openai_compatible_plain_prompt_through_claudegate",
        Provider::OpenAi,
    );
}

#[test]
fn opencode_anthropic_plain_prompt_through_claudegate() {
    plain_prompt(
        "opencode_anthropic_plain_prompt_through_claudegate",
        Provider::Anthropic,
    );
}

/// A long streamed answer (600 deltas, about 40 KB, with multi-byte characters): OpenCode's
/// answer is the whole text, every delta in order, none lost or doubled.
fn long_answer(test: &str, provider: Provider) {
    let chunks: Vec<String> = (0..600)
        .map(|i| format!("line {i:03} of the long answer: größer, 更长, ✓ — ok.\n"))
        .collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let replies = vec![sse(&[Block::Text(&refs)], "end_turn")];
    let prompt = "Write a long answer.";
    let Some((events, up, _project)) = scenario(test, provider, &[], prompt, replies) else {
        return;
    };
    let got = texts(&events);
    assert_eq!(got.len(), 1, "one text part: {} parts", got.len());
    let want = chunks.concat();
    if got[0] != want {
        let at = got[0]
            .chars()
            .zip(want.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let around = |s: &str| {
            s.chars()
                .skip(at.saturating_sub(80))
                .take(200)
                .collect::<String>()
        };
        panic!(
            "the answer differs at char {at} (got {} chars, want {}):\n got: {:?}\nwant: {:?}",
            got[0].chars().count(),
            want.chars().count(),
            around(&got[0]),
            around(&want)
        );
    }
    assert_eq!(finishes(&events)[0]["reason"], "stop");
    assert_eq!(up.len(), 1, "{up:#?}");
}

#[test]
fn opencode_openai_compatible_long_streamed_answer_through_claudegate() {
    long_answer(
        "opencode_openai_compatible_long_streamed_answer_through_claudegate",
        Provider::OpenAi,
    );
}

#[test]
fn opencode_anthropic_long_streamed_answer_through_claudegate() {
    long_answer(
        "opencode_anthropic_long_streamed_answer_through_claudegate",
        Provider::Anthropic,
    );
}

const READ_ID: &str = "toolu_01E2eOpenCodeRead0000001";
const NOTE: &str = "The claudegate e2e secret word is marmalade-42.";
const READ_FINAL: &[&str] = &["The note says", " marmalade-42."];

/// A read-only tool round trip: the upstream asks for OpenCode's `read` tool on a file in the
/// project; OpenCode reads it, sends the content back as the `tool_result` of that call id, and
/// prints the final answer. Upstream, the second request replays the `tool_use` unchanged.
fn read_round_trip(test: &str, provider: Provider) {
    // The replies are scripted before the project exists, so the call names the file
    // relative to it: OpenCode resolves a relative `filePath` against its working directory.
    let replies = vec![
        sse(
            &[
                Block::Text(&["Reading the note."]),
                Block::ToolUse(READ_ID, "read", &["{\"filePath\": ", "\"notes.txt\"}"]),
            ],
            "tool_use",
        ),
        sse(&[Block::Text(READ_FINAL)], "end_turn"),
    ];
    let files = [("notes.txt", NOTE)];
    let prompt = "What does notes.txt say?";
    let Some((events, up, project)) = scenario(test, provider, &files, prompt, replies) else {
        return;
    };
    let tools: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_use")
        .map(|e| &e["part"])
        .collect();
    assert_eq!(tools.len(), 1, "{events:#?}");
    let call = tools[0];
    assert_eq!(call["tool"], "read", "{call}");
    assert_eq!(call["callID"], READ_ID, "{call}");
    assert_eq!(call["state"]["status"], "completed", "{call}");
    assert_eq!(
        call["state"]["input"],
        json!({"filePath": "notes.txt"}),
        "{call}"
    );
    assert!(
        call["state"]["output"]
            .as_str()
            .unwrap_or("")
            .contains(NOTE),
        "OpenCode read the file: {call}"
    );
    assert_eq!(
        texts(&events),
        ["Reading the note.".to_string(), READ_FINAL.concat()],
        "{events:#?}"
    );
    let reasons: Vec<Value> = finishes(&events)
        .iter()
        .map(|f| f["reason"].clone())
        .collect();
    assert_eq!(reasons, [json!("tool-calls"), json!("stop")], "{events:#?}");

    assert_eq!(up.len(), 2, "{up:#?}");
    assert_request_shape(&up[0], prompt);
    let (call, result) = replayed_tool_call(&up[1], READ_ID);
    assert_eq!(call["name"], "read");
    assert_eq!(call["input"], json!({"filePath": "notes.txt"}));
    assert!(
        result.contains(NOTE),
        "the file's content goes back: {result}"
    );
    // A read-only round trip: the project is as it was.
    let names: Vec<String> = std::fs::read_dir(&project.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["notes.txt"],
        "OpenCode changed nothing in the project"
    );
    assert_eq!(
        std::fs::read_to_string(project.dir.join("notes.txt")).unwrap(),
        NOTE
    );
}

#[test]
fn opencode_openai_compatible_read_tool_round_trip_through_claudegate() {
    read_round_trip(
        "opencode_openai_compatible_read_tool_round_trip_through_claudegate",
        Provider::OpenAi,
    );
}

#[test]
fn opencode_anthropic_read_tool_round_trip_through_claudegate() {
    read_round_trip(
        "opencode_anthropic_read_tool_round_trip_through_claudegate",
        Provider::Anthropic,
    );
}

/// The check every scenario makes, that OpenCode reached nothing beyond loopback, rests on
/// its HTTP client taking the proxy trap, and on [`mark_plugin_installed`]: without the mark,
/// OpenCode's background install of its plugin SDK asks the trap for the npm registry (the
/// trap refuses, so nothing leaves the machine), and the answer still arrives.
#[test]
fn opencode_plugin_install_is_caught_by_the_trap_without_the_mark() {
    let test = "opencode_plugin_install_is_caught_by_the_trap_without_the_mark";
    let Some(bin) = opencode(test) else {
        return;
    };
    let Scripted {
        trap,
        gate,
        key,
        mock,
        ..
    } = scripted(vec![sse(&[Block::Text(HELLO)], "end_turn")]);
    let project = Project::new(&[], false);
    let run = run_opencode(
        &bin,
        Provider::Anthropic,
        &gate,
        &key,
        &trap,
        &project,
        "Say hi.",
    );
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    run.assert_success("opencode run");
    assert_eq!(texts(&events(&run)), [HELLO.concat()]);
    let seen = trap.seen();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("CONNECT registry.npmjs.org:443 ")),
        "the trap saw the plugin install: {seen:?}\n--- stderr:\n{}",
        run.stderr
    );
}
