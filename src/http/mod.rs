//! HTTP plumbing for the routes and the server: replies (whole or streamed), request bodies,
//! headers, the client address and CORS.

pub mod body;
pub mod cors;
pub mod stream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tiny_http::{Header, Request, Response};

use crate::base::cidr::{self, Cidr};
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

/// The client's address: the one place that decides it (the auth-failure throttle and the
/// request's record, hence the audit log, take it from here).
///
/// It is the connection's peer (unspecified for a Unix socket), unless that peer is one of
/// `trusted` (`trusted_proxies`): then it comes from `X-Forwarded-For`, read by
/// [`forwarded_client`]. From any other peer the header is ignored, whatever it says, so a
/// client talking to us directly cannot choose the address it is counted under.
pub fn client_ip(rq: &Request, trusted: &[Cidr]) -> IpAddr {
    let peer = rq
        .remote_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !cidr::any_contains(trusted, peer) {
        return peer;
    }
    let forwarded = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("X-Forwarded-For"))
        .map(|h| h.value.as_str());
    forwarded_client(peer, forwarded, trusted)
}

/// The client behind `peer`, a trusted proxy, from its `X-Forwarded-For` values (several
/// header lines read as one list, in order).
///
/// Each proxy appends the address it accepted the connection from, so the list reads
/// client, proxy 1, proxy 2, … left to right, and everything left of what our own proxies
/// wrote is whatever the client chose to send. The safe rule is to walk from the right and
/// take the first address that is not itself a trusted proxy: the one the outermost proxy we
/// trust saw. Taking the left-most instead would let any client claim any address by sending
/// its own header. When every address is a trusted proxy (a request made on the proxy's own
/// host), the left-most one is the client.
///
/// A missing header, or a malformed entry met on that walk (our proxy would not write one),
/// falls back to `peer`: then all such requests are counted under the proxy's own address,
/// never under one the client picked.
fn forwarded_client<'a>(
    peer: IpAddr,
    headers: impl Iterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let entries: Vec<&str> = headers.flat_map(|v| v.split(',')).collect();
    let mut furthest = None;
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_addr(entry) else {
            return peer;
        };
        if !cidr::any_contains(trusted, ip) {
            return ip;
        }
        furthest = Some(ip);
    }
    furthest.unwrap_or(peer)
}

/// One `X-Forwarded-For` entry: an address, also as some proxies write it with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or bracketed (`[2001:db8::1]`). IPv4-mapped IPv6
/// is read as IPv4, like the limits do.
fn forwarded_addr(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(entries: &[&str]) -> Vec<Cidr> {
        entries.iter().map(|e| e.parse().unwrap()).collect()
    }

    /// The client for a request from `peer` (trusted) with these `X-Forwarded-For` lines.
    fn client(peer: &str, headers: &[&str], trusted: &[&str]) -> IpAddr {
        forwarded_client(ip(peer), headers.iter().copied(), &list(trusted))
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let proxies = ["10.0.0.0/8", "::1"];
        // One proxy, as Caddy or nginx send it.
        assert_eq!(
            client("10.0.0.1", &["203.0.113.7"], &proxies),
            ip("203.0.113.7")
        );
        // What the client sent itself stays on the left and is never believed.
        let spoofed = ["198.51.100.1, 203.0.113.7"];
        assert_eq!(client("10.0.0.1", &spoofed, &proxies), ip("203.0.113.7"));
        // A chain of our own proxies is skipped.
        let chain = ["198.51.100.1, 203.0.113.7, 10.0.0.3,10.0.0.2"];
        assert_eq!(client("10.0.0.1", &chain, &proxies), ip("203.0.113.7"));
        // Several header lines are one list, in order.
        let lines = ["198.51.100.1", "203.0.113.7", "10.0.0.2"];
        assert_eq!(client("10.0.0.1", &lines, &proxies), ip("203.0.113.7"));
        // IPv6, with ports and brackets, and mapped IPv4.
        assert_eq!(client("::1", &["2001:db8::7"], &proxies), ip("2001:db8::7"));
        assert_eq!(
            client("::1", &["[2001:db8::7]:443"], &proxies),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("::1", &["[2001:db8::7]"], &proxies),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("::1", &["203.0.113.7:5555"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("::1", &["::ffff:203.0.113.7"], &proxies),
            ip("203.0.113.7")
        );
        // A mapped address of a trusted proxy is trusted too.
        let mapped = ["203.0.113.7, ::ffff:10.0.0.2"];
        assert_eq!(client("::1", &mapped, &proxies), ip("203.0.113.7"));
    }

    #[test]
    fn every_hop_trusted_gives_the_furthest_one() {
        let proxies = ["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.1", &["10.0.0.9, 10.0.0.2"], &proxies),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn missing_or_malformed_falls_back_to_the_peer() {
        let proxies = ["10.0.0.0/8"];
        assert_eq!(client("10.0.0.1", &[], &proxies), ip("10.0.0.1"));
        for bad in [
            "",
            " ",
            "unknown",
            "203.0.113.7, garbage",
            "203.0.113.7,",
            "1.2.3.4.5",
        ] {
            assert_eq!(
                client("10.0.0.1", &[bad], &proxies),
                ip("10.0.0.1"),
                "{bad:?}"
            );
        }
        // Garbage left of the client's address was the client's own say: not looked at.
        let junk_left = ["not an address, 203.0.113.7"];
        assert_eq!(client("10.0.0.1", &junk_left, &proxies), ip("203.0.113.7"));
    }
}
