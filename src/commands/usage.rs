//! `claudegate usage [--since YYYY-MM-DD]`: per-key totals from the audit log and its rotated
//! files, as a table on stdout. Reading and adding up the log is [`crate::observe::audit::totals`],
//! next to the line format it reads; this module only lays the totals out.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::observe::audit::{self, Totals};

/// `claudegate usage`: the table of totals from `since` (a UTC day number) on.
pub fn run(config: &Config, since: Option<u64>) -> Result<(), String> {
    let path = audit::log_path(&config.audit, &config.data_dir());
    if !config.audit.enabled {
        eprintln!("claudegate: note: audit.enabled is false, so new requests are not logged");
    }
    let totals = audit::totals(&path, since);
    if totals.is_empty() {
        eprintln!("claudegate: no audited requests in {}", path.display());
    }
    print!("{}", table(&totals));
    Ok(())
}

/// The table: one row per key, then their sum; numbers right-aligned, every column as wide as
/// its widest cell.
fn table(totals: &BTreeMap<String, Totals>) -> String {
    let header = [
        "KEY",
        "REQUESTS",
        "ERRORS",
        "INPUT",
        "OUTPUT",
        "CACHE_READ",
        "CACHE_WRITE",
    ];
    let mut all = Totals::default();
    let mut rows: Vec<[String; 7]> = Vec::new();
    let row = |label: &str, t: &Totals| {
        [
            label.to_string(),
            t.requests.to_string(),
            t.errors.to_string(),
            t.input.to_string(),
            t.output.to_string(),
            t.cache_read.to_string(),
            t.cache_creation.to_string(),
        ]
    };
    for (key, t) in totals {
        rows.push(row(key, t));
        all.requests += t.requests;
        all.errors += t.errors;
        all.input += t.input;
        all.output += t.output;
        all.cache_read += t.cache_read;
        all.cache_creation += t.cache_creation;
    }
    rows.push(row("TOTAL", &all));
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut emit = |cells: &[String]| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                line.push_str(&format!("{cell:<w$}"));
            } else {
                line.push_str(&format!("  {cell:>w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    emit(&header.map(String::from));
    for r in &rows {
        emit(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned() {
        let mut m = BTreeMap::new();
        m.insert(
            "a-long-label".to_string(),
            Totals {
                requests: 12,
                errors: 1,
                ..Totals::default()
            },
        );
        let t = table(&m);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("a-long-label"));
        assert!(lines[2].starts_with("TOTAL "));
        // Right-aligned numbers end in the same column.
        let col = |l: &str| l.find("REQUESTS").or_else(|| l.find("12")).unwrap();
        assert_eq!(col(lines[0]) + "REQUESTS".len(), col(lines[1]) + 2);
    }
}
