//! The measured phases: timed SSE streams, a connection storm, request latency and throughput.
//! Each phase runs the same client against the upstream directly (the baseline) and through
//! claudegate, interleaved, and turns the pair into rows of the report.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::gate::Gate;
use crate::http1::{self, Conn};
use crate::upstreams::Nginx;
use crate::{median, ms, procfs, quantile, row, Row};

pub const STREAMS: usize = 64;
pub const EVENTS: usize = 100;
/// 100 events, 20 ms apart (see `upstreams::SseMock`).
const SSE_MAX_TOKENS: u64 = 100 + 20 * 1000;

/// What one stream saw: per-event delay (arrival minus emission) and whether it completed.
struct Seen {
    delays_ms: Vec<f64>,
    complete: bool,
}

/// Reads one stream and measures each event's delay from the stamp it carries.
fn stream_once(addr: SocketAddr, request: &[u8], epoch: Instant, done: &str) -> Seen {
    let mut seen = Seen {
        delays_ms: Vec::with_capacity(EVENTS),
        complete: false,
    };
    let Ok(mut conn) = Conn::open(addr) else {
        return seen;
    };
    if conn.send(request).is_err() {
        return seen;
    }
    let Ok((200, framing)) = conn.read_head() else {
        return seen;
    };
    let mut lines = BufReader::new(conn.body(framing));
    let mut line = String::new();
    let mut finished = false;
    while let Ok(n) = lines.read_line(&mut line) {
        if n == 0 {
            break;
        }
        let arrived = epoch.elapsed().as_micros() as f64;
        for part in line.split("t=").skip(1) {
            let digits = part.split(';').next().unwrap_or("");
            if let Ok(stamp) = digits.parse::<f64>() {
                seen.delays_ms.push((arrived - stamp) / 1000.0);
            }
        }
        finished |= line.contains(done);
        line.clear();
    }
    seen.complete = finished && seen.delays_ms.len() == EVENTS;
    seen
}

