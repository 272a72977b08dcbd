//! Build script: records the git commit the binary is built from, for `claudegate --version`
//! (as `CLAUDEGATE_COMMIT`, the short hash, or empty when unknown). A build from a tarball,
//! without git or outside the repository, simply has no commit: nothing here may fail the
//! build. No build-dependency crates, only `git` when it is there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git ARGS…` run in this crate's directory: its trimmed stdout, or `None` on any failure.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Only rerun for a new commit or a switched branch (and when this file changes): a
    // `rerun-if-changed` on a path that does not exist would rerun every build, so only paths
    // that exist are named.
    println!("cargo:rerun-if-changed=build.rs");
    let commit = repository_commit(&dir);
    println!(
        "cargo:rustc-env=CLAUDEGATE_COMMIT={}",
        commit.unwrap_or_default()
    );
}

/// The short commit of HEAD when `dir` is the top of a git work tree (not, say, a tarball
/// unpacked inside some other repository), naming the files whose change means a new commit.
fn repository_commit(dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(&top, dir) {
        return None;
    }
    // HEAD, the ref it points at, and packed-refs (where a ref lives once packed). `--git-path`
    // resolves each in a linked worktree too, where `.git` is a file, not a directory.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(head_ref);
    }
    for name in &watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let commit = git(dir, &["rev-parse", "--short=9", "HEAD"])?;
    commit
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then_some(commit)
}
