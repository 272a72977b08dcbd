//! The test seam of the page fetcher (debug builds only; the parent declares this module under
//! `cfg(debug_assertions)`, so release builds contain neither the code nor the variable names).
//!
//! Integration tests must reach a local test server, which the guard rightly refuses. Rather
//! than a switch that skips the guard, debug builds read two environment variables that act
//! *around* the real guard:
//! - `CLAUDEGATE_TEST_FETCH_DNS="a.test=1.2.3.4;b.test=1.2.3.4|127.0.0.1;c.test=1.2.3.4,10.0.0.1"`
//!   answers lookups for the listed names instead of the system resolver (`,` separates the
//!   addresses of one answer, `|` successive answers; the last one repeats). The answers go
//!   through the same check as real DNS answers, so tests can prove that a private answer is
//!   refused and that a second, different answer is never used for the connection.
//! - `CLAUDEGATE_TEST_FETCH_ROUTE="1.2.3.4=127.0.0.2"` makes a connection that the guard has
//!   **already approved** for the public address `1.2.3.4` land on the loopback address
//!   `127.0.0.2` instead (same port). Only public → loopback pairs are accepted.
//!
//! Neither can make the guard approve anything: it still sees and judges every address, and the
//! route only applies afterwards to an approved public address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backends::web::guard::blocked_reason;

pub const DNS_VAR: &str = "CLAUDEGATE_TEST_FETCH_DNS";
pub const ROUTE_VAR: &str = "CLAUDEGATE_TEST_FETCH_ROUTE";

/// Fake DNS answers and approved-address routes, from the environment.
#[derive(Default)]
pub struct Seam {
    /// name → (successive answers, lookups so far)
    dns: HashMap<String, (Vec<Vec<IpAddr>>, AtomicUsize)>,
    /// approved public address → loopback address to connect to instead
    routes: Vec<(IpAddr, IpAddr)>,
}

impl Seam {
    pub fn from_env() -> Seam {
        let dns = std::env::var(DNS_VAR).unwrap_or_default();
        let routes = std::env::var(ROUTE_VAR).unwrap_or_default();
        let seam = Seam::parse(&dns, &routes);
        if !seam.dns.is_empty() || !seam.routes.is_empty() {
            crate::base::log::info(&format!(
                "fetch test seam active (debug build): {} fake DNS names, {} routes",
                seam.dns.len(),
                seam.routes.len()
            ));
        }
        seam
    }

    pub fn parse(dns: &str, routes: &str) -> Seam {
        let mut seam = Seam::default();
        for entry in dns.split(';').filter(|e| !e.trim().is_empty()) {
            let Some((name, answers)) = entry.split_once('=') else {
                continue;
            };
            let answers: Vec<Vec<IpAddr>> = answers
                .split('|')
                .map(|a| {
                    a.split(',')
                        .filter_map(|ip| ip.trim().parse().ok())
                        .collect()
                })
                .collect();
            seam.dns.insert(
                name.trim().to_ascii_lowercase(),
                (answers, AtomicUsize::new(0)),
            );
        }
        for entry in routes.split(',').filter(|e| !e.trim().is_empty()) {
            let parsed = entry.split_once('=').and_then(|(a, b)| {
                Some((a.trim().parse().ok()?, b.trim().parse::<IpAddr>().ok()?))
            });
            match parsed {
                // Only an address the guard would approve may be re-routed, and only to
                // this machine's loopback.
                Some((from, to)) if blocked_reason(from).is_none() && to.is_loopback() => {
                    seam.routes.push((from, to))
                }
                _ => crate::base::log::info(&format!("{ROUTE_VAR}: ignoring {entry:?}")),
            }
        }
        seam
    }

    /// The next fake answer for `name`, if it is listed (the last answer repeats).
    pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        let (answers, count) = self.dns.get(name)?;
        let n = count.fetch_add(1, Ordering::SeqCst);
        let answer = answers
            .get(n)
            .or(answers.last())
            .cloned()
            .unwrap_or_default();
        crate::base::log::info(&format!(
            "fetch test seam: DNS lookup #{} of {name} -> {answer:?}",
            n + 1
        ));
        Some(answer)
    }

    /// Where to connect for an address the guard has approved.
    pub fn route(&self, addr: SocketAddr) -> SocketAddr {
        match self.routes.iter().find(|(from, _)| *from == addr.ip()) {
            Some((_, to)) if blocked_reason(addr.ip()).is_none() => {
                SocketAddr::new(*to, addr.port())
            }
            _ => addr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seam_only_routes_public_to_loopback() {
        let s = Seam::parse(
            "a.test=1.2.3.4;b.test=1.2.3.4|127.0.0.1",
            "1.2.3.4=127.0.0.2,10.0.0.1=127.0.0.1,8.8.8.8=1.1.1.1",
        );
        let to = |a: &str| s.route(a.parse().unwrap()).to_string();
        assert_eq!(to("1.2.3.4:81"), "127.0.0.2:81");
        assert_eq!(to("10.0.0.1:81"), "10.0.0.1:81");
        assert_eq!(to("8.8.8.8:81"), "8.8.8.8:81");
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(s.lookup("b.test"), Some(vec![ip("1.2.3.4")]));
        assert_eq!(s.lookup("b.test"), Some(vec![ip("127.0.0.1")]));
        assert_eq!(s.lookup("b.test"), Some(vec![ip("127.0.0.1")]));
        assert_eq!(s.lookup("c.test"), None);
    }
}
