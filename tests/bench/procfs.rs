//! What the benchmark reads about a process from /proc: memory, threads, file descriptors and
//! CPU time. Linux only, like the rest of the benchmark.

use std::fs;
use std::time::Duration;

/// Clock ticks per second for /proc/PID/stat times (USER_HZ; 100 on every Linux port).
const TICKS_PER_SEC: f64 = 100.0;

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Resident memory now, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:").unwrap_or(0)
}

/// The highest resident memory the process has had, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:").unwrap_or(0)
}

pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:").unwrap_or(0)
}

pub fn open_fds(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// User + system CPU time of the whole process (all threads) so far.
pub fn cpu_time(pid: u32) -> Duration {
    let fields = stat_fields(pid);
    // Fields 14 and 15 of /proc/PID/stat (utime, stime); `fields` starts at field 3.
    let ticks = field(&fields, 14) + field(&fields, 15);
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC)
}

fn stat_fields(pid: u32) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; everything after its closing paren splits.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().map(str::to_string).collect()
}

fn field(fields: &[String], n: usize) -> u64 {
    fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// CPU time of the calling thread, in nanoseconds (scheduler accounting: fine-grained).
pub fn thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The pids of `pid`'s child processes (for nginx's worker).
pub fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A short description of the machine, for the report.
pub fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {:.0} GiB RAM, Linux {}",
        mem_kib as f64 / 1048576.0,
        kernel.trim()
    )
}
