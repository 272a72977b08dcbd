//! `claudegate::anthropic::sse::EventReader` (the SSE parser of the OpenAI front doors) on
//! arbitrary bytes.
//!
//! Input: one flags byte, then the upstream's byte stream. The flags pick how the stream is cut
//! into reads (1 to 128 bytes, or whole buffers; see `Pieces`) and whether it ends with an
//! I/O error instead of a clean end.
//!
//! Checks, beyond no panic and no endless loop (`next_event` is called until `Ok(None)` or
//! `Err`):
//! - buffering does not matter: the events read in pieces are those read from one slice
//!   (all of them on a clean end; a prefix when the stream breaks, which loses the event
//!   being read);
//! - an injected error is reported as `Err`, never as a clean end;
//! - an event name has no surrounding whitespace and neither name nor data holds a `\r`
//!   line ending left over from the framing.
#![no_main]

use claudegate::anthropic::sse::EventReader;
use claudegate_fuzz::{split_flags, Pieces};
use libfuzzer_sys::fuzz_target;

fn read_all<R: std::io::Read>(r: R) -> (Vec<(String, String)>, bool) {
    let mut reader = EventReader::new(r);
    let mut events = Vec::new();
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => return (events, false),
            Err(_) => return (events, true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, stream)) = split_flags(data) else {
        return;
    };
    let fail = match flags >> 6 {
        2 => Some(std::io::ErrorKind::TimedOut),
        3 => Some(std::io::ErrorKind::ConnectionReset),
        _ => None,
    };
    let (whole, whole_failed) = read_all(stream);
    assert!(!whole_failed, "a slice cannot fail to read");
    for (name, _) in &whole {
        assert_eq!(name.trim(), name, "event names are trimmed");
    }
    let (pieces, failed) = read_all(Pieces::new(stream, flags, fail));
    assert_eq!(failed, fail.is_some(), "an I/O error must surface as Err");
    if failed {
        assert!(
            whole.starts_with(&pieces),
            "events before a broken read differ from the whole stream's"
        );
    } else {
        assert_eq!(pieces, whole, "events depend on how the bytes arrived");
    }
});
