//! The plumbing, checked exactly and fast with a fake `claude`: a shell script that records
//! its argv, environment, cwd and stdin, then prints canned CLI output. What the real Claude
//! Code CLI does with the lock-down is tested in `tests/it/cli_backend.rs`.

use super::*;
use crate::anthropic::usage::Usage;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A temp dir removed on drop.
struct Tmp(PathBuf);
impl Tmp {
    fn new() -> Tmp {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("cg-clib-{}-{n}", std::process::id()));
        std::fs::remove_dir_all(&p).ok();
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn config(binary: &Path, home: &Path) -> CliConfig {
    CliConfig {
        binary: binary.to_string_lossy().into_owned(),
        home: home.to_string_lossy().into_owned(),
        default_model: "sonnet".into(),
        allowed_models: ["opus", "sonnet", "haiku"].map(String::from).to_vec(),
        timeout_ms: 20_000,
        max_concurrent: 2,
        queue_wait_ms: 1000,
        park_timeout_ms: 300_000,
        max_parked_per_key: 2,
        env: BTreeMap::new(),
    }
}

fn req(prompt: &str) -> Completion {
    Completion {
        prompt: prompt.into(),
        system: None,
        model: None,
    }
}

/// Runs and collects the events.
fn run(b: &CliBackend, r: &Completion) -> (Result<CliAnswer, CliError>, Vec<Event>) {
    let mut events = Vec::new();
    let out = b.run(r, &mut |e| {
        events.push(e.clone());
        true
    });
    (out, events)
}

// --- The fake CLI -------------------------------------------------------------------------

/// Output lines of a real 2.1.330 run (trimmed): init, partial stream, assistant, result.
fn real_success_lines(text: &str) -> Vec<String> {
    let ev = |e: Value| json!({"type": "stream_event", "event": e, "session_id": "s"}).to_string();
    vec![
        json!({"type":"system","subtype":"init","cwd":"/tmp/x","model":"claude-sonnet-5-5[1m]","tools":[]}).to_string(),
        json!({"type":"system","subtype":"status","status":"requesting"}).to_string(),
        ev(json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1,"cache_read_input_tokens":3,"cache_creation_input_tokens":2}}})),
        ev(json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})),
        ev(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}})),
        json!({"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5-5","content":[{"type":"text","text":text}],"stop_reason":null}}).to_string(),
        ev(json!({"type":"content_block_stop","index":0})),
        ev(json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}})),
        ev(json!({"type":"message_stop"})),
        json!({"type":"result","subtype":"success","is_error":false,"api_error_status":null,"result":text,"stop_reason":"end_turn","usage":{"input_tokens":11,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":7},"modelUsage":{"claude-sonnet-5-5[1m]":{"inputTokens":11}}}).to_string(),
    ]
}

/// A synthetic API-error ending as 2.1.330 prints it: assistant `<synthetic>` + result.
fn real_error_lines(kind: &str, status: Option<u16>, text: &str) -> Vec<String> {
    vec![
        json!({"type":"assistant","message":{"model":"<synthetic>","role":"assistant","content":[{"type":"text","text":text}]},"error":kind,"is_api_error_message":true}).to_string(),
        json!({"type":"result","subtype":"success","is_error":true,"api_error_status":status,"result":text,"terminal_reason":"api_error","usage":{"input_tokens":0,"output_tokens":0}}).to_string(),
    ]
}

/// A fake `claude`: records argv (NUL-separated), environment, cwd, the system prompt file,
/// the listing of its cwd and stdin into `$REC`, prints `stdout.txt`, then runs `tail`
/// (extra shell) and exits with `$RC`.
struct Fake {
    dir: Tmp,
    home: PathBuf,
}

impl Fake {
    fn new(lines: &[String], stderr: &str, rc: i32, tail: &str) -> Fake {
        let dir = Tmp::new();
        let home = dir.0.join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(dir.0.join("stdout.txt"), lines.join("\n") + "\n").unwrap();
        std::fs::write(dir.0.join("stderr.txt"), stderr).unwrap();
        let script = format!(
            r#"#!/bin/sh
rec="{rec}"
printf '%s\0' "$@" > "$rec/argv"
cat /proc/$$/environ > "$rec/env"
pwd > "$rec/cwd"
ls -A . > "$rec/cwd_listing"
for a in "$@"; do case "$a" in --system-prompt-file=*) cp "${{a#--system-prompt-file=}}" "$rec/system";; esac; done
cat > "$rec/stdin"
cat "$rec/stdout.txt"
cat "$rec/stderr.txt" >&2
{tail}
exit {rc}
"#,
            rec = dir.0.display()
        );
        let bin = dir.0.join("claude");
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake { dir, home }
    }

    fn ok(text: &str) -> Fake {
        Fake::new(&real_success_lines(text), "", 0, "")
    }

    fn backend(&self) -> CliBackend {
        CliBackend::new(self.config())
    }

    fn config(&self) -> CliConfig {
        config(&self.dir.0.join("claude"), &self.home)
    }

    fn recorded(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.0.join(name)).unwrap_or_default()
    }

    fn argv(&self) -> Vec<String> {
        let a = self.recorded("argv");
        a.split('\0')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The content blocks of the one stream-json `user` line the CLI got on stdin.
    fn stdin_prompt(&self) -> Value {
        let stdin = self.recorded("stdin");
        assert_eq!(stdin.lines().count(), 1, "one line: {stdin}");
        let line: Value = serde_json::from_str(&stdin).unwrap();
        assert_eq!(line["type"], "user");
        assert_eq!(line["message"]["role"], "user");
        line["message"]["content"].clone()
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.recorded("env")
            .split('\0')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[test]
fn argv_environment_cwd_and_stdin_are_locked_down() {
    let fake = Fake::ok("hi");
    let mut cfg = fake.config();
    // cli.env adds variables but cannot undo the lock-down or move HOME.
    cfg.env
        .insert("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into());
    cfg.env
        .insert("CLAUDE_CODE_DISABLE_ATTACHMENTS".into(), "0".into());
    cfg.env.insert("HOME".into(), "/elsewhere".into());
    cfg.env
        .insert("CLAUDE_CODE_MAX_RETRIES".into(), "10".into());
    cfg.env
        .insert(process::CALL_MARKER.into(), "chosen-by-config".into());
    let b = CliBackend::new(cfg);
    let r = Completion {
        prompt: "--version please".into(),
        system: Some("-sys\nline two".into()),
        model: Some("opus".into()),
    };
    let (out, _) = run(&b, &r);
    let answer = out.unwrap();
    assert_eq!(answer.text, "hi");

    let argv = fake.argv();
    let sys_arg = argv.last().unwrap().clone();
    let sys_path = sys_arg.strip_prefix("--system-prompt-file=").unwrap();
    assert_eq!(Path::new(sys_path).file_name().unwrap(), "system.txt");
    // The expectation is the module doc's spec of the command line, not a copy of cli_args.
    let expected = lockdown::spec_argv("opus", sys_path);
    // printf drops empty args' content but keeps them: compare without the empties.
    let non_empty: Vec<&String> = expected.iter().filter(|s| !s.is_empty()).collect();
    assert_eq!(argv.iter().collect::<Vec<_>>(), non_empty, "argv");
    let raw = fake.recorded("argv");
    assert_eq!(raw.matches('\0').count(), expected.len(), "empty args kept");
    assert!(!raw.contains("please"), "the prompt is never in argv");
    assert!(!raw.contains("dangerously") && !raw.contains("bypass"));
    assert_eq!(fake.recorded("system"), "-sys\nline two", "system verbatim");
    assert_eq!(
        fake.stdin_prompt(),
        json!([{"type": "text", "text": "--version please"}]),
        "prompt on stdin, as one stream-json user line"
    );

    let env = fake.env();
    let call_root = Path::new(sys_path).parent().unwrap().to_path_buf();
    let mut want: BTreeMap<String, String> = LOCKDOWN_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bin_dir = fake.dir.0.display().to_string();
    for (k, v) in [
        ("PATH", format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin")),
        ("LANG", "C.UTF-8".into()),
        ("HOME", fake.home.display().to_string()),
        ("TMPDIR", call_root.join("tmp").display().to_string()),
        (
            "CLAUDE_CODE_TMPDIR",
            call_root.join("tmp").display().to_string(),
        ),
        ("GIT_CEILING_DIRECTORIES", call_root.display().to_string()),
        ("API_TIMEOUT_MS", "6666".into()),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9".into()),
    ] {
        want.insert(k.into(), v);
    }
    // The call's marker: fresh random bits, never what the config said.
    let marker = env.get(process::CALL_MARKER).cloned().unwrap_or_default();
    assert!(
        marker.len() == 32 && marker.bytes().all(|b| b.is_ascii_hexdigit()),
        "{marker:?}"
    );
    want.insert(process::CALL_MARKER.into(), marker);
    // The shell itself adds PWD (dash exports it); nothing else may appear.
    let mut got = env.clone();
    got.remove("PWD");
    assert_eq!(got, want, "the CLI's whole environment");

    let cwd = fake.recorded("cwd").trim().to_string();
    assert_eq!(Path::new(&cwd), call_root.join("work"));
    assert!(!Path::new(&cwd).starts_with(&fake.home));
    assert_eq!(fake.recorded("cwd_listing"), "", "the cwd is empty");
    assert!(!call_root.exists(), "the call directory is removed");
}

#[test]
fn the_call_directory_is_private_and_outside_git() {
    let fake = Fake::new(
        &real_success_lines("ok"),
        "",
        0,
        r#"stat -c %a "$PWD/.." > "$rec/mode"; git rev-parse --show-toplevel > "$rec/git" 2>&1 || echo none >> "$rec/git""#,
    );
    let (out, _) = run(&fake.backend(), &req("x"));
    out.unwrap();
    assert_eq!(fake.recorded("mode").trim(), "700");
    let git = fake.recorded("git");
    assert!(git.contains("none") || git.contains("not found"), "{git}");
}

#[test]
fn slash_commands_and_shell_escapes_are_neutralised() {
    for (prompt, sent) in [
        ("/heapdump", "\u{200B}/heapdump"),
        ("  /insights now", "\u{200B}  /insights now"),
        ("!rm -rf /", "\u{200B}!rm -rf /"),
        ("hello /heapdump", "hello /heapdump"),
        ("# heading", "# heading"),
    ] {
        assert_eq!(neutralise(prompt), sent);
        let fake = Fake::ok("ok");
        run(&fake.backend(), &req(prompt)).0.unwrap();
        assert_eq!(fake.stdin_prompt()[0]["text"], sent);
    }
}

#[test]
fn answer_events_model_and_usage_are_read_back() {
    let fake = Fake::ok("Hello there");
    let (out, events) = run(&fake.backend(), &req("hi"));
    let a = out.unwrap();
    assert_eq!(a.model, "claude-sonnet-5-5");
    assert_eq!(a.text, "Hello there");
    assert_eq!(
        a.usage,
        Usage {
            input: 11,
            output: 7,
            cache_read: 3,
            cache_creation: 2
        }
    );
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let mut c = crate::anthropic::collector::Collector::new();
    events.iter().for_each(|e| c.push(e));
    assert_eq!(c.message()["content"][0]["text"], "Hello there");
}

#[test]
fn a_non_streamed_answer_still_yields_a_complete_stream() {
    // No stream_event lines at all (the CLI's non-streaming fallback).
    let lines: Vec<String> = real_success_lines("Whole answer")
        .into_iter()
        .filter(|l| !l.contains("stream_event"))
        .collect();
    let fake = Fake::new(&lines, "", 0, "");
    let (out, events) = run(&fake.backend(), &req("hi"));
    assert_eq!(out.unwrap().text, "Whole answer");
    let mut c = crate::anthropic::collector::Collector::new();
    events.iter().for_each(|e| c.push(e));
    let m = c.message();
    assert_eq!(m["content"][0]["text"], "Whole answer");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(events.last().unwrap().name, "message_stop");

    // A stream cut after part of the text: the rest is added.
    let mut lines = real_success_lines("Hello world");
    lines[4] = json!({"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}}).to_string();
    lines.retain(|l| {
        !l.contains("content_block_stop")
            && !l.contains("message_delta")
            && !l.contains("message_stop")
    });
    let fake = Fake::new(&lines, "", 0, "");
    let (out, events) = run(&fake.backend(), &req("hi"));
    assert_eq!(out.unwrap().text, "Hello world");
    let mut c = crate::anthropic::collector::Collector::new();
    events.iter().for_each(|e| c.push(e));
    assert_eq!(c.message()["content"][0]["text"], "Hello world");
    assert_eq!(events.last().unwrap().name, "message_stop");
}

#[test]
fn per_block_assistant_lines_are_merged_when_nothing_streamed() {
    // As 2.1.330 prints a thinking + text answer: one `assistant` line per block.
    let msg = |content: Value| {
        json!({"type":"assistant","message":{"id":"msg_7","model":"claude-x[1m]","content":content}})
            .to_string()
    };
    let lines = vec![
        msg(json!([{"type":"thinking","thinking":"hm","signature":"S"}])),
        msg(json!([{"type":"text","text":"the answer"}])),
        json!({"type":"result","subtype":"success","is_error":false,"result":"the answer","usage":{"input_tokens":1,"output_tokens":2}}).to_string(),
    ];
    let fake = Fake::new(&lines, "", 0, "");
    let (out, events) = run(&fake.backend(), &req("hi"));
    let a = out.unwrap();
    assert_eq!(a.model, "claude-x");
    let mut c = crate::anthropic::collector::Collector::new();
    events.iter().for_each(|e| c.push(e));
    let m = c.message();
    assert_eq!(m["content"], json!([{"type":"text","text":"the answer"}]));
    assert_eq!(m["id"], "msg_7");
    assert_eq!(m["usage"]["output_tokens"], 2);
}

#[test]
fn tool_use_blocks_are_never_passed_on_and_fail_the_call() {
    let ev = |e: Value| json!({"type": "stream_event", "event": e}).to_string();
    let lines = vec![
        ev(json!({"type":"message_start","message":{"id":"m","model":"claude-x","content":[],"usage":{}}})),
        ev(json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"Bash","input":{}}})),
        ev(json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}})),
        ev(json!({"type":"content_block_stop","index":0})),
        ev(json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":3}})),
        ev(json!({"type":"message_stop"})),
        json!({"type":"result","subtype":"error_max_turns","is_error":true,"errors":["Reached maximum number of turns (1)"],"terminal_reason":"max_turns"}).to_string(),
    ];
    let fake = Fake::new(&lines, "", 1, "");
    let (out, events) = run(&fake.backend(), &req("hi"));
    let err = out.unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message().contains("tool"), "{}", err.message());
    assert!(events
        .iter()
        .all(|e| !e.data.to_string().contains("tool_use\",\"id")));
    assert!(events.iter().all(|e| e.name != "content_block_start"));
}

