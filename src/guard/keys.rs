//! Per-app API keys: minting, scopes, the hashed key file, constant-time checks and hot reload.
//!
//! A key is `cgk_` + 64 hex digits (256 random bits from the OS). Only its SHA-256 digest is
//! stored, in `data_dir/keys.json` (written atomically, mode 0600), so a leaked file reveals no
//! usable secret.
//!
//! **Changes from several processes.** `keys add` and `keys revoke` read, change and rewrite the
//! whole file, holding an exclusive lock on `keys.json.lock` beside it for all three steps, so
//! concurrent commands (and a first-run `serve`) take turns and none loses another's change.
//! The lock is on a file of its own because `keys.json` is replaced by a rename: a lock on it
//! would be on the old version. The lock file stays (removing it would let two processes lock
//! two different files).
//!
//! **Hot reload.** The server looks at the file's identity (inode, size, mtime) on every
//! authentication — one `stat`, about a microsecond — and re-reads it when it changed, so a
//! key added is usable, and a key revoked refused, from the very next request on.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::base::fsutil;
use crate::base::sys::FileLock;

/// Prefix that makes a claudegate key recognisable (in configs, in secret scanners).
pub const KEY_PREFIX: &str = "cgk_";
/// How long `keys add` / `keys revoke` wait for another one to finish with the key file.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What a key may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The API an app calls (`/v1/*`). A key stored without a scope — every key minted before
    /// scopes existed — is an app key: the least privilege, so an upgrade widens no key.
    #[default]
    App,
    /// The API, and the operator's views of the account and the server (`/admin/accounts`, a
    /// non-public `/metrics`). Minted with `keys add LABEL --admin`, and the first-run
    /// `default` key (the operator's own, shown once on the operator's terminal).
    Admin,
}

impl Scope {
    /// Whether a key of this scope may call a route that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || needed == Scope::App
    }

    /// The scope's name, as stored, listed and named in errors.
    pub fn name(self) -> &'static str {
        match self {
            Scope::App => "app",
            Scope::Admin => "admin",
        }
    }

    fn is_app(&self) -> bool {
        *self == Scope::App
    }
}

/// The on-disk key file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    pub keys: Vec<KeyRecord>,
}

/// One key as stored: never the secret, only its digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub label: String,
    /// Hex SHA-256 of the whole key string.
    pub sha256: String,
    /// The first characters of the key, to recognise it (`cgk_1a2b…`); not enough to use it.
    pub hint: String,
    /// Requests per minute for this key; `None` = the `limits.per_key_rpm` default.
    pub rpm: Option<u32>,
    /// Requests per UTC day for this key; `None` = the `limits.per_key_daily` default.
    pub daily: Option<u32>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Absent for app keys, so a file holding only app keys stays exactly as older versions
    /// wrote it (and readable by them); an older version refuses a file with an admin key
    /// rather than misreading it.
    #[serde(default, skip_serializing_if = "Scope::is_app")]
    pub scope: Scope,
}

/// What the server knows about an authenticated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub label: String,
    pub rpm: Option<u32>,
    pub daily: Option<u32>,
}

pub use crate::base::ids::hex;

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality without an early exit, so timing does not reveal how many bytes matched.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut acc = 0u8;
    for (x, y) in a.iter().zip(b) {
        acc |= x ^ y;
    }
    std::hint::black_box(acc) == 0
}

/// A fresh random key.
pub fn mint() -> Result<String, String> {
    let raw = crate::base::ids::random::<32>()?;
    Ok(format!("{KEY_PREFIX}{}", hex(&raw)))
}

/// Labels are short names for apps: letters, digits, `.`, `_`, `-`; 1 to 64 characters.
pub fn valid_label(label: &str) -> bool {
    (1..=64).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The key file's path inside the data directory.
pub fn file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys.json")
}

