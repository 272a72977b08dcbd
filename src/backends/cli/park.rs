//! Parking (issue 16, stage 2): a CLI process whose answer ended in calls of the client's tools
//! stays alive, waiting on the bridge, until the client's next request brings the results.
//!
//! - A parked process keeps its `cli.max_concurrent` slot, its private call directory and its
//!   bridge connection ([`Live`]); it is listed in the [`Lot`] with the key that started it and
//!   the `tool_use` ids it waits on.
//! - Only a request from the **same key** carrying a `tool_result` for one of those ids takes
//!   it out ([`Lot::take`]); another key never sees it.
//! - Each parked process has a timer thread: after `cli.park_timeout_ms` it takes the process
//!   out of the lot (if no request did) and ends it, which frees the slot. So a client that
//!   never comes back holds the slot for the timeout at most. The timer waits on a channel
//!   whose sender the parked entry holds: when a request takes the process out (or it is
//!   ended otherwise), the sender drops and the thread ends at once, so timers of resumed
//!   processes do not pile up over the rounds of a conversation.
//! - A key may park `cli.max_parked_per_key` processes; parking one more ends its oldest.
//! - The lot remembers the last few processes it ended (key, tool ids, why), so a result that
//!   comes too late is told whether the timeout or the per-key limit ended its process.
//!
//! Taking a process out of the lot and the timer's end both happen under the lot's lock, so a
//! process is either resumed or ended, never both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backends::cli::bridge::{call_result, ToolCall, ToolNames, Writer};
use crate::backends::cli::calldir::CallDir;
use crate::backends::cli::interface::CliError;
use crate::backends::cli::process::Run;
use crate::base::sync::lock;

/// The CLI slots: how many are taken, and a signal when one frees up.
#[derive(Default)]
pub(super) struct Pool {
    /// CLI processes running (or parked) now.
    pub(super) busy: Mutex<u32>,
    pub(super) freed: Condvar,
}

/// One taken CLI slot; dropping it frees the slot (also on panic or early return). A parked
/// process keeps its slot.
pub(super) struct Slot(pub(super) Arc<Pool>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = lock(&self.0.busy);
        *busy = busy.saturating_sub(1);
        drop(busy);
        self.0.freed.notify_one();
    }
}

/// A running CLI with everything it holds: dropping it ends the CLI, removes the call
/// directory and frees the slot.
pub(super) struct Live {
    pub(super) run: Run,
    /// Dropped after `run` (fields drop in order): the directory goes once the CLI has ended.
    pub(super) _call: CallDir,
    /// The bridge's tool calls, as they arrive (none without tools).
    pub(super) calls: Option<Receiver<(ToolCall, Writer)>>,
    /// Calls that arrived but are not answered yet.
    pub(super) pending: Vec<(ToolCall, Writer)>,
    pub(super) _slot: Slot,
}

impl Live {
    /// Answers the bridge's call for `tool_use_id` with the client's result, waiting for the
    /// call until `until` (the CLI makes it right after printing the answer that asked).
    pub(super) fn answer(
        &mut self,
        tool_use_id: &str,
        content: &Value,
        is_error: bool,
        until: Instant,
    ) -> Result<(), CliError> {
        let lost = || CliError::Failed(format!("the CLI never made tool call `{tool_use_id}`"));
        loop {
            let found = self
                .pending
                .iter()
                .position(|(c, _)| c.tool_use_id.as_deref().is_none_or(|id| id == tool_use_id));
            if let Some(i) = found {
                let (call, writer) = self.pending.remove(i);
                return writer
                    .send(&call_result(&call.rpc_id, content, is_error))
                    .map_err(|e| CliError::Failed(format!("the bridge closed: {e}")));
            }
            let calls = self.calls.as_ref().ok_or_else(lost)?;
            let left = until.saturating_duration_since(Instant::now());
            match calls.recv_timeout(left) {
                Ok(c) => self.pending.push(c),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(lost())
                }
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.run.stop(); // then `_call` drops, removing the directory
    }
}

/// A parked process: who may resume it, what it waits on, and the process.
pub(super) struct Parked {
    /// Set by [`Lot::park`].
    pub(super) id: u64,
    /// The key that started it.
    pub(super) owner: String,
    /// The `tool_use` ids of the calls it waits on, in the answer's order.
    pub(super) tool_ids: Vec<String>,
    /// The allowed model it runs (as `--model` named it).
    pub(super) model: String,
    pub(super) names: ToolNames,
    pub(super) live: Live,
    /// Set by [`Lot::park`]: dropping it (with the entry) ends the timer thread at once.
    pub(super) timer: Option<Sender<()>>,
}

/// Why a parked process ended without being resumed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Ended {
    /// No request brought its results within `cli.park_timeout_ms`.
    TimedOut,
    /// Its key parked one more than `cli.max_parked_per_key`, and it was the oldest.
    Evicted,
}

