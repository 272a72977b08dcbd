//! The few C library calls std does not wrap, declared by hand: the design card has no `libc`
//! crate, and these are functions of the C library every Linux binary already links (glibc, or
//! musl in the static builds): poll, get/setrlimit, flock, kill, getsockopt (TCP state, a Unix
//! peer's credentials), dup, geteuid, prctl and getppid (a child that ends with the server),
//! `syscall` for the two pidfd calls the C libraries of our oldest targets have no wrapper for,
//! and the signal-mask calls that let the server wait for SIGTERM and SIGINT (see
//! [`block_stop_signals`]).
//!
//! Why each wrapper is sound: it passes only pointers to live, correctly sized `#[repr(C)]`
//! values owned by the wrapper for the duration of the call (or a null pointer where the call
//! documents one), file descriptors borrowed from a live `File`, socket or `OwnedFd`, and
//! plain integers; a descriptor the kernel hands back is owned at once by an `OwnedFd`; it
//! reads a result only after the call reported success. The
//! constants are Linux's, identical on x86_64 and aarch64 (the two targets we build), and the
//! struct layouts are the 64-bit ones (`rlim_t` is 64 bits on both, with glibc and musl).
//! No signal handler is installed anywhere: nothing of ours ever runs in signal context.

use std::ffi::c_long;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

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

/// The C library's `sigset_t`, which only the C library itself reads and writes (through
/// `sigemptyset` and `sigaddset`), so its inner layout never matters here: only its size and
/// alignment. Both C libraries make it 1024 bits on both our targets: glibc's `__sigset_t` is
/// `unsigned long __val[1024 / (8 * sizeof(unsigned long))]`, musl's `sigset_t` is
/// `unsigned long __bits[128 / sizeof(long)]`: 128 bytes, aligned as an 8-byte `unsigned long`.
/// This is 16 `u64`s: the same size and alignment. (The kernel's own set is only the first 8
/// bytes; the C library passes that part on.)
#[repr(C)]
struct SigSet([u64; 16]);

/// `struct timespec` on 64-bit Linux, glibc and musl alike: `time_t` and `long`, 64 bits each
/// (musl's padding member is zero-sized when `time_t` and `long` have the same size).
#[repr(C)]
struct TimeSpec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn sigemptyset(set: *mut SigSet) -> i32;
    fn sigaddset(set: *mut SigSet, signal: i32) -> i32;
    /// Returns an error number (0 for success), not -1 and `errno`.
    fn pthread_sigmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    /// `info` is a `siginfo_t *`; we always pass null, which POSIX allows.
    fn sigtimedwait(set: *const SigSet, info: *mut u8, timeout: *const TimeSpec) -> i32;
    fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout_ms: i32) -> i32;
    fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    fn flock(fd: i32, operation: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    /// Variadic: every argument is passed as a full `c_long`, the width the kernel reads each
    /// syscall argument register at.
    fn syscall(number: c_long, ...) -> c_long;
    fn getsockopt(fd: i32, level: i32, name: i32, value: *mut u8, len: *mut u32) -> i32;
    /// Always succeeds (POSIX: "shall not return an error"); `uid_t` is 32 bits on Linux.
    fn geteuid() -> u32;
    /// Variadic in the C libraries; the one option used takes one more argument, passed as a
    /// full `c_ulong`, the width the kernel reads it at.
    fn prctl(option: i32, ...) -> i32;
    /// Always succeeds (POSIX: "shall not return an error").
    fn getppid() -> i32;
}

const POLLERR: i16 = 0x008;
const POLLHUP: i16 = 0x010;
/// The peer shut down its side (Linux-specific, which is why std has no portable way).
const POLLRDHUP: i16 = 0x2000;
const RLIMIT_NOFILE: i32 = 7;
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;
const LOCK_UN: i32 = 8;
const SIGKILL: i32 = 9;
/// `prctl` option: the signal the calling process gets when its parent thread ends.
const PR_SET_PDEATHSIG: i32 = 1;
const ESRCH: i32 = 3;
const ENOSYS: i32 = 38;
/// Syscall numbers from the kernel's unified table (since 5.1/5.3): the same on x86_64 and
/// aarch64, as every syscall numbered from 424 on is.
const SYS_PIDFD_SEND_SIGNAL: c_long = 424;
const SYS_PIDFD_OPEN: c_long = 434;
/// A zero flags word, or a null `siginfo_t *`, as a `syscall` argument.
const ZERO: c_long = 0;
const IPPROTO_TCP: i32 = 6;
/// `SOL_SOCKET` and `SO_PEERCRED` (asm-generic values: the same on x86_64 and aarch64).
const SOL_SOCKET: i32 = 1;
const SO_PEERCRED: i32 = 17;
const TCP_INFO: i32 = 11;
/// TCP states (`tcpi_state`, the first byte of `struct tcp_info`) in which the peer has sent
/// its FIN or reset the connection: CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT, CLOSE.
const TCP_PEER_CLOSED: [u8; 5] = [8, 9, 11, 6, 7];

