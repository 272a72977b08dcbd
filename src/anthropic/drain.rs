//! The one loop that reads an Anthropic event stream to its end.
//!
//! Every route that must understand the upstream's events (the OpenAI doors, streaming or
//! not, and `/v1/complete`) reads them here: events are parsed one at a time and handed to a
//! sink; the usage they report is added up; the stream's end is classified once, the same way
//! for every caller. An `error` event ends the stream (it is not handed to the sink); so does
//! a sink that returns `false` (its client went away).

use std::io::Read;

use super::event::{error_of, parse_event, Event};
use super::sse::EventReader;
use super::usage::Usage;
use crate::base::error::UpstreamError;

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `message_stop` arrived, then the stream ended.
    Complete,
    /// The stream carried an `error` event: its `error.type` and message.
    ErrorEvent { kind: String, message: String },
    /// The stream ended without `message_stop`.
    CutShort,
    /// Reading failed (reset, stall, bad framing).
    Broken(UpstreamError),
    /// The sink asked to stop: its client went away.
    Stopped,
}

/// What [`drain`] saw.
#[derive(Debug)]
pub struct Drained {
    pub ending: Ending,
    /// Token usage from `message_start` and `message_delta`, as far as the stream got.
    pub usage: Usage,
}

/// Reads events until the stream ends, handing each to `sink` with whether more input is
/// already buffered (so a writer can wait and send several events in one write). Data that is
/// not JSON is skipped, as Anthropic's own SDKs do.
pub fn drain<R: Read>(
    reader: &mut EventReader<R>,
    mut sink: impl FnMut(&Event, bool) -> bool,
) -> Drained {
    let mut usage = Usage::default();
    let mut stopped = false;
    let ending = loop {
        let ev = match reader.next_event() {
            Ok(Some((name, data))) => match parse_event(&name, &data) {
                Some(ev) => ev,
                None => continue,
            },
            Ok(None) if stopped => break Ending::Complete,
            Ok(None) => break Ending::CutShort,
            Err(e) => break Ending::Broken(e),
        };
        match ev.name.as_str() {
            "message_start" => {
                if let Some(u) = ev.data.pointer("/message/usage") {
                    usage.merge(u);
                }
            }
            "message_delta" => {
                if let Some(u) = ev.data.get("usage") {
                    usage.merge(u);
                }
            }
            "message_stop" => stopped = true,
            "error" => {
                let (kind, message) = error_of(&ev.data);
                break Ending::ErrorEvent { kind, message };
            }
            _ => {}
        }
        if !sink(&ev, reader.more_buffered()) {
            break Ending::Stopped;
        }
    };
    Drained { ending, usage }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Drained, Vec<String>) {
        let mut reader = EventReader::new(text.as_bytes());
        let mut names = Vec::new();
        let drained = drain(&mut reader, |ev, _| {
            names.push(ev.name.clone());
            true
        });
        (drained, names)
    }

    #[test]
    fn a_whole_stream_completes_with_its_usage() {
        let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
                    event: ping\ndata: {\"type\":\"ping\"}\n\n\
                    data: not json\n\n\
                    event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n\
                    event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let (d, names) = run(text);
        assert_eq!(d.ending, Ending::Complete);
        assert_eq!((d.usage.input, d.usage.output), (5, 9));
        assert_eq!(
            names,
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }

    #[test]
    fn an_error_event_ends_the_stream_and_is_not_handed_on() {
        let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n\
                    event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n\
                    event: message_stop\ndata: {}\n\n";
        let (d, names) = run(text);
        assert_eq!(
            d.ending,
            Ending::ErrorEvent {
                kind: "overloaded_error".into(),
                message: "busy".into()
            }
        );
        assert_eq!(names, ["message_start"]);
    }

    #[test]
    fn a_stream_without_message_stop_is_cut_short_and_a_sink_can_stop_it() {
        let (d, _) = run("event: message_start\ndata: {}\n\n");
        assert_eq!(d.ending, Ending::CutShort);
        let mut reader = EventReader::new("data: {\"type\":\"ping\"}\n\ndata: {}\n\n".as_bytes());
        let d = drain(&mut reader, |_, _| false);
        assert_eq!(d.ending, Ending::Stopped);
    }
}
