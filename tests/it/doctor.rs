//! `claudegate doctor` (issue 13, item 5): the real binary's checks, in order, against the mock
//! upstream — config, file modes, the login, the upstream over a free call (the usage
//! endpoint), the usage windows, the clock against the upstream's `Date`, the keys, the port,
//! and on the claude-cli backend the `claude` binary and its login (a fake `claude`). Each case
//! checks the mark of the check it is about, the fix of a ✗, the exit status, that every wait
//! is bounded, and that no secret is printed.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use crate::common::run::{run_with_deadline, Run};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// What one doctor run printed: each check as (mark, name, detail, fix).
struct Doctor {
    run: Run,
    checks: Vec<(String, String, String, Option<String>)>,
}

impl Doctor {
    fn code(&self) -> Option<i32> {
        self.run.status.and_then(|s| s.code())
    }

    /// The check named `name`, or a panic that shows the whole output.
    fn check(&self, name: &str) -> (&str, &str, Option<&str>) {
        let c = self
            .checks
            .iter()
            .find(|c| c.1 == name)
            .unwrap_or_else(|| panic!("no check {name:?} in:\n{}", self.run.stdout));
        (c.0.as_str(), c.2.as_str(), c.3.as_deref())
    }

    fn mark(&self, name: &str) -> &str {
        self.check(name).0
    }

    fn assert_mark(&self, name: &str, mark: &str) {
        assert_eq!(self.mark(name), mark, "{name}:\n{}", self.run.stdout);
    }
}

/// `claudegate doctor ARGS…` on `setup`'s config, killed after 30 s at most.
fn doctor_on(setup: &Setup, args: &[&str]) -> Doctor {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let mut cmd = setup.command(&all);
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    let run = run_with_deadline(&mut cmd, Duration::from_secs(30));
    assert!(run.status.is_some(), "doctor hung: {run:?}");
    for secret in [STORED_ACCESS_TOKEN, STORED_REFRESH_TOKEN, "cgk_"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a secret was printed: {run:?}"
        );
    }
    let checks = parse_text(&run.stdout);
    Doctor { run, checks }
}

/// The text output: a check per line that starts with a mark, its fix on the next line.
fn parse_text(out: &str) -> Vec<(String, String, String, Option<String>)> {
    let mut checks: Vec<(String, String, String, Option<String>)> = Vec::new();
    for line in out.lines() {
        let mark = ["✓", "✗", "⚠", "–"]
            .into_iter()
            .find(|m| line.starts_with(m));
        if let Some(mark) = mark {
            let rest = line[mark.len()..].trim_start();
            let (name, detail) = rest.split_once(' ').unwrap_or((rest, ""));
            checks.push((mark.into(), name.into(), detail.trim().into(), None));
        } else if let Some(fix) = line.trim_start().strip_prefix("fix: ") {
            if let Some(last) = checks.last_mut() {
                last.3 = Some(fix.to_string());
            }
        }
    }
    checks
}

/// A logged-in setup (admin key `app`) for the mock, on a free port, with `extra` merged in.
fn healthy(mock: &MockUpstream, extra: Value) -> Setup {
    let mut config = json!({"port": free_port()});
    merge(&mut config, &extra);
    logged_in_setup(&mock.url(), config).0
}

#[test]
fn a_healthy_setup_passes_every_check() {
    let mock = MockUpstream::start();
    let setup = healthy(&mock, json!({}));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(0), "{:?}", d.run);
    let names: Vec<&str> = d.checks.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "permissions",
            "login",
            "upstream",
            "usage.5h",
            "usage.7d",
            "clock",
            "keys",
            "admin_key",
            "port"
        ],
        "{}",
        d.run.stdout
    );
    for c in &d.checks {
        assert_eq!(c.0, "✓", "{}", d.run.stdout);
    }
    assert!(
        d.check("config").1.contains("config.json"),
        "{}",
        d.run.stdout
    );
    assert!(d.check("usage.7d").1.contains("12%"), "{}", d.run.stdout);
    assert!(d.check("usage.5h").1.contains("resets"), "{}", d.run.stdout);
    assert!(d.check("upstream").1.contains("200"), "{}", d.run.stdout);
    assert!(
        d.run.stdout.contains("all 10 checks passed"),
        "{}",
        d.run.stdout
    );
    // A free call: the usage endpoint, never a message.
    assert_eq!(mock.requests_to("/api/oauth/usage").len(), 1);
    assert!(mock.requests_to("/v1/messages").is_empty());
    // `doctor --help` is the doctor's own lines of the help.
    let help = setup.cli(&["doctor", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("doctor") && help.contains("--json"), "{help}");
}