#[test]
fn failures_map_to_statuses_and_never_leak_secrets() {
    let token = "sk-ant-oat01-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xyz";
    let crash = format!("TypeError: boom with key {token}\n");
    let cases: Vec<(Vec<String>, &str, u16, &str)> = vec![
        (
            real_error_lines(
                "authentication_failed",
                None,
                "Not logged in · Please run /login",
            ),
            "",
            503,
            "setup-token",
        ),
        (
            real_error_lines(
                "rate_limit",
                Some(429),
                "API Error: Server is temporarily limiting requests",
            ),
            "",
            429,
            "limiting",
        ),
        (
            real_error_lines(
                "authentication_failed",
                Some(401),
                &format!("Failed to authenticate. API Error: 401 bad token {token}"),
            ),
            "",
            503,
            "/login",
        ),
        (
            real_error_lines(
                "server_error",
                Some(500),
                &format!("API Error: 500 Bearer {token} oops abcdef0123456789abcdef0123456789"),
            ),
            "",
            502,
            "API Error: 500",
        ),
        (
            real_error_lines("unknown", None, "Request timed out"),
            "",
            504,
            "",
        ),
        // No result line: a crash; stderr is shown, redacted.
        (
            vec!["not json at all".into()],
            &crash,
            502,
            "TypeError: boom",
        ),
    ];
    for (lines, stderr, status, needle) in cases {
        let fake = Fake::new(&lines, stderr, 1, "");
        let err = run(&fake.backend(), &req("hi")).0.unwrap_err();
        let msg = err.message();
        assert_eq!(err.status(), status, "{lines:?} → {err:?}");
        assert!(msg.contains(needle), "{msg}");
        assert!(!msg.contains("AbCdEfGh"), "token leaked: {msg}");
        assert!(!msg.contains("abcdef0123456789abcdef"), "hex leaked: {msg}");
        if status == 503 {
            // How to log in, but neither where (the home) nor as whom.
            assert!(msg.contains("setup-token"), "{msg}");
            assert!(!msg.contains(&fake.home.display().to_string()), "{msg}");
        }
    }
}

