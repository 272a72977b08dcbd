use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // claudegate patch (1): body bytes the previous request left unread, skipped here
    unread: std::sync::Arc<std::sync::atomic::AtomicUsize>,

    // claudegate patch (12): the socket of `sink`, handed to each request (`Request::socket_fd`)
    socket_fd: Option<std::os::fd::RawFd>,
}

/// claudegate patch (3): longest header line and most header lines accepted.
const MAX_HEADER_LINE: usize = 8192;
const MAX_HEADERS: usize = 100;
/// claudegate patch (11): the 431's message, naming both limits above.
const HEADERS_TOO_LARGE: &str =
    "request head too large: at most 100 header lines of at most 8192 bytes each";
/// claudegate patch (1): most unread body bytes skipped to keep a connection alive.
const MAX_SKIP: usize = 1 << 20;

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// claudegate patch (3): header line or count over the limits
    HeadersTooLarge,
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// claudegate patch (11): framing a front proxy could read differently (see `refusal`)
    BadFraming(&'static str),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let socket_fd = write_socket.raw_fd(); // claudegate patch (12)

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            unread: Default::default(),
            socket_fd, // claudegate patch (12)
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(&mut self, deadline: Option<Instant>) -> IoResult<AsciiString> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
            // claudegate patch (3): bound each line, and the time a client may take to send all
            if buf.len() > MAX_HEADER_LINE {
                return Err(IoError::new(ErrorKind::InvalidData, "header line too long"));
            }
            if buf.len() % 64 == 0 && deadline.map_or(false, |d| Instant::now() > d) {
                return Err(IoError::new(ErrorKind::WouldBlock, "headers too slow"));
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // claudegate patch (4): the keep-alive idle timeout starts when the previous response is
        // complete, not when its request was read, so a response that takes longer than the
        // read timeout (a long stream) does not cost the connection.
        let mut writer = self.sink.next().unwrap();
        writer.wait_turn();

        // claudegate patch (9): the previous response said `Connection: close`; close now,
        // without reading what the client is still sending
        if self.unread.load(Ordering::Acquire) == crate::request::CLOSE_CONNECTION {
            let err = IoError::new(ErrorKind::Other, "closed after a Connection: close response");
            return Err(ReadError::ReadIoError(err));
        }

        // claudegate patch (1): wait for the previous request's body reader to be dropped (an
        // empty read blocks until it is and data is buffered), then skip what it left unread.
        self.next_header_source
            .read(&mut [])
            .map_err(ReadError::ReadIoError)?;
        let unread = self.unread.swap(0, Ordering::AcqRel);
        if unread > MAX_SKIP {
            let err = IoError::new(ErrorKind::InvalidData, "unread body too large to skip");
            return Err(ReadError::ReadIoError(err));
        }
        if unread > 0 {
            let mut skip = (&mut self.next_header_source).take(unread as u64);
            if std::io::copy(&mut skip, &mut std::io::sink())
                .map_err(ReadError::ReadIoError)?
                < unread as u64
            {
                let err = IoError::new(ErrorKind::UnexpectedEof, "body ended early");
                return Err(ReadError::ReadIoError(err));
            }
        }
        // claudegate patch (3): the whole head must arrive within one read timeout
        let timeout_ms = crate::SOCKET_READ_TIMEOUT_MS.load(Ordering::Relaxed);
        let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));

        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self.read_next_line(deadline).map_err(ReadError::ReadIoError)?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = match self.read_next_line(deadline) {
                        Err(e) if e.kind() == ErrorKind::InvalidData => {
                            return Err(ReadError::HeadersTooLarge)
                        }
                        other => other.map_err(ReadError::ReadIoError)?,
                    };

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() >= MAX_HEADERS {
                        return Err(ReadError::HeadersTooLarge);
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };
        // claudegate patch (11): refuse ambiguous framing before a body is read
        if let Some(why) = crate::refusal::framing_error(&headers) {
            return Err(ReadError::BadFraming(why));
        }

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let mut request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr.as_ref().ok().copied().flatten(), // claudegate patch (5)
            data_source,
            writer,
            Some(self.unread.clone()),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;
        request.socket_fd = self.socket_fd; // claudegate patch (12)

        // return the request
        Ok(request)
    }
}

impl ClientConnection {
    /// claudegate patch (11): answers with an error on the next writer in turn, and ends the
    /// connection.
    fn answer_error(&mut self, ver: HTTPVersion, status: u16, message: &str) -> Option<Request> {
        if let Some(writer) = self.sink.next() {
            crate::refusal::write_error(writer, ver, status, message);
        }
        None
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            // claudegate patch (11): each of tiny_http's own answers has an error body, says
            // `Connection: close`, and closes: where the next request would start is unknown.
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    let message = "malformed request line: send `METHOD /path HTTP/1.1`";
                    return self.answer_error(HTTPVersion(1, 1), 400, message);
                }
                Err(ReadError::WrongHeader(ver)) => {
                    let message = "malformed request header: send `Name: value` lines";
                    return self.answer_error(ver, 400, message);
                }
                Err(ReadError::BadFraming(why)) => {
                    return self.answer_error(HTTPVersion(1, 1), 400, why);
                }
                Err(ReadError::HeadersTooLarge) => {
                    return self.answer_error(HTTPVersion(1, 1), 431, HEADERS_TOO_LARGE);
                }
                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    let message = "the request head did not arrive in time";
                    return self.answer_error(HTTPVersion(1, 1), 408, message);
                }
                Err(ReadError::ExpectationFailed(ver)) => {
                    let message = "unsupported Expect header: only `100-continue` is understood";
                    return self.answer_error(ver, 417, message);
                }
                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                // claudegate patch (6): answer on the request's own writer and close. Writing
                // through a second writer waited for this request's writer forever.
                // claudegate patch (11): with an error body, like every answer of tiny_http's own
                let message = "HTTP version not supported: send HTTP/1.1 (or 1.0)";
                crate::refusal::write_error(rq.into_writer(), HTTPVersion(1, 1), 505, message);
                return None;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
