//! The CLI as a child process: spawning it, feeding it the prompt, reading its stdout line by
//! line and the tail of its stderr on threads, the wall-clock deadline, and ending every
//! process the call started, whatever way the call ends.
//!
//! **Process handling**: the CLI runs in its own process group. On the wall-clock timeout, or
//! when the client goes away (a write to a streaming client fails, or the server saw it hang
//! up, asked at least every [`GONE_CHECK`] while the CLI is silent), the whole group gets
//! SIGKILL (the CLI starts helpers of its own: `sh -c "ps aux | …"`, ripgrep, git), then the
//! CLI is reaped. The group is killed before the leader is reaped, so its id cannot have been
//! reused. After a normal exit the group is killed too, so nothing the CLI started outlives
//! the call.
//!
//! **What left the group**: a process that calls `setsid` (or `setpgid`) is no longer in the
//! group. So every call also gets a marker, `CLAUDEGATE_CALL=<128 random bits>`, set last in
//! the CLI's environment (after `cli.env`, which cannot override it); every process it starts
//! inherits it. After the group kill, the processes of our own user whose `/proc/<pid>/environ`
//! holds the marker are killed too, in rounds until a round finds none (at most
//! [`SWEEP_ROUNDS`]), so children forked while the sweep runs are caught by the next round.
//! Each is killed through a pidfd opened before its marker is read a second time, so a pid
//! that was freed and reused in between can never make us kill a stranger. Linux only, like
//! the rest of claudegate. What escapes: a process that replaced its environment (`env -i`,
//! `execve` with a new one), made itself unreadable (not dumpable) or changed user — none of
//! which the locked-down CLI, which runs no tools, does.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backends::cli::interface::CliError;
use crate::base::sync::lock;
use crate::base::sys;

/// Longest stdout line accepted from the CLI (an answer arrives as one JSON line, twice).
const MAX_LINE: u64 = 64 << 20;
/// stderr kept for error messages: the tail, at most this many bytes.
const MAX_STDERR: usize = 16 << 10;
/// After stdout closes, how long the CLI may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// The environment variable that marks every process of one call.
pub(super) const CALL_MARKER: &str = "CLAUDEGATE_CALL";
/// Sweeps of `/proc` for marked processes after a call, at most (each ends with a 10 ms pause
/// when it killed something, so the bound is a few tens of milliseconds on a normal host).
const SWEEP_ROUNDS: usize = 10;
/// While the CLI prints nothing, how often `gone` is asked whether the client left.
const GONE_CHECK: Duration = Duration::from_millis(200);

/// The calls running now, each as its process group and marker, so a stopping server can end
/// them all at once ([`end_all`]) when it will not wait for their workers to. A call is listed
/// from its spawn until just before its CLI is reaped: the unreaped leader keeps its group id
/// from being reused, so a listed id always names the call's own group.
static RUNNING: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// A call's place in [`RUNNING`]; dropping it (before the CLI is reaped) takes it out.
struct Listed(u32);

impl Listed {
    fn new(pgid: u32, marker: &str) -> Listed {
        lock(&RUNNING).push((pgid, marker.to_string()));
        Listed(pgid)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock(&RUNNING).retain(|(pgid, _)| *pgid != self.0);
    }
}

/// Kills every process of every CLI call in progress, for a stopping server that will not wait
/// for their workers to do it: each listed group (under the list's lock, so no listed CLI can
/// be reaped meanwhile), then each call's marked processes. The calls' own supervisors then
/// find their CLI dead and end as after a kill. Returns how many calls there were.
pub fn end_all() -> usize {
    let markers: Vec<String> = {
        let running = lock(&RUNNING);
        for (pgid, _) in running.iter() {
            kill_group(*pgid);
        }
        running.iter().map(|(_, marker)| marker.clone()).collect()
    };
    for marker in &markers {
        kill_marked(marker);
    }
    markers.len()
}

/// How a CLI that ran to its end ended: its exit status and the tail of its stderr.
pub(super) struct Exit {
    pub(super) status: ExitStatus,
    pub(super) stderr: String,
}

