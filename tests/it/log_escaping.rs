//! Client-controlled text in the log (issue "Hardening II", item 9): a request path holding
//! terminal escape sequences or a carriage return must not reach stderr raw, where it could
//! recolour the operator's terminal or overwrite a log line with a forged one. Control
//! characters come out escaped; ordinary UTF-8 stays readable.

use crate::common::gate::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Waits up to 5 s for a log line containing `needle`; returns the whole log.
fn log_with(gate: &Gate, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gate.log();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends, on a raw socket, a request whose path holds ESC sequences (a colour and a cursor
/// movement), a bare CR and tabs forging a log line, a backspace, a BEL and a DEL (tiny_http
/// takes these in a request line; it refuses non-ASCII bytes there, so the C1 controls,
/// direction overrides and UTF-8 are covered by `base::log`'s unit test). Proves the
/// `verbose` request line shows each control character escaped (`\x1b`, `\r`, `\t`, `\x08`, `\x07`,
/// `\x7f`), never raw, and that the forged text stays inside the one real line.
#[test]
fn control_characters_in_a_logged_path_come_out_escaped() {
    let (gate, _key) = Gate::start_with_key(json!({"debug": "verbose"}));
    let path =
        "/v1/\x1b[31mred\x1b[0m\x1b[2A\rFAKE\tclaudegate[info]:\tforged\x08\x07\x7f/caf%C3%A9";
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = raw_exchange(gate.addr, request.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");

    let log = log_with(&gate, "-> 404");
    let line = log
        .lines()
        .find(|l| l.contains("-> 404"))
        .unwrap_or_else(|| panic!("no request line in the log:\n{log}"));
    for raw in ['\x1b', '\r', '\t', '\x08', '\x07', '\x7f'] {
        assert!(!log.contains(raw), "{raw:?} reached the log raw: {line:?}");
    }
    let escaped =
        r"/v1/\x1b[31mred\x1b[0m\x1b[2A\rFAKE\tclaudegate[info]:\tforged\x08\x07\x7f/caf%C3%A9";
    assert!(line.contains(escaped), "{line:?}");
    assert_eq!(
        log.lines().filter(|l| l.contains("forged")).count(),
        1,
        "one request, one log line:\n{log}"
    );
}
