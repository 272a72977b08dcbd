//! Reading a server-sent event stream one event at a time (`event:` name and `data:` text),
//! for the code that must understand each event rather than pass bytes along.
//!
//! Framing follows the SSE format: comment lines are skipped, multi-line data is joined with
//! newlines, `\r\n` and `\n` line ends are both accepted. No line may exceed [`MAX_LINE`] and
//! no event's data [`MAX_EVENT`]: a stream that breaks either is reported as
//! [`UpstreamError::Malformed`] at once, so reading it never holds more than that.

use std::io::{BufRead, BufReader, Read};

use crate::base::error::UpstreamError;

/// Longest SSE line accepted from the upstream (a big tool input can arrive as one line).
pub const MAX_LINE: u64 = 16 << 20;

/// Largest event accepted: the joined `data:` text of one event. Anthropic sends each event as
/// one `data:` line, and its largest events (a big tool input delta, a whole message) are far
/// below this; it equals [`MAX_LINE`] so that any one line we accept makes an event we accept.
/// Without it an event of many `data:` lines and no blank line grew without end (one 1 GB
/// event took the process to 1.05 GB), to be thrown away as bad JSON at its end.
pub const MAX_EVENT: u64 = MAX_LINE;

/// Reads SSE events (`event:` name and `data:` text) one at a time, for the translating front
/// doors, which must understand each event rather than pass bytes along.
pub struct EventReader<R: Read> {
    br: BufReader<R>,
    line: Vec<u8>,
}

impl<R: Read> EventReader<R> {
    pub fn new(upstream: R) -> EventReader<R> {
        EventReader {
            br: BufReader::with_capacity(16 * 1024, upstream),
            line: Vec::with_capacity(1024),
        }
    }

    /// The next event as (name, data); `Ok(None)` at the end of the stream. Comment lines are
    /// skipped; multi-line data is joined with newlines, as the SSE format defines. A line
    /// longer than [`MAX_LINE`] or an event larger than [`MAX_EVENT`] is an error: cutting
    /// either short would hand on a different event than the upstream sent.
    pub fn next_event(&mut self) -> Result<Option<(String, String)>, UpstreamError> {
        let mut name = String::new();
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let n = (&mut self.br)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(UpstreamError::from_io)?;
            if n as u64 > MAX_LINE {
                return Err(too_large("a line", MAX_LINE));
            }
            if n == 0 {
                // End of stream; an event without its blank line still counts.
                return Ok(data.map(|d| (name, d)));
            }
            let line = String::from_utf8_lossy(&self.line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(d) = data.take() {
                    return Ok(Some((name, d)));
                }
                name.clear();
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                let v = v.strip_prefix(' ').unwrap_or(v);
                let held = data.as_ref().map_or(0, |d| d.len() + 1);
                if (held + v.len()) as u64 > MAX_EVENT {
                    return Err(too_large("an event", MAX_EVENT));
                }
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(v);
                    }
                    None => data = Some(v.to_string()),
                }
            }
        }
    }

    /// True when another complete line is already buffered, so writing can wait for it.
    pub fn more_buffered(&self) -> bool {
        self.br.buffer().contains(&b'\n')
    }
}

/// The error for a line or event over its limit (`limit` bytes, a whole number of MiB).
fn too_large(what: &str, limit: u64) -> UpstreamError {
    UpstreamError::Malformed(format!(
        "{what} exceeded {} MiB, the most claudegate holds for one",
        limit >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_across_odd_framing() {
        let text = ": comment\r\nevent: a\r\ndata: {\"x\":1}\r\n\r\nevent: b\ndata: line1\ndata: line2\n\ndata: tail";
        let mut r = EventReader::new(text.as_bytes());
        assert_eq!(
            r.next_event().unwrap(),
            Some(("a".into(), "{\"x\":1}".into()))
        );
        assert_eq!(
            r.next_event().unwrap(),
            Some(("b".into(), "line1\nline2".into()))
        );
        assert_eq!(r.next_event().unwrap(), Some(("".into(), "tail".into())));
        assert_eq!(r.next_event().unwrap(), None);
    }

    #[test]
    fn an_event_or_a_line_over_its_limit_is_an_error() {
        let line = format!("data: {}\n", "x".repeat(1 << 20));
        let many = format!("event: big\n{}\n", line.repeat(17));
        let mut r = EventReader::new(many.as_bytes());
        let err = r.next_event().unwrap_err();
        assert!(err.to_string().contains("an event"), "{err}");
        assert!(err.to_string().contains("exceeded 16 MiB"), "{err}");

        // Up to the limit is fine, and one line as long as a line may be makes one event.
        let fits = format!("data: {}\n\n", "y".repeat(MAX_EVENT as usize - 7));
        let mut r = EventReader::new(fits.as_bytes());
        let (_, data) = r.next_event().unwrap().unwrap();
        assert_eq!(data.len(), MAX_EVENT as usize - 7);

        let long = format!("data: {}\n\n", "z".repeat(MAX_LINE as usize));
        let mut r = EventReader::new(long.as_bytes());
        let err = r.next_event().unwrap_err();
        assert!(err.to_string().contains("a line"), "{err}");
    }
}
