//! `claudegate::routes::relay::relay` (the Anthropic pass-through stream) on arbitrary upstream
//! bytes, written to a `RawResponse` over tiny_http's `TestRequest` (whose writer is a sink), so
//! no socket is needed.
//!
//! Input: one flags byte (read sizes and an optional injected I/O error, as in `sse_reader`),
//! then the upstream's byte stream.
//!
//! Checks, beyond no panic and termination:
//! - an injected read error ends as `StreamEnd::UpstreamFailed`, a clean end never does, and
//!   a sink never makes the client look gone;
//! - `Observed::events` counts exactly the upstream's `event:` lines (but an unterminated
//!   last line when the read fails).
#![no_main]

use claudegate::http::stream::RawResponse;
use claudegate::routes::relay::{relay, StreamEnd};
use claudegate_fuzz::{split_flags, Pieces};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((flags, stream)) = split_flags(data) else {
        return;
    };
    let fail = match flags >> 6 {
        2 => Some(std::io::ErrorKind::TimedOut),
        3 => Some(std::io::ErrorKind::ConnectionReset),
        _ => None,
    };
    let rq: tiny_http::Request = tiny_http::TestRequest::new().into();
    let mut out = RawResponse::start(rq, 200, &[], &[]).expect("a sink accepts the head");
    let (end, seen) = relay(Pieces::new(stream, flags, fail), &mut out);
    // Lines as the relay reads them; a read error drops the unterminated last one.
    let mut lines: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    if fail.is_some() {
        lines.pop();
    }
    let event_lines = lines.iter().filter(|l| l.starts_with(b"event:")).count() as u64;
    assert_eq!(seen.events, event_lines, "event lines miscounted");
    match (&end, fail) {
        (StreamEnd::UpstreamFailed(_), Some(_)) => {}
        (StreamEnd::UpstreamFailed(_), None) => panic!("a clean end reported as a failure"),
        (_, Some(_)) => panic!("an injected error was not reported: {end:?}"),
        (StreamEnd::ClientGone, None) => panic!("a sink never goes away"),
        _ => {}
    }
});
