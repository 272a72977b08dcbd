//! The benchmark's own HTTP/1.1 client: one keep-alive connection, requests written in one
//! `write`, responses read by Content-Length or chunked framing. It is deliberately minimal so
//! that the client costs the same few microseconds whichever server it talks to; what differs
//! between the direct and the proxied figures is then the proxy.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A POST with the headers every benchmark request carries.
pub fn post(path: &str, key: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         x-api-key: {key}\r\nanthropic-version: 2023-06-01\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// How a response body is framed.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.writer.write_all(request)
    }

    /// Sends a request and reads the whole response; returns the status and the body.
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.send(request)?;
        let (status, framing) = self.read_head()?;
        let mut body = Vec::new();
        match framing {
            Framing::Length(n) => {
                body.resize(n, 0);
                self.reader.read_exact(&mut body)?;
            }
            Framing::Chunked => {
                let mut chunks = Chunked::new(&mut self.reader);
                chunks.read_to_end(&mut body)?;
            }
            Framing::UntilClose => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok((status, body))
    }

    /// Reads a response head; returns the status and how the body is framed.
    pub fn read_head(&mut self) -> io::Result<(u16, Framing)> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut framing = Framing::UntilClose;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                framing = Framing::Length(value.parse().map_err(io::Error::other)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                framing = Framing::Chunked;
            }
        }
        Ok((status, framing))
    }

    /// The body after `read_head`, as a reader (for streams).
    pub fn body(&mut self, framing: Framing) -> Box<dyn Read + '_> {
        match framing {
            Framing::Chunked => Box::new(Chunked::new(&mut self.reader)),
            Framing::Length(n) => Box::new((&mut self.reader).take(n as u64)),
            Framing::UntilClose => Box::new(&mut self.reader),
        }
    }
}

/// Decodes a chunked body; each `read` returns at most what is left of the current chunk, so
/// an event written as one chunk is seen as soon as it arrives.
pub struct Chunked<'a, R: BufRead> {
    inner: &'a mut R,
    left: usize,
    done: bool,
}

impl<'a, R: BufRead> Chunked<'a, R> {
    pub fn new(inner: &'a mut R) -> Self {
        Chunked {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF that ends the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
            if self.left == 0 {
                line.clear();
                self.inner.read_line(&mut line)?;
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}