/// `STREAMS` streams at once; returns all delays, the completed count and the most threads
/// the gate had meanwhile (when a gate pid is given).
fn stream_round(
    addr: SocketAddr,
    request: Vec<u8>,
    epoch: Instant,
    done: &'static str,
    watch: Option<u32>,
) -> (Vec<f64>, usize, u64) {
    let request = Arc::new(request);
    let barrier = Arc::new(Barrier::new(STREAMS));
    let handles: Vec<_> = (0..STREAMS)
        .map(|_| {
            let (request, barrier) = (request.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                stream_once(addr, &request, epoch, done)
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let max_threads = Arc::new(AtomicU64::new(0));
    let sampler = watch.map(|pid| {
        let (stop, max_threads) = (stop.clone(), max_threads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_threads.fetch_max(procfs::threads(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let mut delays = Vec::with_capacity(STREAMS * EVENTS);
    let mut complete = 0;
    for h in handles {
        if let Ok(seen) = h.join() {
            complete += usize::from(seen.complete);
            delays.extend(seen.delays_ms);
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = sampler {
        s.join().ok();
    }
    (delays, complete, max_threads.load(Ordering::Relaxed))
}

/// One way of reading the timed streams: where to, what to send, what ends a stream, and
/// which process to watch for its thread count.
struct Side {
    name: &'static str,
    addr: SocketAddr,
    request: Vec<u8>,
    done: &'static str,
    watch: Option<u32>,
}

/// 64 concurrent streams of 100 events 20 ms apart: direct to the SSE upstream, through
/// `/v1/messages` (relayed as is) and through `/v1/chat/completions` (translated).
pub fn sse_phase(gate: &Gate, mock: SocketAddr, epoch: Instant, quick: bool) -> Vec<Row> {
    let messages = json!({"model": "claude-sonnet-4-6", "max_tokens": SSE_MAX_TOKENS,
        "stream": true, "messages": [{"role": "user", "content": "Count slowly."}]})
    .to_string();
    let chat = json!({"model": "claude-sonnet-4-6", "max_tokens": SSE_MAX_TOKENS,
        "stream": true, "messages": [{"role": "user", "content": "Count slowly."}]})
    .to_string();
    let side = |name, addr, request, done, watch| Side {
        name,
        addr,
        request,
        done,
        watch,
    };
    let sides = [
        side(
            "direct",
            mock,
            http1::post("/v1/messages", "none", &messages),
            "message_stop",
            None,
        ),
        side(
            "messages",
            gate.addr,
            http1::post("/v1/messages", &gate.key, &messages),
            "message_stop",
            Some(gate.pid()),
        ),
        side(
            "chat",
            gate.addr,
            http1::post("/v1/chat/completions", &gate.key, &chat),
            "[DONE]",
            Some(gate.pid()),
        ),
    ];
    let rounds = if quick { 1 } else { 5 };
    // Per round and side, the delays of all its events.
    let mut per_round: Vec<[Vec<f64>; 3]> = Vec::new();
    let mut complete = [0usize; 3];
    let mut threads = 0;
    // One unmeasured round of each side first (threads, pools and caches warm), then rounds
    // whose order alternates, so that no side always runs first or last.
    for side in &sides {
        stream_round(side.addr, side.request.clone(), epoch, side.done, None);
    }
    for round in 0..rounds {
        let mut this_round: [Vec<f64>; 3] = Default::default();
        let mut order = [0, 1, 2];
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let side = &sides[i];
            let (d, c, t) = stream_round(
                side.addr,
                side.request.clone(),
                epoch,
                side.done,
                side.watch,
            );
            this_round[i] = d;
            complete[i] += c;
            threads = threads.max(t);
        }
        for d in &mut this_round {
            d.sort_by(f64::total_cmp);
        }
        per_round.push(this_round);
    }
    // Each round gives one added delay (proxied quantile minus direct quantile of that round);
    // the figure is the median over rounds, as the machine drifts between rounds.
    let mut rows = Vec::new();
    for (i, route) in [(1, "/v1/messages"), (2, "/v1/chat/completions")] {
        for (q, label, target) in [(0.5, "p50", 0.3), (0.99, "p99", 1.0)] {
            let of = |side: usize| -> Vec<f64> {
                per_round.iter().map(|r| quantile(&r[side], q)).collect()
            };
            let (proxied, direct) = (of(i), of(0));
            let added: Vec<f64> = proxied.iter().zip(&direct).map(|(p, d)| p - d).collect();
            let figure = median(added.clone());
            rows.push(row(
                &format!("SSE {route}: added per-event delay {label}"),
                format!(
                    "{figure:.3} ms (median of {} rounds; proxied {:.3} ms, direct {:.3} ms)",
                    added.len(),
                    median(proxied.clone()),
                    median(direct.clone())
                ),
                &format!("≤ {target} ms"),
                Some(figure <= target),
                json!({"added_ms": figure, "added_ms_per_round": added,
                       "proxied_ms_per_round": proxied, "direct_ms_per_round": direct}),
            ));
        }
    }
    let want = rounds * STREAMS;
    for (i, side) in sides.iter().enumerate() {
        rows.push(row(
            &format!("SSE streams completed ({})", side.name),
            format!("{} of {want}", complete[i]),
            "all",
            Some(complete[i] == want),
            json!({"complete": complete[i], "of": want}),
        ));
    }
    rows.push(row(
        "threads under load (64 streams)",
        format!("{threads}"),
        "reported",
        None,
        json!({"threads": threads}),
    ));
    rows
}

/// With 200 idle keep-alive connections open, how long a new connection's `/health` takes.
pub fn storm_phase(gate: &Gate, nginx: SocketAddr) -> Vec<Row> {
    let mut figures = Vec::new();
    for addr in [nginx, gate.addr] {
        let probe: &[u8] = if addr == nginx {
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        } else {
            http1::HEALTH
        };
        let mut idle = Vec::new();
        for _ in 0..200 {
            let mut c = Conn::open(addr).expect("open an idle connection");
            c.exchange(probe)
                .expect("first request on an idle connection");
            idle.push(c);
        }
        let mut times = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let mut c = Conn::open(addr).expect("connect during the storm");
            let (status, _) = c.exchange(probe).expect("a request during the storm");
            assert_eq!(status, 200);
            times.push(ms(t.elapsed()));
        }
        times.sort_by(f64::total_cmp);
        figures.push((quantile(&times, 0.5), times[times.len() - 1]));
        if addr == gate.addr {
            figures.push((procfs::threads(gate.pid()) as f64, 0.0));
        }
        drop(idle);
    }
    let (nginx_p50, nginx_max) = figures[0];
    let (p50, max) = figures[1];
    let threads = figures[2].0;
    vec![row(
        "connection storm: new /health with 200 idle keep-alive connections",
        format!(
            "max {max:.2} ms, p50 {p50:.2} ms over 50 ({threads} threads; nginx: max {nginx_max:.2}, p50 {nginx_p50:.2})"
        ),
        "≤ 50 ms",
        Some(max <= 50.0),
        json!({"p50_ms": p50, "max_ms": max, "threads": threads,
               "nginx_p50_ms": nginx_p50, "nginx_max_ms": nginx_max}),
    )]
}

const SMALL: &str = r#"{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}"#;

/// Sequential small non-streaming requests on one keep-alive connection each side, in
/// alternating blocks; added latency = proxied quantile minus direct quantile.
pub fn latency_phase(gate: &Gate, nginx: SocketAddr, quick: bool) -> Vec<Row> {
    let mut direct = Conn::open(nginx).expect("connect to nginx");
    let mut proxied = Conn::open(gate.addr).expect("connect to claudegate");
    let direct_rq = http1::post("/v1/messages", "none", SMALL);
    let proxied_rq = http1::post("/v1/messages", &gate.key, SMALL);
    let time = |conn: &mut Conn, rq: &[u8]| {
        let t = Instant::now();
        let (status, body) = conn.exchange(rq).expect("exchange");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        ms(t.elapsed())
    };
    for _ in 0..300 {
        time(&mut direct, &direct_rq);
        time(&mut proxied, &proxied_rq);
    }
    // Alternating blocks; each pair of blocks gives one added latency per quantile, and the
    // figure is the median over the pairs (the machine drifts between blocks).
    let (blocks, per) = if quick { (3, 500) } else { (11, 500) };
    let mut pairs: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for _ in 0..blocks {
        let mut a: Vec<f64> = (0..per).map(|_| time(&mut direct, &direct_rq)).collect();
        let mut b: Vec<f64> = (0..per).map(|_| time(&mut proxied, &proxied_rq)).collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        pairs.push((a, b));
    }
    [(0.5, "p50", 0.2), (0.99, "p99", 1.0)]
        .into_iter()
        .map(|(q, label, target)| {
            let direct: Vec<f64> = pairs.iter().map(|(a, _)| quantile(a, q)).collect();
            let proxied: Vec<f64> = pairs.iter().map(|(_, b)| quantile(b, q)).collect();
            let added: Vec<f64> = proxied.iter().zip(&direct).map(|(p, d)| p - d).collect();
            let figure = median(added.clone());
            row(
                &format!("added latency, small non-streaming /v1/messages, {label}"),
                format!(
                    "{figure:.3} ms (median of {blocks} block pairs of {per}; proxied {:.3} ms, direct {:.3} ms)",
                    median(proxied.clone()),
                    median(direct.clone())
                ),
                &format!("≤ {target} ms"),
                Some(figure <= target),
                json!({"added_ms": figure, "added_ms_per_block": added,
                       "proxied_ms_per_block": proxied, "direct_ms_per_block": direct}),
            )
        })
        .collect()
}

/// What one wrk run measured.
struct WrkRun {
    requests: f64,
    rps: f64,
    wrk_cpu: Duration,
}

fn wrk(script: &Path, url: &str, connections: usize, secs: u64) -> WrkRun {
    // `sh` prints its own /proc stat after waiting for wrk: cutime + cstime are wrk's CPU.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"wrk "$@"; s=$?; cat /proc/$$/stat; exit $s"#)
        .arg("sh")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk (install it: apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw error responses from {url}: {text}"
    );
    let number_after = |label: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in wrk output: {text}"))
    };
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output: {text}"));
    let stat = text.lines().last().unwrap_or("");
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(13).copied().unwrap_or(0) + fields.get(14).copied().unwrap_or(0);
    WrkRun {
        requests,
        rps: number_after("Requests/sec:"),
        wrk_cpu: Duration::from_millis(ticks * 10),
    }
}

fn wrk_script(path: &Path, key: &str) {
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = '{SMALL}'\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"x-api-key\"] = \"{key}\"\n\
         wrk.headers[\"anthropic-version\"] = \"2023-06-01\"\n"
    );
    std::fs::write(path, lua).expect("write wrk script");
}

/// wrk at 8 and 32 connections, direct to nginx and through claudegate, alternating runs.
/// Reports requests per second as a ratio, and CPU per request of claudegate against nginx's
/// own CPU per request when served directly.
pub fn throughput_phase(gate: &Gate, nginx: &Nginx, work: &Path, quick: bool) -> Vec<Row> {
    let direct_script = work.join("direct.lua");
    let proxied_script = work.join("proxied.lua");
    wrk_script(&direct_script, "none");
    wrk_script(&proxied_script, &gate.key);
    let direct_url = format!("http://{}/v1/messages", nginx.addr);
    let proxied_url = format!("http://{}/v1/messages", gate.addr);
    let (rounds, secs) = if quick { (1, 2) } else { (3, 5) };
    let mut rows = Vec::new();
    for connections in [8, 32] {
        // Warm-up: connection pools filled, caches hot.
        wrk(&proxied_script, &proxied_url, connections, 1);
        let (mut rps_a, mut rps_b) = (Vec::new(), Vec::new());
        let (mut cpu_a, mut req_a, mut cpu_b, mut req_b) = (0.0, 0.0, 0.0, 0.0);
        let mut wrk_share: f64 = 0.0;
        for _ in 0..rounds {
            let before = nginx.cpu_time();
            let run = wrk(&direct_script, &direct_url, connections, secs);
            cpu_a += (nginx.cpu_time() - before).as_secs_f64();
            req_a += run.requests;
            rps_a.push(run.rps);
            wrk_share = wrk_share.max(run.wrk_cpu.as_secs_f64() / secs as f64);

            let before = procfs::cpu_time(gate.pid());
            let run = wrk(&proxied_script, &proxied_url, connections, secs);
            cpu_b += (procfs::cpu_time(gate.pid()) - before).as_secs_f64();
            req_b += run.requests;
            rps_b.push(run.rps);
            wrk_share = wrk_share.max(run.wrk_cpu.as_secs_f64() / secs as f64);
        }
        let (ra, rb) = (median(rps_a), median(rps_b));
        let ratio = rb / ra;
        rows.push(row(
            &format!("throughput at concurrency {connections}, proxied / direct"),
            format!("{ratio:.2}× ({rb:.0} vs {ra:.0} req/s)"),
            "≥ 0.25×",
            Some(ratio >= 0.25),
            json!({"ratio": ratio, "proxied_rps": rb, "direct_rps": ra}),
        ));
        let (us_a, us_b) = (cpu_a / req_a * 1e6, cpu_b / req_b * 1e6);
        let cpu_ratio = us_b / us_a;
        rows.push(row(
            &format!("CPU per request at concurrency {connections}, claudegate / nginx"),
            format!("{cpu_ratio:.2}× ({us_b:.1} µs vs {us_a:.1} µs)"),
            "≤ 5×",
            Some(cpu_ratio <= 5.0),
            json!({"ratio": cpu_ratio, "proxy_us": us_b, "upstream_us": us_a}),
        ));
        rows.push(row(
            &format!("load generator (wrk) CPU at concurrency {connections}"),
            format!("{:.0}% of one core at most", wrk_share * 100.0),
            "reported",
            None,
            json!({"max_core_share": wrk_share}),
        ));
    }
    rows
}
