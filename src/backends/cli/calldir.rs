//! The private call directory: one fresh, owner-only directory per CLI call, which is the
//! CLI's working directory, its temp directory and the home of the system prompt file.
//!
//! **Working directory**: a fresh directory `<tmp>/claudegate-cli-<random>/` (mode 0700,
//! outside `cli.home`; git may not search above it) holding an empty `work/` (the cwd), `tmp/`
//! (the CLI's temp files and its messaging socket) and the system prompt file. It is removed
//! when the call ends, whatever way it ends (on drop), with the CLI's project folder for it
//! under `cli.home`, which holds the conversation's session file.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// `<tmp>/claudegate-cli-<random>/` with `work/` (cwd) and `tmp/`; removed on drop, with its
/// project folder under `home` (so a call that fails anywhere after writing the session file
/// leaves no conversation behind).
pub(super) struct CallDir {
    pub(super) root: PathBuf,
    /// `cli.home` (`~` expanded): where the CLI keeps its project folder for this call.
    home: PathBuf,
}

impl CallDir {
    pub(super) fn create(home: &Path) -> std::io::Result<CallDir> {
        // The system temp dir, unless it lies inside cli.home (then the CLI's cwd would sit
        // under the home whose settings and CLAUDE.md files we keep out).
        let mut base = std::env::temp_dir();
        if base.starts_with(home) || !base.is_absolute() {
            base = PathBuf::from("/tmp");
        }
        let mut last = None;
        for _ in 0..8 {
            let salt = crate::base::ids::random::<8>().map_err(std::io::Error::other)?;
            let root = base.join(format!("claudegate-cli-{}", crate::base::ids::hex(&salt)));
            match std::fs::DirBuilder::new().mode(0o700).create(&root) {
                Ok(()) => {
                    let home = home.to_path_buf();
                    let dir = CallDir { root, home };
                    for sub in [dir.work(), dir.tmp()] {
                        std::fs::DirBuilder::new().mode(0o700).create(sub)?;
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
    }

    pub(super) fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    pub(super) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(super) fn system_file(&self) -> PathBuf {
        self.root.join("system.txt")
    }

    /// Writes the system prompt file (mode 0600) that `--system-prompt-file` names.
    pub(super) fn write_system_prompt(&self, text: &str) -> std::io::Result<()> {
        crate::base::fsutil::write_private(&self.system_file(), text.as_bytes())
    }

    /// The per-project folder the CLI keeps for this call's cwd under `~/.claude/projects/`
    /// (named after the cwd, as the CLI names it, so it is ours alone).
    fn project_dir(&self) -> PathBuf {
        let slug: String = self
            .work()
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.home.join(".claude/projects").join(slug)
    }

    /// Writes the session file `--resume <session_id>` reads (the earlier turns, see
    /// `session.rs`) into this call's project folder (mode 0700, the file 0600).
    pub(super) fn write_session(&self, session_id: &str, lines: &str) -> std::io::Result<()> {
        let dir = self.project_dir();
        if let Some(parent) = dir.parent() {
            crate::base::fsutil::ensure_private_dir(parent)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        crate::base::fsutil::write_private(
            &dir.join(format!("{session_id}.jsonl")),
            lines.as_bytes(),
        )
    }
}

/// Removes the directory and the CLI's project folder for it (holding the session file).
impl Drop for CallDir {
    fn drop(&mut self) {
        let project = self.project_dir();
        if project.is_dir() {
            std::fs::remove_dir_all(project).ok();
        }
        if self.root.exists() {
            std::fs::remove_dir_all(&self.root).ok();
        }
    }
}
