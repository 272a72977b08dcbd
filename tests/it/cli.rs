//! The command line: help, version, bad usage, key management and config errors, all by
//! running the real binary.

use crate::common::gate::*;
use serde_json::json;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CLAUDEGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_and_version() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert!(out.status.success());
        let s = text(&out.stdout);
        assert!(
            s.contains("keys add LABEL") && s.contains("--config PATH") && s.contains("--admin"),
            "{s}"
        );
    }
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), crate::dist::expected_version());
}

/// `--help` after any command (and after a `keys` action) shows that command's own lines of
/// the help and exits 0; before, `login --help` and `keys add --help` were usage errors (2).
#[test]
fn every_command_takes_help() {
    for (args, wants) in [
        (vec!["serve", "--help"], "Run the server"),
        (vec!["login", "--help"], "--import-claude-code"),
        (vec!["login", "-h"], "--manual"),
        (vec!["logout", "--help"], "Remove the stored login"),
        (vec!["status", "--help"], "Show the stored login"),
        (vec!["keys", "--help"], "keys revoke LABEL"),
        (vec!["keys", "add", "--help"], "--daily N"),
        (vec!["keys", "add", "app", "--help"], "--rpm N"),
        (vec!["keys", "list", "--help"], "never secrets"),
        (vec!["keys", "revoke", "-h"], "Revoke a key"),
        (vec!["usage", "--help"], "--since YYYY-MM-DD"),
    ] {
        let out = run(&args);
        let s = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(s.contains(wants), "{args:?} should mention {wants:?}:\n{s}");
        assert!(
            s.contains("--config PATH"),
            "{args:?}: the options too:\n{s}"
        );
        if args[0] != "keys" {
            assert!(
                !s.contains("keys add LABEL"),
                "{args:?}: only its own lines:\n{s}"
            );
        }
    }
}

/// `serve` says at start when requests will fail for want of a login, and what to run; a
/// usable login (or one the server refreshes by itself) gets no such line.
#[test]
fn serve_says_at_start_when_no_usable_login_is_stored() {
    let (mut gate, _) = Gate::start_with_key(json!({}));
    let log = gate.log();
    assert!(
        log.contains("login: not logged in (run `claudegate login`)"),
        "{log}"
    );
    for (token, warned) in [
        (
            json!({"kind": "long_lived", "access_token": "sk-ant-oat01-x", "source": "token", "needs_login": "refresh token revoked"}),
            true,
        ),
        (
            json!({"kind": "long_lived", "access_token": "sk-ant-oat01-x", "source": "token", "expires_at": 1}),
            true,
        ),
        (oauth_login("sk-ant-oat01-a", "sk-ant-ort01-r", -60), false),
        (oauth_login("sk-ant-oat01-a", "sk-ant-ort01-r", 3600), false),
    ] {
        gate.setup.store_login(token.clone());
        gate.restart();
        let log = gate.log();
        assert_eq!(
            log.contains("run `claudegate login`); until then"),
            warned,
            "{token}:\n{log}"
        );
    }
    // The CLI backend needs no Claude login of ours.
    let (gate, _) = Gate::start_with_key(json!({"backend": "claude-cli"}));
    assert!(!gate.log().contains("login:"), "{}", gate.log());
}

