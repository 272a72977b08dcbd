//! `make bench`: what claudegate adds between a client and Anthropic, measured on loopback
//! against the same client talking to the upstream directly, in the same run, interleaved
//! (A B A B …) so that a drifting machine moves both sides alike. Prints a table with every
//! figure, its target and pass/fail, and writes `target/bench/results.json` and `.md`.
//!
//! Upstreams: nginx with one fixed Anthropic message for the non-streaming figures (static, so
//! it is never the bottleneck), and an in-process SSE server for the timed streams. The
//! throughput load generator is wrk (its CPU share is reported, to show it was not the limit).
//!
//! `cargo bench --bench proxy` runs it (the Makefile builds the static release binary first);
//! `cargo bench --bench proxy -- soak` runs the soak instead (`soak.rs`), `-- large` only the
//! large-history phase (`large.rs`; with `CLAUDEGATE_BIN` set to another build, e.g. the glibc
//! `target/release/claudegate`, to compare allocators). Environment:
//! `CLAUDEGATE_BIN` (binary under test), `BENCH_QUICK=1` (shorter phases, for a smoke run),
//! `SOAK_SECONDS` (default 1800).

mod gate;
mod history;
mod http1;
mod large;
mod load;
mod procfs;
mod soak;
mod translator;
mod upstreams;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use gate::Setup;
use upstreams::{Nginx, SseMock};

/// One line of the report.
pub struct Row {
    pub name: String,
    pub value: String,
    pub target: String,
    /// None: a figure without a target (reported for context).
    pub pass: Option<bool>,
    pub json: Value,
}

