//! The lock-down of one `claude -p` call: its argv, its environment, its working directory and
//! process group (the complete [`Command`]), and the prompt rewrite that keeps a prompt from
//! being read as a command.
//!
//! # The lock-down (measured on Claude Code 2.1.330, the version the tests pin)
//! `claude -p` is an agent: by default it runs shell commands, reads files, spawns MCP servers,
//! runs hooks from settings and expands `@path` mentions. Every call therefore runs as
//!
//! ```text
//! claude -p --input-format stream-json
//!        --output-format stream-json --verbose --include-partial-messages
//!        --tools "" --strict-mcp-config --setting-sources "" --disable-slash-commands
//!        --no-session-persistence --permission-mode default --max-turns 1
//!        --model <allowed model> --system-prompt-file=<private dir>/system.txt
//! ```
//!
//! plus `--resume <session id>` when the request has earlier turns (a session file the call
//! wrote itself in its private project folder; see `session.rs`; the id is a UUID we made),
//! and `--thinking`, `--effort`, `--thinking-display` when the request asks for thinking or an
//! effort (each value one of a fixed list in `request.rs`, never the client's text).
//!
//! - `--tools ""`: no built-in tools (the request carries `"tools": []`).
//! - `--strict-mcp-config` without `--mcp-config`: no MCP server at all, from any settings file
//!   or from the account's claude.ai connectors.
//! - `--setting-sources ""`: no user/project settings, so no hooks, no `permissions.allow`, no
//!   `apiKeyHelper`, no CLAUDE.md.
//! - `--disable-slash-commands`: built-in commands in the prompt do not run (but a prompt that
//!   starts with `/heapdump` is still swallowed, see below).
//! - `--max-turns 1`: one API call per request (with client tools, [`MAX_TURNS_WITH_TOOLS`]:
//!   each tool round is one more call, see `bridge.rs` and `park.rs`). With no tools, a `tool_use` from the upstream
//!   can only be an error; the CLI answers it with "No such tool available" and stops with
//!   `error_max_turns`, which becomes a 502. (2.1.330 answers plain prompts fine with 1.)
//! - `--system-prompt-file`: the caller's system prompt (or a neutral default) replaces Claude
//!   Code's 5 KB agent prompt verbatim. A file, not `--system-prompt <text>`, because an argv
//!   string is capped at 128 KiB by Linux, is visible in `/proc/<pid>/cmdline`, and could start
//!   with `-`. Measured: the file's text arrives byte for byte as the system block.
//! - Never `--dangerously-skip-permissions`, `--allow-dangerously-skip-permissions` or a
//!   permission mode that bypasses prompts.
//!
//! The prompt goes on **stdin** as one stream-json `user` line (its content blocks: text,
//! images, documents), and stdin is then closed: it is never in argv, so it can never parse as
//! an option, and several hundred KB work. Measured: `@path` in such a line is not read (the
//! attachments switch below), and a text block starting with a command is still swallowed
//! unless neutralised, so every text block of the prompt is neutralised.
//!
//! **Environment**: `env_clear()`, then `PATH` (`/usr/local/bin:/usr/bin:/bin`, with the
//! directory of `cli.binary` first when that is a path) and `LANG=C.UTF-8`, then `cli.env`
//! (which may replace `PATH` and `LANG`, and adds e.g. `ANTHROPIC_BASE_URL`, `HTTPS_PROXY`,
//! `CLAUDE_CODE_OAUTH_TOKEN`), then — last, so `cli.env` can never undo them — `HOME` =
//! `cli.home`, `TMPDIR`/`CLAUDE_CODE_TMPDIR` inside the private call directory,
//! `GIT_CEILING_DIRECTORIES`, `API_TIMEOUT_MS` and [`LOCKDOWN_ENV`]; `MAX_THINKING_TOKENS` (a
//! number) when the request gives a thinking budget. At spawn, `process` adds
//! the call's marker `CLAUDEGATE_CALL` (by which every process of the call is found and
//! ended; see that module).
//!
//! **Slash commands and shell escapes**: even with `--disable-slash-commands`, 2.1.330 answers a
//! prompt that starts with a built-in command (`/heapdump`, `/insights`, `/model`, …) with
//! "/heapdump isn't available in this environment." and never sends it upstream. A prompt
//! whose first non-blank character is `/` or `!` therefore gets a zero-width space (U+200B)
//! in front: measured, the CLI then sends it upstream as plain text. (`!cmd`, `# …` and `&…`
//! were measured to be plain text in `-p` mode already; `!` is covered anyway in case a later
//! version gives it its interactive meaning.) U+200B survives JavaScript's `trim()`, so a later
//! CLI that trimmed the prompt first would still not see a command.
//!
//! **What still reaches the upstream about this host**: 2.1.330 adds an `# Environment` note
//! to every request even with a replaced system prompt: the working directory (the random temp
//! directory of [`super::calldir`]), "Is a git repository: false", platform, shell, kernel
//! release and date. Only `CLAUDE_CODE_SIMPLE` turns it off, and that refuses OAuth logins. No
//! home path, user name, hostname, settings or files are sent.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::backends::cli::calldir::CallDir;
use crate::backends::cli::request::Thinking;
use crate::config::CliConfig;

