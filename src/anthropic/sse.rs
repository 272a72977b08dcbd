//! Reading a server-sent event stream one event at a time (`event:` name and `data:` text),
//! for the code that must understand each event rather than pass bytes along.
//!
//! Framing follows the SSE format: comment lines are skipped, multi-line data is joined with
//! newlines, `\r\n` and `\n` line ends are both accepted, and no line may exceed [`MAX_LINE`].

use std::io::{BufRead, BufReader, Read};

use crate::base::error::UpstreamError;

/// Longest SSE line accepted from the upstream (a big tool input can arrive as one line).
pub const MAX_LINE: u64 = 16 << 20;

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
    /// skipped; multi-line data is joined with newlines, as the SSE format defines.
    pub fn next_event(&mut self) -> Result<Option<(String, String)>, UpstreamError> {
        let mut name = String::new();
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let n = (&mut self.br)
                .take(MAX_LINE)
                .read_until(b'\n', &mut self.line)
                .map_err(UpstreamError::from_io)?;
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
}
