//! The Claude Code CLI backend (`backend: "claude-cli"`): runs one locked-down `claude -p` per
//! request and reads its answer back as Anthropic stream events.
//!
//! This module owns everything between "a prompt, a system prompt and a model" and "the
//! answer": the argv, the environment, the throwaway working directory, the concurrency slots,
//! the wall-clock kill, parsing the CLI's JSON lines and mapping its failures to HTTP statuses.
//!
//! # The lock-down (measured on Claude Code 2.1.330, the version the tests pin)
//! `claude -p` is an agent: by default it runs shell commands, reads files, spawns MCP servers,
//! runs hooks from settings and expands `@path` mentions. Every call therefore runs as
//!
//! ```text
//! claude -p --output-format stream-json --verbose --include-partial-messages
//!        --tools "" --strict-mcp-config --setting-sources "" --disable-slash-commands
//!        --no-session-persistence --permission-mode default --max-turns 1
//!        --model <allowed model> --system-prompt-file <private dir>/system.txt
//! ```
//!
//! - `--tools ""`: no built-in tools (the request carries `"tools": []`).
//! - `--strict-mcp-config` without `--mcp-config`: no MCP server at all, from any settings file
//!   or from the account's claude.ai connectors.
//! - `--setting-sources ""`: no user/project settings, so no hooks, no `permissions.allow`, no
//!   `apiKeyHelper`, no CLAUDE.md.
//! - `--disable-slash-commands`: built-in commands in the prompt do not run (but a prompt that
//!   starts with `/heapdump` is still swallowed, see below).
//! - `--max-turns 1`: one API call per request. With no tools, a `tool_use` from the upstream
//!   can only be an error; the CLI answers it with "No such tool available" and stops with
//!   `error_max_turns`, which becomes a 502. (2.1.330 answers plain prompts fine with 1.)
//! - `--system-prompt-file`: the caller's system prompt (or a neutral default) replaces Claude
//!   Code's 5 KB agent prompt verbatim. A file, not `--system-prompt <text>`, because an argv
//!   string is capped at 128 KiB by Linux, is visible in `/proc/<pid>/cmdline`, and could start
//!   with `-`. Measured: the file's text arrives byte for byte as the system block.
//! - Never `--dangerously-skip-permissions`, `--allow-dangerously-skip-permissions` or a
//!   permission mode that bypasses prompts.
//!
//! The prompt goes on **stdin**, which is then closed: it is never in argv, so it can never
//! parse as an option, and several hundred KB work.
//!
//! **Environment**: `env_clear()`, then `PATH` (`/usr/local/bin:/usr/bin:/bin`, with the
//! directory of `cli.binary` first when that is a path) and `LANG=C.UTF-8`, then `cli.env`
//! (which may replace `PATH` and `LANG`, and adds e.g. `ANTHROPIC_BASE_URL`, `HTTPS_PROXY`,
//! `CLAUDE_CODE_OAUTH_TOKEN`), then — last, so `cli.env` can never undo them — `HOME` =
//! `cli.home`, `TMPDIR`/`CLAUDE_CODE_TMPDIR` inside the private call directory,
//! `GIT_CEILING_DIRECTORIES`, `API_TIMEOUT_MS` and [`LOCKDOWN_ENV`].
//!
//! **Working directory**: a fresh directory `<tmp>/claudegate-cli-<random>/` (mode 0700,
//! outside `cli.home`; git may not search above it) holding an empty `work/` (the cwd), `tmp/`
//! (the CLI's temp files and its messaging socket) and the system prompt file. It is removed
//! when the call ends, whatever way it ends.
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
//! directory above), "Is a git repository: false", platform, shell, kernel release and date.
//! Only `CLAUDE_CODE_SIMPLE` turns it off, and that refuses OAuth logins. No home path, user
//! name, hostname, settings or files are sent.
//!
//! **Process handling**: the CLI runs in its own process group. On the wall-clock timeout, or
//! when the streaming client goes away, the whole group gets SIGKILL (the CLI starts helpers of
//! its own: `sh -c "ps aux | …"`, ripgrep, git), then the CLI is reaped. The group is killed
//! before the leader is reaped, so its id cannot have been reused. After a normal exit the
//! group is killed too, so nothing the CLI started outlives the call.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::anthropic::event::Event;
use crate::anthropic::usage::Usage;
use crate::backends::{Answer, Completion};
use crate::base::error::{ApiError, ErrorKind};
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
/// Longest stdout line accepted from the CLI (an answer arrives as one JSON line, twice).
const MAX_LINE: u64 = 64 << 20;
/// stderr kept for error messages: the tail, at most this many bytes.
const MAX_STDERR: usize = 16 << 10;
/// Longest CLI-provided text put into an error message.
const MAX_DETAIL: usize = 300;
/// After stdout closes, how long the CLI may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Interface
// ---------------------------------------------------------------------------------------------