#[test]
fn no_login_is_a_failure_whose_fix_is_claudegate_login() {
    let mock = MockUpstream::start();
    let mut config = upstream_config(&mock.url());
    merge(&mut config, &json!({"port": free_port()}));
    let setup = Setup::new(config);
    setup.add_key("app", &["--admin"]);
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("login");
    assert_eq!(mark, "✗", "{detail}");
    assert!(fix.unwrap_or("").contains("claudegate login"), "{fix:?}");
    for needs_login in ["upstream", "usage", "clock"] {
        d.assert_mark(needs_login, "–");
    }
    assert!(mock.requests().is_empty(), "nothing sent without a login");
}

#[test]
fn a_rejected_token_is_named_as_such() {
    let mock = MockUpstream::start();
    let refused = Reply::error(401, "authentication_error", "Invalid bearer token");
    mock.usage_reply(Some(refused.clone()));
    mock.fail_models(Some(refused));
    let setup = healthy(&mock, json!({}));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("upstream");
    assert_eq!(mark, "✗");
    assert!(
        detail.contains("401") && detail.contains("reachable"),
        "{detail}"
    );
    assert!(fix.unwrap_or("").contains("claudegate login"), "{fix:?}");
    d.assert_mark("usage", "–");
    // The upstream answered: its clock could still be compared.
    d.assert_mark("clock", "✓");
}

#[test]
fn an_unreachable_upstream_fails_quickly_and_says_where() {
    let closed = free_port();
    let mock = MockUpstream::start();
    let setup = healthy(
        &mock,
        json!({"upstream": {"base_url": format!("http://127.0.0.1:{closed}")}}),
    );
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("upstream");
    assert_eq!(mark, "✗");
    assert!(detail.contains("TCP"), "{detail}");
    assert!(fix.unwrap_or("").contains("upstream.base_url"), "{fix:?}");
    d.assert_mark("usage", "–");
    d.assert_mark("clock", "–");
    assert!(
        d.run.elapsed < Duration::from_secs(5),
        "{:?}",
        d.run.elapsed
    );
}

#[test]
fn a_hanging_upstream_is_bounded() {
    let mock = MockUpstream::start();
    mock.usage_reply(Some(
        Reply::json(200, default_usage()).delay_before_ms(20_000),
    ));
    let setup = healthy(
        &mock,
        json!({"timeouts": {"connect_ms": 500, "response_ms": 1000}}),
    );
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, _) = d.check("upstream");
    assert_eq!(mark, "✗");
    assert!(detail.contains("timed out"), "{detail}");
    assert!(
        d.run.elapsed < Duration::from_secs(6),
        "{:?}",
        d.run.elapsed
    );
}

#[test]
fn loose_permissions_fail_naming_the_file_and_are_left_alone() {
    let mock = MockUpstream::start();
    let setup = healthy(&mock, json!({}));
    let token = setup.data_dir().join("token.json");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("permissions");
    assert_eq!(mark, "✗");
    assert!(
        detail.contains("token.json") && detail.contains("0644"),
        "{detail}"
    );
    assert!(fix.unwrap_or("").contains("chmod 600"), "{fix:?}");
    let mode = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the doctor only looks");
}

