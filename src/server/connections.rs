//! What the server decides on tiny_http's threads before a request exists: which connections
//! are admitted (`max_connections` in total and `max_connections_per_ip` from one address,
//! vendor patch 10), the body of the answers tiny_http writes itself (vendor patch 11), and
//! whether the open-files limit leaves room for the connections allowed.
//!
//! Each connection costs a thread and two file descriptors for as long as its socket is open.
//! Unbounded, 1,050 idle reconnecting sockets under `ulimit -n 1024` made `/health` take
//! seconds and saving the usage counters fail with "Too many open files". A connection over a
//! cap is refused at once on the accept thread with a 503, so the connections already admitted
//! keep being served.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::base::error::{ApiError, ErrorKind, Protocol};
use crate::base::log;
use crate::base::sync::lock;
use crate::config::Config;
use crate::observe::metrics::METRICS;

/// At most one log line about refused connections this often: a reconnecting client can be
/// refused thousands of times a second.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The connections open now, by client address, against the two caps.
pub struct Connections {
    max: usize,
    per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Only addresses with a connection open: never more entries than `max`.
    by_ip: HashMap<IpAddr, usize>,
    /// Refusals since the last log line about them, and when that line was written.
    refused: u64,
    logged: Option<Instant>,
}

/// One admitted connection; dropping it (when the connection's socket closes) frees its slot.
pub struct Slot {
    table: Arc<Connections>,
    ip: Option<IpAddr>,
}

impl Connections {
    pub fn new(max: usize, per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            per_ip,
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `peer` (`None`: no address, counted in the total only), or
    /// says why not, in words for the client.
    pub fn admit(self: &Arc<Self>, peer: Option<SocketAddr>) -> Result<Slot, String> {
        // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d; count it as a.b.c.d.
        let ip = peer.map(|p| p.ip().to_canonical());
        let (why, report) = {
            let mut open = lock(&self.open);
            let Some(why) = self.over_a_cap(&open, ip) else {
                open.total += 1;
                if let Some(ip) = ip {
                    *open.by_ip.entry(ip).or_insert(0) += 1;
                }
                METRICS.connection(true);
                return Ok(Slot {
                    table: self.clone(),
                    ip,
                });
            };
            open.refused += 1;
            METRICS.connection_refused();
            let due = open.logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY);
            let report = due.then(|| {
                open.logged = Some(Instant::now());
                (std::mem::take(&mut open.refused), open.total)
            });
            (why, report)
        };
        // Logged after the lock is released: writing to stderr can block.
        if let Some((refused, open)) = report {
            log::error(&format!(
                "refused {refused} connection(s) at the caps ({open} open; max_connections {}, \
                 max_connections_per_ip {})",
                self.max, self.per_ip
            ));
        }
        Err(why)
    }

    /// Why one more connection from `ip` would be over a cap, if it would.
    fn over_a_cap(&self, open: &Open, ip: Option<IpAddr>) -> Option<String> {
        let from_ip = ip.map_or(0, |ip| open.by_ip.get(&ip).copied().unwrap_or(0));
        if open.total >= self.max {
            Some(format!(
                "claudegate has too many open connections (max_connections is {}); \
                 retry shortly",
                self.max
            ))
        } else if from_ip >= self.per_ip {
            Some(format!(
                "too many open connections from your address (max_connections_per_ip is {}); \
                 close idle connections or retry shortly",
                self.per_ip
            ))
        } else {
            None
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        METRICS.connection(false);
        let mut open = lock(&self.table.open);
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = open.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.by_ip.remove(&ip);
                }
            }
        }
    }
}

/// The body of an answer tiny_http writes itself, before any route is known (a malformed or
/// ambiguous request head, headers too large, an HTTP version we do not speak, a connection
/// over the caps): the OpenAI error shape, the one most clients parse; the caller's protocol
/// cannot be told from a head that could not be read.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    let kind = match status {
        408 => ErrorKind::Timeout,
        413 | 431 => ErrorKind::TooLarge,
        503 => ErrorKind::Busy,
        500..=599 if status != 505 => ErrorKind::Internal,
        _ => ErrorKind::InvalidRequest,
    };
    ApiError::new(kind, message).body(Protocol::OpenAi)
}

/// File descriptors the server may hold at once with `config`: two per connection, an
/// upstream socket per worker plus ureq's idle pool (as large as the workers), three pipes per
/// CLI process, and 64 for the listener, stdio, the token refresher and the data files.
pub fn descriptors_needed(config: &Config) -> u64 {
    let connections = 2 * config.max_connections as u64;
    let upstream = 2 * config.workers as u64;
    connections + upstream + 3 * u64::from(config.cli.max_concurrent) + 64
}

/// Raises the soft open-files limit to the hard one and logs what came of it, warning when the
/// limit is still too low for `config` (then connections beyond it fail with "Too many open
/// files" instead of a clear 503).
pub fn raise_open_files_limit(config: &Config) {
    let limit = match crate::base::sys::raise_open_files_limit() {
        Ok((old, new)) if new > old => {
            log::info(&format!("open files limit raised from {old} to {new}"));
            new
        }
        Ok((_, limit)) => {
            log::info(&format!(
                "open files limit {limit} (the hard limit already)"
            ));
            limit
        }
        Err(e) => {
            log::info(&format!("cannot read or raise the open files limit: {e}"));
            return;
        }
    };
    let needed = descriptors_needed(config);
    if limit < needed {
        log::info(&format!(
            "the open files limit ({limit}) is below the {needed} this configuration may need \
             (max_connections {} at two each, workers, CLI processes): raise `ulimit -n` \
             (LimitNOFILE= in a systemd unit) or lower max_connections",
            config.max_connections
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 1000))
    }

    #[test]
    fn caps_per_address_and_in_total_and_slots_come_back() {
        let table = Connections::new(3, 2);
        let a1 = table.admit(peer("10.0.0.1")).unwrap();
        // The same client through a dual-stack listener.
        let _a2 = table.admit(peer("::ffff:10.0.0.1")).unwrap();
        let e = table.admit(peer("10.0.0.1")).err().unwrap();
        assert!(e.contains("max_connections_per_ip is 2"), "{e}");
        let _b = table.admit(peer("10.0.0.2")).unwrap();
        let e = table.admit(peer("10.0.0.3")).err().unwrap();
        assert!(e.contains("max_connections is 3"), "{e}");
        drop(a1);
        let _c = table.admit(None).unwrap();
        assert_eq!(lock(&table.open).by_ip.len(), 2);
    }

    #[test]
    fn the_table_forgets_closed_addresses() {
        let table = Connections::new(10, 10);
        let slots: Vec<Slot> = (0..10)
            .map(|i| table.admit(peer(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        drop(slots);
        let open = lock(&table.open);
        assert_eq!((open.total, open.by_ip.len()), (0, 0));
    }

    #[test]
    fn error_bodies_are_openai_errors() {
        let v: serde_json::Value = serde_json::from_slice(&error_body(431, "too big")).unwrap();
        assert_eq!(v["error"]["message"], "too big");
        assert_eq!(v["error"]["code"], "request_too_large");
        let v: serde_json::Value = serde_json::from_slice(&error_body(503, "full")).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }

    /// The defaults fit the usual `ulimit -n` of 1024 even where it cannot be raised.
    #[test]
    fn the_defaults_fit_in_1024_descriptors() {
        assert!(descriptors_needed(&Config::default()) <= 1024);
    }
}