#[test]
fn models_are_checked_before_anything_runs() {
    let fake = Fake::ok("x");
    let b = fake.backend();
    for m in ["-p", "--dangerously-skip-permissions", "gpt-4o", "Sonnet"] {
        let r = Completion {
            prompt: "hi".into(),
            system: None,
            model: Some(m.into()),
        };
        let err = run(&b, &r).0.unwrap_err();
        assert_eq!(err.status(), 400, "{m}: {err:?}");
    }
    let err = run(&b, &req("  \n")).0.unwrap_err();
    assert_eq!(
        err,
        CliError::BadRequest("the prompt must not be empty".into())
    );
    assert_eq!(fake.recorded("argv"), "", "nothing ran");
    // Default model.
    run(&b, &req("hi")).0.unwrap();
    assert!(fake
        .argv()
        .windows(2)
        .any(|w| w[0] == "--model" && w[1] == "sonnet"));
}

#[test]
fn a_missing_binary_is_a_clear_502() {
    let dir = Tmp::new();
    let b = CliBackend::new(config(&dir.0.join("no-such-claude"), &dir.0));
    let err = run(&b, &req("hi")).0.unwrap_err();
    assert_eq!(err.status(), 502);
    assert!(err.message().contains("cli.binary"), "{}", err.message());
}