#[test]
fn no_keys_fail_and_no_admin_key_is_a_warning() {
    let mock = MockUpstream::start();
    let mut config = upstream_config(&mock.url());
    merge(&mut config, &json!({"port": free_port()}));
    let setup = Setup::new(config);
    setup.store_login(oauth_login(STORED_ACCESS_TOKEN, STORED_REFRESH_TOKEN, 3600));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, _, fix) = d.check("keys");
    assert_eq!(mark, "✗");
    assert!(fix.unwrap_or("").contains("claudegate keys add"), "{fix:?}");
    d.assert_mark("admin_key", "–");

    setup.add_key("app", &[]);
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(0), "a warning fails nothing: {:?}", d.run);
    d.assert_mark("keys", "✓");
    let (mark, _, fix) = d.check("admin_key");
    assert_eq!(mark, "⚠");
    assert!(fix.unwrap_or("").contains("--admin"), "{fix:?}");
}

#[test]
fn a_port_taken_by_something_else_fails() {
    let mock = MockUpstream::start();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    // Answers like a web server that is not claudegate, once (waiting 10 s at most).
    other.set_nonblocking(true).unwrap();
    let answering = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let Ok((mut conn, _)) = other.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            conn.set_nonblocking(false).ok();
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let _request = conn.read(&mut [0u8; 1024]);
            conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot here\n")
                .ok();
            return;
        }
    });
    let setup = healthy(&mock, json!({"port": port}));
    let d = doctor_on(&setup, &[]);
    answering.join().unwrap();
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("port");
    assert_eq!(mark, "✗");
    assert!(detail.contains("not claudegate"), "{detail}");
    assert!(fix.unwrap_or("").contains("port"), "{fix:?}");
}

#[test]
fn a_port_served_by_a_running_claudegate_passes() {
    let mock = MockUpstream::start();
    let (gate, _key) = logged_in(&mock.url(), json!({}));
    let setup = healthy(&mock, json!({"port": gate.addr.port()}));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(0), "{:?}", d.run);
    let (mark, detail, _) = d.check("port");
    assert_eq!(mark, "✓");
    assert!(
        detail.contains("a claudegate is already serving here"),
        "{detail}"
    );
}

#[test]
fn a_clock_far_from_the_upstreams_fails() {
    let mock = MockUpstream::start();
    let late = http_date(unix_now() - 3600);
    mock.usage_reply(Some(
        Reply::json(200, default_usage()).header("date", &late),
    ));
    let setup = healthy(&mock, json!({}));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("clock");
    assert_eq!(mark, "✗");
    assert!(detail.contains("ahead"), "{detail}");
    assert!(fix.unwrap_or("").contains("NTP"), "{fix:?}");
    d.assert_mark("upstream", "✓");
}

#[test]
fn a_rejected_window_fails_with_its_reset() {
    let mock = MockUpstream::start();
    let mut usage = default_usage();
    usage["five_hour"]["utilization"] = json!(100.0);
    mock.set_usage(usage);
    let setup = healthy(&mock, json!({}));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, fix) = d.check("usage.5h");
    assert_eq!(mark, "✗");
    assert!(
        detail.contains("100%") && detail.contains("resets in"),
        "{detail}"
    );
    assert!(fix.is_some(), "{}", d.run.stdout);
    d.assert_mark("usage.7d", "✓");
}