/// Runs `change` (a read, change and rewrite of the key file at `path`) holding the exclusive
/// lock on `<path>.lock`, waiting at most [`LOCK_WAIT`] for another process to let go of it.
fn locked<T>(path: &Path, change: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the key lock file {}: {e}", lock_path.display()))?;
    let _lock = FileLock::exclusive_within(&file, LOCK_WAIT).map_err(|e| {
        format!(
            "cannot lock {} ({e}); is another `claudegate keys` command stuck? Try again",
            lock_path.display()
        )
    })?;
    change()
}

/// Reads the key file; a missing file is an empty set. A corrupt file is an error naming the
/// file (and is never overwritten by us).
pub fn load(path: &Path) -> Result<KeyFile, String> {
    let bytes = fsutil::read_optional(path)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let Some(bytes) = bytes else {
        return Ok(KeyFile {
            version: 1,
            keys: vec![],
        });
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "key file {} is corrupt ({e}); fix or remove it (removing revokes every key)",
            path.display()
        )
    })?;
    for k in &file.keys {
        if unhex32(&k.sha256).is_none() || !valid_label(&k.label) {
            return Err(format!(
                "key file {} has a bad entry (label {:?}); fix or remove it",
                path.display(),
                k.label
            ));
        }
    }
    Ok(file)
}

fn save(path: &Path, file: &KeyFile) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    json.push(b'\n');
    fsutil::write_private(path, &json)
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))
}

/// What a new key may do and how much: its scope, and its own limits (`None` = the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    pub rpm: Option<u32>,
    pub daily: Option<u32>,
}

/// Mints a key labelled `label`, stores its digest and returns the secret (shown once).
pub fn add(path: &Path, label: &str, grant: Grant) -> Result<String, String> {
    if !valid_label(label) {
        return Err(format!(
            "bad label {label:?}: use 1-64 letters, digits, '.', '_' or '-'"
        ));
    }
    locked(path, || add_unlocked(path, label, grant))
}

fn add_unlocked(path: &Path, label: &str, grant: Grant) -> Result<String, String> {
    let mut file = load(path)?;
    if file.keys.iter().any(|k| k.label == label) {
        return Err(format!(
            "a key labelled {label:?} already exists; revoke it first or pick another label"
        ));
    }
    let secret = mint()?;
    file.version = 1;
    file.keys.push(KeyRecord {
        label: label.to_string(),
        sha256: hex(&digest(&secret)),
        hint: format!("{}…", &secret[..KEY_PREFIX.len() + 4]),
        rpm: grant.rpm,
        daily: grant.daily,
        created: crate::base::clock::rfc3339(crate::base::clock::unix_now()),
        scope: grant.scope,
    });
    save(path, &file)?;
    Ok(secret)
}

/// Removes the key labelled `label`; `Ok(false)` if there was none. Once this returns, a
/// running server refuses the key on its next request.
pub fn revoke(path: &Path, label: &str) -> Result<bool, String> {
    // No data directory yet: no key, and nowhere to put a lock file.
    if path.parent().is_some_and(|dir| !dir.is_dir()) {
        return Ok(false);
    }
    locked(path, || {
        let mut file = load(path)?;
        let before = file.keys.len();
        file.keys.retain(|k| k.label != label);
        if file.keys.len() == before {
            return Ok(false);
        }
        save(path, &file)?;
        Ok(true)
    })
}

struct Entry {
    digest: [u8; 32],
    info: KeyInfo,
    scope: Scope,
}

/// Identity of the key file's current version: a rename gives a new inode, an edit a new mtime.
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// The keys of one version of the file, and that version's identity. The entries were read
/// after the stamp was taken, so they are never older than the version the stamp names.
struct Loaded {
    entries: Arc<Vec<Entry>>,
    stamp: Stamp,
}

/// The server's view of the key file, reloaded when it changes.
pub struct KeyStore {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl KeyStore {
    /// Loads the key file; at start a corrupt file is fatal (clear error, nothing overwritten).
    pub fn open(path: PathBuf) -> Result<KeyStore, String> {
        let stamp = stamp(&path);
        let entries = Arc::new(entries_of(load(&path)?));
        Ok(KeyStore {
            path,
            loaded: Mutex::new(Loaded { entries, stamp }),
        })
    }