pub fn row(name: &str, value: String, target: &str, pass: Option<bool>, json: Value) -> Row {
    Row {
        name: name.into(),
        value,
        target: target.into(),
        pass,
        json,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let soak = args.first().map(String::as_str) == Some("soak");
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    // Separate working directories, so a soak and a benchmark can never clear each other's.
    let work = out_dir.join(if soak { "soak-work" } else { "work" });
    std::fs::remove_dir_all(&work).ok();
    std::fs::create_dir_all(&work).expect("create target/bench/work");
    let bin = gate::binary();
    assert!(
        bin.exists(),
        "{} not found: build it with `make release-x86_64`, or set CLAUDEGATE_BIN",
        bin.display()
    );
    if soak {
        let secs = std::env::var("SOAK_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1800);
        let ok = soak::run(&work, &out_dir, Duration::from_secs(secs));
        std::process::exit(if ok { 0 } else { 1 });
    }
    let rows = if args.first().map(String::as_str) == Some("large") {
        large::phase(&work, quick)
    } else {
        run_bench(&work, &bin, quick)
    };
    let ok = report(&rows, &out_dir, &bin);
    std::process::exit(if ok { 0 } else { 1 });
}

fn run_bench(work: &Path, bin: &Path, quick: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let epoch = Instant::now();
    let nginx = Nginx::start(&mkdir(work.join("nginx")));
    let mock = SseMock::start(epoch);

    // Footprint first, on a fresh server that has served nothing yet.
    let size = std::fs::metadata(bin).map_or(0, |m| m.len());
    rows.push(row(
        "static binary size",
        format!("{:.2} MB ({size} B)", size as f64 / 1e6),
        "≤ 3 MB",
        Some(size <= 3_000_000),
        json!({"bytes": size}),
    ));
    // The default worker count (16), as a user runs it, for start-up, idle memory and the
    // non-streaming figures.
    let setup = Setup::new(work, "static", nginx.addr, 16);
    eprintln!("bench: start-up time…");
    let mut starts: Vec<f64> = (0..if quick { 5 } else { 21 })
        .map(|_| ms(setup.spawn().startup))
        .collect();
    starts.sort_by(f64::total_cmp);
    let start_p50 = quantile(&starts, 0.5);
    rows.push(row(
        "start → first /health (median)",
        format!(
            "{start_p50:.2} ms (min {:.2}, max {:.2}, n={})",
            starts[0],
            starts[starts.len() - 1],
            starts.len()
        ),
        "≤ 20 ms",
        Some(start_p50 <= 20.0),
        json!({"p50_ms": start_p50, "all_ms": starts}),
    ));
    let gate = setup.spawn();
    std::thread::sleep(Duration::from_millis(500));
    let idle = procfs::rss_kib(gate.pid());
    rows.push(row(
        "RSS idle (16 workers, the default)",
        format!(
            "{:.2} MB ({} threads)",
            idle as f64 / 1024.0,
            procfs::threads(gate.pid())
        ),
        "≤ 3 MB",
        Some(idle as f64 / 1024.0 <= 3.0),
        json!({"kib": idle, "threads": procfs::threads(gate.pid())}),
    ));
    eprintln!("bench: latency…");
    rows.extend(load::latency_phase(&gate, nginx.addr, quick));
    eprintln!("bench: throughput (wrk)…");
    rows.extend(load::throughput_phase(&gate, &nginx, work, quick));
    drop(gate);

    // 80 workers for 64 concurrent streams plus headroom, as a user serving that many would
    // configure.
    let sse_gate = Setup::new(work, "sse", mock.addr, 80).spawn();
    std::thread::sleep(Duration::from_millis(300));
    let idle80 = procfs::rss_kib(sse_gate.pid());
    eprintln!("bench: 64 timed streams (direct, /v1/messages, /v1/chat/completions)…");
    rows.extend(load::sse_phase(&sse_gate, mock.addr, epoch, quick));
    let peak = procfs::peak_rss_kib(sse_gate.pid());
    rows.push(row(
        "peak RSS at 64 streams (80 workers)",
        format!(
            "{:.2} MB (idle with 80 workers: {:.2} MB)",
            peak as f64 / 1024.0,
            idle80 as f64 / 1024.0
        ),
        "≤ 16 MB",
        Some(peak as f64 / 1024.0 <= 16.0),
        json!({"kib": peak, "idle_kib_80_workers": idle80}),
    ));
    eprintln!("bench: connection storm…");
    rows.extend(load::storm_phase(&sse_gate, nginx.addr));
    drop(sse_gate);

    eprintln!("bench: large histories (5 MB per request)…");
    rows.extend(large::phase(work, quick));

    eprintln!("bench: translator CPU…");
    let t = translator::measure(if quick { 500_000_000 } else { 3_000_000_000 });
    rows.push(row(
        "chat stream translation (10k-event transcript)",
        format!(
            "{:.2} M events/s per core = {:.2}× the parse-and-reserialise baseline ({:.2} M/s)",
            t.translate_per_sec / 1e6,
            t.translate_per_sec / t.baseline_per_sec,
            t.baseline_per_sec / 1e6
        ),
        "reported",
        None,
        json!({"events": t.events, "events_per_cpu_s": t.translate_per_sec,
               "baseline_events_per_cpu_s": t.baseline_per_sec}),
    ));
    rows
}

fn mkdir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).expect("mkdir");
    path
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The q-quantile (0..=1) of a sorted slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn report(rows: &[Row], out_dir: &Path, bin: &Path) -> bool {
    let machine = procfs::machine();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut md = format!(
        "Machine: {machine}  \nDate: {date}  \nBinary: `{}`\n\n| figure | measured | target | result |\n|---|---|---|---|\n",
        bin.display()
    );
    println!("\nclaudegate benchmark: {machine}, {date}\n");
    let mut ok = true;
    for r in rows {
        let verdict = match r.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "-",
        };
        ok &= r.pass != Some(false);
        println!(
            "{:<width$}  {:<6} {}  (target {})",
            r.name, verdict, r.value, r.target
        );
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.name, r.value, r.target, verdict
        ));
    }
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"figure": r.name, "measured": r.value, "target": r.target,
                   "pass": r.pass, "data": r.json})
        })
        .collect();
    let doc = json!({"machine": machine, "date": date, "binary": bin, "results": results});
    let json_text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(out_dir.join("results.json"), json_text).ok();
    std::fs::write(out_dir.join("results.md"), md).ok();
    println!(
        "\n{}; written to {}",
        if ok {
            "all targets met"
        } else {
            "SOME TARGETS MISSED"
        },
        out_dir.join("results.{json,md}").display()
    );
    ok
}
