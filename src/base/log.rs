//! Logging to stderr, one line per event, at the level set by the `debug` config key.
//!
//! Levels: `off` logs only start-up and fatal problems, `errors` adds upstream and request
//! failures, `verbose` adds one line per request (method, path without query, status,
//! duration). Callers must never pass a key, token or prompt: log lines carry labels, paths and
//! statuses only.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// How much to log (`debug` config key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off = 0,
    Errors = 1,
    Verbose = 2,
}

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// Always printed: start-up, shutdown and problems the operator must see.
pub fn info(msg: &str) {
    line("info", msg);
}

/// Printed at `errors` and `verbose`.
pub fn error(msg: &str) {
    if enabled(Level::Errors) {
        line("error", msg);
    }
}

/// Printed at `verbose` only.
pub fn verbose(msg: &str) {
    if enabled(Level::Verbose) {
        line("debug", msg);
    }
}

fn line(tag: &str, msg: &str) {
    let now = crate::base::clock::rfc3339(crate::base::clock::unix_now());
    eprintln!("{now} claudegate[{tag}]: {msg}");
}
