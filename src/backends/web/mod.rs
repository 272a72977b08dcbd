//! The page fetcher: one public web page fetched through this host (`/v1/fetch`), behind the
//! address guard on every hop.
//!
//! A fetch is a chain of hops, at most `fetch.max_redirects` redirects long, all within
//! `fetch.timeout_ms`. Each hop:
//! 1. parses its URL itself (`url.rs`), not with a resolver: numeric host forms are turned into
//!    the address they mean, and a literal non-public address is refused at once;
//! 2. resolves a name once with the system resolver, and **every** address it returns must be
//!    public (`guard.rs` lists what is not);
//! 3. connects to exactly those checked addresses and nothing else (`connect.rs`: the pinned
//!    resolver, no proxy, ureq's own redirects off).
//!
//! Each `Location` is resolved against the current URL and goes through steps 1–3 again. The
//! final answer's body is read and decoded by `page.rs`. No configuration key can turn the
//! guard off; debug builds have a test seam that works *around* it (see `seam.rs`).

mod connect;
mod guard;
mod page;
#[cfg(debug_assertions)]
mod seam;
mod strip;
mod url;

pub use page::Page;
pub use url::{parse_url, Target, UrlError};

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::backends::web::connect::{remaining, timed_out};
use crate::backends::web::guard::{blocked_message, blocked_name_message, blocked_reason};
use crate::backends::web::url::{join_url, Host};
use crate::base::error::{ApiError, ErrorKind};
use crate::config::FetchConfig;

/// Fetches pages; one per server.
pub struct Fetcher {
    /// The whole fetch's time limit, redirects included (`fetch.timeout_ms`).
    timeout: Duration,
    /// `fetch.max_redirects`.
    max_redirects: u32,
    #[cfg(debug_assertions)]
    seam: seam::Seam,
}

impl Fetcher {
    pub fn new(cfg: &FetchConfig) -> Fetcher {
        Fetcher {
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_redirects: cfg.max_redirects,
            #[cfg(debug_assertions)]
            seam: seam::Seam::from_env(),
        }
    }

    /// Fetches `first` (already parsed, so already free of literal non-public addresses),
    /// following redirects by hand and guarding and pinning every hop; reads at most
    /// `max_bytes` of the final body, stripping HTML when `strip` is set.
    pub fn fetch(&self, first: Target, max_bytes: u64, strip: bool) -> Result<Page, ApiError> {
        let deadline = Instant::now() + self.timeout;
        let mut target = first;
        let mut redirects = 0;
        loop {
            let addrs = self.resolve(&target, deadline).map_err(|mut e| {
                if redirects > 0 && e.kind == ErrorKind::InvalidRequest {
                    e.message = format!("redirect refused: {}", e.message);
                }
                e
            })?;
            #[cfg(debug_assertions)]
            let addrs: Vec<SocketAddr> = addrs.into_iter().map(|a| self.seam.route(a)).collect();
            let mut resp = connect::get(&target, addrs, deadline)?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let is_redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
            if let Some(location) = location.filter(|_| is_redirect) {
                if redirects >= self.max_redirects {
                    return Err(ApiError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "more than {} redirects (fetch.max_redirects)",
                            self.max_redirects
                        ),
                    ));
                }
                redirects += 1;
                let next = join_url(&target, &location).map_err(UrlError::in_redirect)?;
                target = parse_url(&next).map_err(UrlError::in_redirect)?;
                continue;
            }
            return page::read_page(&mut resp, &target, status, max_bytes, strip);
        }
    }

    /// The checked addresses for `target`: a literal is judged as it is, a name is resolved
    /// once and every address it yields must be public.
    fn resolve(&self, target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, ApiError> {
        let ips = match &target.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self.lookup(name, target.port, deadline)?,
        };
        if ips.is_empty() {
            return Err(ApiError::new(
                ErrorKind::BadGateway,
                format!("cannot resolve {}: no addresses", target.host),
            ));
        }
        for ip in &ips {
            if let Some(reason) = blocked_reason(*ip) {
                let message = match &target.host {
                    Host::Ip(_) => blocked_message(&format!("{ip} is {reason}")),
                    Host::Name(name) => blocked_name_message(name),
                };
                return Err(ApiError::new(ErrorKind::InvalidRequest, message));
            }
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }

    /// Resolves `name` with the system resolver, within the fetch's deadline.
    fn lookup(&self, name: &str, port: u16, deadline: Instant) -> Result<Vec<IpAddr>, ApiError> {
        #[cfg(debug_assertions)]
        if let Some(ips) = self.seam.lookup(name) {
            return Ok(ips);
        }
        let bad_gateway = |m: String| ApiError::new(ErrorKind::BadGateway, m);
        let wait = remaining(deadline)?;
        // getaddrinfo has no timeout of its own; a thread lets us stop waiting for it. A lookup
        // that hangs ends on the resolver's own timeout and its thread with it.
        let (tx, rx) = mpsc::sync_channel(1);
        let query = format!("{name}:{port}");
        let spawned = std::thread::Builder::new()
            .name("fetch-dns".into())
            .spawn(move || {
                let answer = query
                    .to_socket_addrs()
                    .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>());
                tx.send(answer).ok();
            });
        if spawned.is_err() {
            return Err(bad_gateway("cannot start a DNS lookup right now".into()));
        }
        match rx.recv_timeout(wait) {
            Ok(Ok(ips)) => Ok(ips),
            Ok(Err(e)) => Err(bad_gateway(format!("cannot resolve {name}: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(bad_gateway(format!("cannot resolve {name}")))
            }
        }
    }
}
