//! Watching the clients of backend calls in progress: one thread polls the socket of every
//! request a backend is working on, and abandons the call ([`crate::backends::abandon`]) of a
//! client that has hung up, so its upstream call is closed (or its `claude -p` killed) within
//! a tick instead of holding a worker until a timeout.
//!
//! A worker registers its request with [`watch`] before the handler runs and the returned guard
//! unregisters it when the handler is done, so the table holds at most one entry per worker.
//! The entry keeps a duplicate of the client's socket descriptor: the handler answers (and
//! tiny_http may close the connection) before the guard is dropped, and the duplicate keeps
//! the watch on the same socket until then, never on whatever file reuses the number. It is
//! only ever queried ([`sys::peer_closed`]), never read or written.
//!
//! A call cut off because the server stops (`server::stop`) is abandoned the same way, through
//! [`abandon::abandon_all`], not from here.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tiny_http::Request;

use crate::backends::abandon::{self, Call, Reason, Started};
use crate::base::sync::lock;
use crate::base::sys;

/// How often the watcher looks: a departed client's call ends within about this long.
const TICK: Duration = Duration::from_millis(250);

/// One watched request: the client's socket (our own descriptor for it) and its call.
struct Entry {
    client: OwnedFd,
    call: Arc<Call>,
}

/// The requests being watched, at most one per worker.
static WATCHED: Mutex<Vec<Arc<Entry>>> = Mutex::new(Vec::new());

/// A request's call, started on this thread, and the watch on its client; dropping it ends
/// both.
pub struct Watch {
    /// `None` when the client cannot be watched (see [`watch`]).
    entry: Option<Arc<Entry>>,
    call: Started,
}

impl Watch {
    /// Whether the client hung up before the request was done (its call was abandoned for
    /// that; a call cut off because the server stops was answered, with an error).
    pub fn abandoned(&self) -> bool {
        self.call.call().reason() == Some(Reason::ClientLeft)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(entry) = &self.entry {
            lock(&WATCHED).retain(|e| !Arc::ptr_eq(e, entry));
        }
    }
}

/// Starts this thread's call for `rq` and watches its client. The call is started in any
/// case (so a stopping server can end it), but the client goes unwatched, as before, when the
/// request has no socket to watch (HTTPS, tests) or the descriptor cannot be duplicated (out
/// of descriptors).
pub fn watch(rq: &Request) -> Watch {
    let call = abandon::start();
    let client = rq.socket_fd().and_then(|fd| sys::dup_fd(fd).ok());
    let entry = client.map(|client| {
        let entry = Arc::new(Entry {
            client,
            call: call.call(),
        });
        lock(&WATCHED).push(entry.clone());
        entry
    });
    Watch { entry, call }
}

/// Starts the watcher thread.
pub fn start() -> Result<(), String> {
    thread::Builder::new()
        .name("client-watch".into())
        .stack_size(64 * 1024)
        .spawn(|| loop {
            thread::sleep(TICK);
            sweep();
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the client watch thread: {e}"))
}

/// One look at every watched client. The table is copied out first, so no lock is held while
/// the sockets are queried; an entry whose guard drops meanwhile stays valid (its descriptor
/// is ours) and abandoning a finished call does nothing.
fn sweep() {
    let entries: Vec<Arc<Entry>> = lock(&WATCHED).clone();
    for e in entries {
        if !e.call.is_abandoned() && sys::peer_closed(&e.client) {
            e.call.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_client_that_closes_gets_its_call_abandoned_and_only_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (gone, stays) = (
            TcpStream::connect(addr).unwrap(),
            TcpStream::connect(addr).unwrap(),
        );
        let (a, _) = listener.accept().unwrap();
        let (b, _) = listener.accept().unwrap();
        let entry = |s: &TcpStream| {
            Arc::new(Entry {
                client: sys::dup_fd(s.as_raw_fd()).unwrap(),
                call: Arc::new(Call::default()),
            })
        };
        let (ea, eb) = (entry(&a), entry(&b));
        lock(&WATCHED).extend([ea.clone(), eb.clone()]);
        drop(gone);
        drop(a); // our own descriptor keeps the watch on the socket
        let t = std::time::Instant::now();
        while !ea.call.is_abandoned() {
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "the hang-up was missed"
            );
            sweep();
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!eb.call.is_abandoned(), "a waiting client is left alone");
        lock(&WATCHED).retain(|e| !Arc::ptr_eq(e, &ea) && !Arc::ptr_eq(e, &eb));
        drop((stays, b));
    }
}