    /// Number of keys currently loaded.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no key is loaded (the server then mints or asks for a first key).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a presented key against the key file as it is now: a key revoked a moment ago
    /// is refused. Every stored digest is compared, without early exit. The key's scope comes
    /// with what the server knows about it.
    pub fn authenticate(&self, presented: &str) -> Option<(KeyInfo, Scope)> {
        let d = digest(presented);
        // The one stat per request, outside the lock.
        let now = stamp(&self.path);
        let entries = {
            let loaded = self.lock();
            (loaded.stamp == now).then(|| loaded.entries.clone())
        };
        let entries = entries.unwrap_or_else(|| self.reload(now));
        let mut found = None;
        for e in entries.iter() {
            if ct_eq(&e.digest, &d) {
                found = Some((e.info.clone(), e.scope));
            }
        }
        found
    }

    /// Picks up a `keys add` / `keys revoke` made while we run: reads the file (whose identity
    /// was `now` just before) outside the lock, swaps it in, and hands back what this request
    /// must check against: what it read itself, so a concurrent reload that swapped in an
    /// older read cannot make it accept a key revoked before the request came.
    fn reload(&self, now: Stamp) -> Arc<Vec<Entry>> {
        match load(&self.path) {
            Ok(file) => {
                let entries = Arc::new(entries_of(file));
                crate::base::log::info(&format!(
                    "key file changed: {} key(s) loaded",
                    entries.len()
                ));
                let mut l = self.lock();
                l.entries = entries.clone();
                l.stamp = now;
                entries
            }
            Err(e) => {
                // Keep serving with the keys we had; say so once per broken version.
                crate::base::log::info(&format!("{e}; keeping the previously loaded keys"));
                let mut l = self.lock();
                l.stamp = now;
                l.entries.clone()
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        crate::base::sync::lock(&self.loaded)
    }
}

fn entries_of(file: KeyFile) -> Vec<Entry> {
    file.keys
        .into_iter()
        .filter_map(|k| {
            Some(Entry {
                digest: unhex32(&k.sha256)?,
                scope: k.scope,
                info: KeyInfo {
                    label: k.label,
                    rpm: k.rpm,
                    daily: k.daily,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_ct_eq() {
        let d = digest("cgk_x");
        assert_eq!(unhex32(&hex(&d)), Some(d));
        assert!(ct_eq(&d, &d));
        assert!(!ct_eq(&d, &digest("cgk_y")));
        assert_eq!(unhex32("zz"), None);
    }

    #[test]
    fn minted_keys_are_long_and_distinct() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 4 + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn scopes_allow_downwards_and_an_absent_scope_is_app() {
        assert!(Scope::Admin.allows(Scope::Admin) && Scope::Admin.allows(Scope::App));
        assert!(Scope::App.allows(Scope::App) && !Scope::App.allows(Scope::Admin));
        let old = r#"{"label":"a","sha256":"00","hint":"cgk_0000…","rpm":null,"daily":null,
            "created":"2025-01-01T00:00:00Z"}"#;
        let k: KeyRecord = serde_json::from_str(old).unwrap();
        assert_eq!(k.scope, Scope::App);
        // App keys are written as before; admin keys carry their scope.
        assert!(!serde_json::to_string(&k).unwrap().contains("scope"));
        let admin = KeyRecord {
            scope: Scope::Admin,
            ..k
        };
        let text = serde_json::to_string(&admin).unwrap();
        assert!(text.contains(r#""scope":"admin""#), "{text}");
        let back: KeyRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.scope, Scope::Admin);
        let bad = text.replace(r#""admin""#, r#""root""#);
        assert!(serde_json::from_str::<KeyRecord>(&bad).is_err());
    }

    #[test]
    fn labels() {
        assert!(valid_label("my-app_1.0"));
        assert!(!valid_label(""));
        assert!(!valid_label("has space"));
        assert!(!valid_label(&"x".repeat(65)));
    }
}
