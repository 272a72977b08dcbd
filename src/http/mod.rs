//! HTTP plumbing for the routes and the server: replies (whole or streamed), request bodies,
//! headers, the client address and CORS.

pub mod body;
pub mod cors;
pub mod stream;

use std::net::{IpAddr, Ipv4Addr};

use tiny_http::{Header, Request, Response};

use crate::base::error::{ApiError, Protocol};

/// Headers added to every answer of a request (the CORS grant, when there is one).
pub type Cors = [(&'static str, String)];

/// A complete (non-streaming) response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body,
        }
    }

    /// An error in the caller's protocol: its status, JSON body, `Retry-After` and headers.
    pub fn error(err: &ApiError, protocol: Protocol) -> Reply {
        let mut reply = Reply::json(err.status_in(protocol), err.body(protocol));
        if let Some(secs) = err.retry_after {
            reply.headers.push(("Retry-After", secs.to_string()));
        }
        reply.headers.extend(err.headers.iter().cloned());
        reply
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: vec![],
        }
    }
}

/// Writes `reply` (plus the CORS grant, if any) and consumes the request. Write errors mean
/// the client went away; there is nobody left to tell, so they are ignored.
pub fn send(rq: Request, reply: Reply, cors: &Cors) {
    crate::observe::record::note_first_byte();
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    for (name, value) in reply.headers.iter().chain(cors) {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    rq.respond(response).ok();
}

/// Answers `rq` with `err` in the caller's protocol; returns the status sent (for the log line).
pub fn fail(rq: Request, err: ApiError, protocol: Protocol, cors: &Cors) -> u16 {
    let status = err.status_in(protocol);
    send(rq, Reply::error(&err, protocol), cors);
    status
}

/// The value of the first header called `name` (case-insensitive).
pub fn header<'a>(rq: &'a Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The client's IP (unspecified for a Unix socket).
pub fn client_ip(rq: &Request) -> IpAddr {
    rq.remote_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
