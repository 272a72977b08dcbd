//! Logging to stderr, one line per event, at the level set by the `debug` config key.
//!
//! Levels: `off` logs only start-up and fatal problems, `errors` adds upstream and request
//! failures, `verbose` adds one line per request (method, path without query, status,
//! duration). Callers must never pass a key, token or prompt: log lines carry labels, paths and
//! statuses only.
//!
//! Much of what is logged comes from outside (a request's path, an upstream's error text), so
//! every message is escaped here, in the one place all lines pass: control characters (ESC,
//! CR, LF, …, DEL, the C1 range) and the invisible characters that reorder or break displayed
//! text become `\x1b`, `\r`, `\u{202e}`, …, so nobody can recolour the operator's terminal or
//! forge a log line. Ordinary text, any script's UTF-8 included, is printed as it is.

use std::borrow::Cow;
use std::fmt::Write;
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
    eprintln!("{now} claudegate[{tag}]: {}", escape(msg));
}

/// Whether `c` must not reach a terminal or a log file as it is: a control character (C0, DEL,
/// C1), a line or paragraph separator, or a mark that changes the direction of displayed text.
fn unsafe_char(c: char) -> bool {
    // U+061C, U+200E/F and U+202A–E, U+2066–9: direction marks, embeddings, overrides and
    // isolates; U+2028/9: the line and paragraph separators.
    c.is_control()
        || matches!(
            c as u32,
            0x061c | 0x200e | 0x200f | 0x2028 | 0x2029 | 0x202a..=0x202e | 0x2066..=0x2069
        )
}

/// `msg` with every [`unsafe_char`] escaped (`\r`, `\n`, `\t`, `\x1b`, `\u{202e}`); unchanged (and
/// not copied) when there is none.
fn escape(msg: &str) -> Cow<'_, str> {
    if !msg.chars().any(unsafe_char) {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 16);
    for c in msg.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_direction_characters_are_escaped_and_text_kept() {
        assert!(matches!(escape("GET /v1/café -> 200"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\x1b[31mb\rc\nd\te\x7f\u{9b}f\u{202e}g\u{2028}h\0"),
            "a\\x1b[31mb\\rc\\nd\\te\\x7f\\u{9b}f\\u{202e}g\\u{2028}h\\x00"
        );
        assert_eq!(escape("日本語 café ünïcödé 🚀"), "日本語 café ünïcödé 🚀");
        assert_eq!(escape(r"C:\path\x1b"), r"C:\path\x1b", "backslashes stay");
    }
}