#[test]
fn bad_usage_exits_2_with_a_usage_line() {
    let setup = Setup::new(json!({}));
    for args in [
        vec!["frobnicate"],
        vec!["--bogus"],
        vec!["keys"],
        vec!["keys", "add"],
        vec!["keys", "add", "x", "--rpm", "many"],
        vec!["keys", "add", "x", "--rpm"],
        vec!["keys", "explode"],
        vec!["keys", "revoke"],
        vec!["keys", "list", "extra"],
        vec!["serve", "extra"],
        vec!["--config"],
    ] {
        let out = setup.cli(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains("usage: claudegate"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn keys_add_list_revoke() {
    let setup = Setup::new(json!({"limits": {"per_key_rpm": 30}}));
    let a = setup.add_key("app-one", &["--rpm", "5", "--daily", "100"]);
    let b = setup.add_key("app-two", &[]);
    assert!(a.starts_with("cgk_") && a.len() == 68, "{a}");
    assert_ne!(a, b);

    // Stored as hashes only, in a 0600 file inside a 0700 directory.
    let data = setup.data_dir();
    let stored = std::fs::read_to_string(data.join("keys.json")).unwrap();
    assert!(
        !stored.contains(&a) && !stored.contains(&a[4..]),
        "secret stored in clear"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("keys.json")), 0o600);
    assert_eq!(mode(&data), 0o700);

    let out = setup.cli(&["keys", "list"]);
    assert!(out.status.success());
    let list = text(&out.stdout);
    assert!(
        list.contains("app-one") && list.contains("app-two"),
        "{list}"
    );
    assert!(list.contains("30 (default)"), "default rpm shown: {list}");
    assert!(list.contains("never"), "{list}");
    assert!(
        !list.contains(&a[8..]) && !list.contains(&b[8..]),
        "no secrets in list: {list}"
    );

    // Duplicate labels and bad labels are refused without touching the file.
    let out = setup.cli(&["keys", "add", "app-one"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
    let out = setup.cli(&["keys", "add", "bad label!"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad label"));

    let out = setup.cli(&["keys", "revoke", "app-one"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&setup.cli(&["keys", "list"]).stdout);
    assert!(
        !list.contains("app-one") && list.contains("app-two"),
        "{list}"
    );
    let out = setup.cli(&["keys", "revoke", "app-one"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no key labelled"));
}

#[test]
fn keys_list_on_empty_store() {
    let setup = Setup::new(json!({}));
    let out = setup.cli(&["keys", "list"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no keys"));
}

#[test]
fn config_errors_name_the_key() {
    for (config, needle) in [
        (json!({"prot": 1}), "`prot`"),
        (json!({"limits": {"rpm": 3}}), "`limits.rpm`"),
        (json!({"port": "eighty"}), "`port`"),
        (json!({"workers": 0}), "`workers`"),
        (json!({"debug": "loud"}), "`debug`"),
        (
            json!({"max_body_bytes": 10, "max_inflight_body_bytes": 5}),
            "`max_inflight_body_bytes`",
        ),
        (
            json!({"upstream": {"base_url": "api.anthropic.com"}}),
            "`upstream.base_url`",
        ),
    ] {
        let setup = Setup::new(config.clone());
        let out = setup.cli(&["serve"]);
        assert_eq!(out.status.code(), Some(1), "{config}");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{config}: {err}");
        assert!(err.contains("config.json"), "names the file: {err}");
    }
    // A CA file that cannot be used stops the start with a clear error.
    let setup = Setup::new(json!({"upstream": {"ca_file": "/nonexistent/ca.pem"}}));
    let out = setup.cli(&["keys", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("upstream.ca_file"),
        "{}",
        text(&out.stderr)
    );
    // `--ca-file` does the same from the command line.
    let ok = Setup::new(json!({}));
    let out = ok.cli(&["--ca-file", "/nonexistent/other.pem", "keys", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/other.pem"),
        "{}",
        text(&out.stderr)
    );
    let not_pem = setup.dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let setup = Setup::new(json!({"upstream": {"ca_file": not_pem.to_str().unwrap()}}));
    let out = setup.cli(&["keys", "list"]);
    assert!(
        text(&out.stderr).contains("no PEM certificate"),
        "{}",
        text(&out.stderr)
    );

    let dir = TempDir::new();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let out = run(&["--config", bad.to_str().unwrap(), "keys", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not valid JSON"));
    let out = run(&[
        "--config",
        dir.path().join("missing.json").to_str().unwrap(),
        "keys",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read config"));
}

#[test]
fn config_search_order() {
    // $CLAUDEGATE_CONFIG is used when --config is absent; ./config.json when neither is set.
    let setup = Setup::new(json!({"limits": {"per_key_rpm": 7}}));
    setup.add_key("envkey", &[]);
    let out = Command::new(BIN)
        .args(["keys", "list"])
        .env("CLAUDEGATE_CONFIG", &setup.config_path)
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("envkey"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("7 (default)"));
    let out = Command::new(BIN)
        .args(["keys", "list"])
        .env_remove("CLAUDEGATE_CONFIG")
        .current_dir(setup.dir.path())
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("envkey"),
        "./config.json: {}",
        text(&out.stderr)
    );
}

#[test]
fn corrupt_key_file_is_a_clear_error_and_left_alone() {
    let setup = Setup::new(json!({}));
    std::fs::create_dir_all(setup.data_dir()).unwrap();
    let path = setup.data_dir().join("keys.json");
    std::fs::write(&path, "{\"version\":1,\"keys\":[{\"label\":").unwrap();
    for args in [
        vec!["serve"],
        vec!["keys", "add", "x"],
        vec!["keys", "list"],
    ] {
        let out = setup.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("keys.json") && err.contains("corrupt"),
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"version\":1,\"keys\":[{\"label\":"
    );
}

#[test]
fn serve_without_terminal_mints_nothing_and_says_how() {
    let mut gate = Gate::spawn(Setup::new(json!({})));
    std::thread::sleep(std::time::Duration::from_millis(100));
    let log = gate.log();
    assert!(log.contains("claudegate keys add"), "{log}");
    assert!(!log.contains("cgk_"), "no key in the log: {log}");
    assert!(!gate.setup.data_dir().join("keys.json").exists());
    gate.assert_healthy();
}

/// The first-run key is shown on a real terminal: `script` gives the server a pseudo-terminal.
#[test]
fn serve_on_a_terminal_mints_and_prints_a_default_key_once() {
    if Command::new("script").arg("--version").output().is_err() {
        crate::common::run::skip_unless_required(
            "serve_on_a_terminal_mints_and_prints_a_default_key_once",
            "`script` is not installed (Debian package bsdutils; `make test` installs it)",
        );
        return;
    }
    let setup = Setup::new(json!({}));
    let cmd = format!(
        "timeout 3 {BIN} --config {} serve",
        setup.config_path.display()
    );
    let out = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env_remove("CLAUDEGATE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = text(&out.stdout);
    let key = screen
        .split_whitespace()
        .find(|w| w.starts_with("cgk_") && w.len() == 68)
        .unwrap_or_else(|| panic!("no key on the terminal: {screen}"));
    assert!(screen.contains("shown only this once"), "{screen}");
    let stored = std::fs::read_to_string(setup.data_dir().join("keys.json")).unwrap();
    assert!(stored.contains("\"default\"") && !stored.contains(key));
    // The operator's key: admin scope, said on the terminal and in `keys list`.
    assert!(screen.contains("admin scope"), "{screen}");
    assert_eq!(crate::keys::listed_scope(&setup, "default"), "admin");
    // The printed key works, on the admin views too, and a second start mints nothing new.
    let key = key.to_string();
    let gate = Gate::spawn(setup);
    let bearer = format!("Bearer {key}");
    for path in ["/v1/models", "/admin/accounts", "/metrics"] {
        let r = get(&gate.url(path), &[("authorization", &bearer)]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    assert!(!gate.log().contains("cgk_"));
}
