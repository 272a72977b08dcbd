//! Large contexts: a coding agent resends its whole history every turn, 1–5 MB of JSON. What
//! claudegate adds to one such request on each route, over the same bytes sent to the upstream
//! directly (the large-body [`Sink`]: it reads the body and answers at once), in interleaved
//! rounds; and the peak memory of translating one such request, on a fresh server.
//!
//! Routes: `/v1/messages` from Claude Code (byte passthrough), `/v1/messages` from another
//! client (the cloaked rewrite), `/v1/chat/completions` and `/v1/responses` (translated). Every
//! request streams, as agents do.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::gate::{Gate, Setup};
use crate::http1::Conn;
use crate::upstreams::Sink;
use crate::{history, median, ms, procfs, row, Row};

/// The size of the history: 5 MB, a 1M-token context.
pub const BODY_BYTES: usize = 5_000_000;

/// Claude Code's own headers: its requests pass through byte for byte.
const CLAUDE_CODE: &[(&str, &str)] = &[
    ("User-Agent", "claude-cli/2.1.330 (external, cli)"),
    ("x-app", "cli"),
];

/// One route: its name, path, the headers it adds, and the history in its shape.
struct Route {
    name: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
}

fn routes() -> Vec<Route> {
    let anthropic = history::anthropic(BODY_BYTES);
    vec![
        Route {
            name: "/v1/messages from Claude Code (byte passthrough)",
            path: "/v1/messages?beta=true",
            headers: CLAUDE_CODE,
            body: anthropic.clone(),
        },
        Route {
            name: "/v1/messages from another client (cloaked rewrite)",
            path: "/v1/messages",
            headers: &[],
            body: anthropic,
        },
        Route {
            name: "/v1/chat/completions (translated)",
            path: "/v1/chat/completions",
            headers: &[],
            body: history::chat(BODY_BYTES),
        },
        Route {
            name: "/v1/responses (translated)",
            path: "/v1/responses",
            headers: &[],
            body: history::responses(BODY_BYTES),
        },
    ]
}

