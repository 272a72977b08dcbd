//! Running an external client (Claude Code, Codex, a Python SDK script) with a deadline: its
//! own process group, stdin closed, output collected, and the whole group killed at the
//! deadline and after exit, so nothing a test starts outlives it. Also where those clients are
//! installed, and the one skip-or-fail rule for when they are not.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Run {
    /// `None` when the process was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn assert_success(&self, what: &str) {
        assert!(
            self.succeeded(),
            "{what} failed after {:?} (status {:?}, None = killed at the deadline)\n\
             --- stdout:\n{}\n--- stderr:\n{}",
            self.elapsed,
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `cmd` in its own process group with stdin closed, collecting stdout and stderr. At
/// `deadline` the whole group is killed. After the process exits, whatever it left running in
/// its group is killed too.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            pipe.read_to_end(&mut buf).ok();
            tx.send(String::from_utf8_lossy(&buf).into_owned()).ok();
        });
        rx
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for client") {
            break Some(s);
        }
        if start.elapsed() >= deadline {
            kill_group(pid);
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    kill_group(pid);
    let elapsed = start.elapsed();
    let grab = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "<output pipe still held open by a leftover process>".into())
    };
    let (stdout, mut stderr) = (grab(out), grab(err));
    if status.is_none() {
        stderr.push_str(&format!("\n<killed after {deadline:?}>"));
    }
    Run {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// SIGKILL to the process group `pgid` (one this test created); a group already gone is fine.
pub fn kill_group(pgid: u32) {
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok();
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/e2e` (or `$CLAUDEGATE_E2E_DIR`, as for `tests/e2e/install.sh`).
pub fn e2e_dir() -> PathBuf {
    match std::env::var_os("CLAUDEGATE_E2E_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo().join("target/e2e"),
    }
}

/// The version of `package` pinned in `tests/e2e/package.json`.
pub fn pinned_npm(package: &str) -> String {
    let text = std::fs::read_to_string(repo().join("tests/e2e/package.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["dependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("tests/e2e/package.json pins {package}"))
        .to_string()
}

/// `target/e2e/node22`: the clients that need Node >= 22 or are native binaries from npm (the
/// Vercel AI SDK, OpenCode) and the Node 22 that runs them, pinned in `tests/e2e/node22/`.
pub fn node22_dir() -> PathBuf {
    e2e_dir().join("node22")
}

/// The version of `package` pinned in `tests/e2e/node22/package.json` (a dependency or an
/// optional, platform-specific one).
pub fn pinned_node22(package: &str) -> String {
    let text = std::fs::read_to_string(repo().join("tests/e2e/node22/package.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    ["dependencies", "optionalDependencies"]
        .iter()
        .find_map(|k| v[k][package].as_str())
        .unwrap_or_else(|| panic!("tests/e2e/node22/package.json pins {package}"))
        .to_string()
}

/// The version of `package` pinned in `tests/e2e/requirements.txt` (`package==VERSION`).
pub fn pinned_pip(package: &str) -> String {
    let text = std::fs::read_to_string(repo().join("tests/e2e/requirements.txt")).unwrap();
    let prefix = format!("{package}==");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("tests/e2e/requirements.txt pins {package}==VERSION"))
        .to_string()
}

/// `Some(path)` if the client is installed. If it is not: a failure under
/// `CLAUDEGATE_E2E_REQUIRED=1` (set by `make test`), else a loud SKIPPED banner and `None`.
pub fn installed(what: &str, path: PathBuf, test: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "{what} is not installed ({} is missing); run `make e2e-deps` (tests/e2e/install.sh)",
        path.display()
    );
    skip_unless_required(test, &why);
    None
}

/// The one skip-or-fail rule for a test that cannot run here (a client not installed, no
/// permission to mount): a failure under `CLAUDEGATE_E2E_REQUIRED=1` (set by `make test` and
/// CI), else a skip (see [`skip`]); the caller then returns.
pub fn skip_unless_required(test: &str, why: &str) {
    skip(
        test,
        why,
        std::env::var("CLAUDEGATE_E2E_REQUIRED").as_deref() == Ok("1"),
    );
}

/// A test that cannot run here: a failure when `required`, else a loud SKIPPED banner and a
/// line in `$CLAUDEGATE_SKIP_LOG`, which `make test` lists in its summary at the end (a banner
/// alone scrolls away among hundreds of tests). CI (`CLAUDEGATE_CI=1`) never skips.
pub fn skip(test: &str, why: &str, required: bool) {
    if required || std::env::var("CLAUDEGATE_CI").as_deref() == Ok("1") {
        panic!("{test}: required here, but {why}");
    }
    // Straight to fd 2: libtest captures `eprintln!` of passing tests, and a skip must show.
    let bar = "!".repeat(100);
    let banner = format!("\n{bar}\n!!! SKIPPED {test}: {why}\n{bar}\n");
    std::io::Write::write_all(&mut std::io::stderr(), banner.as_bytes()).ok();
    if let Some(path) = std::env::var_os("CLAUDEGATE_SKIP_LOG").filter(|p| !p.is_empty()) {
        // One short line per write on an O_APPEND file: lines from parallel tests stay whole.
        let line = format!("{test}: {}\n", why.replace('\n', " "));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            std::io::Write::write_all(&mut file, line.as_bytes()).ok();
        }
    }
}

/// Polls `done` every 50 ms for up to `within`; whether it held. The one bounded wait for a
/// condition the server reaches a moment after its answer (a process reaped, a file written).
pub fn eventually(within: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
