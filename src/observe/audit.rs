//! The audit log: one JSON line per authenticated request in `data_dir/audit.log`, made from
//! the request's record ([`crate::observe::record`]), and the totals per key that
//! `claudegate usage` shows.
//!
//! Writing never blocks or fails a request: lines go to a writer thread through a bounded
//! channel, a full channel drops the line (counted in the metrics), and file errors are logged
//! once and never reach a client. The file rotates by size (`audit.log` → `audit.log.1` …
//! `audit.log.N`), every file mode 0600. A line holds labels, numbers and ids only — never
//! prompt or response text, keys or tokens.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::base::log;
use crate::config::AuditConfig;
use crate::observe::metrics::METRICS;
use crate::observe::record::Record;

/// Lines that may wait for the writer; past that they are dropped and counted.
const CHANNEL_LINES: usize = 4096;
/// How long the writer lets lines gather after a wake-up before writing them.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Where the log goes and how it rotates.
#[derive(Clone, Debug)]
struct Target {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
}

/// The path of the audit log for a config: `audit.path`, or `data_dir/audit.log`.
pub fn log_path(cfg: &AuditConfig, data_dir: &Path) -> PathBuf {
    match cfg.path.as_deref() {
        Some(p) => crate::base::fsutil::expand_home(p),
        None => data_dir.join("audit.log"),
    }
}

/// What the writer thread is handed: a line, or a request to confirm that everything handed
/// before it is written.
enum Msg {
    Line(String),
    Flush(SyncSender<()>),
}

/// The handle workers use to hand lines to the writer thread.
pub struct AuditLog {
    tx: Option<SyncSender<Msg>>,
}

