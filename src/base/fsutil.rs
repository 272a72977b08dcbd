//! Small filesystem helpers: `~` expansion, private directories and atomic private writes.
//!
//! Every file claudegate writes (keys, usage counters, later the token) goes through
//! [`write_private`], so a crash or a full disk leaves either the old file or the new one,
//! never half of either, and nobody but the owner can read it. Files and directories that
//! already exist keep their mode when written, so [`tighten_private`] checks them at start.
//! What "private" means (no access for group or others; 0700 for a directory, 0600 for a
//! file; owned by the user we run as) is said once, in [`private_mode`] and [`check_private`],
//! which `claudegate doctor` reports from without changing anything.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Expands a leading `~/` (or a bare `~`) to `$HOME`.
pub fn expand_home(path: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (path, home) {
        ("~", Some(home)) => home,
        (p, Some(home)) if p.starts_with("~/") => home.join(&p[2..]),
        (p, _) => PathBuf::from(p),
    }
}

/// Creates `dir` (and its parents) if missing; a directory we create is mode 0700.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` atomically: a temp file (mode 0600) in the same directory, fsync,
/// rename over the target, fsync the directory. On any error the old file is untouched.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let salt = crate::base::ids::random::<6>().map_err(io::Error::other)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::base::ids::hex(&salt)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; failure here is not worth failing the write over.
        if let Ok(d) = File::open(dir) {
            d.sync_all().ok();
        }
        Ok(())
    })();
    if result.is_err() {
        fs::remove_file(&tmp).ok();
    }
    result
}

/// Takes group and other access away from each of `paths` that exists and has any: a
/// directory becomes 0700, a file 0600. Each change is logged with the path and the mode it
/// had, since a file others could read (a token, the keys) may already have been read; a
/// change that fails is logged with what to run instead. Missing paths are skipped.
pub fn tighten_private(paths: &[PathBuf]) {
    for path in paths {
        match tighten(path) {
            Ok(None) => {}
            Ok(Some((was, now))) => crate::base::log::info(&format!(
                "{} had mode {was:04o}, open to other users; tightened it to {now:04o} \
                 (claudegate's files hold secrets)",
                path.display()
            )),
            Err((was, now, e)) => crate::base::log::info(&format!(
                "{} has mode {was:04o}, open to other users, and could not be tightened: {e}; \
                 run `chmod {now:o} {}`",
                path.display(),
                path.display()
            )),
        }
    }
}

/// The mode a private path gets: 0700 for a directory, 0600 for a file.
pub fn private_mode(meta: &fs::Metadata) -> u32 {
    if meta.is_dir() {
        0o700
    } else {
        0o600
    }
}

/// Whether `mode` lets group or others in.
fn open_to_others(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// How one of our paths falls short of private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPrivate {
    /// Its mode (permission bits), and the one it should have (see [`private_mode`]).
    pub mode: u32,
    pub wanted: u32,
    /// Open to group or others.
    pub loose: bool,
    /// Its owner, when it is not the user we run as.
    pub other_owner: Option<u32>,
}

/// Looks at `path` without changing it: `Ok(None)` when it is absent or private, else how it
/// is not. Symlinks are followed, as every read and write of these paths does.
pub fn check_private(path: &Path) -> io::Result<Option<NotPrivate>> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    let owner = std::os::unix::fs::MetadataExt::uid(&meta);
    let other_owner = (owner != crate::base::sys::effective_uid()).then_some(owner);
    let loose = open_to_others(mode);
    Ok((loose || other_owner.is_some()).then(|| NotPrivate {
        mode,
        wanted: private_mode(&meta),
        loose,
        other_owner,
    }))
}

/// Tightens one path: `Ok(Some((old mode, new mode)))` when it changed it, `Ok(None)` when it
/// is absent or already private, `Err((old mode, wanted mode, why))` when chmod failed.
/// Symlinks are followed, as every read and write of these paths does.
fn tighten(path: &Path) -> Result<Option<(u32, u32)>, (u32, u32, io::Error)> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(None);
    };
    let was = meta.permissions().mode() & 0o7777;
    if !open_to_others(was) {
        return Ok(None);
    }
    let now = private_mode(&meta);
    match fs::set_permissions(path, fs::Permissions::from_mode(now)) {
        Ok(()) => Ok(Some((was, now))),
        Err(e) => Err((was, now, e)),
    }
}

/// Reads a file that may not exist yet: `Ok(None)` when it is absent.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_private_write() {
        let dir = std::env::temp_dir().join(format!("cg-fsutil-{}", std::process::id()));
        ensure_private_dir(&dir).unwrap();
        let path = dir.join("x.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp files left");
        assert_eq!(read_optional(&dir.join("missing")).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loose_modes_are_tightened_and_private_ones_left_alone() {
        let dir = std::env::temp_dir().join(format!("cg-fsutil-modes-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let set = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
        let file = dir.join("token.json");
        fs::write(&file, b"{}").unwrap();
        set(&dir, 0o755).unwrap();
        set(&file, 0o640).unwrap();
        assert_eq!(tighten(&dir).unwrap(), Some((0o755, 0o700)));
        assert_eq!(tighten(&file).unwrap(), Some((0o640, 0o600)));
        assert_eq!(tighten(&file).unwrap(), None, "already private");
        set(&file, 0o400).unwrap();
        assert_eq!(tighten(&file).unwrap(), None, "private though read-only");
        assert_eq!(tighten(&dir.join("missing")).unwrap(), None);
        set(&file, 0o644).unwrap();
        let seen = check_private(&file).unwrap().unwrap();
        assert_eq!((seen.mode, seen.wanted, seen.loose), (0o644, 0o600, true));
        assert_eq!(seen.other_owner, None, "ours");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(check_private(&dir).unwrap(), None, "0700 and ours");
        assert_eq!(check_private(&dir.join("missing")).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