const SIG_BLOCK: i32 = 0;
const SIG_UNBLOCK: i32 = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// A signal that asks the server to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: what `systemctl stop`, `docker stop`, `podman stop` and `kill` send.
    Term,
    /// SIGINT: Ctrl-C in a terminal.
    Int,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        }
    }

    /// The signal's number (15 or 2, the same on x86_64 and aarch64).
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Term => SIGTERM,
            StopSignal::Int => SIGINT,
        }
    }
}

/// The set {SIGTERM, SIGINT}, built by the C library.
fn stop_set() -> SigSet {
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a live, writable buffer of the size and alignment of `sigset_t` (see
    // `SigSet`); the calls only write inside it. They fail only for an invalid signal number,
    // and 2 and 15 are valid.
    unsafe {
        sigemptyset(&mut set);
        sigaddset(&mut set, SIGTERM);
        sigaddset(&mut set, SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT for the calling thread and every thread it starts afterwards
/// (threads inherit their creator's mask). Called first thing in `main` for `serve`, before
/// any thread exists, so the signals are never delivered to anyone: they wait, pending, until
/// the one thread that asks for them ([`wait_stop_signal`]) takes them. No handler runs in
/// signal context, and none is needed: this is what tini does. It also works for PID 1 in a
/// container, which the kernel spares every signal it has no handler for (`SIG_DFL`) — but a
/// blocked signal is never discarded (it stays pending, since a handler could be installed
/// before it is unblocked), so `sigtimedwait` still receives it.
///
/// A child process inherits the mask of the thread that starts it (std leaves it as it is),
/// so a command the server runs must unblock them again: [`unblock_stop_signals_in_child`].
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is a live, initialised `sigset_t` the call only reads; the old mask is not
    // wanted (null, which the call allows). It changes only the calling thread's mask.
    match unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Makes `cmd`'s child start with SIGTERM and SIGINT unblocked, as any program expects: without
/// it the CLI backend's `claude`, started by a worker that blocks them, would ignore a service
/// manager's SIGTERM until the SIGKILL that follows.
pub fn unblock_stop_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let set = stop_set(); // built here: the child may only make async-signal-safe calls
                          // SAFETY: `pre_exec` runs the closure in the child between fork and exec, where only
                          // async-signal-safe functions may be called. It calls only `pthread_sigmask` (on POSIX's
                          // list of async-signal-safe functions), with a set built before the fork and owned by the
                          // closure, and a null old mask; it allocates nothing (an OS error is stored inline).
    unsafe {
        cmd.pre_exec(
            move || match pthread_sigmask(SIG_UNBLOCK, &set, std::ptr::null_mut()) {
                0 => Ok(()),
                e => Err(io::Error::from_raw_os_error(e)),
            },
        )
    };
}

/// Makes `cmd`'s child get SIGKILL when the thread that starts it ends, which is when the
/// server's process ends (the CLI backend starts its `claude` from the worker threads, which
/// live as long as the server). Without it a server killed outright (SIGKILL, the OOM killer,
/// a crash) outside a service manager that kills its whole cgroup leaves its calls running in
/// their own process groups: a running call until its own timeout, spending tokens for no one.
/// Linux's `PR_SET_PDEATHSIG` is tied to the starting *thread*, so a caller must start the
/// child from a thread that outlives it (or accept that the child ends with that thread).
pub fn end_child_with_this_thread(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as i32;
    // SAFETY: `pre_exec` runs the closure in the child between fork and exec, where only
    // async-signal-safe functions may be called. It calls only `prctl` and `getppid`, thin
    // system-call wrappers that take and return plain integers; it allocates nothing (an OS
    // error is stored inline).
    unsafe {
        cmd.pre_exec(move || {
            if prctl(PR_SET_PDEATHSIG, SIGKILL as std::ffi::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent ended between the fork and the prctl: the signal will never come.
            if getppid() != parent {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            Ok(())
        })
    };
}

/// Waits at most `within` for SIGTERM or SIGINT, which must be blocked ([`block_stop_signals`]),
/// and takes it: it is then no longer pending. `None` when none came in time (or the wait was
/// interrupted, which only a signal outside the set can do: the caller simply asks again).
pub fn wait_stop_signal(within: Duration) -> Option<StopSignal> {
    let set = stop_set();
    let timeout = TimeSpec {
        tv_sec: i64::try_from(within.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(within.subsec_nanos()),
    };
    // SAFETY: `set` and `timeout` are live, initialised values the call only reads (`tv_nsec`
    // is below 10^9, as it requires); `info` is null, which POSIX allows. It blocks only the
    // calling thread, for at most `timeout`.
    let signal = unsafe { sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
    match signal {
        SIGTERM => Some(StopSignal::Term),
        SIGINT => Some(StopSignal::Int),
        _ => None, // -1: EAGAIN (no signal in time) or EINTR
    }
}

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

/// A descriptor of our own for the open file behind `fd` (a `dup`, close-on-exec), so a watch
/// can keep looking at a socket after the owner of `fd` has closed it: the number `fd` may then
/// name another file, the duplicate cannot.
///
/// `fd` must be open for the duration of the call: a descriptor borrowed from a live owner (a
/// request that holds its connection). The duplicate is only ever polled and queried, never
/// read or written, so it does not compete with that owner.
pub fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller's owner keeps `fd` open for the call (see above); std's
    // `try_clone_to_owned` is `fcntl(F_DUPFD_CLOEXEC)` and owns only the new descriptor.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Whether the peer of the connected socket `fd` has closed (or reset) the connection: on TCP,
/// from the connection's state, on other sockets as [`peer_hung_up`]. Never blocks, reads
/// nothing.
///
/// Unlike [`peer_hung_up`] this is not fooled by our own side: `poll` reports `POLLRDHUP` as
/// soon as the socket's receive side is shut down, and tiny_http shuts it down *locally* once
/// it has read the last request of a `Connection: close` client, which is still waiting for
/// its answer. Only a FIN or reset from the peer moves a TCP connection out of ESTABLISHED
/// into one of the states this looks for.
pub fn peer_closed(fd: impl AsFd) -> bool {
    let fd = fd.as_fd().as_raw_fd();
    // `struct tcp_info` starts with `tcpi_state`; the kernel copies only as many bytes as
    // asked for, so a one-byte buffer is enough.
    let mut state = [0u8; 1];
    let mut len = state.len() as u32;
    // SAFETY: `state` is a live buffer of `len` bytes the call writes into, `len` a live u32 it
    // reads and updates; the descriptor is borrowed from its live owner for the call.
    let r = unsafe { getsockopt(fd, IPPROTO_TCP, TCP_INFO, state.as_mut_ptr(), &mut len) };
    if r != 0 || len < 1 {
        return peer_hung_up(fd); // not TCP (a Unix socket): only `poll` can tell
    }
    TCP_PEER_CLOSED.contains(&state[0])
}

/// `struct ucred`: who was at the other end of a Unix socket when it connected.
#[repr(C)]
struct UCred {
    pid: i32,
    uid: u32,
    gid: u32,
}

/// The process id and user id of the peer of the connected Unix socket `fd`, as the kernel
/// recorded them when it connected (`SO_PEERCRED`): who may talk on a private socket.
pub fn peer_credentials(fd: impl AsFd) -> io::Result<(u32, u32)> {
    let fd = fd.as_fd().as_raw_fd();
    let mut cred = UCred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<UCred>() as u32;
    // SAFETY: `cred` is a live, correctly sized `#[repr(C)]` value the call writes into, `len`
    // a live u32 holding its size; the descriptor is borrowed from its live owner.
    let r = unsafe {
        getsockopt(
            fd,
            SOL_SOCKET,
            SO_PEERCRED,
            (&mut cred as *mut UCred).cast(),
            &mut len,
        )
    };
    if r != 0 || len as usize != std::mem::size_of::<UCred>() || cred.pid <= 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid as u32, cred.uid))
}

/// The user id this process acts as (its effective uid): the owner of the files it creates,
/// and who `claudegate doctor` expects to own the data directory.
pub fn effective_uid() -> u32 {
    // SAFETY: no arguments, no memory touched; the call cannot fail.
    unsafe { geteuid() }
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

impl<'f> FileLock<'f> {
    /// Waits for the lock at most `limit` (polling every 10 ms), so a holder that hangs (a
    /// stopped process) is reported instead of waited for forever: `TimedOut` after `limit`.
    pub fn exclusive_within(file: &'f File, limit: Duration) -> io::Result<FileLock<'f>> {
        let deadline = Instant::now() + limit;
        loop {
            // SAFETY: the descriptor belongs to `file`, which outlives the lock.
            if unsafe { flock(file.as_raw_fd(), LOCK_EX | LOCK_NB) } == 0 {
                return Ok(FileLock { file });
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("still held by another process after {limit:?}"),
                    ))
                }
                _ => return Err(e),
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

// --- Ending processes: what the CLI backend uses to end everything a call started. The calls
// take integers and return a result code, or (pidfd_open) a descriptor we then own.

/// `pid` as the C type, refusing 0 and 1: as a kill target, 0 means our own process group, -1
/// every process we may signal, and 1 is init.
fn target(pid: u32) -> io::Result<i32> {
    i32::try_from(pid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A signal call's result: a target that is already gone (`ESRCH`) is a success.
fn sent(rc: c_long) -> io::Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(ESRCH) => Ok(()),
        _ => Err(e),
    }
}

/// SIGKILL to every process in group `pgid` (refused for 0 and 1, see [`target`]). A group
/// that is already gone is fine.
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = target(pgid)?;
    // SAFETY: integers only; a negative pid names the group.
    sent(c_long::from(unsafe { kill(-pgid, SIGKILL) }))
}

/// A handle on one process that keeps naming it after its pid is freed (a pidfd): a signal
/// sent through it can never reach a process that reused the pid.
pub struct ProcessHandle {
    /// `None` on a kernel without pidfds (before 5.3): then only the pid.
    fd: Option<OwnedFd>,
    pid: i32,
}

impl ProcessHandle {
    /// A handle on the process that has `pid` now; `NotFound` if there is none.
    pub fn open(pid: u32) -> io::Result<ProcessHandle> {
        let pid = target(pid)?;
        // SAFETY: pidfd_open(pid, flags) takes two integers and returns a new descriptor.
        let fd = unsafe { syscall(SYS_PIDFD_OPEN, c_long::from(pid), ZERO) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(ESRCH) => Err(io::Error::from(io::ErrorKind::NotFound)),
                Some(ENOSYS) => Ok(ProcessHandle { fd: None, pid }),
                _ => Err(e),
            };
        }
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it. A
        // descriptor fits an `int`: the kernel returns one.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(ProcessHandle { fd: Some(fd), pid })
    }

    /// SIGKILL to the process. One that has already exited is fine. Without a pidfd the
    /// signal goes to the pid, which the caller has just checked still names the process.
    pub fn kill(&self) -> io::Result<()> {
        sent(match &self.fd {
            // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0): a descriptor we
            // own, integers, and a null pointer the kernel accepts for "as kill() would".
            Some(fd) => unsafe {
                syscall(
                    SYS_PIDFD_SEND_SIGNAL,
                    c_long::from(fd.as_raw_fd()),
                    c_long::from(SIGKILL),
                    ZERO,
                    ZERO,
                )
            },
            // SAFETY: integers only; `pid` > 1 (see `target`).
            None => c_long::from(unsafe { kill(self.pid, SIGKILL) }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    /// A connected pair of sockets: (client, server).
    fn connected() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Waits up to 2 s for `seen` to hold.
    fn seen_within_2s(seen: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !seen() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn a_hang_up_is_seen_and_pending_bytes_are_not() {
        let (mut client, server) = connected();
        assert!(!peer_hung_up(server.as_raw_fd()), "a quiet open peer");
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !peer_hung_up(server.as_raw_fd()),
            "data waiting is not a hang-up"
        );
        drop(client);
        assert!(
            seen_within_2s(|| peer_hung_up(server.as_raw_fd())),
            "the hang-up was never seen"
        );
    }

    #[test]
    fn a_close_is_told_from_our_own_shut_down_receive_side() {
        let (client, server) = connected();
        assert!(!peer_closed(&server), "a quiet open peer");
        // What tiny_http does after the last request of a `Connection: close` client.
        server.shutdown(std::net::Shutdown::Read).unwrap();
        assert!(peer_hung_up(server.as_raw_fd()), "poll cannot tell");
        assert!(
            !peer_closed(&server),
            "our own shutdown is no close by the peer"
        );
        drop(client);
        assert!(
            seen_within_2s(|| peer_closed(&server)),
            "the close was never seen"
        );
    }

    #[test]
    fn a_duplicate_outlives_the_original_number() {
        let (client, server) = connected();
        let dup = dup_fd(server.as_raw_fd()).unwrap();
        assert_ne!(dup.as_raw_fd(), server.as_raw_fd());
        drop(server);
        assert!(
            !peer_closed(&dup),
            "the socket is still open through the duplicate"
        );
        drop(client);
        assert!(
            seen_within_2s(|| peer_closed(&dup)),
            "the close was never seen"
        );
    }

    #[test]
    fn a_unix_socket_peer_is_known_by_pid_and_uid() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(
            peer_credentials(&a).unwrap(),
            (std::process::id(), effective_uid())
        );
    }

    #[test]
    fn a_unix_socket_close_is_seen_too() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!peer_closed(&a));
        drop(b);
        assert!(peer_closed(&a));
    }

    #[test]
    fn a_blocked_stop_signal_waits_for_the_thread_that_asks_for_it() {
        extern "C" {
            fn pthread_self() -> usize;
            fn pthread_kill(thread: usize, signal: i32) -> i32;
        }
        // On a thread of its own, so the test process's other threads keep their masks; a
        // signal sent to this thread alone (pthread_kill) can only be taken by it.
        std::thread::spawn(|| {
            block_stop_signals().unwrap();
            let t = Instant::now();
            assert_eq!(wait_stop_signal(Duration::from_millis(50)), None);
            assert!(
                t.elapsed() >= Duration::from_millis(40),
                "{:?}",
                t.elapsed()
            );
            for (signal, want) in [(SIGINT, StopSignal::Int), (SIGTERM, StopSignal::Term)] {
                // SAFETY: this live thread's own handle and a valid signal number, which it
                // blocks (so the default action, ending the process, cannot happen).
                assert_eq!(unsafe { pthread_kill(pthread_self(), signal) }, 0);
                assert_eq!(wait_stop_signal(Duration::from_secs(5)), Some(want));
                assert_eq!(want.number(), signal);
            }
            assert_eq!(
                wait_stop_signal(Duration::ZERO),
                None,
                "taken, no longer pending"
            );
            // A child of this thread starts with both unblocked. (Whether a child would
            // inherit the block without this depends on how std starts it: `posix_spawn`
            // resets the mask, a fork does not; the CLI's command was found to keep it. The
            // integration test `shutdown::cli_calls_…` checks the real `claude` command.)
            let mut cmd = std::process::Command::new("/bin/sh");
            cmd.args(["-c", "exec grep SigBlk /proc/self/status"]);
            unblock_stop_signals_in_child(&mut cmd);
            let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
            let mask = out
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let both = (1 << (SIGINT - 1)) | (1 << (SIGTERM - 1));
            assert_eq!(u64::from_str_radix(&mask, 16).unwrap() & both, 0, "{out}");
        })
        .join()
        .unwrap();
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

    #[test]
    fn a_bounded_lock_wait_gives_up_and_a_free_lock_is_taken() {
        let path = std::env::temp_dir().join(format!("claudegate-lock-nb-{}", std::process::id()));
        let a = File::create(&path).unwrap();
        let held = FileLock::exclusive(&a).unwrap();
        let b = File::open(&path).unwrap();
        let t = Instant::now();
        let err = FileLock::exclusive_within(&b, Duration::from_millis(100))
            .err()
            .expect("the lock is held");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(100));
        drop(held);
        let _lock = FileLock::exclusive_within(&b, Duration::from_millis(100)).unwrap();
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn processes_and_groups_are_killed_and_zero_or_one_refused() {
        use std::os::unix::process::CommandExt;
        for pgid in [0, 1] {
            assert!(kill_process_group(pgid).is_err(), "{pgid}");
            assert!(ProcessHandle::open(pgid).is_err(), "{pgid}");
        }
        let mut group = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & exec sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        kill_process_group(group.id()).unwrap();
        assert!(!group.wait().unwrap().success());
        let mut one = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let handle = ProcessHandle::open(one.id()).unwrap();
        handle.kill().unwrap();
        assert!(!one.wait().unwrap().success());
        // Reaped: the handle still names the (gone) process, and killing it is fine.
        handle.kill().unwrap();
    }
}
