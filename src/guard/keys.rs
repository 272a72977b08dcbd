//! Per-app API keys: minting, the hashed key file, constant-time checks and hot reload.
//!
//! A key is `cgk_` + 64 hex digits (256 random bits from the OS). Only its SHA-256 digest is
//! stored, in `data_dir/keys.json` (written atomically, mode 0600), so a leaked file reveals no
//! usable secret. The server re-reads the file when its identity (inode, size, mtime) changes,
//! checked at most every [`RELOAD_CHECK`], so `keys add` / `keys revoke` apply without a restart.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::base::fsutil;

/// Prefix that makes a claudegate key recognisable (in configs, in secret scanners).
pub const KEY_PREFIX: &str = "cgk_";
/// How often the server looks at the key file for changes.
pub const RELOAD_CHECK: Duration = Duration::from_millis(250);

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

/// Mints a key labelled `label`, stores its digest and returns the secret (shown once).
pub fn add(
    path: &Path,
    label: &str,
    rpm: Option<u32>,
    daily: Option<u32>,
) -> Result<String, String> {
    if !valid_label(label) {
        return Err(format!(
            "bad label {label:?}: use 1-64 letters, digits, '.', '_' or '-'"
        ));
    }
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
        rpm,
        daily,
        created: crate::base::clock::rfc3339(crate::base::clock::unix_now()),
    });
    save(path, &file)?;
    Ok(secret)
}

/// Removes the key labelled `label`; `Ok(false)` if there was none.
pub fn revoke(path: &Path, label: &str) -> Result<bool, String> {
    let mut file = load(path)?;
    let before = file.keys.len();
    file.keys.retain(|k| k.label != label);
    if file.keys.len() == before {
        return Ok(false);
    }
    save(path, &file)?;
    Ok(true)
}

struct Entry {
    digest: [u8; 32],
    info: KeyInfo,
}

/// Identity of the key file's current version: a rename gives a new inode, an edit a new mtime.
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

struct Loaded {
    entries: Vec<Entry>,
    stamp: Stamp,
    checked: Instant,
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
        let entries = entries_of(load(&path)?);
        Ok(KeyStore {
            path,
            loaded: Mutex::new(Loaded {
                entries,
                stamp,
                checked: Instant::now(),
            }),
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

    /// Checks a presented key. Every stored digest is compared, without early exit.
    pub fn authenticate(&self, presented: &str) -> Option<KeyInfo> {
        self.reload_if_changed();
        let d = digest(presented);
        let loaded = self.lock();
        let mut found = None;
        for e in &loaded.entries {
            if ct_eq(&e.digest, &d) {
                found = Some(e.info.clone());
            }
        }
        found
    }

    /// Picks up `keys add` / `keys revoke` made while we run. The stat and the read happen
    /// outside the lock; only the swap is inside.
    fn reload_if_changed(&self) {
        let old_stamp = {
            let mut l = self.lock();
            if l.checked.elapsed() < RELOAD_CHECK {
                return;
            }
            l.checked = Instant::now();
            l.stamp
        };
        let new_stamp = stamp(&self.path);
        if new_stamp == old_stamp {
            return;
        }
        match load(&self.path) {
            Ok(file) => {
                let entries = entries_of(file);
                crate::base::log::info(&format!(
                    "key file changed: {} key(s) loaded",
                    entries.len()
                ));
                let mut l = self.lock();
                l.entries = entries;
                l.stamp = new_stamp;
            }
            Err(e) => {
                // Keep serving with the keys we had; say so once per broken version.
                crate::base::log::info(&format!("{e}; keeping the previously loaded keys"));
                self.lock().stamp = new_stamp;
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
    fn labels() {
        assert!(valid_label("my-app_1.0"));
        assert!(!valid_label(""));
        assert!(!valid_label("has space"));
        assert!(!valid_label(&"x".repeat(65)));
    }
}
