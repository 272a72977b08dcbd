//! The Claude Code CLI backend (`backend: "claude-cli"`): runs one locked-down `claude -p` per
//! request and reads its answer back as Anthropic stream events.
//!
//! This module owns everything between "a prompt, a system prompt and a model" and "the
//! answer"; each part is a private module whose doc says more:
//!
//! - `interface.rs`: the answer and the error with its HTTP status;
//! - `request.rs`: an Anthropic Messages request read for the CLI, and what it refuses;
//! - `session.rs`: the earlier turns as a session file for `--resume`;
//! - here: the backend, its concurrency slots, the model check and the models it learned;
//! - `lockdown.rs`: the argv, the environment and the prompt rewrite (the security spec of the
//!   lock-down is that module's doc);
//! - `bridge.rs`: client tools served to the CLI as a private MCP server (stage 2);
//! - `calldir.rs`: the throwaway private working directory;
//! - `process.rs`: the child process, its pipes, the wall-clock kill of its process group;
//! - `transcript.rs`: parsing the CLI's JSON lines into events, completing the stream and
//!   mapping its failures to HTTP statuses without leaking secrets;
//! - `probe.rs`: `claudegate doctor`'s `--version` and `auth status`, run the same way.

pub mod bridge;
mod calldir;
mod interface;
mod lockdown;
pub mod probe;
mod process;
mod request;
mod session;
mod transcript;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::anthropic::event::Event;
use serde_json::{json, Value};

use crate::backends::cli::calldir::CallDir;
use crate::backends::cli::request::CliRequest;
use crate::backends::cli::transcript::Transcript;
use crate::backends::{Answer, Completion};
use crate::base::error::ApiError;
use crate::base::sync::lock;
use crate::config::CliConfig;

pub use crate::backends::cli::interface::{CliAnswer, CliError};
pub use crate::backends::cli::lockdown::{
    cli_args, neutralise, prompt_line, tool_args, LOCKDOWN_ENV, NEUTRAL_SYSTEM,
};
pub use crate::backends::cli::process::end_all as end_all_calls;

/// Runs locked-down `claude -p` calls, at most `cli.max_concurrent` at a time.
pub struct CliBackend {
    cfg: CliConfig,
    /// CLI processes running now.
    busy: Mutex<u32>,
    /// Signalled whenever a slot frees up.
    freed: Condvar,
    /// The real model id behind each allowed model, as the CLI last reported it: the model
    /// of earlier assistant turns in a session file, so their thinking is kept (`session.rs`).
    learned: Mutex<BTreeMap<String, String>>,
}

impl CliBackend {
    pub fn new(cfg: CliConfig) -> CliBackend {
        CliBackend {
            cfg,
            busy: Mutex::new(0),
            freed: Condvar::new(),
            learned: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs one locked-down `claude -p` for a prompt (`/v1/complete`): one user turn through
    /// [`CliBackend::run_messages`].
    pub fn run(
        &self,
        req: &Completion,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        if req.prompt.trim().is_empty() {
            return Err(CliError::BadRequest("the prompt must not be empty".into()));
        }
        let body = json!({"model": req.model, "system": req.system,
            "messages": [{"role": "user", "content": req.prompt}]});
        self.run_messages(&body, on_event)
    }

    /// Runs one locked-down `claude -p` for an Anthropic Messages request `body` (what the
    /// CLI cannot honour is refused first, see `request.rs`). `on_event` receives each
    /// Anthropic stream event (the CLI's `stream_event` lines unwrapped) as it arrives;
    /// returning false means the client went away: the CLI is killed and the call fails with
    /// `Failed("client went away")`, as when the server sees the client hang up
    /// (`backends::abandon`) while the CLI is silent.
    ///
    /// The events form one Anthropic message stream (`message_start` … `message_stop`), ending
    /// with `message_stop` whenever the call succeeds: if the CLI fell back to a non-streaming
    /// request, the missing events are made up from its final answer. Tool-use blocks are
    /// never passed on (no tool exists here, so the upstream asking for one is an error).
    pub fn run_messages(
        &self,
        body: &Value,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        let req = request::read(body)?;
        self.run_request(&req, on_event)
    }

    fn run_request(
        &self,
        req: &CliRequest,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        let model = self.check_model(req.model.as_deref())?;
        let _slot = self.acquire()?;
        let started = Instant::now();
        let home = self.home();
        let call = CallDir::create(&home).map_err(|e| {
            CliError::Failed(format!("cannot create a private work directory: {e}"))
        })?;
        let system = req.system.as_deref().unwrap_or(NEUTRAL_SYSTEM);
        call.write_system_prompt(system)
            .map_err(|e| CliError::Failed(format!("cannot write the system prompt file: {e}")))?;
        let session = match req.history.is_empty() {
            true => None,
            false => {
                let id = crate::base::ids::uuid_v4();
                let cwd = call.work().to_string_lossy().into_owned();
                let lines =
                    session::session_lines(&id, &cwd, &self.real_model(&model), &req.history);
                call.write_session(&home, &id, &lines).map_err(|e| {
                    CliError::Failed(format!("cannot write the conversation's session file: {e}"))
                })?;
                Some(id)
            }
        };
        let mut cmd = lockdown::command(&self.cfg, &home, &model, &call, session.as_deref());
        let deadline = started + Duration::from_millis(self.cfg.timeout_ms);
        let mut transcript = Transcript::default();
        // Each line's events go to the client at once; the first it refuses ends the call.
        let outcome = process::supervise(
            &mut cmd,
            &self.cfg.binary,
            prompt_line(&req.prompt).into_bytes(),
            deadline,
            &mut |line| transcript.feed(line).iter().all(&mut *on_event),
            &crate::backends::abandon::client_gone,
        );
        call.cleanup(&home);
        // However the cut looked from here (the client "gone"), a stopping server's is its own.
        let stopping = crate::backends::abandon::stop_error().is_some();
        let exit = outcome.map_err(|e| if stopping { CliError::Stopping } else { e })?;
        let mut answer = transcript.finish(
            exit.status,
            &exit.stderr,
            &model,
            on_event,
            &self.how_to_log_in(),
        )?;
        answer.duration_ms = started.elapsed().as_millis() as u64;
        lock(&self.learned).insert(model, answer.model.clone());
        crate::observe::record::note_usage(answer.usage);
        Ok(answer)
    }

    /// The real model id behind `model` (an allowed alias or id), once a run reported it.
    fn real_model(&self, model: &str) -> String {
        lock(&self.learned)
            .get(model)
            .cloned()
            .unwrap_or_else(|| model.to_string())
    }

    /// `/v1/complete`: one run, its answer collected.
    pub fn complete(&self, req: &Completion) -> Result<Answer, ApiError> {
        let answer = self.run(req, &mut |_| true)?;
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

    /// The 503 text for a host whose Claude Code is not logged in. It says how, not who or
    /// where: the service user's name and home directory are the operator's business, and an
    /// API client has no use for them (the operator finds both in the config, `cli.home`).
    fn how_to_log_in(&self) -> String {
        "Claude Code on this host is not logged in. On the server, as the user claudegate \
         runs as and with HOME set to cli.home: run `claude` and then /login, or run `claude \
         setup-token` and put the token in cli.env.CLAUDE_CODE_OAUTH_TOKEN"
            .to_string()
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

#[cfg(test)]
mod tests;
