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
//! - `park.rs`: a CLI process waiting on its client's tool results between two requests;
//! - `calldir.rs`: the throwaway private working directory;
//! - `process.rs`: the child process, its pipes, the wall-clock kill of its process group;
//! - `transcript.rs`: parsing the CLI's JSON lines into events, completing the stream and
//!   mapping its failures to HTTP statuses without leaking secrets;
//! - `probe.rs`: `claudegate doctor`'s `--version` and `auth status`, run the same way.

pub mod bridge;
mod calldir;
mod interface;
mod lockdown;
mod park;
pub mod probe;
mod process;
mod request;
mod session;
mod transcript;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::anthropic::event::Event;
use serde_json::{json, Value};

use crate::backends::cli::bridge::{Bridge, Catalogue};
use crate::backends::cli::calldir::CallDir;
use crate::backends::cli::park::{Ended, Live, Lot, Parked, Pool, Slot};
use crate::backends::cli::process::{Flow, Pumped, Run};
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
    /// The concurrency slots (shared with parked processes, which keep theirs).
    pool: Arc<Pool>,
    /// CLI processes waiting on their client's tool results (`park.rs`).
    lot: Lot,
    /// The real model id behind each allowed model, as the CLI last reported it: the model
    /// of earlier assistant turns in a session file, so their thinking is kept (`session.rs`).
    learned: Mutex<BTreeMap<String, String>>,
}

impl CliBackend {
    pub fn new(cfg: CliConfig) -> CliBackend {
        CliBackend {
            cfg,
            pool: Arc::new(Pool::default()),
            lot: Lot::default(),
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
        self.run_messages(&body, "", on_event)
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
    /// passed on only when they call the request's own tools (through the bridge, under the
    /// client's tool names); such an answer ends with `stop_reason: tool_use` and the CLI is
    /// parked for `owner` (the caller's key) until a request of the same owner brings the
    /// results (`park.rs`), whose continued answer it then is.
    pub fn run_messages(
        &self,
        body: &Value,
        owner: &str,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        let req = request::read(body)?;
        if !req.results.is_empty() {
            return self.resume(&req, owner, on_event);
        }
        self.run_request(&req, owner, on_event)
    }

    fn run_request(
        &self,
        req: &CliRequest,
        owner: &str,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        let model = self.check_model(req.model.as_deref())?;
        let slot = self.acquire()?;
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
                call.write_session(&id, &lines).map_err(|e| {
                    CliError::Failed(format!("cannot write the conversation's session file: {e}"))
                })?;
                Some(id)
            }
        };
        let marker = process::new_marker()?;
        let deadline = started + Duration::from_millis(self.cfg.timeout_ms);
        let (calls, tools) = match &req.tools {
            Some(cat) => {
                let (calls, file) = serve_tools(&call, cat, &marker, deadline)?;
                (Some(calls), Some((file, cat.names.allowed())))
            }
            None => (None, None),
        };
        let tools = tools.as_ref().map(|(f, a)| (f.as_path(), a.as_slice()));
        let mut cmd = lockdown::command(
            &self.cfg,
            &home,
            &model,
            &call,
            session.as_deref(),
            tools,
            &req.thinking,
        );
        // On any early return the call directory goes on drop, with the session file.
        let run = Run::start(
            &mut cmd,
            &self.cfg.binary,
            prompt_line(&req.prompt).into_bytes(),
            &marker,
        )?;
        let live = Live {
            run,
            _call: call,
            calls,
            pending: Vec::new(),
            _slot: slot,
        };
        self.drive(live, model, req.names.clone(), owner, started, on_event)
    }