#[test]
fn json_parses_and_matches_the_text() {
    let mock = MockUpstream::start();
    let setup = healthy(&mock, json!({}));
    std::fs::remove_file(setup.data_dir().join("keys.json")).unwrap();
    let text = doctor_on(&setup, &[]);
    let json_run = doctor_on(&setup, &["--json"]);
    assert_eq!(json_run.code(), Some(1), "{:?}", json_run.run);
    let doc: Value = serde_json::from_str(&json_run.run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", json_run.run.stdout));
    assert_eq!(doc["ok"], false);
    let checks = doc["checks"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        text.checks.len(),
        "{doc}\n{}",
        text.run.stdout
    );
    for (j, t) in checks.iter().zip(&text.checks) {
        let mark = match j["status"].as_str().unwrap() {
            "ok" => "✓",
            "fail" => "✗",
            "warn" => "⚠",
            "skip" => "–",
            other => panic!("status {other}"),
        };
        assert_eq!(
            (mark, j["name"].as_str().unwrap()),
            (t.0.as_str(), t.1.as_str())
        );
        // Two runs, a moment apart: a countdown ("expires in 7h 59m") may tick between them,
        // so figures are compared as figures, the words exactly.
        assert_eq!(
            digits_as_n(j["detail"].as_str().unwrap()),
            digits_as_n(&t.2),
            "{}",
            t.1
        );
        assert_eq!(j["fix"].as_str(), t.3.as_deref(), "{}", t.1);
    }
}

/// `text` with every run of digits replaced by `N`.
fn digits_as_n(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('N') {
                out.push('N');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_bad_config_fails_and_skips_the_rest() {
    let setup = Setup::new(json!({}));
    std::fs::write(&setup.config_path, "{\"port\": \"eighty\"}").unwrap();
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, _) = d.check("config");
    assert_eq!(mark, "✗");
    assert!(detail.contains("port"), "the loader's message: {detail}");
    assert!(d.checks.len() > 5, "{}", d.run.stdout);
    for c in &d.checks[1..] {
        assert_eq!(c.0, "–", "{}", d.run.stdout);
    }
}

/// A fake `claude` (POSIX sh) in a temp dir, and a setup on the claude-cli backend running it.
fn cli_setup(body: &str, extra: Value) -> (TempDir, Setup) {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    let bin = dir.path().join("claude");
    std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = json!({"port": free_port(), "backend": "claude-cli", "cli": {
        "binary": bin.to_string_lossy(),
        "home": dir.path().join("home").to_string_lossy(),
    }});
    merge(&mut config, &extra);
    let setup = Setup::new(config);
    setup.add_key("app", &["--admin"]);
    (dir, setup)
}

const FAKE_CLAUDE: &str = r#"
case "$1 $2" in
  "--version "*) echo "2.1.330 (Claude Code)" ;;
  "auth status") if [ -f "$HOME/logged-in" ]; then
      echo '{"loggedIn": true, "authMethod": "claude.ai", "email": "user@example.com"}'
    else
      echo '{"loggedIn": false, "authMethod": "none"}'; exit 1
    fi ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac"#;

#[test]
fn the_cli_backend_checks_the_claude_binary_and_its_login() {
    let (dir, setup) = cli_setup(FAKE_CLAUDE, json!({}));
    std::fs::write(dir.path().join("home/logged-in"), "").unwrap();
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(0), "{:?}", d.run);
    let (mark, detail, _) = d.check("cli");
    assert_eq!(mark, "✓");
    assert!(detail.contains("2.1.330"), "{detail}");
    d.assert_mark("cli_login", "✓");
    for oauth_only in ["login", "upstream", "usage", "clock"] {
        d.assert_mark(oauth_only, "–");
    }

    std::fs::remove_file(dir.path().join("home/logged-in")).unwrap();
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, _, fix) = d.check("cli_login");
    assert_eq!(mark, "✗");
    assert!(fix.unwrap_or("").contains("/login"), "{fix:?}");
}

#[test]
fn a_missing_or_hanging_claude_binary_fails_in_bounded_time() {
    let (_dir, setup) = cli_setup(
        "",
        json!({"cli": {"binary": "/nonexistent/claudegate-test/claude"}}),
    );
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, _, fix) = d.check("cli");
    assert_eq!(mark, "✗");
    assert!(fix.unwrap_or("").contains("cli.binary"), "{fix:?}");
    d.assert_mark("cli_login", "–");

    let (_dir, setup) = cli_setup("sleep 30", json!({"cli": {"timeout_ms": 1000}}));
    let d = doctor_on(&setup, &[]);
    assert_eq!(d.code(), Some(1), "{:?}", d.run);
    let (mark, detail, _) = d.check("cli");
    assert_eq!(mark, "✗");
    assert!(detail.contains("did not answer"), "{detail}");
    assert!(
        d.run.elapsed < Duration::from_secs(6),
        "{:?}",
        d.run.elapsed
    );
}
