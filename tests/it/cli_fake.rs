//! The claude-cli backend through the real binary with a fake `claude` (a shell script), for
//! what needs no real CLI: every process a call started is gone when the call ends (also one
//! that left the process group with `setsid`), none outlives a server killed outright, and the
//! not-logged-in answer says how to log in
//! without naming the service user or the home directory.

use crate::cli_backend::processes_with_home;
use crate::common::gate::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A fake `claude` in its own temp dir, with an empty `home/` to serve as `cli.home`.
struct Fake {
    dir: TempDir,
}

impl Fake {
    /// A `claude` that runs `body` (POSIX sh).
    fn new(body: &str) -> Fake {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let bin = dir.path().join("claude");
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A gate on the claude-cli backend running this fake, and its key.
    fn gate(&self, timeout_ms: u64) -> (Gate, String) {
        Gate::start_with_key(json!({"backend": "claude-cli", "cli": {
            "binary": self.dir.path().join("claude").to_string_lossy(),
            "home": self.home().to_string_lossy(),
            "timeout_ms": timeout_ms,
        }}))
    }
}

/// The lines a successful CLI run ends with: its answer and the result.
fn success_lines() -> String {
    [
        json!({"type": "assistant", "message": {"id": "msg_1", "model": "claude-fake-1",
            "content": [{"type": "text", "text": "ok"}]}}),
        json!({"type": "result", "subtype": "success", "is_error": false, "result": "ok",
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
    ]
    .map(|v| v.to_string())
    .join("\n")
}

fn complete(gate: &Gate, key: &str) -> Resp {
    post(
        &gate.url("/v1/complete"),
        &[("x-api-key", key)],
        &json!({"prompt": "hi"}).to_string(),
    )
}

/// Fails if any process of the call outlives it (given a moment for the kernel to finish the
/// kills); a failing test ends the leftovers itself so they do not linger.
fn assert_nothing_left(home: &Path) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_with_home(home);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for process in &left {
                let pid = process.split(':').next().unwrap_or_default();
                Command::new("kill").args(["-9", pid]).status().ok();
            }
            panic!("processes outlived the call: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_setsid_grandchild_is_ended_with_the_call() {
    // The grandchild leaves the CLI's process group (and session) before the CLI answers.
    let fake = Fake::new(&format!(
        "cat > /dev/null\nsetsid sleep 60 < /dev/null > /dev/null 2>&1 &\ncat <<'EOF'\n{}\nEOF\nexit 0",
        success_lines()
    ));
    let (gate, key) = fake.gate(10_000);
    let r = complete(&gate, &key);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["text"], "ok");
    assert_nothing_left(&fake.home());
}

#[test]
fn a_setsid_grandchild_holding_stdout_is_ended_at_the_wall_clock() {
    // The grandchild keeps the CLI's stdout open, so the call can only end at its wall clock.
    let fake = Fake::new("cat > /dev/null\nsetsid sleep 60 &\nexit 0");
    let (gate, key) = fake.gate(1500);
    let t = Instant::now();
    let r = complete(&gate, &key);
    r.assert_relay_error(504);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert_nothing_left(&fake.home());
}

#[test]
fn a_call_does_not_outlive_a_server_killed_outright() {
    // The CLI runs in its own process group, so a server killed with SIGKILL (no clean stop,
    // no service manager to kill its cgroup) cannot end it itself: the kernel must.
    let fake = Fake::new("cat > /dev/null\nexec sleep 60");
    let (gate, key) = fake.gate(60_000);
    // Raw TCP: the server dies mid-request, so there is no answer to parse.
    let addr = gate.addr;
    let caller = std::thread::spawn(move || {
        let body = json!({"prompt": "hi"}).to_string();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "POST /v1/complete HTTP/1.1\r\nhost: gate\r\nx-api-key: {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with_home(&fake.home()).is_empty() {
        assert!(Instant::now() < deadline, "the CLI never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-KILL", &gate.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_nothing_left(&fake.home());
    let answer = caller.join().unwrap();
    assert!(answer.is_empty(), "the dead server answered: {answer}");
}

/// The name of the user this test runs as (the gate runs as the same user).
fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_not_logged_in_answer_names_neither_the_user_nor_the_home() {
    // What Claude Code 2.1.330 prints without a login, then exits 1.
    let fake = Fake::new("cat > /dev/null\necho 'Invalid API key · Please run /login' >&2\nexit 1");
    let (gate, key) = fake.gate(10_000);
    let user = user_name();
    assert!(!user.is_empty());
    let home = fake.home().display().to_string();
    let r = complete(&gate, &key);
    let v: Value = r.assert_relay_error(503);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("not logged in"), "{msg}");
    assert!(
        msg.contains("/login") && msg.contains("setup-token"),
        "{msg}"
    );
    let chat = post(
        &gate.url("/v1/chat/completions"),
        &[("x-api-key", &key)],
        &json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    assert_eq!(chat.status, 503, "{chat:?}");
    for body in [&r.body, &chat.body] {
        assert!(!body.contains(&home), "names the home: {body}");
        assert!(!body.contains(&user), "names the user {user:?}: {body}");
    }
}