impl AuditLog {
    /// Starts the writer thread; a disabled log writes nothing and starts no thread.
    pub fn start(cfg: &AuditConfig, data_dir: &Path) -> Result<AuditLog, String> {
        if !cfg.enabled {
            return Ok(AuditLog { tx: None });
        }
        let target = Target {
            path: log_path(cfg, data_dir),
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_LINES);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(&target, &rx))
            .map_err(|e| format!("cannot start the audit writer thread: {e}"))?;
        Ok(AuditLog { tx: Some(tx) })
    }

    /// Queues one line; never blocks. A full queue drops the line and counts it.
    pub fn write(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                METRICS.audit_dropped()
            }
        }
    }

    /// Waits, at most `within`, until every line queued so far is in the file (without the
    /// writer's batching pause): what a stopping server does last. Returns whether they are.
    pub fn flush(&self, within: Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let deadline = Instant::now() + within;
        let (done, written) = mpsc::sync_channel(1);
        let mut msg = Msg::Flush(done);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The JSON line for a finished request.
pub fn line(
    r: &Record,
    key: &str,
    backend: &str,
    status: u16,
    account_state: &str,
    ended: Instant,
) -> String {
    let ms = |t: Instant| t.saturating_duration_since(r.started).as_millis() as u64;
    json!({
        "time": crate::base::clock::rfc3339(r.unix),
        "key": key,
        "ip": r.ip.to_string(),
        "route": r.route,
        "backend": backend,
        "model": r.model,
        "status": status,
        "duration_ms": ms(ended),
        "ttfb_ms": r.first_byte.map(ms),
        "input_tokens": r.usage.input,
        "output_tokens": r.usage.output,
        "cache_read_tokens": r.usage.cache_read,
        "cache_creation_tokens": r.usage.cache_creation,
        "request_id": r.request_id,
        "account_state": account_state,
    })
    .to_string()
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open; make sure it is private all the same.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `audit.log.{keep-1}` → `.{keep}`, …, `audit.log` → `.1`; the oldest falls off.
fn rotate(t: &Target) -> io::Result<()> {
    if t.keep == 0 {
        return fs::remove_file(&t.path);
    }
    fs::remove_file(rotated(&t.path, t.keep)).ok();
    for n in (1..t.keep).rev() {
        let from = rotated(&t.path, n);
        if from.exists() {
            fs::rename(&from, rotated(&t.path, n + 1))?;
        }
    }
    fs::rename(&t.path, rotated(&t.path, 1))
}

fn writer(t: &Target, rx: &Receiver<Msg>) {
    let mut file: Option<(File, u64)> = None;
    let mut reported = false;
    let mut report = |what: &str, e: io::Error| {
        if !reported {
            reported = true;
            log::info(&format!(
                "audit log {}: {what}: {e}; audit lines are lost until this is fixed (further errors not logged)",
                t.path.display()
            ));
        }
    };
    // Wake for the first line, then let the rest of a burst gather for a moment and write it
    // in one go: a wake-up per request cost more CPU than the rest of the audit work together.
    // A flush is answered once the lines before it are written, without that pause.
    while let Ok(first) = rx.recv() {
        if matches!(first, Msg::Line(_)) {
            std::thread::sleep(BATCH_WINDOW);
        }
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            let mut line = match msg {
                Msg::Line(line) => line,
                Msg::Flush(done) => {
                    done.try_send(()).ok();
                    continue;
                }
            };
            line.push('\n');
            let len = line.len() as u64;
            if let Some((_, size)) = &file {
                if *size > 0 && size + len > t.max_bytes {
                    file = None;
                    if let Err(e) = rotate(t) {
                        report("cannot rotate", e);
                    }
                }
            }
            if file.is_none() {
                match open(&t.path) {
                    Ok(f) => file = Some(f),
                    Err(e) => {
                        report("cannot open", e);
                        continue;
                    }
                }
            }
            if let Some((f, size)) = file.as_mut() {
                match f.write_all(line.as_bytes()) {
                    Ok(()) => *size += len,
                    Err(e) => {
                        report("cannot write", e);
                        file = None;
                    }
                }
            }
        }
    }
}

// ---- Totals per key (what `claudegate usage` shows) ---------------------------------------

/// Totals for one key.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

/// Adds up the log and its rotated files per key, from `since` (a UTC day) on. Lines that are
/// not ours (or cut short by a crash) are skipped.
pub fn totals(path: &Path, since: Option<u64>) -> BTreeMap<String, Totals> {
    let since = since.map(crate::base::clock::day_string);
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    // Rotated files first (oldest to newest), then the live one. Whatever consecutive files
    // exist are read, so files kept under an earlier, larger `audit.keep` still count.
    let mut files: Vec<PathBuf> = (1..=1000)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    for file in files {
        let Ok(f) = File::open(&file) else { continue };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let (Some(key), Some(time)) = (v["key"].as_str(), v["time"].as_str()) else {
                continue;
            };
            // RFC 3339 UTC times sort as text, so a day prefix compares directly.
            if since.as_deref().is_some_and(|s| time.get(..10) < Some(s)) {
                continue;
            }
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            let t = out.entry(key.to_string()).or_default();
            t.requests += 1;
            t.errors += u64::from(n("status") >= 400);
            t.input += n("input_tokens");
            t.output += n("output_tokens");
            t.cache_read += n("cache_read_tokens");
            t.cache_creation += n("cache_creation_tokens");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_writes_every_queued_line_without_the_batching_pause() {
        let dir = std::env::temp_dir().join(format!("cg-audit-flush-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = AuditLog::start(&crate::config::Config::default().audit, &dir).unwrap();
        for n in 0..3 {
            log.write(format!("{{\"n\":{n}}}"));
        }
        assert!(log.flush(Duration::from_secs(5)));
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        // The flush itself is answered without the pause when nothing is queued.
        let t = Instant::now();
        assert!(log.flush(Duration::from_secs(5)));
        assert!(t.elapsed() < BATCH_WINDOW, "{:?}", t.elapsed());
        let off = AuditLog { tx: None };
        assert!(
            off.flush(Duration::ZERO),
            "a disabled log has nothing to flush"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
