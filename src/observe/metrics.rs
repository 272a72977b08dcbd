//! Process-wide counters and histograms, and `GET /metrics` in the Prometheus text format.
//!
//! One global [`METRICS`] so any module can count without threading a handle through: the
//! server counts requests, latency and time to first byte per route, the upstream path counts
//! response statuses, the account counts refreshes. Gauges that mirror state kept elsewhere
//! (account cooldown, utilisation, busy workers), and the account's failure counts by class
//! (kept by the account, so `/admin/accounts` and this page cannot disagree), are read when
//! the page is rendered.
//!
//! Label sets are bounded on purpose: route is one of the fixed route names (or `other`),
//! statuses are numbers, token kinds, refresh results and failure classes are fixed words. No
//! key, IP or prompt ever becomes a label, so the page cannot grow with traffic or leak who
//! called.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::anthropic::ratelimit::{Window, STATUSES};
use crate::anthropic::usage::Usage;
use crate::base::sync::lock;

/// Histogram upper bounds in milliseconds (5 ms … 120 s), plus the implicit `+Inf`.
const BUCKETS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000,
];

#[derive(Default, Clone)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    counts: [u64; BUCKETS_MS.len() + 1],
    sum_us: u64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, us: u64) {
        let i = BUCKETS_MS
            .iter()
            .position(|&b| us <= b * 1000)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }
}

#[derive(Default)]
struct PerRoute {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    ttfb: BTreeMap<&'static str, Histogram>,
}

/// Everything counted since the process started.
pub struct Metrics {
    routes: Mutex<Option<PerRoute>>,
    upstream: Mutex<BTreeMap<u16, u64>>,
    tokens: [AtomicU64; 4],
    refresh_ok: AtomicU64,
    refresh_failed: AtomicU64,
    streams: AtomicI64,
    queue_rejections: AtomicU64,
    audit_dropped: AtomicU64,
    connections_open: AtomicI64,
    connections_refused: AtomicU64,
}

/// The one instance.
pub static METRICS: Metrics = Metrics {
    routes: Mutex::new(None),
    upstream: Mutex::new(BTreeMap::new()),
    tokens: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    refresh_ok: AtomicU64::new(0),
    refresh_failed: AtomicU64::new(0),
    streams: AtomicI64::new(0),
    queue_rejections: AtomicU64::new(0),
    audit_dropped: AtomicU64::new(0),
    connections_open: AtomicI64::new(0),
    connections_refused: AtomicU64::new(0),
};

/// Keeps a status label within HTTP's range, so a garbled upstream cannot invent labels.
fn status_label(status: u16) -> u16 {
    if (100..=599).contains(&status) {
        status
    } else {
        0
    }
}

/// Counts one stream while it is held (the active streams gauge).
pub struct StreamGuard(());