/// Whether process `pid` still runs (a zombie is as good as gone).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !process::is_zombie(&stat))
}

#[test]
fn the_wall_clock_kills_the_whole_process_group() {
    // The fake starts a helper that ignores stdout, then hangs.
    let fake = Fake::new(
        &[],
        "",
        0,
        r#"sleep 300 > /dev/null 2>&1 & echo $! > "$rec/helper"; exec sleep 300"#,
    );
    let mut cfg = fake.config();
    cfg.timeout_ms = 1000;
    let b = CliBackend::new(cfg);
    let t = Instant::now();
    let err = run(&b, &req("hi")).0.unwrap_err();
    let took = t.elapsed();
    assert_eq!(err, CliError::Timeout);
    assert_eq!(err.status(), 504);
    assert!(took < Duration::from_secs(4), "{took:?}");
    let helper = fake.recorded("helper").trim().to_string();
    assert!(!helper.is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(&helper), "the helper survived the kill");
    assert!(!alive_cli(&fake.dir.0), "a CLI process survived");
}

/// Polls `cond` for up to 3 s.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether any process still runs with `dir` in its command line.
fn alive_cli(dir: &Path) -> bool {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        let name = p.file_name().to_string_lossy().to_string();
        name.chars().all(|c| c.is_ascii_digit())
            && alive(&name)
            && std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
    })
}

