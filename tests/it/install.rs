//! `make install` / `make uninstall` (contrib/service.sh) into a temporary PREFIX and HOME: the
//! binary, a minimal private config, and a valid systemd --user unit; uninstall removes what
//! install added and leaves config and data alone.

use crate::common::gate::{TempDir, BIN};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn service(
    action: &str,
    bin: &str,
    prefix: &std::path::Path,
    home: &std::path::Path,
) -> std::process::Output {
    Command::new("sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/service.sh"))
        .args([action, bin])
        .arg(prefix)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        // No user manager in tests: install must still lay everything down and say so.
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("XDG_RUNTIME_DIR", home.join("no-runtime"))
        .output()
        .expect("run contrib/service.sh")
}

#[test]
fn install_lays_down_a_valid_unit_and_uninstall_removes_it() {
    let dir = TempDir::new();
    let (home, prefix) = (dir.path().join("home"), dir.path().join("prefix"));
    std::fs::create_dir_all(&home).unwrap();
    let out = service("install", BIN, &prefix, &home);
    let stdout =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("claudegate serve"),
        "explains the foreground command: {stdout}"
    );
    assert!(stdout.contains("keys add"), "next steps: {stdout}");

    let bin = prefix.join("bin/claudegate");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("claudegate "));

    let config = home.join(".config/claudegate/config.json");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let parsed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(parsed["port"], 8317);

    let unit = home.join(".config/systemd/user/claudegate.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains(&format!("ExecStart=\"{}\"", bin.display())),
        "{text}"
    );
    assert!(text.contains("Restart=on-failure") && text.contains("NoNewPrivileges=yes"));
    assert!(!text.contains("@EXEC_START@"));
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // `make test` installs it (package systemd); the rest of the test still runs.
        crate::common::run::skip_unless_required(
            "the service unit's syntax (systemd-analyze verify)",
            "systemd-analyze is not installed (Debian package systemd)",
        );
    } else {
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .env("HOME", &home)
            .output()
            .unwrap();
        let msg = String::from_utf8_lossy(&verify.stderr);
        // Complaints about the environment (no user manager, no bus) are not about the unit.
        let unit_errors: Vec<&str> = msg
            .lines()
            .filter(|l| {
                l.contains("claudegate.service") && !l.contains("bus") && !l.contains("Failed to")
            })
            .collect();
        assert!(unit_errors.is_empty(), "systemd-analyze verify: {msg}");
    }

    // A second install keeps the user's config.
    std::fs::write(&config, "{\"port\": 9999}").unwrap();
    assert!(service("install", BIN, &prefix, &home).status.success());
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "{\"port\": 9999}"
    );

    let out = service("uninstall", "", &prefix, &home);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bin.exists() && !unit.exists());
    assert!(config.exists(), "config is left alone");
}
