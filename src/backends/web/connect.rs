//! One hop of a page fetch on the wire: a GET connected only to addresses the guard has
//! already approved, and what its failures mean for the caller.
//!
//! The connection is **pinned**: ureq gets a [`Resolver`] that never looks anything up and
//! hands back exactly the checked addresses, while the URL, `Host` header and TLS SNI keep the
//! name. A DNS answer that changes after the check (rebinding) therefore cannot move the
//! connection. ureq never follows redirects itself (`max_redirects(0)`; the fetch loop in
//! [`super`] does, guarding each hop), and no proxy is ever used: a proxy would resolve the
//! name itself and undo the pinning.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, NextTimeout, RustlsConnector, TcpConnector};

use crate::backends::web::url::Target;
use crate::base::error::{is_timeout, ApiError, ErrorKind};

/// Sent as `User-Agent`: browser-compatible, so bot walls that only look for "Mozilla" let it
/// through, yet honest about what it is.
const USER_AGENT: &str = concat!(
    "Mozilla/5.0 (compatible; claudegate/",
    env!("CARGO_PKG_VERSION"),
    ")"
);

const ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,text/*;q=0.8,*/*;q=0.5";

/// One GET of `target`, connected only to `addrs` (already checked), within `deadline`.
pub fn get(
    target: &Target,
    addrs: Vec<SocketAddr>,
    deadline: Instant,
) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
    let pinned = Pinned {
        host: target.host.to_string(),
        addrs,
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(remaining(deadline)?))
        .user_agent(USER_AGENT)
        .accept(ACCEPT)
        .accept_encoding("identity")
        .tls_config(crate::backends::upstream::tls_config())
        .max_idle_connections(0)
        .build();
    // TCP then TLS, and nothing else: no proxy connectors, so the pinned address is the
    // one connected to. A fresh agent per hop keeps pins and pooled connections apart.
    let connector = ().chain(TcpConnector::default()).chain(RustlsConnector::default());
    let agent = ureq::Agent::with_parts(config, connector, pinned);
    agent
        .get(target.url())
        .header("Accept-Language", "en-US,en;q=0.8")
        .call()
        .map_err(|e| transport_failure(e, target))
}

/// The whole fetch, redirects included, ran out of time.
pub fn timed_out() -> ApiError {
    ApiError::new(
        ErrorKind::GatewayTimeout,
        "the fetch took longer than fetch.timeout_ms",
    )
}

/// Time left before `deadline`, or the timeout failure.
pub fn remaining(deadline: Instant) -> Result<Duration, ApiError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out())
    } else {
        Ok(left)
    }
}

/// The one mapping of a transport failure (connecting, TLS, reading the answer) to the
/// caller's error: 504 for timeouts, 502 for everything the remote side got wrong.
pub fn transport_failure(e: ureq::Error, target: &Target) -> ApiError {
    let bad_gateway = |m: String| ApiError::new(ErrorKind::BadGateway, m);
    let host = target.host.to_string();
    match e {
        _ if is_timeout(&e) => timed_out(),
        ureq::Error::Io(io) => bad_gateway(format!("cannot reach {host}: {io}")),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            bad_gateway(format!("cannot reach {host}"))
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            bad_gateway(format!("TLS with {host} failed: {e}"))
        }
        other => bad_gateway(format!("bad answer from {host}: {other}")),
    }
}

/// A ureq resolver that never resolves: it hands back the addresses the guard checked, and
/// only for the host they were checked for.
#[derive(Debug)]
struct Pinned {
    /// The host as in the URL (IPv6 without brackets).
    host: String,
    addrs: Vec<SocketAddr>,
}

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let asked = uri.host().unwrap_or("");
        let asked = asked.trim_start_matches('[').trim_end_matches(']');
        if !asked.eq_ignore_ascii_case(&self.host) {
            return Err(ureq::Error::HostNotFound);
        }
        let mut out = self.empty();
        // ureq keeps at most 16 addresses; more would panic its push.
        for addr in self.addrs.iter().take(16) {
            out.push(*addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_resolver_only_answers_for_its_host() {
        let p = Pinned {
            host: "example.com".into(),
            addrs: vec!["93.184.215.14:443".parse().unwrap()],
        };
        let cfg = ureq::config::Config::default();
        let t = NextTimeout::default();
        let ok = p
            .resolve(&"https://example.com/x".parse().unwrap(), &cfg, t)
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert!(p
            .resolve(&"https://evil.com/".parse().unwrap(), &cfg, t)
            .is_err());
        let v6 = Pinned {
            host: "2606:4700::1".into(),
            addrs: vec!["[2606:4700::1]:8443".parse().unwrap()],
        };
        assert!(v6
            .resolve(&"http://[2606:4700::1]:8443/".parse().unwrap(), &cfg, t)
            .is_ok());
    }
}
