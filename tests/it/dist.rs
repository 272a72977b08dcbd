//! What a release carries: `claudegate --version` naming the git commit (recorded by
//! `build.rs`), and the tarballs of `make dist` with their `SHA256SUMS` (and file modes that do
//! not depend on the umask).
//!
//! `make test` with `TEST_ARM=1` (as CI runs it) builds both static binaries anyway, so it runs
//! `make dist` too and sets `CLAUDEGATE_DIST` to `target/dist`; without it the tarball test is
//! skipped (`common::run::skip`), as `arm.rs` is.

use crate::common::gate::{TempDir, BIN};
use crate::common::run::repo;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files each tarball holds, under its top directory.
const CONTENTS: &[&str] = &[
    "LICENSE",
    "README.md",
    "claudegate",
    "claudegate.service",
    "config.example.json",
];

/// The `--version` line a binary built from this checkout prints: the short commit when git
/// knows it (as `build.rs` asks), else the version alone.
pub fn expected_version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let commit = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "--short=9", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match commit {
        Some(c) if !c.is_empty() => format!("claudegate {version} ({c})"),
        _ => format!("claudegate {version}"),
    }
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_names_the_commit() {
    let line = stdout_of(Command::new(BIN).arg("--version"));
    assert_eq!(line.trim(), expected_version());
    let short = stdout_of(Command::new(BIN).arg("-V"));
    assert_eq!(short, line);
}

#[test]
fn dist_tarballs_hold_the_release_and_match_their_checksums() {
    let test = "dist::dist_tarballs_hold_the_release_and_match_their_checksums";
    let Some(dist) = std::env::var_os("CLAUDEGATE_DIST").filter(|d| !d.is_empty()) else {
        crate::common::run::skip(
            test,
            "CLAUDEGATE_DIST is not set; `make test TEST_ARM=1` runs `make dist` and sets it",
            false,
        );
        return;
    };
    let dist = PathBuf::from(dist);
    let version = env!("CARGO_PKG_VERSION");
    let names: Vec<String> = ["x86_64", "aarch64"]
        .iter()
        .map(|arch| format!("claudegate-{version}-{arch}-linux-musl"))
        .collect();

    // SHA256SUMS names exactly the two tarballs, and they match it.
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).expect("target/dist/SHA256SUMS");
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    listed.sort();
    let mut want: Vec<String> = names.iter().map(|n| format!("{n}.tar.gz")).collect();
    want.sort();
    assert_eq!(listed, want, "SHA256SUMS:\n{sums}");
    stdout_of(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&dist),
    );

    for name in &names {
        let tarball = dist.join(format!("{name}.tar.gz"));
        let listing = stdout_of(Command::new("tar").arg("-tzf").arg(&tarball));
        let mut files: Vec<&str> = listing
            .lines()
            .filter(|l| !l.ends_with('/'))
            .map(|l| l.strip_prefix(&format!("{name}/")).unwrap_or(l))
            .collect();
        files.sort();
        assert_eq!(files, CONTENTS, "{}:\n{listing}", tarball.display());
        // The modes are the Makefile's, not the umask of whoever ran `make dist`.
        let verbose = stdout_of(Command::new("tar").arg("-tvzf").arg(&tarball));
        for line in verbose.lines() {
            let (mode, path) = (
                line.split_whitespace().next(),
                line.split_whitespace().last(),
            );
            let want = match path {
                Some(p) if p.ends_with('/') => "drwxr-xr-x",
                Some(p) if p.ends_with("/claudegate") => "-rwxr-xr-x",
                _ => "-rw-r--r--",
            };
            assert_eq!(mode, Some(want), "{}:\n{verbose}", tarball.display());
        }

        let out = TempDir::new();
        stdout_of(
            Command::new("tar")
                .arg("-xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(out.path()),
        );
        let bin = out.path().join(name).join("claudegate");
        assert!(
            is_elf_for(&bin, name),
            "{} is not the {name} binary",
            bin.display()
        );
        if name.contains(std::env::consts::ARCH) {
            let line = stdout_of(Command::new(&bin).arg("--version"));
            assert_eq!(
                line.trim(),
                expected_version(),
                "the tarball's binary is this build"
            );
        }
    }
}

/// True when `bin` is an ELF file for the architecture `name` mentions (x86-64: e_machine 62,
/// AArch64: 183).
fn is_elf_for(bin: &Path, name: &str) -> bool {
    let head = std::fs::read(bin).unwrap_or_default();
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return false;
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    machine == if name.contains("aarch64") { 183 } else { 62 }
}
