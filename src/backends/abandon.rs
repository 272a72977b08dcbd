//! Abandoned calls: the link between the backend call a worker is making for a client and the
//! thread that notices the client has hung up (`server::watch`).
//!
//! Nothing is written to a client while the upstream is silent (or on any non-streaming path
//! until the end), so a failed write cannot be what tells us it left. Instead the server
//! [`start`]s a [`Call`] around every request that reaches a backend and has the watcher poll
//! the client's socket. The call lives in a thread-local of the worker, like the request's
//! record (`observe::record`), so no backend signature carries it:
//!
//! - the upstream transport (`backends::upstream`) registers the socket each read or write
//!   uses ([`use_socket`]), pooled connections included, and releases it when the connection
//!   goes back to the pool ([`release_socket`]);
//! - the CLI backend asks [`client_gone`] while `claude -p` prints nothing;
//! - retries wait with [`pause`], which an abandonment cuts short.
//!
//! When the client hangs up, the watcher calls [`Call::abandon`]: the upstream socket is shut
//! down, so a read blocked on it fails at once (a blocked ureq read cannot be cancelled
//! otherwise), and the flag stops the CLI and the retries.
//!
//! The server abandons every call the same way when it stops and its shutdown grace has
//! passed ([`abandon_all`], driven by `server::stop`), with [`Reason::Stopping`]: the routes
//! then end each request with that error in the caller's protocol ([`stop_error`]) instead
//! of the broken-upstream error the cut would otherwise look like.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::ShutdownHandle;

use crate::base::error::{ApiError, ErrorKind};
use crate::base::sync::lock;

/// Why a call was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Its client hung up: no one is left to answer.
    ClientLeft,
    /// The server is stopping and the call outlasted the shutdown grace.
    Stopping,
}

/// The error an abandoned call ends its request with, in the caller's protocol. For a client
/// that left no one reads it (it closes the request's record); for a stop it is what the
/// client sees: a 503 to retry (a stream that had started gets it as its last event).
impl From<Reason> for ApiError {
    fn from(reason: Reason) -> ApiError {
        match reason {
            Reason::ClientLeft => ApiError::new(
                ErrorKind::BadGateway,
                "the client went away; its upstream call was closed",
            ),
            Reason::Stopping => ApiError::new(
                ErrorKind::Busy,
                "claudegate is shutting down and cut this request off at the end of its                  shutdown grace (shutdown_grace_ms); the answer is incomplete: retry it",
            )
            .retry_after(1),
        }
    }
}

/// The backend call made for one request, shared by its worker and the watcher.
#[derive(Default)]
pub struct Call {
    state: Mutex<State>,
    /// Wakes a [`pause`] when the call is abandoned.
    abandoned: Condvar,
}

#[derive(Default)]
struct State {
    /// Why the call was abandoned, once it is.
    gone: Option<Reason>,
    /// The request is done: nothing is left to cancel.
    ended: bool,
    /// The socket of the upstream connection the call is using, if any.
    upstream: Option<Weak<dyn ShutdownHandle>>,
}

impl Call {
    /// The client hung up: [`Call::abandon_for`] with [`Reason::ClientLeft`].
    pub fn abandon(&self) {
        self.abandon_for(Reason::ClientLeft);
    }

    /// Shuts the upstream socket down (a blocked read or write on it fails at once) and raises
    /// the flag the CLI backend and retries look at. Does nothing once the request is done, so
    /// a late abandonment cannot touch a connection another request now uses, nor once the
    /// call was abandoned already (the first reason stays).
    pub fn abandon_for(&self, reason: Reason) {
        let upstream = {
            let mut s = lock(&self.state);
            if s.ended || s.gone.is_some() {
                return;
            }
            s.gone = Some(reason);
            s.upstream.take()
        };
        self.abandoned.notify_all();
        if let Some(socket) = upstream.and_then(|w| w.upgrade()) {
            socket.shutdown();
        }
    }

    /// Whether the call was abandoned, for any reason.
    pub fn is_abandoned(&self) -> bool {
        lock(&self.state).gone.is_some()
    }

