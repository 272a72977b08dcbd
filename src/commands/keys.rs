//! `claudegate keys add`, `keys list` and `keys revoke`: the API keys of `data_dir/keys.json`,
//! managed without a server. The file format, scopes, minting, storage and the lock that lets
//! these commands run at the same time are [`crate::guard::keys`]; a running server applies a
//! change from its next request on.
//!
//! A key's secret is printed once, by `keys add`, alone on stdout; `keys list` shows only each
//! key's hint and scope.

use crate::base::{clock, fsutil};
use crate::config::Config;
use crate::guard::{keys, limits};

/// `claudegate keys add LABEL [--admin] [--rpm N] [--daily N]`: mints a key and prints its
/// secret.
pub fn add(config: &Config, label: &str, grant: keys::Grant) -> Result<(), String> {
    let data_dir = config.data_dir();
    fsutil::ensure_private_dir(&data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", data_dir.display()))?;
    let secret = keys::add(&keys::file_path(&data_dir), label, grant)?;
    // The secret alone on stdout, so `KEY=$(claudegate keys add app)` works.
    println!("{secret}");
    eprintln!(
        "claudegate: key {label:?} ({} scope) minted; the secret above is shown only once",
        grant.scope.name()
    );
    Ok(())
}

/// `claudegate keys list`: label, scope, limits, creation and last use of every key (never a
/// secret).
pub fn list(config: &Config) -> Result<(), String> {
    let data_dir = config.data_dir();
    let file = keys::load(&keys::file_path(&data_dir))?;
    let usage = limits::read_usage(&limits::usage_path(&data_dir));
    if file.keys.is_empty() {
        println!("no keys (mint one with `claudegate keys add LABEL`)");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:<6} {:<14} {:<14} {:<21} LAST USED",
        "LABEL", "KEY", "SCOPE", "RPM", "DAILY", "CREATED"
    );
    for k in &file.keys {
        let last = usage
            .keys
            .get(&k.label)
            .filter(|u| u.last_used > 0)
            .map_or("never".to_string(), |u| clock::rfc3339(u.last_used));
        println!(
            "{:<24} {:<12} {:<6} {:<14} {:<14} {:<21} {last}",
            k.label,
            k.hint,
            k.scope.name(),
            limit(k.rpm, config.limits.per_key_rpm),
            limit(k.daily, config.limits.per_key_daily),
            k.created
        );
    }
    Ok(())
}

/// `claudegate keys revoke LABEL`: a running server refuses the key from its next request on.
pub fn revoke(config: &Config, label: &str) -> Result<(), String> {
    if keys::revoke(&keys::file_path(&config.data_dir()), label)? {
        println!("revoked key {label:?}");
        Ok(())
    } else {
        Err(format!(
            "no key labelled {label:?} (see `claudegate keys list`)"
        ))
    }
}

/// A key's limit as listed: its own, else the configured default; 0 means no limit.
fn limit(own: Option<u32>, default: u32) -> String {
    match (own, default) {
        (Some(0), _) | (None, 0) => "none".to_string(),
        (Some(n), _) => n.to_string(),
        (None, n) => format!("{n} (default)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_listed_with_their_origin() {
        assert_eq!(limit(Some(30), 60), "30");
        assert_eq!(limit(None, 60), "60 (default)");
        assert_eq!(limit(Some(0), 60), "none", "0 on the key: unlimited");
        assert_eq!(limit(None, 0), "none", "0 as the default: unlimited");
    }
}