/// One request for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliRequest {
    /// The user's text; goes to the CLI on stdin.
    pub prompt: String,
    /// The system prompt; `None` → [`NEUTRAL_SYSTEM`]. Passed verbatim (also when empty).
    pub system: Option<String>,
    /// One of `cli.allowed_models`; `None` (or empty) → `cli.default_model`.
    pub model: Option<String>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CliAnswer {
    /// The model id the CLI actually used (e.g. `claude-sonnet-5-5` for `sonnet`), without a
    /// `[1m]` suffix.
    pub model: String,
    pub text: String,
    pub usage: Usage,
    /// Wall time of the whole call, CLI start-up included.
    pub duration_ms: u64,
}

/// Why a call failed; [`CliError::status`] is the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// 400: model not allowed or looks like a flag, empty prompt.
    BadRequest(String),
    /// 429: every CLI slot stayed busy for `cli.queue_wait_ms`; retry after this many seconds.
    Busy { retry_after: u64 },
    /// 429: the upstream rate-limited the account.
    RateLimited(String),
    /// 503: Claude Code on this host is not logged in (the message says how to log in).
    NotLoggedIn(String),
    /// 504: the wall-clock limit `cli.timeout_ms` passed; the CLI was killed and reaped.
    Timeout,
    /// 502: anything else. Never carries a token or key from the CLI's output.
    Failed(String),
}

impl CliError {
    pub fn status(&self) -> u16 {
        match self {
            CliError::BadRequest(_) => 400,
            CliError::Busy { .. } | CliError::RateLimited(_) => 429,
            CliError::NotLoggedIn(_) => 503,
            CliError::Timeout => 504,
            CliError::Failed(_) => 502,
        }
    }

    pub fn message(&self) -> String {
        match self {
            CliError::BadRequest(m)
            | CliError::RateLimited(m)
            | CliError::NotLoggedIn(m)
            | CliError::Failed(m) => m.clone(),
            CliError::Busy { retry_after } => format!(
                "all Claude Code CLI slots are busy (cli.max_concurrent); retry in {retry_after} s"
            ),
            CliError::Timeout => {
                "the Claude Code CLI did not finish within cli.timeout_ms and was stopped".into()
            }
        }
    }
}

/// A CLI failure as the caller's error (its protocol picks the body's shape).
impl From<CliError> for ApiError {
    fn from(e: CliError) -> ApiError {
        let kind = match e.status() {
            400 => ErrorKind::InvalidRequest,
            429 => ErrorKind::RateLimited,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::GatewayTimeout,
            _ => ErrorKind::BadGateway,
        };
        let err = ApiError::new(kind, e.message());
        match e {
            CliError::Busy { retry_after } => err.retry_after(retry_after),
            CliError::RateLimited(_) => err.retry_after(60),
            _ => err,
        }
    }
}

/// Runs locked-down `claude -p` calls, at most `cli.max_concurrent` at a time.
pub struct CliBackend {
    cfg: CliConfig,
    /// CLI processes running now.
    busy: Mutex<u32>,
    /// Signalled whenever a slot frees up.
    freed: Condvar,
}