/// A fresh random call marker (see the module doc); made before the spawn so the bridge's
/// peer check can know it.
pub(super) fn new_marker() -> Result<String, CliError> {
    crate::base::ids::random::<16>()
        .map(|r| crate::base::ids::hex(&r))
        .map_err(|e| CliError::Failed(format!("cannot make the call's marker: {e}")))
}

/// Whether process `pid` carries the call marker `marker` in its environment.
pub(super) fn carries_marker(pid: u32, marker: &str) -> bool {
    has_marker(pid, &format!("{CALL_MARKER}={marker}"))
}

/// What the reader of a stdout line wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Keep reading.
    Go,
    /// The client went away: end the call.
    Gone,
    /// This answer is complete while the CLI lives on (it waits on a tool call): pause.
    Done,
}

/// How [`Run::pump`] returned.
pub(super) enum Pumped {
    /// The CLI ran to its end (it is reaped, nothing of it is left).
    Exited(Exit),
    /// `on_line` said [`Flow::Done`]: the CLI still runs, waiting; pump again to go on.
    Paused,
}

/// One running CLI: the child, its stdout lines and stderr tail, its marker. Dropping it
/// (unless it ran to its end) kills its group and marked processes and reaps it.
pub(super) struct Run {
    child: Child,
    marker: String,
    listed: Option<Listed>,
    lines: Receiver<Line>,
    errs: Receiver<String>,
    reaped: bool,
}

impl Run {
    /// Spawns `cmd` (the CLI named `binary` in `cli.binary`) with the call's `marker` and
    /// writes `prompt` to its stdin (then closes it).
    pub(super) fn start(
        cmd: &mut Command,
        binary: &str,
        prompt: Vec<u8>,
        marker: &str,
    ) -> Result<Run, CliError> {
        // Last, so nothing set before (cli.env included) can replace it.
        cmd.env(CALL_MARKER, marker);
        let mut child = cmd.spawn().map_err(|e| {
            CliError::Failed(format!(
                "cannot start the Claude Code CLI `{binary}` (cli.binary): {e}"
            ))
        })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            stop(&mut child, marker);
            return Err(CliError::Failed("the CLI's pipes were not set up".into()));
        };
        let listed = Listed::new(child.id(), marker);
        // A thread, so a prompt larger than the pipe buffer cannot deadlock against stdout.
        // Dropping `stdin` at the end closes it: the CLI waits for EOF before it starts.
        std::thread::spawn(move || {
            stdin.write_all(&prompt).ok();
        });
        Ok(Run {
            child,
            marker: marker.to_string(),
            listed: Some(listed),
            lines: read_lines(stdout),
            errs: read_tail(stderr),
            reaped: false,
        })
    }

    /// Hands each stdout line to `on_line` (and `None` after each [`GONE_CHECK`] of silence)
    /// until stdout closes (the CLI is then reaped),
    /// `deadline` passes, the client went away (`on_line` said [`Flow::Gone`] or `gone`, asked
    /// between lines and every [`GONE_CHECK`] while the CLI is silent, returned true), or
    /// `on_line` said [`Flow::Done`] (the CLI is left running). Every end but the pause
    /// leaves the process group and every marked process killed and the CLI reaped.
    pub(super) fn pump(
        &mut self,
        deadline: Instant,
        on_line: &mut dyn FnMut(Option<&str>) -> Flow,
        gone: &dyn Fn() -> bool,
    ) -> Result<Pumped, CliError> {
        if self.reaped {
            return Err(CliError::Failed(
                "the Claude Code CLI has already ended".into(),
            ));
        }
        let mut end = End::Exited;
        loop {
            if gone() {
                end = End::ClientGone;
                break;
            }
            match self
                .lines
                .recv_timeout(left_until(deadline).min(GONE_CHECK))
            {
                Ok(Line::Text(line)) => match on_line(Some(&line)) {
                    Flow::Go => {}
                    Flow::Gone => {
                        end = End::ClientGone;
                        break;
                    }
                    Flow::Done => return Ok(Pumped::Paused),
                },
                Ok(Line::TooLong) => {
                    end = End::TooLong;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) if left_until(deadline).is_zero() => {
                    end = End::TimedOut;
                    break;
                }
                // A quiet moment: `on_line` hears of it too (`None`).
                Err(RecvTimeoutError::Timeout) => match on_line(None) {
                    Flow::Go => {}
                    Flow::Gone => {
                        end = End::ClientGone;
                        break;
                    }
                    Flow::Done => return Ok(Pumped::Paused),
                },
            }
        }
        // stdout closed: give the CLI a moment to finish writing its config and exit.
        let exited = end == End::Exited
            && exits_within(&mut self.child, EXIT_GRACE.min(left_until(deadline)));
        let status = self.end(exited)?;
        let stderr = self
            .errs
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        match end {
            End::TimedOut => Err(CliError::Timeout),
            End::ClientGone => Err(CliError::Failed("client went away".into())),
            End::TooLong => Err(CliError::Failed(
                "the Claude Code CLI printed an oversized line".into(),
            )),
            End::Exited => Ok(Pumped::Exited(Exit { status, stderr })),
        }
    }

    /// Kills the group in every case: the CLI itself if it is still running (timeout, client
    /// gone, or it would not exit), and whatever it left behind. The CLI is not reaped yet (a
    /// zombie at most), so the group id is still ours and cannot name a stranger. Then
    /// whatever left the group; then the reap.
    fn end(&mut self, exited: bool) -> Result<ExitStatus, CliError> {
        kill_group(self.child.id());
        kill_marked(&self.marker);
        if !exited {
            self.child.kill().ok();
        }
        self.listed = None; // before the reap, which frees the group id
        self.reaped = true;
        self.child
            .wait()
            .map_err(|e| CliError::Failed(format!("waiting for the CLI: {e}")))
    }
}