/// An ended process as remembered: its owner, the tool ids it waited on, and why it ended.
type Gone = (String, Vec<String>, Ended);

/// How many ended processes the lot remembers (owner and tool ids), so a late result is told
/// why; a bounded list, the oldest forgotten first.
const REMEMBERED: usize = 64;

/// The parked processes.
#[derive(Default)]
pub(super) struct Lot {
    parked: Arc<Mutex<Vec<Parked>>>,
    /// The last id given to a parked process.
    next: AtomicU64,
    /// Recently ended ones: (owner, tool ids, why).
    ended: Arc<Mutex<Vec<Gone>>>,
}

/// Ends parked process `id` if no request took it meanwhile (outside the lock).
fn time_out(parked: &Mutex<Vec<Parked>>, ended: &Mutex<Vec<Gone>>, id: u64) {
    let expired = {
        let mut parked = lock(parked);
        parked
            .iter()
            .position(|p| p.id == id)
            .map(|i| parked.remove(i))
    };
    if let Some(p) = &expired {
        remember(ended, p, Ended::TimedOut);
    }
    drop(expired);
}

/// Notes that `p` ended for `why` (at most [`REMEMBERED`] kept).
fn remember(ended: &Mutex<Vec<Gone>>, p: &Parked, why: Ended) {
    let mut ended = lock(ended);
    if ended.len() >= REMEMBERED {
        ended.remove(0);
    }
    ended.push((p.owner.clone(), p.tool_ids.clone(), why));
}

impl Lot {
    /// Parks `p` for its owner until a request takes it or `timeout` passes; beyond
    /// `max_per_owner` of that owner's, the oldest is ended.
    pub(super) fn park(&self, mut p: Parked, max_per_owner: u32, timeout: Duration) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        p.id = id;
        let (tx, rx) = mpsc::channel::<()>();
        p.timer = Some(tx);
        let owner = p.owner.clone();
        let evicted = {
            let mut parked = lock(&self.parked);
            let mut evicted = Vec::new();
            while parked.iter().filter(|p| p.owner == owner).count() >= max_per_owner as usize {
                match parked.iter().position(|p| p.owner == owner) {
                    Some(i) => evicted.push(parked.remove(i)),
                    None => break,
                }
            }
            parked.push(p);
            evicted
        };
        for p in &evicted {
            remember(&self.ended, p, Ended::Evicted);
        }
        drop(evicted); // ended outside the lock
        let (lot, ended) = (self.parked.clone(), self.ended.clone());
        let timer = std::thread::Builder::new()
            .name("cli-park-timer".into())
            .spawn(move || {
                // Nothing is ever sent: the sender dropping (the process taken out or ended)
                // ends the wait at once; only a real timeout ends the process.
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                    time_out(&lot, &ended, id);
                }
            });
        if let Err(e) = timer {
            // No timer, no bound on how long it would be held: end it now (its late result is
            // told it timed out) rather than keep a slot and ~200 MB without a limit.
            crate::base::log::info(&format!(
                "cannot start a timer thread for a parked CLI call ({e}); ending it now"
            ));
            time_out(&self.parked, &self.ended, id);
        }
    }

    /// Takes out the process parked by `owner` that waits on any of `ids`.
    pub(super) fn take(&self, owner: &str, ids: &[&str]) -> Option<Parked> {
        let mut parked = lock(&self.parked);
        let i = parked.iter().position(|p| {
            p.owner == owner && ids.iter().any(|id| p.tool_ids.iter().any(|t| t == id))
        })?;
        Some(parked.remove(i))
    }

    /// Why the process parked by `owner` that waited on any of `ids` ended, if it did lately.
    pub(super) fn why_ended(&self, owner: &str, ids: &[&str]) -> Option<Ended> {
        lock(&self.ended)
            .iter()
            .rev()
            .find(|(o, t, _)| o == owner && ids.iter().any(|id| t.iter().any(|x| x == id)))
            .map(|(_, _, why)| *why)
    }
}
