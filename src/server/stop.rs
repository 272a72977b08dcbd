//! Stopping cleanly: everything from SIGTERM or SIGINT to the exit.
//!
//! `main` blocks both signals before any thread starts (`base::sys::block_stop_signals`), so
//! they are never delivered to a thread: they stay pending until the main thread, once the
//! server runs, takes them here ([`sys::wait_stop_signal`]). No handler code runs in signal
//! context, and PID 1 in a container gets them like any process. Then, in order:
//!
//! 1. **Drain.** The listener is closed (vendor patch 13), so a new connection is refused, and
//!    the intake answers every new request on an open keep-alive connection with 503,
//!    `Retry-After` and `Connection: close` (`intake::refuse_stopping`). The usage counters
//!    are saved at once, for a container runtime whose own stop timeout may kill us early.
//! 2. **Grace.** Requests in flight (running, or queued for a worker) and a token refresh under
//!    way get up to `shutdown_grace_ms` to finish; the stop moves on as soon as none is left.
//! 3. **Cut.** What still runs is abandoned with `Reason::Stopping` (`backends::abandon`, the
//!    machinery that ends the call of a client that left): its upstream socket is shut down,
//!    its `claude -p` killed, and its route ends it with a 503, or with an error event in its
//!    protocol if its stream had started, saying the server is shutting down. A request a
//!    worker takes from the queue from now on gets the 503 at once. The workers get
//!    [`AFTER_GRACE`] to write those answers.
//! 4. **Flush.** Every CLI process still running is killed, the usage counters are saved and
//!    the audit log is written out; the process exits 0.
//!
//! A second signal at any point skips to the flush and exits at once, with the code a shell
//! reports for a process that signal ended (128 + its number): the stop cut requests off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tiny_http::Server;

use crate::backends::abandon::{self, Reason};
use crate::base::log;
use crate::base::sys::{self, StopSignal};
use crate::routes::state::State;

/// Set from the first signal on: new requests are refused.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// Set when the grace is over: requests still queued for a worker are refused too.
static CUT: AtomicBool = AtomicBool::new(false);

/// How long the workers get, after the cut, to write the errors that end their requests
/// (their upstream sockets are shut, so they are quick) before the flush; with the flush's
/// own bounds the process exits within a second of the grace's end.
const AFTER_GRACE: Duration = Duration::from_millis(500);
/// How long closing the listening socket may take.
const CLOSE_LISTENER: Duration = Duration::from_millis(500);
/// How long writing out the last audit lines may take.
const AUDIT_FLUSH: Duration = Duration::from_millis(300);
/// How often the stop looks whether the work in flight is done (between looks it waits for a
/// second signal).
const TICK: Duration = Duration::from_millis(20);

/// Whether the server is stopping: the intake refuses new requests.
pub(super) fn draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}

/// Whether the shutdown grace is over: workers refuse what they take from the queue.
pub(super) fn cut() -> bool {
    CUT.load(Ordering::Acquire)
}

/// Waits for SIGTERM or SIGINT, then stops as the module doc says. Returns once the server
/// has stopped cleanly (the caller exits 0); a second signal exits the process from here.
pub(super) fn serve_until_signalled(state: &State, server: &Server) -> Result<(), String> {
    let first = loop {
        if let Some(signal) = sys::wait_stop_signal(Duration::from_secs(3600)) {
            break signal;
        }
    };
    let signalled = Instant::now();
    DRAINING.store(true, Ordering::SeqCst);
    let grace = Duration::from_millis(state.config.shutdown_grace_ms);
    log::info(&format!(
        "{} received: stopping. No new requests are taken; the {} in flight get up to {} ms \
         (shutdown_grace_ms) to finish. A second signal stops at once",
        first.name(),
        in_flight(state),
        grace.as_millis()
    ));
    if !server.stop_accepting(CLOSE_LISTENER) {
        log::error("the listening socket did not close in time; new connections get 503");
    }
    state.limits.persist_if_dirty();

    if let Some(second) = wait_for_idle(state, signalled + grace) {
        forced(state, second);
    }
    let left = in_flight(state);
    if left > 0 {
        CUT.store(true, Ordering::Release);
        abandon::abandon_all(Reason::Stopping);
        log::info(&format!(
            "the shutdown grace is over: ending the {left} requests still in flight with an \
             error saying the server is shutting down"
        ));
        if let Some(second) = wait_for_idle(state, Instant::now() + AFTER_GRACE) {
            forced(state, second);
        }
    }
    let unanswered = in_flight(state);
    flush(state);
    if unanswered > 0 {
        log::info(&format!(
            "stopped; {unanswered} requests were still writing their answers and are cut off"
        ));
    } else {
        log::info("stopped");
    }
    Ok(())
}

/// Requests taken in and not finished: queued for a worker or running.
fn in_flight(state: &State) -> usize {
    state.jobs.load(Ordering::SeqCst)
}

/// Waits until nothing is in flight (requests, or a token refresh that must save what it got)
/// or `until` passes. Returns a second signal that came meanwhile.
fn wait_for_idle(state: &State, until: Instant) -> Option<StopSignal> {
    while in_flight(state) > 0 || state.oauth.account.refreshing() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(signal) = sys::wait_stop_signal(left.min(TICK)) {
            return Some(signal);
        }
    }
    None
}

/// What must outlive the process: no CLI process left behind, the counters, the audit lines.
fn flush(state: &State) {
    let killed = crate::backends::cli::end_all_calls();
    if killed > 0 {
        log::info(&format!(
            "ended the processes of {killed} Claude Code CLI calls"
        ));
    }
    state.limits.persist_if_dirty();
    if !state.audit.flush(AUDIT_FLUSH) {
        log::error("the audit log could not be written out in time; its last lines may be lost");
    }
}

/// A second signal: cut everything off, flush what can be flushed, exit at once.
fn forced(state: &State, signal: StopSignal) -> ! {
    log::info(&format!(
        "{} received again: stopping at once; the {} requests in flight are cut off",
        signal.name(),
        in_flight(state)
    ));
    abandon::abandon_all(Reason::Stopping);
    flush(state);
    std::process::exit(128 + signal.number())
}