    /// Reads the CLI's answer (in `live`) to the client until the CLI ends, or until the answer
    /// ends in calls of the client's tools: then the CLI is parked for `owner`.
    fn drive(
        &self,
        mut live: Live,
        model: String,
        names: crate::backends::cli::bridge::ToolNames,
        owner: &str,
        started: Instant,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.timeout_ms);
        let mut transcript = Transcript::with_tools(names.clone());
        // Each line's events go to the client at once; the first it refuses ends the call.
        let (calls, pending) = (&live.calls, &mut live.pending);
        let mut failed = None;
        let outcome = live.run.pump(
            deadline,
            &mut |line| {
                let events = match line {
                    Some(line) => transcript.feed(line),
                    // Silence after tool calls that came only in `assistant` lines (the CLI's
                    // non-streaming fallback): once the CLI calls the bridge it has printed
                    // the whole answer and waits, so the answer ends at those calls.
                    None if transcript.has_unstreamed_calls() && bridge_called(calls, pending) => {
                        match transcript.end_at_unstreamed_calls(&model) {
                            Ok(events) => events,
                            Err(e) => {
                                failed = Some(e);
                                return Flow::Gone;
                            }
                        }
                    }
                    None => return Flow::Go,
                };
                if !events.iter().all(&mut *on_event) {
                    Flow::Gone
                } else if transcript.ends_in_tool_calls() {
                    Flow::Done
                } else {
                    Flow::Go
                }
            },
            &crate::backends::abandon::client_gone,
        );
        if let Some(e) = failed {
            return Err(e);
        }
        // However the cut looked from here (the client "gone"), a stopping server's is its own.
        let stopping = crate::backends::abandon::stop_error().is_some();
        let outcome = outcome.map_err(|e| if stopping { CliError::Stopping } else { e });
        let exit = match outcome {
            Ok(Pumped::Exited(exit)) => exit,
            Ok(Pumped::Paused) => {
                let mut answer = transcript.tool_answer(&model);
                answer.duration_ms = started.elapsed().as_millis() as u64;
                lock(&self.learned).insert(model.clone(), answer.model.clone());
                crate::observe::record::note_usage(answer.usage);
                let parked = Parked {
                    id: 0,
                    owner: owner.to_string(),
                    tool_ids: transcript.tool_ids(),
                    model,
                    names,
                    live,
                    timer: None,
                };
                let timeout = Duration::from_millis(self.cfg.park_timeout_ms);
                self.lot.park(parked, self.cfg.max_parked_per_key, timeout);
                return Ok(answer);
            }
            Err(e) => return Err(e),
        };
        drop(live); // the CLI has ended: its directory goes, its slot frees
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