impl CliBackend {
    pub fn new(cfg: CliConfig) -> CliBackend {
        CliBackend {
            cfg,
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Runs one locked-down `claude -p`. `on_event` receives each Anthropic stream event (the
    /// CLI's `stream_event` lines unwrapped) as it arrives; returning false means the client
    /// went away: the CLI is killed and the call fails with `Failed("client went away")`.
    ///
    /// The events form one Anthropic message stream (`message_start` … `message_stop`), ending
    /// with `message_stop` whenever the call succeeds: if the CLI fell back to a non-streaming
    /// request, the missing events are made up from its final answer. Tool-use blocks are
    /// never passed on (no tool exists here, so the upstream asking for one is an error).
    pub fn run(
        &self,
        req: &CliRequest,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        if req.prompt.trim().is_empty() {
            return Err(CliError::BadRequest("the prompt must not be empty".into()));
        }
        let model = self.check_model(req.model.as_deref())?;
        let _slot = self.acquire()?;
        let started = Instant::now();
        let call = CallDir::create(&self.home()).map_err(|e| {
            CliError::Failed(format!("cannot create a private work directory: {e}"))
        })?;
        let system = req.system.as_deref().unwrap_or(NEUTRAL_SYSTEM);
        write_private_file(&call.system_file(), system.as_bytes())
            .map_err(|e| CliError::Failed(format!("cannot write the system prompt file: {e}")))?;
        let prompt = neutralise(&req.prompt);
        let mut cmd = self.command(&model, &call);
        let outcome = self.supervise(&mut cmd, prompt.into_bytes(), started, on_event);
        call.cleanup(&self.home());
        let (transcript, status) = outcome?;
        let mut answer = transcript.finish(status, &model, on_event, &self.how_to_log_in())?;
        answer.duration_ms = started.elapsed().as_millis() as u64;
        crate::observe::record::note_usage(answer.usage);
        Ok(answer)
    }

    /// `/v1/complete`: one run, its answer collected.
    pub fn complete(&self, req: &Completion) -> Result<Answer, ApiError> {
        let cli_req = CliRequest {
            prompt: req.prompt.clone(),
            system: req.system.clone(),
            model: req.model.clone(),
        };
        let answer = self.run(&cli_req, &mut |_| true)?;
        Ok(Answer {
            model: answer.model,
            text: answer.text,
            usage: answer.usage,
        })
    }

    /// `cli.home` with `~` expanded.
    fn home(&self) -> PathBuf {
        crate::base::fsutil::expand_home(&self.cfg.home)
    }

    /// The model to pass to `--model`, or a 400 before anything runs.
    fn check_model(&self, requested: Option<&str>) -> Result<String, CliError> {
        let model = match requested {
            Some(m) if !m.is_empty() => m,
            _ => self.cfg.default_model.as_str(),
        };
        let shown: String = model.chars().take(100).collect();
        if model.starts_with('-') {
            return Err(CliError::BadRequest(format!(
                "model `{shown}` looks like a command-line option"
            )));
        }
        if !self.cfg.allowed_models.iter().any(|m| m == model) {
            return Err(CliError::BadRequest(format!(
                "model `{shown}` is not allowed here; allowed: {}",
                self.cfg.allowed_models.join(", ")
            )));
        }
        Ok(model.to_string())
    }

    /// Takes a CLI slot, waiting up to `cli.queue_wait_ms` for one to free up.
    fn acquire(&self) -> Result<Slot<'_>, CliError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.queue_wait_ms);
        let mut busy = lock(&self.busy);
        while *busy >= self.cfg.max_concurrent {
            let now = Instant::now();
            if now >= deadline {
                return Err(CliError::Busy {
                    retry_after: self.cfg.queue_wait_ms.div_ceil(1000).clamp(1, 60),
                });
            }
            busy = self
                .freed
                .wait_timeout(busy, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *busy += 1;
        Ok(Slot(self))
    }

    /// The complete, locked-down command (argv, environment, cwd, process group).
    fn command(&self, model: &str, call: &CallDir) -> Command {
        // A relative path would otherwise be looked up from the CLI's own (temp) cwd.
        let binary = crate::base::fsutil::expand_home(&self.cfg.binary);
        let binary = std::path::absolute(&binary).unwrap_or(binary);
        let mut path = String::new();
        if self.cfg.binary.contains('/') {
            if let Some(dir) = binary.parent().filter(|d| !d.as_os_str().is_empty()) {
                path = format!("{}:", dir.display());
            }
        }
        path.push_str(MINIMAL_PATH);

        let mut cmd = Command::new(if self.cfg.binary.contains('/') {
            binary.into_os_string()
        } else {
            self.cfg.binary.clone().into()
        });
        cmd.args(cli_args(model, &call.system_file()));
        cmd.env_clear().env("PATH", path).env("LANG", "C.UTF-8");
        // The operator's additions (e.g. ANTHROPIC_BASE_URL, HTTPS_PROXY) come next…
        cmd.envs(&self.cfg.env);
        // …and the lock-down last, so nothing in cli.env can undo it.
        cmd.env("HOME", self.home())
            .env("TMPDIR", call.tmp())
            .env("CLAUDE_CODE_TMPDIR", call.tmp())
            .env("GIT_CEILING_DIRECTORIES", &call.root)
            .env(
                "API_TIMEOUT_MS",
                api_timeout_ms(self.cfg.timeout_ms).to_string(),
            )
            .envs(LOCKDOWN_ENV.iter().copied());
        cmd.current_dir(call.work())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Spawns the CLI, feeds it the prompt, relays its output until it ends, the clock runs out
    /// or the client goes away; always leaves the process group killed and the CLI reaped.
    fn supervise(
        &self,
        cmd: &mut Command,
        prompt: Vec<u8>,
        started: Instant,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<(Transcript, ExitStatus), CliError> {
        let deadline = started + Duration::from_millis(self.cfg.timeout_ms);
        let mut child = cmd.spawn().map_err(|e| {
            CliError::Failed(format!(
                "cannot start the Claude Code CLI `{}` (cli.binary): {e}",
                self.cfg.binary
            ))
        })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            stop(&mut child);
            return Err(CliError::Failed("the CLI's pipes were not set up".into()));
        };
        // A thread, so a prompt larger than the pipe buffer cannot deadlock against stdout.
        // Dropping `stdin` at the end closes it: the CLI waits for EOF before it starts.
        std::thread::spawn(move || {
            stdin.write_all(&prompt).ok();
        });
        let lines = read_lines(stdout);
        let errs = read_tail(stderr);

        let mut transcript = Transcript::default();
        let mut end = End::Exited;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(Line::Text(line)) => {
                    for ev in transcript.feed(&line) {
                        if !on_event(&ev) {
                            end = End::ClientGone;
                            break;
                        }
                    }
                    if end == End::ClientGone {
                        break;
                    }
                }
                Ok(Line::TooLong) => {
                    end = End::TooLong;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    end = End::TimedOut;
                    break;
                }
            }
        }
        // stdout closed: give the CLI a moment to finish writing its config and exit.
        let exited =
            end == End::Exited && exits_within(&mut child, EXIT_GRACE.min(left_until(deadline)));
        // Kill the group in every case: the CLI itself if it is still running (timeout, client
        // gone, or it would not exit), and whatever it left behind. The CLI is not reaped yet
        // (a zombie at most), so the group id is still ours and cannot name a stranger.
        kill_group(child.id());
        if !exited {
            child.kill().ok();
        }
        let status = child
            .wait()
            .map_err(|e| CliError::Failed(format!("waiting for the CLI: {e}")))?;
        transcript.stderr = errs
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        match end {
            End::TimedOut => Err(CliError::Timeout),
            End::ClientGone => Err(CliError::Failed("client went away".into())),
            End::TooLong => Err(CliError::Failed(
                "the Claude Code CLI printed an oversized line".into(),
            )),
            End::Exited => Ok((transcript, status)),
        }
    }

    /// The 503 text for a host whose Claude Code is not logged in.
    fn how_to_log_in(&self) -> String {
        format!(
            "Claude Code on this host is not logged in. Log in as user `{}` with HOME={}: run \
             `claude` and then /login, or run `claude setup-token` and put the token in \
             cli.env.CLAUDE_CODE_OAUTH_TOKEN",
            current_user(),
            self.home().display()
        )
    }
}

/// One taken CLI slot; dropping it frees the slot (also on panic or early return).
struct Slot<'a>(&'a CliBackend);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut busy = lock(&self.0.busy);
        *busy = busy.saturating_sub(1);
        drop(busy);
        self.0.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CLI's arguments: the lock-down flags plus model and system prompt file. No prompt.
pub fn cli_args(model: &str, system_file: &Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = [
        "-p",
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
    let mut f = std::ffi::OsString::from("--system-prompt-file=");
    f.push(system_file);
    a.push(f);
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

// ---------------------------------------------------------------------------------------------
// The private call directory
// ---------------------------------------------------------------------------------------------

/// `<tmp>/claudegate-cli-<random>/` with `work/` (cwd) and `tmp/`; removed by [`CallDir::cleanup`]
/// or, failing that, on drop.
struct CallDir {
    root: PathBuf,
}

impl CallDir {
    fn create(home: &Path) -> std::io::Result<CallDir> {
        // The system temp dir, unless it lies inside cli.home (then the CLI's cwd would sit
        // under the home whose settings and CLAUDE.md files we keep out).
        let mut base = std::env::temp_dir();
        if base.starts_with(home) || !base.is_absolute() {
            base = PathBuf::from("/tmp");
        }
        let mut last = None;
        for _ in 0..8 {
            let salt = crate::base::ids::random::<8>().map_err(std::io::Error::other)?;
            let root = base.join(format!("claudegate-cli-{}", crate::base::ids::hex(&salt)));
            match std::fs::DirBuilder::new().mode(0o700).create(&root) {
                Ok(()) => {
                    let dir = CallDir { root };
                    for sub in [dir.work(), dir.tmp()] {
                        std::fs::DirBuilder::new().mode(0o700).create(sub)?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
    }

    fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn system_file(&self) -> PathBuf {
        self.root.join("system.txt")
    }

    /// Removes the directory and the per-project folder the CLI may keep for its cwd under
    /// `~/.claude/projects/` (named after the cwd, so it is ours alone).
    fn cleanup(&self, home: &Path) {
        let slug: String = self
            .work()
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let project = home.join(".claude/projects").join(slug);
        if project.is_dir() {
            std::fs::remove_dir_all(project).ok();
        }
        std::fs::remove_dir_all(&self.root).ok();
    }
}

impl Drop for CallDir {
    fn drop(&mut self) {
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root).ok();
        }
    }
}

/// Creates `path` (mode 0600) holding `bytes`.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

// ---------------------------------------------------------------------------------------------
// Child process plumbing
// ---------------------------------------------------------------------------------------------

enum Line {
    Text(String),
    TooLong,
}

/// How the read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// stdout closed (the CLI finished, or died).
    Exited,
    TimedOut,
    ClientGone,
    TooLong,
}

/// stdout, line by line, on a channel (so the caller can wait with a deadline).
fn read_lines(stdout: impl Read + Send + 'static) -> Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(64 * 1024, stdout);
        loop {
            let mut buf = Vec::new();
            match r.by_ref().take(MAX_LINE + 1).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if n as u64 > MAX_LINE => {
                    tx.send(Line::TooLong).ok();
                    break;
                }
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if tx.send(Line::Text(line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The last [`MAX_STDERR`] bytes of stderr, delivered once the pipe closes.
fn read_tail(stderr: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = stderr;
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > MAX_STDERR {
                        tail.drain(..tail.len() - MAX_STDERR);
                    }
                }
            }
        }
        tx.send(String::from_utf8_lossy(&tail).into_owned()).ok();
    });
    rx
}

fn left_until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Whether the child exits within `grace`, found without reaping it: its `/proc` state turns
/// `Z`. Where `/proc` is missing, `try_wait` (which reaps) is the fallback; then the group kill
/// that follows could only miss-hit if the pid counter wrapped around in between.
fn exits_within(child: &mut Child, grace: Duration) -> bool {
    let until = Instant::now() + grace;
    let stat = format!("/proc/{}/stat", child.id());
    loop {
        let exited = match std::fs::read_to_string(&stat) {
            // The state follows the `(command name)`, which may itself hold spaces or `)`.
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => matches!(child.try_wait(), Ok(Some(_))),
        };
        if exited {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills and reaps a child that never got going.
fn stop(child: &mut Child) {
    kill_group(child.id());
    child.kill().ok();
    child.wait().ok();
}

/// SIGKILL to process group `pgid` (one we created with `process_group(0)`), through the
/// shell's `kill` builtin: std has no killpg, and `/bin/sh` exists wherever the CLI can run
/// (it starts `sh` itself). A group that is already gone is fine.
fn kill_group(pgid: u32) {
    Command::new("/bin/sh")
        .args(["-c", "kill -9 -\"$1\"", "sh", &pgid.to_string()])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok();
}

/// The name of the user claudegate runs as (for the how-to-log-in message).
fn current_user() -> String {
    let uid = match std::fs::metadata("/proc/self") {
        Ok(m) => m.uid(),
        Err(_) => return std::env::var("USER").unwrap_or_else(|_| "?".into()),
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

// ---------------------------------------------------------------------------------------------
// Reading the CLI's output
// ---------------------------------------------------------------------------------------------

/// What the CLI printed, read line by line (pure: no I/O, unit-tested on canned lines).
#[derive(Default)]
struct Transcript {
    relay: Relay,
    /// `model` of the `system/init` line.
    init_model: Option<String>,
    /// The last real (non-synthetic) `assistant` message.
    assistant: Option<Value>,
    /// The `error` kind of a synthetic assistant message (`rate_limit`, `authentication_failed`…).
    error_kind: Option<String>,
    /// The final `result` line.
    result: Option<Value>,
    /// The tail of stderr (filled in after the CLI exits).
    stderr: String,
    /// Non-JSON stdout lines (usage errors and the like), last few only.
    noise: Vec<String>,
}

impl Transcript {
    /// Reads one stdout line; returns the stream events to pass on.
    fn feed(&mut self, line: &str) -> Vec<Event> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            if !line.trim().is_empty() {
                self.noise.push(line.chars().take(1000).collect());
                if self.noise.len() > 5 {
                    self.noise.remove(0);
                }
            }
            return Vec::new();
        };
        match v["type"].as_str() {
            Some("stream_event") => return self.relay.push(&v["event"]),
            Some("system") if v["subtype"] == "init" => {
                self.init_model = v["model"].as_str().map(String::from);
            }
            Some("assistant") => {
                let synthetic = v["message"]["model"] == "<synthetic>"
                    || v["is_api_error_message"] == true
                    || v.get("error").is_some_and(|e| !e.is_null());
                if synthetic {
                    self.error_kind = v["error"].as_str().map(String::from);
                } else {
                    self.add_assistant(&v["message"]);
                }
            }
            Some("result") => self.result = Some(v),
            _ => {}
        }
        Vec::new()
    }

    /// Keeps the final assistant message. The CLI prints one `assistant` line per content
    /// block (same message id, that block only), so blocks of the same message are appended.
    fn add_assistant(&mut self, message: &Value) {
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        match &mut self.assistant {
            Some(m) if m["id"] == message["id"] && !message["id"].is_null() => {
                if let Some(content) = m["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => self.assistant = Some(message.clone()),
        }
    }

    /// The real model id: from the stream, the assistant message, `modelUsage` or the init
    /// line, in that order; `[1m]`-style suffixes removed.
    fn model(&self, requested: &str) -> String {
        let usage_key = self.result.as_ref().and_then(|r| {
            r["modelUsage"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
        });
        let id = [
            self.relay.model.clone(),
            self.assistant
                .as_ref()
                .and_then(|m| m["model"].as_str().map(String::from)),
            usage_key,
            self.init_model.clone(),
        ]
        .into_iter()
        .flatten()
        .find(|m| !m.is_empty() && m != "<synthetic>")
        .unwrap_or_else(|| requested.to_string());
        match id.find('[') {
            Some(i) if id.ends_with(']') && i > 0 => id[..i].to_string(),
            _ => id,
        }
    }

    /// Turns the finished transcript into the answer or the error, completing the event stream
    /// when the CLI got its answer without streaming all of it.
    fn finish(
        self,
        status: ExitStatus,
        requested_model: &str,
        on_event: &mut dyn FnMut(&Event) -> bool,
        how_to_log_in: &str,
    ) -> Result<CliAnswer, CliError> {
        let status = status.code();
        let Some(result) = &self.result else {
            return Err(self.failure_without_result(status, how_to_log_in));
        };
        let text_of = |v: &Value| v.as_str().map(str::to_string);
        let detail = text_of(&result["result"])
            .or_else(|| {
                result["errors"].as_array().map(|e| {
                    e.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .unwrap_or_default();
        if result["is_error"] != false || status.is_some_and(|c| c != 0) {
            return Err(classify(
                self.error_kind.as_deref(),
                result["api_error_status"].as_u64(),
                result["subtype"].as_str().unwrap_or(""),
                &detail,
                how_to_log_in,
            ));
        }
        let mut usage = Usage::default();
        usage.merge(&result["usage"]);
        let model = self.model(requested_model);
        let text = match text_of(&result["result"]) {
            Some(t) => t,
            None => self
                .assistant
                .as_ref()
                .map(crate::anthropic::collector::text_of)
                .unwrap_or_default(),
        };
        let stop_reason = result["stop_reason"].as_str().unwrap_or("end_turn");
        let final_message = self.assistant.clone().unwrap_or_else(
            || json!({"content": [{"type": "text", "text": text}], "stop_reason": stop_reason}),
        );
        let mut relay = self.relay;
        for ev in relay.complete(&final_message, &model, usage, stop_reason)? {
            if !on_event(&ev) {
                return Err(CliError::Failed("client went away".into()));
            }
        }
        Ok(CliAnswer {
            model,
            text,
            usage,
            duration_ms: 0,
        })
    }

    /// The CLI ended without its `result` line: a crash, a usage error or a refused start.
    fn failure_without_result(&self, status: Option<i32>, how_to_log_in: &str) -> CliError {
        let said: Vec<&str> = self
            .noise
            .iter()
            .map(String::as_str)
            .chain(self.stderr.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let last = said.iter().rev().take(3).rev().cloned().collect::<Vec<_>>();
        let all = said.join("\n").to_lowercase();
        if all.contains("not logged in") || all.contains("/login") {
            return CliError::NotLoggedIn(how_to_log_in.to_string());
        }
        let code = status.map_or("no status".to_string(), |c| format!("status {c}"));
        let detail = short(&last.join(" | "));
        CliError::Failed(if detail.is_empty() {
            format!("the Claude Code CLI exited ({code}) without an answer")
        } else {
            format!("the Claude Code CLI exited ({code}) without an answer: {detail}")
        })
    }
}

/// Maps a failed `result` to an error. The CLI says `subtype: success` even for API errors,
/// so only `is_error`, the synthetic message's `error` kind, `api_error_status` and the text
/// count.
fn classify(
    kind: Option<&str>,
    api_status: Option<u64>,
    subtype: &str,
    detail: &str,
    how_to_log_in: &str,
) -> CliError {
    let lower = detail.to_lowercase();
    let said = short(detail);
    if kind == Some("rate_limit")
        || api_status == Some(429)
        || [
            "rate limit",
            "usage limit",
            "hit your limit",
            "limit reached",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        return CliError::RateLimited(format!("the upstream is limiting this account: {said}"));
    }
    if kind == Some("authentication_failed")
        || api_status == Some(401)
        || [
            "not logged in",
            "please run /login",
            "invalid api key",
            "oauth token has expired",
            "token has expired",
            "failed to authenticate",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        return CliError::NotLoggedIn(format!("{how_to_log_in} (the CLI said: {said})"));
    }
    if lower.contains("timed out") || kind == Some("timeout") {
        return CliError::Timeout;
    }
    if subtype == "error_max_turns" {
        return CliError::Failed(
            "the model asked to use a tool, but this backend runs Claude Code with every tool \
             turned off"
                .into(),
        );
    }
    if said.is_empty() {
        return CliError::Failed(format!("the Claude Code CLI failed ({subtype})"));
    }
    CliError::Failed(format!("the Claude Code CLI failed: {said}"))
}

/// Whether a content block type is a tool call of some kind (never passed on).
fn is_tool_block(kind: &str) -> bool {
    kind == "tool_use" || kind.ends_with("_tool_use")
}

/// Passes on the first message's stream events, minus tool blocks, and remembers what it
/// passed so the stream can be completed from the final answer.
#[derive(Default)]
struct Relay {
    started: bool,
    stopped: bool,
    /// A second `message_start` came (a retry after a broken stream): ignore the rest.
    ignoring: bool,
    model: Option<String>,
    /// Indices of tool blocks (dropped).
    skip: HashSet<u64>,
    /// Text streamed per block index, and whether that block was closed.
    blocks: BTreeMap<u64, (String, bool)>,
    /// A `message_delta` was passed on.
    delta_sent: bool,
}

impl Relay {
    fn push(&mut self, event: &Value) -> Vec<Event> {
        let name = event["type"].as_str().unwrap_or("").to_string();
        if self.ignoring || self.stopped {
            return Vec::new();
        }
        let index = event["index"].as_u64();
        match name.as_str() {
            "message_start" if self.started => {
                self.ignoring = true;
                return Vec::new();
            }
            "message_start" => {
                self.started = true;
                self.model = event["message"]["model"].as_str().map(String::from);
            }
            _ if !self.started => return Vec::new(),
            "content_block_start" => {
                let i = index.unwrap_or(0);
                let kind = event["content_block"]["type"].as_str().unwrap_or("");
                if is_tool_block(kind) {
                    self.skip.insert(i);
                    return Vec::new();
                }
                let text = event["content_block"]["text"].as_str().unwrap_or("");
                self.blocks.insert(i, (text.to_string(), false));
            }
            "content_block_delta" | "content_block_stop" => {
                let i = index.unwrap_or(0);
                if self.skip.contains(&i) {
                    return Vec::new();
                }
                if let Some((text, closed)) = self.blocks.get_mut(&i) {
                    if name == "content_block_stop" {
                        *closed = true;
                    } else if let Some(t) = event["delta"]["text"].as_str() {
                        text.push_str(t);
                    }
                }
            }
            "message_delta" => self.delta_sent = true,
            "message_stop" => self.stopped = true,
            // `ping` carries nothing; an `error` event is not the end: the CLI retries, and
            // the final result decides what the caller hears.
            _ => return Vec::new(),
        }
        vec![Event {
            name,
            data: event.clone(),
        }]
    }

    /// The events still missing for a complete stream of `message` (none when the CLI streamed
    /// everything). A streamed text that the final answer does not continue cannot be mended.
    fn complete(
        &mut self,
        message: &Value,
        model: &str,
        usage: Usage,
        stop_reason: &str,
    ) -> Result<Vec<Event>, CliError> {
        if self.stopped {
            return Ok(Vec::new());
        }
        let ev = |data: Value| Event {
            name: data["type"].as_str().unwrap_or("").to_string(),
            data,
        };
        let mut out = Vec::new();
        if !self.started {
            let id = message["id"].as_str().unwrap_or("msg_claude_cli");
            out.push(ev(json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": usage.input, "output_tokens": 0,
                          "cache_read_input_tokens": usage.cache_read,
                          "cache_creation_input_tokens": usage.cache_creation}}})));
        }
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        let broken = || CliError::Failed("the answer stream broke and could not be mended".into());
        for (i, block) in blocks.iter().enumerate() {
            let i = i as u64;
            let kind = block["type"].as_str().unwrap_or("");
            if is_tool_block(kind) || self.skip.contains(&i) {
                continue;
            }
            match self.blocks.get(&i) {
                Some((_, true)) => {}
                Some((_, false)) if kind != "text" => {
                    out.push(ev(json!({"type": "content_block_stop", "index": i})));
                }
                Some((streamed, false)) => {
                    let full = block["text"].as_str().ok_or_else(broken)?;
                    let rest = full.strip_prefix(streamed.as_str()).ok_or_else(broken)?;
                    if !rest.is_empty() {
                        out.push(ev(json!({"type": "content_block_delta", "index": i,
                            "delta": {"type": "text_delta", "text": rest}})));
                    }
                    out.push(ev(json!({"type": "content_block_stop", "index": i})));
                }
                None if kind == "text" => {
                    out.push(ev(json!({"type": "content_block_start", "index": i,
                        "content_block": {"type": "text", "text": ""}})));
                    out.push(ev(json!({"type": "content_block_delta", "index": i,
                        "delta": {"type": "text_delta", "text": block["text"]}})));
                    out.push(ev(json!({"type": "content_block_stop", "index": i})));
                }
                // Thinking and other blocks that never streamed: the answer is complete
                // without them, and their signatures cannot be replayed faithfully.
                None => {}
            }
        }
        if !self.delta_sent {
            out.push(ev(json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": usage.output}})));
        }
        out.push(ev(json!({"type": "message_stop"})));
        self.stopped = true;
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Keeping secrets out of error messages
// ---------------------------------------------------------------------------------------------

/// Redacted, single-line and at most [`MAX_DETAIL`] characters.
fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = crate::base::redact::redact(&one_line);
    if clean.chars().count() > MAX_DETAIL {
        let cut: String = clean.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

/// The integration tests' mock Anthropic upstream, reused by the real-CLI unit tests below.
#[cfg(test)]
#[path = "../../../tests/it/common/mock_upstream.rs"]
mod mock_upstream;

#[cfg(test)]
mod tests {
    //! Two harnesses: a fake `claude` (a shell script that records its argv, environment, cwd
    //! and stdin, then prints canned CLI output) for exact, fast checks of the plumbing; and
    //! the real Claude Code CLI installed by `make e2e-deps` against the mock upstream, for
    //! what the real CLI does with the lock-down. Security tests through the HTTP routes live
    //! in `tests/it/cli_backend.rs`.

    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

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
            env: BTreeMap::new(),
        }
    }

    fn req(prompt: &str) -> CliRequest {
        CliRequest {
            prompt: prompt.into(),
            system: None,
            model: None,
        }
    }

    /// Runs and collects the events.
    fn run(b: &CliBackend, r: &CliRequest) -> (Result<CliAnswer, CliError>, Vec<Event>) {
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
        let ev =
            |e: Value| json!({"type": "stream_event", "event": e, "session_id": "s"}).to_string();
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
        let b = CliBackend::new(cfg);
        let r = CliRequest {
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
        let expected: Vec<String> = [
            "-p",
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
            "opus",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([sys_arg.clone()])
        .collect();
        // printf drops empty args' content but keeps them: compare without the empties.
        let non_empty: Vec<&String> = expected.iter().filter(|s| !s.is_empty()).collect();
        assert_eq!(argv.iter().collect::<Vec<_>>(), non_empty, "argv");
        let raw = fake.recorded("argv");
        assert_eq!(raw.matches('\0').count(), expected.len(), "empty args kept");
        assert!(!raw.contains("please"), "the prompt is never in argv");
        assert!(!raw.contains("dangerously") && !raw.contains("bypass"));
        assert_eq!(fake.recorded("system"), "-sys\nline two", "system verbatim");
        assert_eq!(
            fake.recorded("stdin"),
            "--version please",
            "prompt on stdin"
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
            assert_eq!(fake.recorded("stdin"), sent);
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
                assert!(msg.contains(&fake.home.display().to_string()), "{msg}");
            }
        }
    }

    #[test]
    fn models_are_checked_before_anything_runs() {
        let fake = Fake::ok("x");
        let b = fake.backend();
        for m in ["-p", "--dangerously-skip-permissions", "gpt-4o", "Sonnet"] {
            let r = CliRequest {
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

    /// The state of process `pid` (`None` once gone; a zombie is as good as gone).
    fn alive(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
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

    // --- flatten_chat -----------------------------------------------------------------------

    // --- The real CLI -------------------------------------------------------------------------

    use super::mock_upstream::{sse_text_events, MockUpstream, Reply};

    /// The Claude Code CLI from `make e2e-deps`; `None` (with a loud note) when absent, unless
    /// `CLAUDEGATE_E2E_REQUIRED=1`.
    fn real_cli() -> Option<PathBuf> {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e/node/node_modules/.bin/claude");
        if p.is_file() {
            return Some(p);
        }
        if std::env::var("CLAUDEGATE_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("CLAUDEGATE_E2E_REQUIRED=1 but {} is missing", p.display());
        }
        std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "\n!!! SKIPPED: real Claude Code CLI missing ({})\n",
                p.display()
            )
            .as_bytes(),
        )
        .ok();
        None
    }

    /// A backend on the real CLI talking only to `mock` (other traffic goes to a dead proxy).
    fn real_backend(bin: &Path, home: &Path, mock: &MockUpstream) -> CliBackend {
        let mut cfg = config(bin, home);
        cfg.timeout_ms = 60_000;
        for (k, v) in [
            ("ANTHROPIC_BASE_URL", mock.url()),
            ("ANTHROPIC_AUTH_TOKEN", "cg-test-upstream-token".into()),
            ("HTTPS_PROXY", "http://127.0.0.1:9".into()),
            ("HTTP_PROXY", "http://127.0.0.1:9".into()),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
        ] {
            cfg.env.insert(k.into(), v);
        }
        CliBackend::new(cfg)
    }

    #[test]
    fn real_cli_answers_and_sends_only_the_prompt() {
        let Some(bin) = real_cli() else { return };
        let mock = MockUpstream::start();
        let dir = Tmp::new();
        let outside = Tmp::new();
        let secret = outside.0.join("secret.txt");
        std::fs::write(&secret, "CANARY-SECRET-7f3a").unwrap();
        mock.enqueue(
            "/v1/messages",
            Reply::sse(sse_text_events("claude-real-model-9", &["Hel", "lo!"])),
        );
        let b = real_backend(&bin, &dir.0, &mock);
        let r = CliRequest {
            prompt: format!("summarise @{} please", secret.display()),
            system: Some("SYSTEM-MARKER".into()),
            model: Some("haiku".into()),
        };
        let (out, events) = run(&b, &r);
        let a = out.unwrap();
        assert_eq!(a.text, "Hello!");
        assert_eq!(a.model, "claude-real-model-9");
        assert_eq!(events.first().unwrap().name, "message_start");
        assert_eq!(events.last().unwrap().name, "message_stop");
        // The events drive the OpenAI chat translator unchanged, streamed and collected.
        let mut chat = crate::openai::chat::ChatStream::new("id".into(), 0, "haiku".into(), true);
        let mut chunks: Vec<Value> = events.iter().flat_map(|e| chat.on_event(e)).collect();
        chunks.extend(chat.finish());
        let streamed: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(streamed, "Hello!");
        assert!(chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"));
        let mut c = crate::anthropic::collector::Collector::new();
        events.iter().for_each(|e| c.push(e));
        let done = crate::openai::chat::completion(&c.message(), "id", 0, "haiku");
        assert_eq!(done["choices"][0]["message"]["content"], "Hello!");

        let reqs = mock.requests_to("/v1/messages");
        assert_eq!(reqs.len(), 1);
        let body = reqs[0].json();
        assert_eq!(body["tools"], json!([]));
        let text = reqs[0].body_text();
        assert!(
            !text.contains("CANARY-SECRET"),
            "the @file was read: {text}"
        );
        assert!(text.contains("SYSTEM-MARKER"));
        assert!(
            !text.contains("You are an interactive agent"),
            "the agent prompt replaced"
        );
        assert!(
            !text.contains(&dir.0.display().to_string()),
            "home path sent"
        );
    }

    #[test]
    fn real_cli_sends_slash_commands_as_text() {
        let Some(bin) = real_cli() else { return };
        let mock = MockUpstream::start();
        let dir = Tmp::new();
        let b = real_backend(&bin, &dir.0, &mock);
        let a = run(&b, &req("/heapdump")).0.unwrap();
        assert!(!a.text.contains("isn't available"), "{}", a.text);
        let reqs = mock.requests_to("/v1/messages");
        assert_eq!(reqs.len(), 1, "the prompt went upstream as text");
        assert!(
            reqs[0].body_text().contains("\\u200b/heapdump")
                || reqs[0].body_text().contains("\u{200B}/heapdump")
        );
        let files: Vec<_> = walk(&dir.0);
        assert!(
            files.iter().all(|f| !f.contains("heapsnapshot")),
            "a heap dump was written: {files:?}"
        );
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.display().to_string());
                if p.is_dir() {
                    out.extend(walk(&p));
                }
            }
        }
        out
    }
}
