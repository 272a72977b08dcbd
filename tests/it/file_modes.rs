//! Loose permissions on claudegate's own files (issue "Hardening II", item 10): a data
//! directory other users can enter, or a token, key, usage, device-id or audit file they can
//! read (left by an older version, a restored backup, a hand copy), is warned about at the
//! start of `serve`, naming the path and its mode, and tightened to 0700 / 0600.

use crate::common::gate::*;
use crate::common::mock_upstream::MockUpstream;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A stored login, key file, usage file, device id and an audit log kept outside the data
/// directory (`audit.path`), all 0644, in a data directory of 0755, plus a file of the
/// operator's own that claudegate does not own. Proves `serve` starts, logs one warning per
/// loose path naming it and its old mode, leaves each at 0700 (the directory) or 0600 (the
/// files), leaves the unknown file alone, and warns about nothing on the next start.
#[test]
fn loose_modes_on_its_own_files_are_warned_about_and_tightened_at_start() {
    let mock = MockUpstream::start();
    let logs = TempDir::new();
    let audit = logs.path().join("audit.log");
    let (setup, _key) = logged_in_setup(
        &mock.url(),
        json!({"audit": {"path": audit.to_string_lossy()}}),
    );
    let data = setup.data_dir();
    std::fs::write(
        data.join("usage.json"),
        r#"{"day":"2020-01-01","global":0,"keys":{}}"#,
    )
    .unwrap();
    std::fs::write(data.join("device_id"), "d".repeat(64)).unwrap();
    std::fs::write(&audit, "").unwrap();
    std::fs::write(data.join("notes.txt"), "the operator's own").unwrap();
    let files = [
        data.join("token.json"),
        data.join("keys.json"),
        data.join("usage.json"),
        data.join("device_id"),
        audit.clone(),
    ];
    for f in &files {
        set_mode(f, 0o644);
    }
    set_mode(&data.join("notes.txt"), 0o644);
    set_mode(&data, 0o755);

    let mut gate = Gate::spawn(setup);
    let log = gate.log();
    let warned = |path: &Path, was: &str, now: &str| {
        let shown = path.display().to_string();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{shown} ")) && l.contains(was))
            .unwrap_or_else(|| panic!("no warning about {shown} ({was}) in:\n{log}"));
        assert!(line.contains(now), "{line}");
    };
    warned(&data, "0755", "0700");
    assert_eq!(mode(&data), 0o700);
    for f in &files {
        warned(f, "0644", "0600");
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(
        mode(&data.join("notes.txt")),
        0o644,
        "not claudegate's file"
    );
    assert!(!log.contains("notes.txt"), "{log}");
    gate.assert_healthy();

    gate.restart();
    let log = gate.log();
    assert!(
        !log.contains("0644") && !log.contains("0755"),
        "nothing left to warn about:\n{log}"
    );
}
