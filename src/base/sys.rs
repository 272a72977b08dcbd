//! The few C library calls std does not wrap, declared by hand: the design card has no `libc`
//! crate, and these are four functions of the C library every Linux binary already links
//! (glibc, or musl in the static builds).
//!
//! Why each wrapper is sound: it passes only pointers to live, correctly sized `#[repr(C)]`
//! values owned by the wrapper for the duration of the call, and file descriptors borrowed
//! from a live `File` or socket; it reads a result only after the call reported success. The
//! constants are Linux's, identical on x86_64 and aarch64 (the two targets we build), and the
//! struct layouts are the 64-bit ones (`rlim_t` is 64 bits on both, with glibc and musl).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("base::sys declares Linux's 64-bit C ABI; check its constants for this target");

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

#[repr(C)]
struct RLimit {
    soft: u64,
    hard: u64,
}

extern "C" {
    fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout_ms: i32) -> i32;
    fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    fn flock(fd: i32, operation: i32) -> i32;
}

const POLLERR: i16 = 0x008;
const POLLHUP: i16 = 0x010;
/// The peer shut down its side (Linux-specific, which is why std has no portable way).
const POLLRDHUP: i16 = 0x2000;
const RLIMIT_NOFILE: i32 = 7;
const LOCK_EX: i32 = 2;
const LOCK_UN: i32 = 8;

/// Whether the peer of the connected socket `fd` has hung up (closed or shut down its side)
/// or the socket is in error. Never blocks, and reads nothing: bytes the peer sent (a
/// pipelined request) stay in the socket for whoever reads it next.
pub fn peer_hung_up(fd: RawFd) -> bool {
    let mut p = PollFd {
        fd,
        events: POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid `PollFd` for the duration of the call; `nfds` is 1; timeout 0.
    let n = unsafe { poll(&mut p, 1, 0) };
    n > 0 && p.revents & (POLLRDHUP | POLLHUP | POLLERR) != 0
}

/// Raises the soft limit on open files to the hard limit, so the server can hold as many
/// connections as the host allows. Returns (old soft limit, new soft limit).
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    let mut lim = RLimit { soft: 0, hard: 0 };
    // SAFETY: `lim` is a valid `RLimit` the call writes into.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = lim.soft;
    if lim.soft < lim.hard {
        let raised = RLimit {
            soft: lim.hard,
            hard: lim.hard,
        };
        // SAFETY: `raised` is a valid `RLimit` the call only reads.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok((old, lim.hard));
    }
    Ok((old, old))
}

/// An exclusive advisory lock on an open file (`flock`), released when dropped. Every process
/// that takes it on the same file is serialised; a process that dies releases it.
pub struct FileLock<'f> {
    file: &'f File,
}

impl<'f> FileLock<'f> {
    /// Waits for the lock.
    pub fn exclusive(file: &'f File) -> io::Result<FileLock<'f>> {
        loop {
            // SAFETY: the descriptor belongs to `file`, which outlives the lock.
            if unsafe { flock(file.as_raw_fd(), LOCK_EX) } == 0 {
                return Ok(FileLock { file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above. Closing the file would release the lock too; unlocking now lets
        // the next process in while the file is still open here.
        unsafe { flock(self.file.as_raw_fd(), LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_hang_up_is_seen_and_pending_bytes_are_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!peer_hung_up(server.as_raw_fd()), "a quiet open peer");
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !peer_hung_up(server.as_raw_fd()),
            "data waiting is not a hang-up"
        );
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !peer_hung_up(server.as_raw_fd()) {
            assert!(Instant::now() < deadline, "the hang-up was never seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (_, now) = raise_open_files_limit().unwrap();
        // A second call finds the soft limit already at the hard one.
        assert_eq!(raise_open_files_limit().unwrap(), (now, now));
    }

    #[test]
    fn a_file_lock_serialises_its_holders() {
        let path = std::env::temp_dir().join(format!("claudegate-lock-{}", std::process::id()));
        let a = File::create(&path).unwrap();
        let held = FileLock::exclusive(&a).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            // A second open file description, as another process would have.
            let b = File::open(&p).unwrap();
            let _lock = FileLock::exclusive(&b).unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the second holder got the lock while the first held it"
        );
        drop(held);
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the second holder got the lock once it was free");
        waiter.join().unwrap();
        std::fs::remove_file(&path).ok();
    }
}
