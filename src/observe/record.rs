//! The record of the request being handled on this thread: who called (key label, IP), which
//! route and model, the upstream's request id, tokens, and when the first byte went out.
//!
//! The record lives in a thread-local on the worker handling the request: the server starts
//! it when a request arrives and closes it when the answer is done, turning it into metrics
//! and an audit line. Everything in between only calls the small `note_*` functions, so no
//! handler or backend signature carries audit plumbing, and no handler writes an audit line.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Instant;

use crate::anthropic::usage::Usage;

/// Longest model name kept in a line (the field comes from the client).
const MAX_MODEL_CHARS: usize = 100;
/// Longest upstream request id kept.
const MAX_ID_CHARS: usize = 200;

/// What is known about the request being handled on this thread.
#[derive(Debug)]
pub struct Record {
    pub started: Instant,
    pub unix: u64,
    pub route: &'static str,
    pub ip: IpAddr,
    pub key: Option<String>,
    pub model: Option<String>,
    pub usage: Usage,
    pub request_id: Option<String>,
    pub first_byte: Option<Instant>,
}

thread_local! {
    static CURRENT: RefCell<Option<Record>> = const { RefCell::new(None) };
}

fn with(f: impl FnOnce(&mut Record)) {
    CURRENT.with(|c| {
        if let Some(r) = c.borrow_mut().as_mut() {
            f(r)
        }
    });
}

/// Starts this thread's record for a new request (replacing any leftover one).
pub fn begin(route: &'static str, ip: IpAddr) {
    let record = Record {
        started: Instant::now(),
        unix: crate::base::clock::unix_now(),
        route,
        ip,
        key: None,
        model: None,
        usage: Usage::default(),
        request_id: None,
        first_byte: None,
    };
    CURRENT.with(|c| *c.borrow_mut() = Some(record));
}

/// Ends this thread's record and returns it.
pub fn finish() -> Option<Record> {
    CURRENT.with(|c| c.borrow_mut().take())
}

/// The request passed authentication with the key labelled `label`.
pub fn note_key(label: &str) {
    with(|r| r.key = Some(label.to_string()));
}

/// The model the request asked for.
pub fn note_model(model: &str) {
    with(|r| r.model = Some(model.chars().take(MAX_MODEL_CHARS).collect()));
}

/// Token counts of the answer (added up, should a request make several calls).
pub fn note_usage(u: Usage) {
    with(|r| {
        r.usage.input += u.input;
        r.usage.output += u.output;
        r.usage.cache_read += u.cache_read;
        r.usage.cache_creation += u.cache_creation;
    });
}

/// The upstream's `request-id` (the last one wins: retries replace earlier attempts).
pub fn note_request_id(id: &str) {
    with(|r| r.request_id = Some(id.chars().take(MAX_ID_CHARS).collect()));
}

/// The first byte of the response is going out now (only the first call counts).
pub fn note_first_byte() {
    with(|r| {
        r.first_byte.get_or_insert_with(Instant::now);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_per_thread_and_first_byte_sticks() {
        note_model("ignored: no record yet");
        assert!(finish().is_none());
        begin("messages", IpAddr::from([127, 0, 0, 1]));
        note_key("app");
        note_model(&"m".repeat(500));
        note_first_byte();
        let first = CURRENT.with(|c| c.borrow().as_ref().and_then(|r| r.first_byte));
        note_first_byte();
        note_usage(Usage {
            input: 3,
            output: 4,
            cache_read: 0,
            cache_creation: 1,
        });
        let r = finish().unwrap();
        assert_eq!(r.first_byte, first);
        assert_eq!(r.model.unwrap().len(), MAX_MODEL_CHARS);
        assert_eq!(r.usage.output, 4);
        assert!(finish().is_none());
    }
}