fn request(path: &str, key: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         x-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// One request on a fresh connection, timed from the first byte sent to the last received.
fn timed(addr: SocketAddr, rq: &[u8]) -> f64 {
    let started = Instant::now();
    let mut conn = Conn::open(addr).expect("connect");
    let (status, body) = conn.exchange(rq).expect("exchange");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    ms(started.elapsed())
}

/// The four routes, each against the sink directly and through claudegate, in interleaved
/// rounds; then the peak memory of one request per route on a fresh server.
pub fn phase(work: &Path, quick: bool) -> Vec<Row> {
    let sink = Sink::start();
    let routes = routes();
    let setup = Setup::new(work, "large", sink.addr, 16);
    // The bodies stay in the work directory, for profiling one route by hand (BENCHMARKS.md).
    for (route, file) in routes
        .iter()
        .zip(["passthrough", "cloaked", "chat", "responses"])
    {
        std::fs::write(setup.dir.join(format!("{file}.json")), &route.body).ok();
    }
    let gate = setup.spawn();
    std::thread::sleep(Duration::from_millis(300));
    let idle = procfs::rss_kib(gate.pid());
    let proxied: Vec<Vec<u8>> = routes
        .iter()
        .map(|r| request(r.path, &gate.key, r.headers, &r.body))
        .collect();
    let direct: Vec<Vec<u8>> = routes
        .iter()
        .map(|r| request("/v1/messages", "none", &[], &r.body))
        .collect();
    // Warm-up: connections, pools and the allocator's first pages.
    for (d, p) in direct.iter().zip(&proxied) {
        timed(sink.addr, d);
        timed(gate.addr, p);
    }
    let rounds = if quick { 5 } else { 21 };
    // Per route: (added, proxied, direct) per round.
    let mut seen: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); routes.len()];
    // Per route: claudegate's CPU time over all its requests (less sensitive than wall-clock
    // time to what else the machine runs; read in clock ticks, so only the sum is exact).
    let mut cpu = vec![Duration::ZERO; routes.len()];
    let proxied_cpu = |p: &[u8], cpu: &mut Duration| {
        let before = procfs::cpu_time(gate.pid());
        let t = timed(gate.addr, p);
        *cpu += procfs::cpu_time(gate.pid()).saturating_sub(before);
        t
    };
    for round in 0..rounds {
        for (i, (d, p)) in direct.iter().zip(&proxied).enumerate() {
            // Alternate which side goes first, so neither always meets a warmer machine.
            let (a, b) = if round % 2 == 0 {
                let a = timed(sink.addr, d);
                (a, proxied_cpu(p, &mut cpu[i]))
            } else {
                let b = proxied_cpu(p, &mut cpu[i]);
                (timed(sink.addr, d), b)
            };
            seen[i].push((b - a, b, a));
        }
    }
    let sequence_peak = procfs::peak_rss_kib(gate.pid());
    drop(gate);

    let mut rows = Vec::new();
    let added: Vec<f64> = seen
        .iter()
        .map(|s| median(s.iter().map(|x| x.0).collect()))
        .collect();
    for (i, route) in routes.iter().enumerate() {
        let pick = |f: fn(&(f64, f64, f64)) -> f64| median(seen[i].iter().map(f).collect());
        let (figure, p, d) = (added[i], pick(|x| x.1), pick(|x| x.2));
        let mb = route.body.len() as f64 / 1e6;
        let cpu_ms = ms(cpu[i]) / rounds as f64;
        let detail = format!(
            "median of {rounds} rounds; proxied {p:.1} ms, direct {d:.1} ms; claudegate CPU \
             {cpu_ms:.1} ms per request; body {mb:.2} MB"
        );
        let (value, target, pass) = match i {
            0 => (
                format!("{figure:.1} ms ({detail})"),
                "≤ 8 ms".to_string(),
                figure <= 8.0,
            ),
            1 => (
                format!("{figure:.1} ms ({detail})"),
                "≤ 10 ms".to_string(),
                figure <= 10.0,
            ),
            _ => {
                let over = figure - added[0];
                (
                    format!("{figure:.1} ms, {over:.1} ms over the passthrough ({detail})"),
                    "≤ 25 ms over the passthrough".to_string(),
                    over <= 25.0,
                )
            }
        };
        rows.push(row(
            &format!("large history: added latency, {}", route.name),
            value,
            &target,
            Some(pass),
            json!({"added_ms": figure, "added_ms_per_round": seen[i].iter().map(|x| x.0).collect::<Vec<_>>(),
                   "proxied_ms": p, "direct_ms": d, "cpu_ms_per_request": cpu_ms,
                   "body_bytes": route.body.len()}),
        ));
    }

    // Peak memory of one request per route, each on a fresh server (peak RSS only grows).
    for (i, route) in routes.iter().enumerate() {
        let gate = setup.spawn();
        std::thread::sleep(Duration::from_millis(300));
        let before = procfs::rss_kib(gate.pid());
        timed(gate.addr, &proxied[i]);
        let peak = procfs::peak_rss_kib(gate.pid());
        rows.push(memory_row(
            &format!("large history: peak RSS of one request, {}", route.name),
            &gate,
            before,
            peak,
            route.body.len(),
        ));
    }
    let body = routes.iter().map(|r| r.body.len()).max().unwrap_or(0);
    let growth = sequence_peak.saturating_sub(idle) as f64 * 1024.0;
    rows.push(row(
        "large history: peak RSS over all the rounds above (16 workers)",
        format!(
            "{:.1} MB ({:.1}× the body above idle {:.1} MB, {} requests)",
            sequence_peak as f64 / 1024.0,
            growth / body as f64,
            idle as f64 / 1024.0,
            (rounds + 1) * routes.len()
        ),
        "≤ 4× the body above idle",
        Some(growth <= 4.0 * body as f64),
        json!({"kib": sequence_peak, "idle_kib": idle, "body_bytes": body}),
    ));
    rows
}

fn memory_row(name: &str, gate: &Gate, before: u64, peak: u64, body: usize) -> Row {
    let growth = peak.saturating_sub(before) as f64 * 1024.0;
    let times = growth / body as f64;
    row(
        name,
        format!(
            "{:.1} MB above idle = {times:.2}× the body (peak {:.1} MB, idle {:.1} MB, {} threads)",
            growth / 1e6,
            peak as f64 / 1024.0,
            before as f64 / 1024.0,
            procfs::threads(gate.pid())
        ),
        "≤ 4× the body",
        Some(times <= 4.0),
        json!({"peak_kib": peak, "idle_kib": before, "body_bytes": body, "times_body": times}),
    )
}