    /// Why the call was abandoned, if it was.
    pub fn reason(&self) -> Option<Reason> {
        lock(&self.state).gone
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Call>>> = const { RefCell::new(None) };
}

/// Every call in progress (at most one per worker), so a stopping server can abandon them
/// all; and, once it has, the reason every call started later is abandoned with at once.
struct Live {
    calls: Vec<Weak<Call>>,
    all_gone: Option<Reason>,
}

type Registry = Mutex<Live>;

/// The server's calls. (Tests use registries of their own: abandoning every call of this one
/// would end the calls of every other test in the process.)
static LIVE: Registry = Mutex::new(Live {
    calls: Vec::new(),
    all_gone: None,
});

/// This thread's call, from [`start`] until the guard is dropped.
pub struct Started {
    call: Arc<Call>,
    registry: &'static Registry,
}

impl Started {
    /// The call, for the watcher.
    pub fn call(&self) -> Arc<Call> {
        self.call.clone()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
        {
            let mut s = lock(&self.call.state);
            s.ended = true;
            s.upstream = None;
        }
        let me = Arc::downgrade(&self.call);
        lock(self.registry).calls.retain(|c| !Weak::ptr_eq(c, &me));
    }
}

/// Starts a call on this thread (replacing any leftover one); it ends when the guard drops.
/// After [`abandon_all`] the call starts abandoned.
pub fn start() -> Started {
    start_in(&LIVE)
}

fn start_in(registry: &'static Registry) -> Started {
    let call = Arc::new(Call::default());
    {
        // Registered and checked under one lock: `abandon_all` either sees this call or has
        // already left its reason for it.
        let mut live = lock(registry);
        match live.all_gone {
            Some(reason) => call.abandon_for(reason),
            None => live.calls.push(Arc::downgrade(&call)),
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = Some(call.clone()));
    Started { call, registry }
}

/// Abandons every call in progress, and every call started from now on, with `reason`.
/// Returns how many were in progress.
pub fn abandon_all(reason: Reason) -> usize {
    abandon_all_in(&LIVE, reason)
}

fn abandon_all_in(registry: &Registry, reason: Reason) -> usize {
    let calls: Vec<Arc<Call>> = {
        let mut live = lock(registry);
        live.all_gone = Some(reason);
        live.calls.iter().filter_map(Weak::upgrade).collect()
    };
    // Outside the lock: a call that ends meanwhile ignores it (see `abandon_for`).
    for call in &calls {
        call.abandon_for(reason);
    }
    calls.len()
}

fn with_current<T>(f: impl FnOnce(&Call) -> T) -> Option<T> {
    CURRENT.with(|c| c.borrow().as_deref().map(f))
}

/// Whether this thread's call was abandoned: its client hung up, or the server is stopping.
/// Either way there is nothing left to wait for.
pub fn client_gone() -> bool {
    with_current(Call::is_abandoned).unwrap_or(false)
}

/// Why this thread's call was abandoned, if it was.
pub fn reason() -> Option<Reason> {
    with_current(Call::reason).flatten()
}

/// The error to end this thread's request with when the server cut its call off because it
/// is stopping (whatever the cut looked like below: a broken stream, a failed read); `None`
/// otherwise.
pub fn stop_error() -> Option<ApiError> {
    (reason() == Some(Reason::Stopping)).then(|| Reason::Stopping.into())
}

/// The error to end this thread's request with once its call was abandoned.
pub fn abandoned_error() -> ApiError {
    reason().unwrap_or(Reason::ClientLeft).into()
}

/// Waits `d`, or less if this thread's call is abandoned meanwhile. Returns whether the
/// client is still there.
pub fn pause(d: Duration) -> bool {
    let call = CURRENT.with(|c| c.borrow().clone());
    let Some(call) = call else {
        std::thread::sleep(d);
        return true;
    };
    let until = Instant::now() + d;
    let mut s = lock(&call.state);
    while s.gone.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s = call
            .abandoned
            .wait_timeout(s, left)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    s.gone.is_none()
}

/// The upstream transport is about to read or write `socket` for this thread's call: if the
/// client hangs up, that is the socket to shut down. If it already has, the socket is shut
/// down now, so a call abandoned between two reads (or before a retry connects) cannot start
/// waiting again.
pub fn use_socket(socket: &Weak<dyn ShutdownHandle>) {
    let shut_now = with_current(|call| {
        let mut s = lock(&call.state);
        if s.ended {
            return false;
        }
        if !s.upstream.as_ref().is_some_and(|u| Weak::ptr_eq(u, socket)) && s.gone.is_none() {
            s.upstream = Some(socket.clone());
        }
        s.gone.is_some()
    });
    if shut_now == Some(true) {
        if let Some(socket) = socket.upgrade() {
            socket.shutdown();
        }
    }
}

/// The connection of `socket` goes back to the pool (or is checked before reuse): it is no
/// longer this thread's call's to shut down.
pub fn release_socket(socket: &Weak<dyn ShutdownHandle>) {
    with_current(|call| {
        let mut s = lock(&call.state);
        if s.upstream.as_ref().is_some_and(|u| Weak::ptr_eq(u, socket)) {
            s.upstream = None;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// A connected pair: (our end, shared as ureq's transport shares it; the peer).
    fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (Arc::new(ours), peer)
    }

    fn weak(s: &Arc<TcpStream>) -> Weak<dyn ShutdownHandle> {
        Arc::downgrade(s) as Weak<dyn ShutdownHandle>
    }

    #[test]
    fn abandoning_ends_a_blocked_read_on_the_registered_socket() {
        let (ours, _peer) = pair();
        let started = start();
        use_socket(&weak(&ours));
        let call = started.call();
        let t = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            call.abandon();
        });
        let mut buf = [0u8; 1];
        // Without the shutdown this read would wait for the peer forever.
        let n = (&*ours).read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(client_gone());
    }

    #[test]
    fn a_socket_used_after_the_abandonment_is_shut_at_once() {
        let (ours, _peer) = pair();
        let started = start();
        started.call().abandon();
        use_socket(&weak(&ours));
        let mut buf = [0u8; 1];
        assert_eq!((&*ours).read(&mut buf).unwrap_or(0), 0);
    }

    #[test]
    fn a_released_or_finished_call_leaves_the_socket_alone() {
        let (ours, mut peer) = pair();
        let started = start();
        use_socket(&weak(&ours));
        release_socket(&weak(&ours));
        started.call().abandon();
        let call = started.call();
        drop(started);
        assert!(!client_gone(), "no call on this thread any more");
        call.abandon();
        use_socket(&weak(&ours)); // no call: nothing happens
        std::io::Write::write_all(&mut peer, b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            (&*ours).read(&mut buf).unwrap(),
            1,
            "the socket still works"
        );
    }

    #[test]
    fn abandoning_all_ends_every_call_and_those_started_later_with_the_reason() {
        static OWN: Registry = Mutex::new(Live {
            calls: Vec::new(),
            all_gone: None,
        });
        let (ours, _peer) = pair();
        let running = start_in(&OWN);
        use_socket(&weak(&ours));
        let elsewhere = std::thread::spawn(|| {
            let done = start_in(&OWN);
            drop(done); // ended: no longer in progress
        });
        elsewhere.join().unwrap();
        assert_eq!(stop_error().map(|e| e.kind), None);
        assert_eq!(abandon_all_in(&OWN, Reason::Stopping), 1);
        assert_eq!(reason(), Some(Reason::Stopping));
        let mut buf = [0u8; 1];
        assert_eq!(
            (&*ours).read(&mut buf).unwrap_or(0),
            0,
            "the socket was shut"
        );
        let err = stop_error().expect("a stop error");
        assert_eq!((err.status(), err.retry_after), (503, Some(1)));
        assert!(err.message.contains("shutting down"), "{}", err.message);
        // A client that leaves now does not change why the call ended.
        running.call().abandon();
        assert_eq!(reason(), Some(Reason::Stopping));
        drop(running);
        let late = start_in(&OWN);
        assert!(late.call().is_abandoned() && !pause(Duration::from_secs(5)));
        assert_eq!(abandoned_error().status(), 503);
    }

    #[test]
    fn a_pause_ends_early_when_the_call_is_abandoned() {
        let started = start();
        let call = started.call();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            call.abandon();
        });
        let t = Instant::now();
        assert!(!pause(Duration::from_secs(20)));
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(started);
        assert!(pause(Duration::from_millis(1)), "no call: a plain sleep");
    }
}
