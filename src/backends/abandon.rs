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

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::transport::ShutdownHandle;

use crate::base::sync::lock;

/// The backend call made for one request, shared by its worker and the watcher.
#[derive(Default)]
pub struct Call {
    state: Mutex<State>,
    /// Wakes a [`pause`] when the call is abandoned.
    abandoned: Condvar,
}

#[derive(Default)]
struct State {
    /// The client hung up.
    gone: bool,
    /// The request is done: nothing is left to cancel.
    ended: bool,
    /// The socket of the upstream connection the call is using, if any.
    upstream: Option<Weak<dyn ShutdownHandle>>,
}

impl Call {
    /// The client hung up: shuts the upstream socket down (a blocked read or write on it
    /// fails at once) and raises the flag the CLI backend and retries look at. Does nothing
    /// once the request is done, so a late abandonment cannot touch a connection another
    /// request now uses.
    pub fn abandon(&self) {
        let upstream = {
            let mut s = lock(&self.state);
            if s.ended || s.gone {
                return;
            }
            s.gone = true;
            s.upstream.take()
        };
        self.abandoned.notify_all();
        if let Some(socket) = upstream.and_then(|w| w.upgrade()) {
            socket.shutdown();
        }
    }

    /// Whether [`Call::abandon`] was called.
    pub fn is_abandoned(&self) -> bool {
        lock(&self.state).gone
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Call>>> = const { RefCell::new(None) };
}

/// This thread's call, from [`start`] until the guard is dropped.
pub struct Started(Arc<Call>);

impl Started {
    /// The call, for the watcher.
    pub fn call(&self) -> Arc<Call> {
        self.0.clone()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
        let mut s = lock(&self.0.state);
        s.ended = true;
        s.upstream = None;
    }
}

/// Starts a call on this thread (replacing any leftover one); it ends when the guard drops.
pub fn start() -> Started {
    let call = Arc::new(Call::default());
    CURRENT.with(|c| *c.borrow_mut() = Some(call.clone()));
    Started(call)
}

fn with_current<T>(f: impl FnOnce(&Call) -> T) -> Option<T> {
    CURRENT.with(|c| c.borrow().as_deref().map(f))
}

/// Whether this thread's call was abandoned: its client hung up.
pub fn client_gone() -> bool {
    with_current(Call::is_abandoned).unwrap_or(false)
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
    while !s.gone {
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
    !s.gone
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
        if !s.upstream.as_ref().is_some_and(|u| Weak::ptr_eq(u, socket)) && !s.gone {
            s.upstream = Some(socket.clone());
        }
        s.gone
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