/// The system prompt when the caller gives none (replaces Claude Code's agent prompt, which
/// describes the host and its tools).
pub const NEUTRAL_SYSTEM: &str = "You are a helpful assistant.";

/// `PATH` for the CLI unless `cli.env` sets one: nothing from claudegate's own environment.
const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Set on every call after `cli.env`, so configuration cannot turn any of them off.
pub const LOCKDOWN_ENV: &[(&str, &str)] = &[
    // `@/any/file` in a prompt is read by the CLI itself and sent upstream, whatever the tool
    // flags say; only this switch stops it (verified on 2.1.330).
    ("CLAUDE_CODE_DISABLE_ATTACHMENTS", "1"),
    // Don't even fetch the account's claude.ai connectors (Gmail, Drive, …).
    ("ENABLE_CLAUDEAI_MCP_SERVERS", "false"),
    // No telemetry, feature-flag, bootstrap or MCP-registry calls to Anthropic's servers.
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    // Belt and braces next to `--setting-sources ""`: no CLAUDE.md, no memory files.
    ("CLAUDE_CODE_DISABLE_CLAUDE_MDS", "1"),
    ("CLAUDE_CODE_DISABLE_AUTO_MEMORY", "1"),
    // The default (10, with backoff up to minutes) would outlast any sane wall clock.
    ("CLAUDE_CODE_MAX_RETRIES", "2"),
];

/// Prefix that keeps a prompt from being read as a slash command (see the module doc).
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// The complete, locked-down command (argv, environment, cwd, process group) for `model`, with
/// `home` (`cli.home`, `~` expanded) as the CLI's `HOME` and `call` as its private directory.
pub(super) fn command(
    cfg: &CliConfig,
    home: &Path,
    model: &str,
    call: &CallDir,
    resume: Option<&str>,
    tools: Option<(&Path, &[String])>,
    thinking: &Thinking,
) -> Command {
    let mut args = cli_args(model, &call.system_file());
    // Values from fixed lists (`request.rs`), never the client's own text.
    for (flag, value) in [
        ("--thinking", thinking.mode),
        ("--effort", thinking.effort),
        ("--thinking-display", thinking.display),
    ] {
        if let Some(v) = value {
            args.push(flag.into());
            args.push(v.into());
        }
    }
    if let Some(session) = resume {
        // A UUID claudegate made (never the client's), so it cannot read as an option.
        args.push("--resume".into());
        args.push(session.into());
    }
    if let Some((mcp_config_file, allowed)) = tools {
        // Each tool round is one more turn (a call, then the answer after its result).
        if let Some(i) = args.iter().position(|a| a == "--max-turns") {
            args[i + 1] = MAX_TURNS_WITH_TOOLS.to_string().into();
        }
        args.extend(tool_args(mcp_config_file, allowed));
    }
    let mut cmd = locked_down(cfg, home, call, args);
    if let Some(budget) = thinking.budget {
        // The CLI's one way to take a thinking budget (`--max-thinking-tokens` is deprecated).
        cmd.env("MAX_THINKING_TOKENS", budget.to_string());
    }
    cmd
}

/// `--max-turns` when the request declares tools: how many upstream calls one CLI process
/// may make across its tool rounds (each round parks it until the client's result comes).
pub(super) const MAX_TURNS_WITH_TOOLS: u32 = 50;

/// The locked-down command with other arguments (`--version`, `auth status`): the same binary,
/// environment, cwd and process group as a call's, for `claudegate doctor`'s look at the CLI.
pub(super) fn locked_down(
    cfg: &CliConfig,
    home: &Path,
    call: &CallDir,
    args: Vec<OsString>,
) -> Command {
    // A relative path would otherwise be looked up from the CLI's own (temp) cwd.
    let binary = crate::base::fsutil::expand_home(&cfg.binary);
    let binary = std::path::absolute(&binary).unwrap_or(binary);
    let mut path = String::new();
    if cfg.binary.contains('/') {
        if let Some(dir) = binary.parent().filter(|d| !d.as_os_str().is_empty()) {
            path = format!("{}:", dir.display());
        }
    }
    path.push_str(MINIMAL_PATH);

    let mut cmd = Command::new(if cfg.binary.contains('/') {
        binary.into_os_string()
    } else {
        cfg.binary.clone().into()
    });
    cmd.args(args);
    cmd.env_clear().env("PATH", path).env("LANG", "C.UTF-8");
    // The operator's additions (e.g. ANTHROPIC_BASE_URL, HTTPS_PROXY) come next…
    cmd.envs(&cfg.env);
    // …and the lock-down last, so nothing in cli.env can undo it.
    cmd.env("HOME", home)
        .env("TMPDIR", call.tmp())
        .env("CLAUDE_CODE_TMPDIR", call.tmp())
        .env("GIT_CEILING_DIRECTORIES", &call.root)
        .env("API_TIMEOUT_MS", api_timeout_ms(cfg.timeout_ms).to_string())
        .envs(LOCKDOWN_ENV.iter().copied());
    cmd.current_dir(call.work())
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The server blocks SIGTERM and SIGINT for its own clean stop; the CLI must not inherit that.
    crate::base::sys::unblock_stop_signals_in_child(&mut cmd);
    // …and must not outlive a server that is killed outright (started from a worker thread,
    // which lives as long as the server).
    crate::base::sys::end_child_with_this_thread(&mut cmd);
    cmd
}