#[test]
fn helpers_left_behind_after_a_normal_exit_are_killed() {
    let fake = Fake::new(
        &real_success_lines("ok"),
        "",
        0,
        r#"sleep 300 > /dev/null 2>&1 & echo $! > "$rec/helper""#,
    );
    run(&fake.backend(), &req("hi")).0.unwrap();
    let helper = fake.recorded("helper").trim().to_string();
    assert!(
        eventually(|| !alive(&helper)),
        "the helper outlived the call"
    );
}

#[test]
fn a_client_that_goes_away_stops_the_cli() {
    let mut lines = real_success_lines("x");
    lines.truncate(3); // up to message_start
    let fake = Fake::new(&lines, "", 0, "exec sleep 300");
    let t = Instant::now();
    let err = fake
        .backend()
        .run(&req("hi"), &mut |e| e.name != "message_start")
        .unwrap_err();
    assert_eq!(err, CliError::Failed("client went away".into()));
    assert!(t.elapsed() < Duration::from_secs(5));
    // The kill is immediate; give a loaded machine a moment to reap before looking.
    assert!(
        eventually(|| !alive_cli(&fake.dir.0)),
        "the CLI outlived its client"
    );
}

#[test]
fn the_concurrency_cap_queues_then_answers_busy() {
    let fake = Fake::new(&real_success_lines("ok"), "", 0, "sleep 1");
    let mut cfg = fake.config();
    cfg.max_concurrent = 1;
    cfg.queue_wait_ms = 200;
    let b = std::sync::Arc::new(CliBackend::new(cfg));
    let b2 = std::sync::Arc::clone(&b);
    let first = std::thread::spawn(move || run(&b2, &req("one")).0);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let err = run(&b, &req("two")).0.unwrap_err();
    assert_eq!(err, CliError::Busy { retry_after: 1 });
    assert_eq!(err.status(), 429);
    assert!(t.elapsed() >= Duration::from_millis(190));
    first.join().unwrap().unwrap();
    // The slot is free again; a waiter that fits in the queue wait gets it.
    run(&b, &req("three")).0.unwrap();
}