impl Run {
    /// Ends the CLI now (unless it already ended): its group, its marked processes, the reap.
    pub(super) fn stop(&mut self) {
        if !self.reaped {
            self.end(false).ok();
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `cmd`, writes `prompt` and hands each stdout line to `on_line` until the CLI ends
/// (see [`Run::pump`]; `on_line` returning false means the client went away). Always leaves
/// the process group and every marked process killed and the CLI reaped.
pub(super) fn supervise(
    cmd: &mut Command,
    binary: &str,
    prompt: Vec<u8>,
    deadline: Instant,
    on_line: &mut dyn FnMut(&str) -> bool,
    gone: &dyn Fn() -> bool,
) -> Result<Exit, CliError> {
    let marker = new_marker()?;
    let mut run = Run::start(cmd, binary, prompt, &marker)?;
    let mut flow = |line: Option<&str>| match line.is_none_or(&mut *on_line) {
        true => Flow::Go,
        false => Flow::Gone,
    };
    match run.pump(deadline, &mut flow, gone)? {
        Pumped::Exited(exit) => Ok(exit),
        Pumped::Paused => Err(CliError::Failed("the CLI paused unasked".into())),
    }
}

/// One stdout line, or the news that a line was longer than [`MAX_LINE`].
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

/// The time left until `deadline` (zero once it has passed).
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
            Ok(s) => is_zombie(&s),
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

/// Whether a `/proc/<pid>/stat` text says the process has exited but is not reaped yet (state
/// `Z`). The state follows the `(command name)`, which may itself hold spaces or `)`.
pub(super) fn is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Kills and reaps a child that never got going.
fn stop(child: &mut Child, marker: &str) {
    kill_group(child.id());
    kill_marked(marker);
    child.kill().ok();
    child.wait().ok();
}

/// SIGKILL to process group `pgid` (one we created with `process_group(0)`). A group that is
/// already gone is fine.
fn kill_group(pgid: u32) {
    if let Err(e) = sys::kill_process_group(pgid) {
        crate::base::log::info(&format!("cannot kill the CLI's process group {pgid}: {e}"));
    }
}

/// Kills every process of our user whose environment holds `CLAUDEGATE_CALL=<marker>`, in
/// rounds until one finds none (at most [`SWEEP_ROUNDS`]); see the module doc.
fn kill_marked(marker: &str) {
    let needle = format!("{CALL_MARKER}={marker}");
    if !std::path::Path::new("/proc/self").exists() {
        return; // no /proc: nothing to scan (the group kill still ran)
    }
    let (uid, own_pid) = (sys::effective_uid(), std::process::id());
    for _ in 0..SWEEP_ROUNDS {
        let mut killed = 0;
        for pid in marked(&needle, uid, own_pid) {
            // The handle first, then the marker again: if the pid still shows the marker,
            // the handle names that process (or one that has exited since), never a stranger.
            let Ok(handle) = sys::ProcessHandle::open(pid) else {
                continue;
            };
            if has_marker(pid, &needle) && handle.kill().is_ok() {
                killed += 1;
            }
        }
        if killed == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    crate::base::log::info("processes of a CLI call were still starting after the last sweep");
}

/// The pids of live processes owned by `uid` (other than us) whose environment holds `needle`.
fn marked(needle: &str, uid: u32, own_pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let owner = std::os::unix::fs::MetadataExt::uid(&e.metadata().ok()?);
            (pid != own_pid && owner == uid && has_marker(pid, needle)).then_some(pid)
        })
        .collect()
}

/// Whether process `pid`'s environment holds the exact entry `needle` (`NAME=value`). An
/// exited process (a zombie) has an empty environment, so it never matches.
fn has_marker(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|&b| b == 0)
            .any(|entry| entry == needle.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    #[test]
    fn the_state_is_read_after_the_last_parenthesis() {
        assert!(is_zombie("4242 (claude) Z 1 4242 4242 0 -1"));
        assert!(!is_zombie("4242 (claude) S 1 4242 4242 0 -1"));
        // A command name may hold `) Z` itself; only the real state counts.
        assert!(!is_zombie("4242 (a) Z (b) R 1 4242"));
        assert!(is_zombie("4242 (a) R (b) Z 1 4242"));
        assert!(!is_zombie(""));
    }

    #[test]
    fn a_client_gone_while_the_cli_is_silent_stops_it() {
        // Nothing is printed, so `on_line` never runs: only `gone` can end the wait.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "cat > /dev/null; exec sleep 300"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let t = Instant::now();
        let gone = || t.elapsed() > Duration::from_millis(300);
        let deadline = t + Duration::from_secs(60);
        let out = supervise(
            &mut cmd,
            "sh",
            b"hi".to_vec(),
            deadline,
            &mut |_| true,
            &gone,
        );
        assert!(
            matches!(&out, Err(CliError::Failed(m)) if m == "client went away"),
            "{:?}",
            out.err()
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn an_exit_is_seen_without_reaping_the_child() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        assert!(exits_within(&mut child, Duration::from_secs(5)));
        // Not reaped by the check: the zombie still holds the pid (and so the group id).
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        assert!(is_zombie(&stat), "{stat}");
        assert_eq!(child.wait().unwrap().code(), Some(3));
        let mut sleeper = Command::new("/bin/sh")
            .args(["-c", "exec sleep 30"])
            .spawn()
            .unwrap();
        assert!(!exits_within(&mut sleeper, Duration::from_millis(100)));
        stop(&mut sleeper, "none");
    }

    #[test]
    fn marked_processes_are_found_by_their_exact_entry_and_killed() {
        let marker = crate::base::ids::hex(&crate::base::ids::random::<16>().unwrap());
        let needle = format!("{CALL_MARKER}={marker}");
        let mut marked_child = Command::new("sleep")
            .arg("30")
            .env(CALL_MARKER, &marker)
            .spawn()
            .unwrap();
        // A longer value that starts with the marker is another call's.
        let mut other = Command::new("sleep")
            .arg("30")
            .env(CALL_MARKER, format!("{marker}0"))
            .spawn()
            .unwrap();
        assert!(has_marker(marked_child.id(), &needle));
        assert!(!has_marker(other.id(), &needle));
        kill_marked(&marker);
        assert!(!marked_child.wait().unwrap().success(), "killed");
        assert!(
            matches!(other.try_wait(), Ok(None)),
            "the other call's runs on"
        );
        other.kill().ok();
        other.wait().ok();
    }
}
