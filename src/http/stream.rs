//! Responses written by hand on the raw connection, for answers relayed as they arrive.

use std::io::{self, Write};

use tiny_http::Request;

/// A response written by hand on the raw connection, for bodies relayed as they arrive: the
/// status line and headers go out at once, then the body in chunks, flushed when the caller
/// says (per SSE event). tiny_http's own `Response` buffers 8 KiB, which would hold events back.
/// The head of a raw response: status line, the headers that are safe to pass on, CORS, and
/// `framing` (one header line saying how the body ends).
fn head(
    status: u16,
    http10: bool,
    headers: &[(String, String)],
    cors: &[(&'static str, String)],
    framing: &str,
) -> String {
    let reason = tiny_http::StatusCode(status).default_reason_phrase();
    let mut head = format!(
        "HTTP/1.{} {status} {reason}\r\n",
        if http10 { 0 } else { 1 }
    );
    let cors = cors.iter().map(|(n, v)| (*n, v.as_str()));
    for (name, value) in headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(cors)
    {
        // Header values come from the upstream; never let one smuggle a line break, nor a
        // framing header of its own (we frame the body ourselves).
        if !name.contains(['\r', '\n', ':'])
            && !value.contains(['\r', '\n'])
            && !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
        {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str(framing);
    head.push_str("\r\n");
    head
}

pub struct RawResponse {
    w: Box<dyn Write + Send>,
    chunked: bool,
}

impl RawResponse {
    /// Writes the head. HTTP/1.1 clients get chunked framing; HTTP/1.0 clients a body ended by
    /// closing the connection. The request body must already have been read.
    pub fn start(
        rq: Request,
        status: u16,
        headers: &[(String, String)],
        cors: &[(&'static str, String)],
    ) -> io::Result<RawResponse> {
        let http10 = rq.http_version() == &tiny_http::HTTPVersion(1, 0);
        let mut w = rq.into_writer();
        let framing = if http10 {
            "Connection: close\r\n"
        } else {
            "Transfer-Encoding: chunked\r\n"
        };
        let head = head(status, http10, headers, cors, framing);
        crate::observe::record::note_first_byte();
        w.write_all(head.as_bytes())?;
        w.flush()?;
        Ok(RawResponse {
            w,
            chunked: !http10,
        })
    }

    /// Sends a complete answer: head with Content-Length and body in one write.
    pub fn whole(
        rq: Request,
        status: u16,
        headers: &[(String, String)],
        cors: &[(&'static str, String)],
        body: &[u8],
    ) -> io::Result<()> {
        let http10 = rq.http_version() == &tiny_http::HTTPVersion(1, 0);
        let mut w = rq.into_writer();
        let length = format!("Content-Length: {}\r\n", body.len());
        let mut bytes = head(status, http10, headers, cors, &length).into_bytes();
        bytes.extend_from_slice(body);
        crate::observe::record::note_first_byte();
        w.write_all(&bytes)?;
        w.flush()
    }

    /// Writes `data` as one chunk (not flushed).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            write!(self.w, "{:x}\r\n", data.len())?;
            self.w.write_all(data)?;
            self.w.write_all(b"\r\n")
        } else {
            self.w.write_all(data)
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Ends the body properly (the terminating chunk) and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        if self.chunked {
            self.w.write_all(b"0\r\n\r\n")?;
        }
        self.w.flush()
    }
}