impl Drop for StreamGuard {
    fn drop(&mut self) {
        METRICS.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// One finished request: its route, status, total time and time to first byte.
    pub fn request(&self, route: &'static str, status: u16, total_us: u64, ttfb_us: u64) {
        let mut guard = lock(&self.routes);
        let r = guard.get_or_insert_with(PerRoute::default);
        *r.requests.entry((route, status_label(status))).or_default() += 1;
        r.latency.entry(route).or_default().observe(total_us);
        r.ttfb.entry(route).or_default().observe(ttfb_us);
    }

    pub fn upstream_status(&self, status: u16) {
        *lock(&self.upstream)
            .entry(status_label(status))
            .or_default() += 1;
    }

    pub fn tokens(&self, u: Usage) {
        for (slot, n) in self
            .tokens
            .iter()
            .zip([u.input, u.output, u.cache_read, u.cache_creation])
        {
            slot.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn refresh(&self, ok: bool) {
        let c = if ok {
            &self.refresh_ok
        } else {
            &self.refresh_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a stream as active until the guard is dropped.
    pub fn stream(&self) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(())
    }

    pub fn queue_rejected(&self) {
        self.queue_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn audit_dropped(&self) {
        self.audit_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection was admitted (`true`) or closed (`false`).
    pub fn connection(&self, opened: bool) {
        let d = if opened { 1 } else { -1 };
        self.connections_open.fetch_add(d, Ordering::Relaxed);
    }

    /// A client connection was refused at `max_connections` or `max_connections_per_ip`.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// State owned elsewhere, read at render time.
pub struct Gauges {
    pub workers: usize,
    /// Requests queued or running (`State::jobs`).
    pub jobs: usize,
    /// `ok`, `cooldown`, `blocked`, `needs_login` or `not_logged_in`.
    pub account_state: &'static str,
    /// Unix seconds the cooldown ends (0 when none).
    pub cooldown_until: u64,
    /// Last seen `anthropic-ratelimit-unified-*` values, name without the prefix.
    pub ratelimit: BTreeMap<String, String>,
    /// The account's failure counts by class (a fixed list of names), in the order to show.
    pub failure_classes: Vec<(&'static str, u64)>,
    /// The subscription's usage windows as `/admin/accounts` shows them (names already checked
    /// to be plain words, at most [`crate::anthropic::ratelimit::MAX_WINDOWS`]).
    pub windows: Vec<Window>,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn secs(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    per_route: &BTreeMap<&'static str, Histogram>,
) {
    header(out, name, "histogram", help);
    for (route, h) in per_route {
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = BUCKETS_MS
                .get(i)
                .map_or("+Inf".to_string(), |ms| format!("{}", *ms as f64 / 1000.0));
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", secs(h.sum_us));
        let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
    }
}

/// The whole page, Prometheus text format 0.0.4.
pub fn render(g: &Gauges) -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(8 * 1024);
    let routes = lock(&m.routes);
    let empty = PerRoute::default();
    let r = routes.as_ref().unwrap_or(&empty);

    header(
        &mut out,
        "claudegate_requests_total",
        "counter",
        "Requests answered, by route and status.",
    );
    for ((route, status), n) in &r.requests {
        let _ = writeln!(
            out,
            "claudegate_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    histogram(
        &mut out,
        "claudegate_request_duration_seconds",
        "Time from a worker taking a request until it was answered, by route.",
        &r.latency,
    );
    histogram(
        &mut out,
        "claudegate_time_to_first_byte_seconds",
        "Time from a worker taking a request until the first response byte, by route.",
        &r.ttfb,
    );
    drop(routes);

    header(
        &mut out,
        "claudegate_tokens_total",
        "counter",
        "Tokens reported by the upstream, by kind.",
    );
    for (kind, n) in ["input", "output", "cache_read", "cache_creation"]
        .iter()
        .zip(&m.tokens)
    {
        let n = n.load(Ordering::Relaxed);
        let _ = writeln!(out, "claudegate_tokens_total{{kind=\"{kind}\"}} {n}");
    }

    header(
        &mut out,
        "claudegate_upstream_responses_total",
        "counter",
        "Upstream responses, by status (every attempt, retries included).",
    );
    for (status, n) in lock(&m.upstream).iter() {
        let _ = writeln!(
            out,
            "claudegate_upstream_responses_total{{status=\"{status}\"}} {n}"
        );
    }

    header(
        &mut out,
        "claudegate_token_refreshes_total",
        "counter",
        "OAuth token refreshes, by result.",
    );
    for (result, c) in [("success", &m.refresh_ok), ("failure", &m.refresh_failed)] {
        let n = c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "claudegate_token_refreshes_total{{result=\"{result}\"}} {n}"
        );
    }

    header(
        &mut out,
        "claudegate_account_state",
        "gauge",
        "1 for the account's current state.",
    );
    for state in ["ok", "cooldown", "blocked", "needs_login", "not_logged_in"] {
        let v = u8::from(state == g.account_state);
        let _ = writeln!(out, "claudegate_account_state{{state=\"{state}\"}} {v}");
    }
    header(
        &mut out,
        "claudegate_cooldown_active",
        "gauge",
        "1 while the account is cooling down after Anthropic limited it.",
    );
    let _ = writeln!(
        out,
        "claudegate_cooldown_active {}",
        u8::from(g.account_state == "cooldown")
    );
    header(
        &mut out,
        "claudegate_cooldown_until_seconds",
        "gauge",
        "Unix time the cooldown ends (0 when none).",
    );
    let _ = writeln!(
        out,
        "claudegate_cooldown_until_seconds {}",
        g.cooldown_until
    );

    header(
        &mut out,
        "claudegate_account_failures_total",
        "counter",
        "Upstream failures booked against the account, by class (the subscription's refusals \
         that are not rate limits each have their own).",
    );
    for (class, n) in &g.failure_classes {
        let _ = writeln!(
            out,
            "claudegate_account_failures_total{{class=\"{class}\"}} {n}"
        );
    }

    // One unlabelled sample with its header.
    let single = |out: &mut String, name: &str, kind: &str, help: &str, v: String| {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    };
    let gauge =
        |out: &mut String, name: &str, help: &str, v: String| single(out, name, "gauge", help, v);
    let streams = m.streams.load(Ordering::Relaxed).max(0);
    gauge(
        &mut out,
        "claudegate_streams_active",
        "Streaming responses in progress.",
        streams.to_string(),
    );
    gauge(
        &mut out,
        "claudegate_workers",
        "Worker threads.",
        g.workers.to_string(),
    );
    gauge(
        &mut out,
        "claudegate_workers_busy",
        "Workers handling a request.",
        g.jobs.min(g.workers).to_string(),
    );
    gauge(
        &mut out,
        "claudegate_queue_waiting",
        "Requests waiting for a worker.",
        g.jobs.saturating_sub(g.workers).to_string(),
    );

    gauge(
        &mut out,
        "claudegate_connections_open",
        "Client connections open (max_connections caps them).",
        m.connections_open
            .load(Ordering::Relaxed)
            .max(0)
            .to_string(),
    );
    single(
        &mut out,
        "claudegate_connections_refused_total",
        "counter",
        "Client connections refused with 503 at max_connections or max_connections_per_ip.",
        m.connections_refused.load(Ordering::Relaxed).to_string(),
    );
    single(
        &mut out,
        "claudegate_queue_rejections_total",
        "counter",
        "Requests refused with 503 because every worker was busy and the queue was full.",
        m.queue_rejections.load(Ordering::Relaxed).to_string(),
    );
    single(
        &mut out,
        "claudegate_audit_lines_dropped_total",
        "counter",
        "Audit log lines dropped because the writer fell behind.",
        m.audit_dropped.load(Ordering::Relaxed).to_string(),
    );

    // Last seen anthropic-ratelimit-unified-{5h,7d}-{utilization,reset}; absent until seen.
    let number = |name: &str| {
        g.ratelimit
            .get(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    header(&mut out, "claudegate_ratelimit_utilization", "gauge", "Last seen subscription utilisation (0..1) per window, from anthropic-ratelimit-unified-*-utilization.");
    for window in ["5h", "7d"] {
        if let Some(v) = number(&format!("{window}-utilization")) {
            let _ = writeln!(
                out,
                "claudegate_ratelimit_utilization{{window=\"{window}\"}} {v}"
            );
        }
    }
    header(
        &mut out,
        "claudegate_ratelimit_reset_seconds",
        "gauge",
        "Last seen reset time (unix seconds) per window, from anthropic-ratelimit-unified-*-reset.",
    );
    for window in ["5h", "7d"] {
        if let Some(v) = number(&format!("{window}-reset")) {
            let _ = writeln!(
                out,
                "claudegate_ratelimit_reset_seconds{{window=\"{window}\"}} {v}"
            );
        }
    }
    usage_windows(&mut out, &g.windows);
    out
}

/// The usage windows: utilisation, reset time, and status (1 for the current one). The window
/// names come from the upstream but are plain words, at most 16 (`anthropic::ratelimit`), so
/// the label set stays bounded; a value not reported has no sample.
fn usage_windows(out: &mut String, windows: &[Window]) {
    header(
        out,
        "claudegate_usage_utilization",
        "gauge",
        "How much of each subscription usage window is used (0..1), from the usage endpoint or the last answer's headers.",
    );
    for w in windows {
        if let Some(u) = w.utilization {
            let _ = writeln!(
                out,
                "claudegate_usage_utilization{{window=\"{}\"}} {u}",
                w.name
            );
        }
    }
    header(
        out,
        "claudegate_usage_reset_timestamp_seconds",
        "gauge",
        "Unix time each subscription usage window resets.",
    );
    for w in windows {
        if let Some(t) = w.resets_at {
            let _ = writeln!(
                out,
                "claudegate_usage_reset_timestamp_seconds{{window=\"{}\"}} {t}",
                w.name
            );
        }
    }
    header(
        out,
        "claudegate_usage_status",
        "gauge",
        "1 for each usage window's current status (allowed, allowed_warning, rejected).",
    );
    for w in windows.iter().filter(|w| w.status.is_some()) {
        for status in STATUSES {
            let v = u8::from(w.status == Some(status));
            let _ = writeln!(
                out,
                "claudegate_usage_status{{window=\"{}\",status=\"{status}\"}} {v}",
                w.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        let mut h = Histogram::default();
        h.observe(5_000); // exactly 5 ms → le 0.005
        h.observe(5_001); // just over → le 0.01
        h.observe(200_000_000); // 200 s → +Inf
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[BUCKETS_MS.len()], 1);
        assert_eq!(h.count, 3);
    }
}