#[test]
fn earlier_turns_go_in_a_private_session_file_that_resume_reads() {
    // The fake copies the session file `--resume` names before the call directory goes.
    let fake = Fake::new(
        &real_success_lines("ok"),
        "",
        0,
        r#"prev=""; for a in "$@"; do [ "$prev" = "--resume" ] && cp "$HOME"/.claude/projects/*/"$a.jsonl" "$rec/session" && stat -c %a "$HOME"/.claude/projects/*/ > "$rec/session_mode"; prev="$a"; done"#,
    );
    let b = fake.backend();
    let body = json!({"model": "sonnet", "max_tokens": 10, "messages": [
        {"role": "user", "content": "/heapdump one"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "S"}, {"type": "text", "text": "two"}]},
        {"role": "user", "content": [{"type": "text", "text": "/insights three"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}
    ]});
    // A first run without history teaches the backend the real model behind `sonnet`.
    b.run(&req("hi"), &mut |_| true).unwrap();
    assert!(
        !fake.argv().contains(&"--resume".to_string()),
        "no history, no session"
    );
    b.run_messages(&body, "", &mut |_| true).unwrap();
    let argv = fake.argv();
    let at = argv.iter().position(|a| a == "--resume").expect("--resume");
    let id = &argv[at + 1];
    assert_eq!(id.len(), 36, "a UUID of our own: {id}");
    let lines: Vec<Value> = fake
        .recorded("session")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "the two earlier turns");
    assert_eq!(
        lines[0]["message"]["content"],
        json!([{"type": "text", "text": "/heapdump one"}])
    );
    assert_eq!(lines[1]["message"]["content"][0]["signature"], "S");
    assert_eq!(
        lines[1]["message"]["model"], "claude-sonnet-5-5",
        "the learned real id"
    );
    assert_eq!(fake.recorded("session_mode").trim(), "700");
    // The new turn is the prompt, its text neutralised, its image kept.
    let prompt = fake.stdin_prompt();
    assert_eq!(prompt[0]["text"], "\u{200B}/insights three");
    assert_eq!(prompt[1]["type"], "image");
    // The session folder went with the call.
    let projects = fake.home.join(".claude/projects");
    let left: Vec<_> = std::fs::read_dir(&projects)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_request_the_cli_cannot_honour_runs_nothing() {
    let fake = Fake::ok("x");
    let body = json!({"model": "sonnet", "max_tokens": 10, "temperature": 0.3,
        "messages": [{"role": "user", "content": "hi"}]});
    let err = fake
        .backend()
        .run_messages(&body, "", &mut |_| true)
        .unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.message().contains("temperature"), "{err:?}");
    assert_eq!(fake.recorded("argv"), "", "nothing ran");
}

/// Set in the child run of [`a_call_that_fails_before_the_cli_starts_leaves_no_session_file`].
const LONG_TMPDIR_CHILD: &str = "CG_TEST_LONG_TMPDIR_CHILD";

#[test]
fn a_call_that_fails_before_the_cli_starts_leaves_no_session_file() {
    if std::env::var_os(LONG_TMPDIR_CHILD).is_none() {
        // This test binary runs this one test again, with a TMPDIR so long that the bridge's
        // socket path in the call directory cannot be bound (the environment is the process's,
        // so it is not changed under the other tests).
        let outer = Tmp::new();
        let long = outer.0.join("d".repeat(120));
        std::fs::create_dir_all(&long).unwrap();
        let name = concat!(
            module_path!(),
            "::a_call_that_fails_before_the_cli_starts_leaves_no_session_file"
        );
        let name = name.split_once("::").map_or(name, |(_, n)| n);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env(LONG_TMPDIR_CHILD, "1")
            .env("TMPDIR", &long)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.contains("1 passed"), "{said}");
        return;
    }
    // The child: a request with earlier turns (a session file is written) and tools, whose
    // bridge cannot listen.
    let fake = Fake::ok("x");
    let body = json!({"model": "sonnet", "max_tokens": 10,
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "the secret conversation"},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "and now?"}
    ]});
    let err = fake
        .backend()
        .run_messages(&body, "", &mut |_| true)
        .unwrap_err();
    assert!(err.message().contains("tool bridge"), "{err:?}");
    assert_eq!(fake.recorded("argv"), "", "nothing ran");
    let projects = fake.home.join(".claude/projects");
    let left: Vec<_> = std::fs::read_dir(&projects)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the conversation stayed behind: {left:?}");
    let calls: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("claudegate-cli-")
        })
        .collect();
    assert!(calls.is_empty(), "{calls:?}");
}