    /// A request whose last turn carries `tool_result`s: it continues the CLI process parked
    /// for the same owner that waits on them, whose next answer becomes this request's.
    fn resume(
        &self,
        req: &CliRequest,
        owner: &str,
        on_event: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<CliAnswer, CliError> {
        let started = Instant::now();
        let ids: Vec<&str> = req
            .results
            .iter()
            .filter_map(|r| r["tool_use_id"].as_str())
            .collect();
        let Some(Parked {
            tool_ids,
            model,
            names,
            mut live,
            ..
        }) = self.lot.take(owner, &ids)
        else {
            let shown: String = ids.first().unwrap_or(&"").chars().take(100).collect();
            let why = match self.lot.why_ended(owner, &ids) {
                Some(Ended::TimedOut) => format!(
                    "the Claude Code process that made tool call `{shown}` was ended: no result \
                     came within cli.park_timeout_ms ({} ms)",
                    self.cfg.park_timeout_ms
                ),
                Some(Ended::Evicted) => format!(
                    "the Claude Code process that made tool call `{shown}` was ended: this key \
                     parked more than cli.max_parked_per_key ({}) processes waiting on tool \
                     results, and it was the oldest",
                    self.cfg.max_parked_per_key
                ),
                None => format!(
                    "no Claude Code process is waiting for the result of tool call `{shown}`: \
                     on the claude-cli backend a tool result continues the process that made \
                     the call, which waits cli.park_timeout_ms for it, and only for the key \
                     that started it"
                ),
            };
            return Err(CliError::Refused {
                param: "messages".into(),
                message: format!("{why}. Start the conversation's tool round again"),
            });
        };
        // Text the client sent beside its results joins the last result (the CLI takes no
        // user text in the middle of a turn).
        let extra: Vec<Value> = req
            .prompt
            .iter()
            .filter(|b| {
                b["type"] == "text" && b["text"].as_str().is_some_and(|t| !t.trim().is_empty())
            })
            .cloned()
            .collect();
        let until = Instant::now() + Duration::from_secs(10);
        for (n, id) in tool_ids.iter().enumerate() {
            let result = req.results.iter().find(|r| r["tool_use_id"] == id.as_str());
            let mut content = match result.map(|r| &r["content"]) {
                Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
                Some(Value::Array(blocks)) => blocks.clone(),
                Some(_) => Vec::new(),
                None => vec![json!({"type": "text",
                    "text": "the client sent no result for this tool call"})],
            };
            if n + 1 == tool_ids.len() {
                content.extend(extra.iter().cloned());
            }
            let is_error = result.is_none_or(|r| r["is_error"] == true);
            live.answer(id, &Value::Array(content), is_error, until)?;
        }
        self.drive(live, model, names, owner, started, on_event)
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
    fn acquire(&self) -> Result<Slot, CliError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.queue_wait_ms);
        let pool = &self.pool;
        let mut busy = lock(&pool.busy);
        while *busy >= self.cfg.max_concurrent {
            let now = Instant::now();
            if now >= deadline {
                return Err(CliError::Busy {
                    retry_after: self.cfg.queue_wait_ms.div_ceil(1000).clamp(1, 60),
                });
            }
            busy = pool
                .freed
                .wait_timeout(busy, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *busy += 1;
        Ok(Slot(self.pool.clone()))
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

/// Whether the CLI has made a tool call through the bridge (received calls are kept in
/// `pending`, where [`Live::answer`] finds them).
fn bridge_called(
    calls: &Option<mpsc::Receiver<(bridge::ToolCall, bridge::Writer)>>,
    pending: &mut Vec<(bridge::ToolCall, bridge::Writer)>,
) -> bool {
    if let Some(calls) = calls {
        pending.extend(calls.try_iter());
    }
    !pending.is_empty()
}

/// Serves the request's tools to this call's CLI: the bridge's socket in the call directory,
/// the `--mcp-config` file naming it (with the call's `marker`), and a thread that accepts the
/// bridge (only a peer carrying the marker) until `deadline`, or until the call ends first
/// (its directory, with the socket, removed), and hands each tool call on. Returns the calls' channel and the config file's path.
fn serve_tools(
    call: &CallDir,
    cat: &Catalogue,
    marker: &str,
    deadline: Instant,
) -> Result<(mpsc::Receiver<(bridge::ToolCall, bridge::Writer)>, PathBuf), CliError> {
    let failed = |what: &str, e: std::io::Error| CliError::Failed(format!("{what}: {e}"));
    let listener =
        Bridge::listen(&call.root).map_err(|e| failed("cannot open the tool bridge", e))?;
    let exe = std::env::current_exe().map_err(|e| failed("cannot find claudegate itself", e))?;
    let file = call.root.join("mcp.json");
    let config = bridge::mcp_config(&exe, &listener.path, marker).to_string();
    crate::base::fsutil::write_private(&file, config.as_bytes())
        .map_err(|e| failed("cannot write the tool bridge's configuration", e))?;
    let (tx, rx) = mpsc::channel();
    let (cat, marker) = (cat.clone(), marker.to_string());
    std::thread::spawn(move || {
        let peer_ok = |pid: u32| process::carries_marker(pid, &marker);
        if let Some(stream) = listener.accept(deadline, &peer_ok) {
            drop(listener);
            bridge::serve(stream, &cat, &mut |c, w| {
                tx.send((c, w)).ok();
            });
        }
    });
    Ok((rx, file))
}

#[cfg(test)]
mod tests;
