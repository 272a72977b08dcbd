//! Relaying the upstream's Anthropic event stream to a `/v1/messages` client as it arrives, and
//! noticing the events we act on (usage for the books, errors for the account's health).
//!
//! Lines are forwarded unchanged, but for the data of an `error` event that is one of the
//! subscription's refusals, which gets its advice ([`refusals`]). Whatever complete lines the upstream delivered together go
//! out in one chunk, flushed as soon as no further complete line is buffered — so an event is
//! never held back while we wait on the upstream (rust-stack-notes §2.3). A stream that breaks
//! or stalls ends with an Anthropic `event: error`, never a silent clean end; so does one the
//! server cuts off because it is stopping, with the error saying so.

use std::io::{BufRead, BufReader, Read};

use crate::anthropic::event::error_event;
use crate::anthropic::sse::MAX_LINE;
use crate::anthropic::usage::Usage;
use crate::backends::abandon;
use crate::backends::oauth::refusals::{self, Refusal};
use crate::base::error::UpstreamError;
use crate::http::stream::RawResponse;

/// How a relayed stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream finished after `message_stop`.
    Complete,
    /// The upstream sent an `error` event (its `error.type`), which the client received.
    UpstreamErrorEvent(String),
    /// Reading from the upstream failed (reset, stall, bad framing); the client got an error event.
    UpstreamFailed(UpstreamError),
    /// The upstream closed without `message_stop`; the client got an error event.
    CutShort,
    /// Writing to the client failed: it went away or stopped reading.
    ClientGone,
    /// The server cut the stream off because it is stopping; the client got an error event.
    Stopping,
}

/// What the relay saw.
#[derive(Debug, Default)]
pub struct Observed {
    pub usage: Usage,
    pub events: u64,
    /// The `error` event was one of the subscription's refusals; the client got it with the
    /// advice added ([`refusals`]).
    pub refusal: Option<Refusal>,
}

/// Relays the upstream SSE body to `out` until it ends, then ends the response.
pub fn relay(upstream: impl Read, out: &mut RawResponse) -> (StreamEnd, Observed) {
    let mut br = BufReader::with_capacity(16 * 1024, upstream);
    let mut line = Vec::with_capacity(1024);
    let mut pending = Vec::with_capacity(4096);
    let mut seen = Observed::default();
    let mut event = String::new();
    let mut stopped = false;
    let mut error_type = None;
    let failure = loop {
        line.clear();
        match (&mut br).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(UpstreamError::from_io(e)),
        }
        observe(
            &mut line,
            &mut event,
            &mut seen,
            &mut stopped,
            &mut error_type,
        );
        pending.extend_from_slice(&line);
        if !br.buffer().contains(&b'\n') {
            if out.write(&pending).and_then(|_| out.flush()).is_err() {
                return (StreamEnd::ClientGone, seen);
            }
            pending.clear();
        }
    };
    // However the cut looks from here, a stream the stopping server cut off says so.
    let finished = failure.is_none() && (error_type.is_some() || stopped);
    let end = if let Some(err) = (!finished).then(abandon::stop_error).flatten() {
        end_at_last_whole_event(&mut pending);
        pending.extend(error_event(err.kind.anthropic_type(), &err.message));
        StreamEnd::Stopping
    } else {
        ended(failure, error_type, stopped, &mut pending)
    };
    let written = out.write(&pending).and_then(|_| out.flush());
    if written.is_err() {
        return (StreamEnd::ClientGone, seen);
    }
    (end, seen)
}

/// How a stream that was not cut off ended; the error event the client gets for an early or
/// broken end is added to `pending`.
fn ended(
    failure: Option<UpstreamError>,
    error_type: Option<String>,
    stopped: bool,
    pending: &mut Vec<u8>,
) -> StreamEnd {
    match (failure, error_type, stopped) {
        (None, Some(kind), _) => StreamEnd::UpstreamErrorEvent(kind),
        (None, None, true) => StreamEnd::Complete,
        (None, None, false) => {
            pending.extend(error_event(
                "api_error",
                "the upstream ended the stream early (no message_stop); the answer is incomplete",
            ));
            StreamEnd::CutShort
        }
        (Some(e), _, _) => {
            let message = match &e {
                UpstreamError::Timeout(_) => "the upstream stream stalled (timeouts.stream_idle_ms passed without data); the answer is incomplete".to_string(),
                UpstreamError::Unreachable(m) | UpstreamError::Malformed(m) => format!("the upstream stream broke: {m}; the answer is incomplete"),
            };
            end_at_last_whole_event(pending);
            pending.extend(error_event("api_error", &message));
            StreamEnd::UpstreamFailed(e)
        }
    }
}

/// Makes what is left to write end where an event may follow: a partial line is dropped (half
/// an event would corrupt the client's parser) and an open event is closed.
fn end_at_last_whole_event(pending: &mut Vec<u8>) {
    if !pending.ends_with(b"\n") {
        let keep = pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        pending.truncate(keep);
    }
    if !pending.is_empty() && !pending.ends_with(b"\n\n") {
        pending.push(b'\n');
    }
}

/// Tracks the current event name and picks usage and errors out of the data lines; the data
/// line of an `error` event that is one of the subscription's refusals is replaced by one with
/// the advice.
fn observe(
    whole: &mut Vec<u8>,
    event: &mut String,
    seen: &mut Observed,
    stopped: &mut bool,
    error_type: &mut Option<String>,
) {
    let line = whole.strip_suffix(b"\n").unwrap_or(whole);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        event.clear();
        return;
    }
    if let Some(name) = line.strip_prefix(b"event:") {
        *event = String::from_utf8_lossy(name).trim().to_string();
        seen.events += 1;
        return;
    }
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    match event.as_str() {
        "message_stop" => *stopped = true,
        "message_start" | "message_delta" | "error" => {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
                return;
            };
            if let Some(u) = v
                .get("usage")
                .or_else(|| v.get("message").and_then(|m| m.get("usage")))
            {
                seen.usage.merge(u);
            }
            if event == "error" {
                let kind = v
                    .pointer("/error/type")
                    .and_then(|t| t.as_str())
                    .unwrap_or("api_error");
                *error_type = Some(kind.to_string());
                if let Some((refusal, explained)) = refusals::explain_event(data) {
                    seen.refusal = Some(refusal);
                    *whole = [&b"data: "[..], &explained, b"\n"].concat();
                }
            }
        }
        _ => {}
    }
}