/// The CLI's arguments: the lock-down flags plus model and system prompt file. No prompt.
pub fn cli_args(model: &str, system_file: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--tools",
        "",
        "--strict-mcp-config",
        "--setting-sources",
        "",
        "--disable-slash-commands",
        "--no-session-persistence",
        "--permission-mode",
        "default",
        "--max-turns",
        "1",
        "--model",
    ]
    .iter()
    .map(|s| s.into())
    .collect();
    // `--model` is checked against cli.allowed_models and never starts with `-`.
    a.push(model.into());
    let mut f = OsString::from("--system-prompt-file=");
    f.push(system_file);
    a.push(f);
    a
}

/// The arguments that give the CLI a request's client tools (stage 2, see `bridge.rs`): the
/// bridge as the only MCP server (`--mcp-config <file>`; `--strict-mcp-config` is already in
/// [`cli_args`], so no server from any settings file joins it) and its tools allowed by their
/// upstream names (`mcp__cg__<tool>`), which spares the permission prompt `-p` cannot show.
/// `--tools ""` stays: no built-in tool exists, whatever a client tool is called.
pub fn tool_args(mcp_config_file: &Path, allowed: &[String]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--mcp-config".into(), mcp_config_file.into()];
    if !allowed.is_empty() {
        // One comma-separated value: a bare list would swallow whatever argument follows.
        a.push(format!("--allowedTools={}", allowed.join(",")).into());
    }
    a
}

/// Per-attempt upstream timeout for the CLI: a third of the wall clock, so a request that
/// hangs before any answer is retried (`CLAUDE_CODE_MAX_RETRIES=2`) within our own limit.
fn api_timeout_ms(timeout_ms: u64) -> u64 {
    (timeout_ms / 3).max(1000)
}

/// Puts a zero-width space before a prompt the CLI would read as a slash command (or, in
/// interactive mode, a shell escape); see the module doc for what the real CLI does.
pub fn neutralise(prompt: &str) -> String {
    match prompt.trim_start().chars().next() {
        Some('/' | '!') => format!("{ZERO_WIDTH_SPACE}{prompt}"),
        _ => prompt.to_string(),
    }
}

/// The prompt as the one stream-json line the CLI reads on stdin (newline-terminated): a
/// `user` message with `blocks`, every text block [`neutralise`]d.
pub fn prompt_line(blocks: &[serde_json::Value]) -> String {
    let content: Vec<serde_json::Value> = blocks
        .iter()
        .map(|b| {
            let mut b = b.clone();
            if let Some(text) = b["text"].as_str().filter(|_| b["type"] == "text") {
                b["text"] = neutralise(text).into();
            }
            b
        })
        .collect();
    let line = serde_json::json!({"type": "user", "message": {"role": "user", "content": content}});
    format!("{line}\n")
}

/// The argv the module doc spells out, read from the doc itself: the tests hold the code to the
/// spec (and fail if either drifts), instead of repeating the flag list.
#[cfg(test)]
pub(super) fn spec_argv(model: &str, system_file: &str) -> Vec<String> {
    let doc: Vec<&str> = include_str!("lockdown.rs")
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .collect();
    let block = doc
        .iter()
        .skip_while(|l| l.trim() != "```text")
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("<allowed model>", model)
        .replace("<private dir>/system.txt", system_file);
    let mut words = block.split_whitespace();
    assert_eq!(words.next(), Some("claude"), "the spec block: {block}");
    words
        .map(|w| if w == "\"\"" { "" } else { w }.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argv_is_the_one_the_spec_gives() {
        let got: Vec<String> = cli_args("opus", Path::new("/p/system.txt"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let want = spec_argv("opus", "/p/system.txt");
        assert_eq!(got, want);
        assert!(want.len() > 15 && want.contains(&String::new()), "{want:?}");
        assert!(!got
            .iter()
            .any(|a| a.contains("dangerously") || a.contains("bypass")));
    }
}
