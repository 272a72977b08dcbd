//! `claudegate doctor [--json]`: is this setup healthy? Checks, in order, each printed as one
//! line with its mark (✓ ok, ✗ failed, ⚠ warning, – skipped) and, for a ✗ or ⚠, the fix on
//! the line below, then a summary line:
//!
//! 1. `config`: the configuration loads (which file; the loader's own message when not). When
//!    it does not, every other check is skipped: they all need it.
//! 2. `permissions`: the data directory and its files are private (0700 / 0600) and ours,
//!    the paths `serve` tightens ([`crate::server::private_paths`], judged by
//!    [`crate::base::fsutil::check_private`]). The doctor only looks: it changes nothing.
//! 3. `login`: a login is stored, its state and expiry ([`LoginState`]).
//! 4. `upstream`: the upstream answers a free call with the stored token
//!    ([`crate::backends::oauth::probe`]: the usage endpoint, never a message), and if not,
//!    where it failed: DNS, TCP, TLS, a timeout, or the token refused (401/403).
//! 5. `usage.<window>`: a line per usage window of that same answer; ✗ for a window that is
//!    rejected (or, from the usage endpoint, which reports no status, 100 % used), with its
//!    reset; ⚠ for one past its warning threshold.
//! 6. `clock`: this host's clock against the upstream's `Date`: ✗ beyond [`MAX_SKEW_S`], since
//!    the token's expiry and the windows' resets are read against it.
//! 7. `keys`: at least one API key (✗ without: no app can call), and `admin_key`: at least one
//!    admin key — a ⚠ only, since apps work without one; the operator's views need it.
//! 8. `port`: `host:port` is free ([`crate::server::port`]), or a claudegate already answers
//!    `GET /health` there with 200 ([`super::health`], the container's health check; `/health`
//!    says no version, so none is shown); anything else there is a ✗.
//! 9. On the claude-cli backend only, `cli`: the `claude` binary runs and says its
//!    `--version`, and `cli_login`: `claude auth status` says it is logged in
//!    ([`crate::backends::cli::probe`]). Checks 3 to 6 are skipped there (Claude Code keeps
//!    its own login); on the OAuth backend the CLI checks are not listed.
//!
//! Exit status 0 when no check failed (warnings and skips fail nothing), 1 otherwise. Every
//! wait is bounded: the upstream call by [`NET_WAIT`] (or the configured connect + response
//! timeouts when shorter), the port probe by [`PORT_WAIT`], each CLI run by [`NET_WAIT`] (or
//! `cli.timeout_ms`). Nothing printed holds a token or a key: the upstream's words are
//! redacted, keys are named by label only.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::health;
use super::login::{expiry_text, window_text};
use crate::anthropic::ratelimit::Window;
use crate::backends::cli::probe::{self as cli_probe, CliLogin};
use crate::backends::oauth::probe::{self, Outcome, Probe};
use crate::backends::oauth::token::{load_token, token_path, LoginState, Token};
use crate::backends::upstream::{self, Stage, Upstream};
use crate::base::clock;
use crate::base::fsutil::{self, NotPrivate};
use crate::config::{Backend, Config};
use crate::guard::keys::{self, Scope};
use crate::server::port::{self, Bind};

/// The longest wait for the upstream's answer and for each run of the CLI.
pub const NET_WAIT: Duration = Duration::from_secs(5);
/// The longest wait for `/health` at the configured port.
pub const PORT_WAIT: Duration = Duration::from_secs(2);
/// The most the clocks may differ before `clock` fails, in seconds.
pub const MAX_SKEW_S: u64 = 60;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Fail,
    Warn,
    Skip,
}

impl Status {
    fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Fail => "✗",
            Status::Warn => "⚠",
            Status::Skip => "–",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Skip => "skip",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone)]
struct Check {
    name: String,
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
    // One line each, whatever a message holds.
    let one_line = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    Check {
        name: name.to_string(),
        status,
        detail: one_line(detail.into()),
        fix: fix.map(one_line),
    }
}

fn ok(name: &str, detail: impl Into<String>) -> Check {
    check(name, Status::Ok, detail, None)
}

fn fail(name: &str, detail: impl Into<String>, fix: &str) -> Check {
    check(name, Status::Fail, detail, Some(fix.to_string()))
}

fn skip(name: &str, detail: impl Into<String>) -> Check {
    check(name, Status::Skip, detail, None)
}

/// Where the configuration comes from, as `main` found it.
pub struct Source<'a> {
    pub path: &'a Path,
    /// Named by `--config` or `$CLAUDEGATE_CONFIG`: then it must exist.
    pub explicit: bool,
    /// `--ca-file`, replacing `upstream.ca_file`.
    pub ca_file: Option<String>,
}

/// Runs every check and prints them (text, or one JSON document with `json`); true when no
/// check failed.
pub fn run(source: Source, json: bool) -> bool {
    let checks = checks(source);
    let passed = !checks.iter().any(|c| c.status == Status::Fail);
    if json {
        let list: Vec<Value> = checks
            .iter()
            .map(|c| {
                json!({"name": c.name, "status": c.status.name(), "detail": c.detail,
                       "fix": c.fix})
            })
            .collect();
        println!("{}", json!({"ok": passed, "checks": list}));
    } else {
        for c in &checks {
            println!("{} {:<12} {}", c.status.mark(), c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("  {:<12} fix: {fix}", "");
            }
        }
        println!("{}", summary(&checks));
    }
    passed
}

/// `all 10 checks passed`, or the count of each outcome.
fn summary(checks: &[Check]) -> String {
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let (passed, failed, warned, skipped) = (
        count(Status::Ok),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Skip),
    );
    if passed == checks.len() {
        return format!("all {passed} checks passed");
    }
    format!(
        "{passed} passed, {failed} failed, {warned} {}, {skipped} skipped{}",
        if warned == 1 { "warning" } else { "warnings" },
        if failed == 0 { " (nothing to fix)" } else { "" }
    )
}

/// Every check, in order.
fn checks(source: Source) -> Vec<Check> {
    let config = match load(&source) {
        Ok((config, detail)) => {
            let mut out = vec![ok("config", detail)];
            out.extend(with_config(&config));
            return out;
        }
        Err(e) => e,
    };
    let mut out = vec![fail(
        "config",
        config,
        "fix what the message names (config.example.json lists every key), or point --config \
         or CLAUDEGATE_CONFIG at another file",
    )];
    for name in [
        "permissions",
        "login",
        "upstream",
        "usage",
        "clock",
        "keys",
        "admin_key",
        "port",
    ] {
        out.push(skip(name, "needs a configuration that loads"));
    }
    out
}

/// The configuration and where it came from, or the loader's message.
fn load(source: &Source) -> Result<(Config, String), String> {
    let mut config = Config::load(source.path, source.explicit).map_err(|e| e.to_string())?;
    if source.ca_file.is_some() {
        config.upstream.ca_file = source.ca_file.clone();
    }
    upstream::init_tls(config.upstream.ca_file.as_deref())?;
    let shown = source.path.display();
    let detail = if source.path.is_file() {
        format!("loaded {shown}")
    } else {
        format!("no file at {shown}: the defaults apply")
    };
    Ok((config, detail))
}

/// The checks after the configuration loaded.
fn with_config(config: &Config) -> Vec<Check> {
    let mut out = vec![permissions(config)];
    if config.backend == Backend::Oauth {
        out.extend(oauth(config));
    } else {
        let why = "the claude-cli backend uses Claude Code's own login (see cli_login)";
        for name in ["login", "upstream", "usage", "clock"] {
            out.push(skip(name, why));
        }
    }
    out.extend(keys(config));
    out.push(port(config));
    if config.backend == Backend::ClaudeCli {
        out.extend(cli(config));
    }
    out
}

// --- 2. Permissions ----------------------------------------------------------------------------

fn permissions(config: &Config) -> Check {
    let data_dir = config.data_dir();
    if !data_dir.exists() {
        return ok(
            "permissions",
            format!(
                "data_dir {} does not exist yet (`claudegate serve` creates it, mode 0700)",
                data_dir.display()
            ),
        );
    }
    let mut problems = Vec::new();
    let (mut chmods, mut chowns) = (Vec::new(), Vec::new());
    for path in crate::server::private_paths(config) {
        let shown = path.display().to_string();
        match fsutil::check_private(&path) {
            Ok(None) => {}
            Ok(Some(NotPrivate {
                mode,
                wanted,
                loose,
                other_owner,
            })) => {
                if loose {
                    problems.push(format!(
                        "{shown} has mode {mode:04o}, open to other users (want {wanted:04o})"
                    ));
                    chmods.push(format!("`chmod {wanted:o} {shown}`"));
                }
                if let Some(uid) = other_owner {
                    problems.push(format!(
                        "{shown} is owned by uid {uid}, not by uid {} running this",
                        crate::base::sys::effective_uid()
                    ));
                    chowns.push(shown);
                }
            }
            Err(e) => problems.push(format!("cannot look at {shown}: {e}")),
        }
    }
    if problems.is_empty() {
        return ok(
            "permissions",
            format!(
                "data_dir {} and its files are private (0700 / 0600) and yours",
                data_dir.display()
            ),
        );
    }
    let mut fixes = Vec::new();
    if !chmods.is_empty() {
        fixes.push(format!(
            "run {} (`claudegate serve` also tightens them at start)",
            chmods.join(" and ")
        ));
    }
    if !chowns.is_empty() {
        fixes.push(format!(
            "`chown` {} to the user claudegate runs as",
            chowns.join(", ")
        ));
    }
    if fixes.is_empty() {
        fixes.push("make data_dir readable by the user claudegate runs as".into());
    }
    fail("permissions", problems.join("; "), &fixes.join("; "))
}

// --- 3 to 6. The login, the upstream, the windows, the clock -------------------------------------

fn oauth(config: &Config) -> Vec<Check> {
    let path = token_path(&config.data_dir());
    let now = clock::unix_now();
    let (login, token) = match load_token(&path) {
        Err(e) => (
            fail(
                "login",
                e,
                "run `claudegate logout` to remove the unreadable login, then `claudegate login`",
            ),
            None,
        ),
        Ok(None) => (
            fail(
                "login",
                "not logged in (no login stored)",
                "run `claudegate login` (or `claudegate login --token -` with a `claude \
                 setup-token` token)",
            ),
            None,
        ),
        Ok(Some(t)) => (login_check(&t, now), Some(t)),
    };
    let mut out = vec![login];
    let Some(token) = token else {
        for name in ["upstream", "usage", "clock"] {
            out.push(skip(name, "no login to try"));
        }
        return out;
    };
    let t = &config.timeouts;
    let wait = NET_WAIT.min(Duration::from_millis(
        t.connect_ms.saturating_add(t.response_ms),
    ));
    let seen = probe::probe(&Upstream::new(config), &token.access_token, wait);
    let expired = matches!(
        LoginState::of(Some(&token), now),
        LoginState::Expired { .. }
    );
    out.push(upstream_check(config, &seen, wait, expired));
    out.extend(usage_checks(&seen, clock::unix_now()));
    out.push(clock_check(&seen));
    out
}

fn login_check(t: &Token, now: u64) -> Check {
    let state = LoginState::of(Some(t), now);
    let who = t.account_label();
    if state.needs_action() {
        return fail(
            "login",
            format!("{who}: {}", state.describe()),
            "run `claudegate login` to log in again",
        );
    }
    let detail = format!(
        "{who}, {} token, expires {}",
        t.kind.name(),
        expiry_text(t, now)
    );
    match state {
        LoginState::Ok => ok("login", detail),
        _ => check(
            "login",
            Status::Warn,
            format!("{detail}: {}", state.describe()),
            Some("start `claudegate serve`, which refreshes it, or run `claudegate login`".into()),
        ),
    }
}

fn upstream_check(config: &Config, seen: &Probe, wait: Duration, expired: bool) -> Check {
    let base = &config.upstream.base_url;
    match &seen.outcome {
        Outcome::Unreached { stage, message } => {
            let (detail, fix) = match stage {
                Stage::Dns => (
                    format!("cannot resolve the host of {base} (DNS): {message}"),
                    "check upstream.base_url and this host's DNS (or its HTTPS_PROXY)",
                ),
                Stage::Tcp => (
                    format!("no TCP connection to {base}: {message}"),
                    "check upstream.base_url, the network, a firewall, or HTTPS_PROXY",
                ),
                Stage::Tls => (
                    format!("the TLS handshake with {base} failed: {message}"),
                    "behind a TLS-intercepting proxy, set upstream.ca_file (or --ca-file) to \
                     its root certificate",
                ),
                Stage::Timeout => (
                    format!(
                        "{base} timed out (waited {} ms): {message}",
                        wait.as_millis()
                    ),
                    "check the network and HTTPS_PROXY; if the link is slow, raise \
                     timeouts.connect_ms",
                ),
                Stage::Other => (
                    format!("{base} could not be reached: {message}"),
                    "check upstream.base_url and HTTPS_PROXY",
                ),
            };
            fail("upstream", detail, fix)
        }
        Outcome::Refused {
            path,
            status,
            said,
            refusal,
        } => {
            let detail = format!("{base} is reachable, but {path} answered {status}: {said}");
            if let Some(r) = refusal {
                let advice = r.advice().trim_start_matches("claudegate: ");
                return fail("upstream", detail, advice);
            }
            match status {
                401 if expired => check(
                    "upstream",
                    Status::Warn,
                    format!("{detail} (the access token has expired)"),
                    Some(
                        "start `claudegate serve`, which refreshes it, or run `claudegate login`"
                            .into(),
                    ),
                ),
                401 => fail(
                    "upstream",
                    format!("{detail} (the token was refused)"),
                    "run `claudegate login` to log in again",
                ),
                403 => fail(
                    "upstream",
                    detail,
                    "run `claudegate login` with an account whose plan and organisation allow \
                     Claude Code",
                ),
                _ => fail(
                    "upstream",
                    detail,
                    "try again in a few minutes (see status.anthropic.com)",
                ),
            }
        }
        Outcome::Accepted { path, status, .. } => ok(
            "upstream",
            format!("{base} is reachable and accepts the token ({path} answered {status})"),
        ),
    }
}

fn usage_checks(seen: &Probe, now: u64) -> Vec<Check> {
    let snapshot = match &seen.outcome {
        Outcome::Accepted { usage, .. } => usage,
        _ => return vec![skip("usage", "the upstream check failed")],
    };
    let windows = match snapshot {
        Ok(s) if !s.windows.is_empty() => &s.windows,
        Ok(_) => {
            return vec![check(
                "usage",
                Status::Warn,
                "the upstream reported no usage windows",
                None,
            )]
        }
        Err(why) => {
            return vec![check(
                "usage",
                Status::Warn,
                format!("no usage windows: {why}"),
                Some(
                    "a `claude setup-token` login cannot read the usage endpoint; `claudegate \
                     status` shows what a running server saw in its answers' headers"
                        .into(),
                ),
            )]
        }
    };
    windows.iter().map(|w| window_check(w, now)).collect()
}

fn window_check(w: &Window, now: u64) -> Check {
    let name = format!("usage.{}", w.name);
    let detail = window_text(&w.to_json(), now);
    let full = w.status.is_none() && w.utilization.is_some_and(|u| u >= 1.0);
    if w.status == Some("rejected") || full {
        let when = w.resets_at.map_or(String::new(), |r| {
            format!(" (it resets at {})", clock::rfc3339(r))
        });
        let fix = format!(
            "wait for the window to reset{when}, or allow extra usage at \
             claude.ai/settings/usage"
        );
        return fail(&name, detail, &fix);
    }
    if w.status == Some("allowed_warning") {
        return check(&name, Status::Warn, detail, None);
    }
    ok(&name, detail)
}

fn clock_check(seen: &Probe) -> Check {
    if matches!(seen.outcome, Outcome::Unreached { .. }) {
        return skip("clock", "no answer from the upstream to compare with");
    }
    let Some(theirs) = seen.upstream_date else {
        return check(
            "clock",
            Status::Warn,
            "the upstream's answer had no Date header; the clocks were not compared",
            None,
        );
    };
    let ours = seen.local_at;
    let skew = ours.abs_diff(theirs);
    let side = if ours >= theirs { "ahead of" } else { "behind" };
    if skew > MAX_SKEW_S {
        return fail(
            "clock",
            format!(
                "this host's clock is {skew} s {side} the upstream's ({} there)",
                clock::rfc3339(theirs)
            ),
            "set the clock right, e.g. turn on NTP (`timedatectl set-ntp true`): the token's \
             expiry and the windows' resets are read against it",
        );
    }
    ok(
        "clock",
        format!("within {skew} s of the upstream's (at most {MAX_SKEW_S} s allowed)"),
    )
}

// --- 7. Keys ----------------------------------------------------------------------------------

fn keys(config: &Config) -> Vec<Check> {
    let file = match keys::load(&keys::file_path(&config.data_dir())) {
        Ok(f) => f,
        Err(e) => {
            return vec![
                fail(
                    "keys",
                    e,
                    "fix keys.json, or remove it (which revokes every key) and run `claudegate \
                     keys add LABEL`",
                ),
                skip("admin_key", "the key file is unreadable"),
            ]
        }
    };
    if file.keys.is_empty() {
        return vec![
            fail(
                "keys",
                "no API key: no app can call this server",
                "run `claudegate keys add LABEL` (the first `claudegate serve` also mints an \
                 admin key and prints it once)",
            ),
            skip("admin_key", "no keys"),
        ];
    }
    let labels = |scope: Option<Scope>| {
        file.keys
            .iter()
            .filter(|k| scope.is_none_or(|s| k.scope == s))
            .map(|k| k.label.as_str())
            .collect::<Vec<_>>()
    };
    let all = labels(None);
    let admins = labels(Some(Scope::Admin));
    let plural = if all.len() == 1 { "key" } else { "keys" };
    let mut out = vec![ok(
        "keys",
        format!("{} {plural}: {}", all.len(), all.join(", ")),
    )];
    out.push(if admins.is_empty() {
        check(
            "admin_key",
            Status::Warn,
            "no admin key: the operator's views (/admin/accounts, /admin/status, a \
             non-public /metrics) need one",
            Some("run `claudegate keys add LABEL --admin`".into()),
        )
    } else {
        ok("admin_key", format!("admin: {}", admins.join(", ")))
    });
    out
}

// --- 8. The port ------------------------------------------------------------------------------

fn port(config: &Config) -> Check {
    let (host, port) = (config.host.as_str(), config.port);
    if port == 0 {
        return ok("port", "port 0: the system picks a free port at each start");
    }
    let at = format!("{host}:{port}");
    match port::try_bind(host, port) {
        Bind::Free => ok("port", format!("{at} is free")),
        Bind::InUse => {
            let url = health::local_url(config);
            match health::get_status(&url, Instant::now() + PORT_WAIT) {
                Ok(200) => ok(
                    "port",
                    format!(
                        "a claudegate is already serving here ({at}: GET /health answered 200)"
                    ),
                ),
                answer => fail(
                    "port",
                    format!(
                        "{at} is in use, and GET /health there {}: that is not claudegate",
                        match answer {
                            Ok(status) => format!("answered {status}"),
                            Err(e) => format!("failed ({e})"),
                        }
                    ),
                    "stop what holds it, or set another `port` (or `host`) in the config",
                ),
            }
        }
        Bind::Unusable(said) => fail(
            "port",
            said,
            "set `host` to an address of this host and `port` to one you may bind (1024 and \
             above need no privilege)",
        ),
    }
}

// --- 9. The claude CLI ------------------------------------------------------------------------

fn cli(config: &Config) -> Vec<Check> {
    let cfg = &config.cli;
    let wait = NET_WAIT.min(Duration::from_millis(cfg.timeout_ms.max(1)));
    let version = match cli_probe::version(cfg, wait) {
        Ok(v) => v,
        Err(e) => {
            return vec![
                fail(
                    "cli",
                    e,
                    "install Claude Code (`npm install -g @anthropic-ai/claude-code`), or set \
                     cli.binary to the path of its `claude`",
                ),
                skip("cli_login", "the CLI did not run"),
            ]
        }
    };
    let mut out = vec![ok("cli", format!("`{}` {version}", cfg.binary))];
    let fix = "as the user claudegate runs as, with HOME set to cli.home: run `claude` and then \
               /login, or put a `claude setup-token` token in cli.env.CLAUDE_CODE_OAUTH_TOKEN";
    out.push(match cli_probe::login(cfg, wait) {
        Ok(CliLogin::LoggedIn(method)) => ok(
            "cli_login",
            match method {
                Some(m) => format!("Claude Code is logged in ({m})"),
                None => "Claude Code is logged in".into(),
            },
        ),
        Ok(CliLogin::NotLoggedIn) => fail(
            "cli_login",
            format!("Claude Code is not logged in for cli.home {}", cfg.home),
            fix,
        ),
        Ok(CliLogin::Unknown(why)) => check("cli_login", Status::Warn, why, Some(fix.into())),
        Err(e) => fail("cli_login", e, fix),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_each_outcome() {
        let all_ok = vec![ok("a", "x"), ok("b", "y")];
        assert_eq!(summary(&all_ok), "all 2 checks passed");
        let mixed = vec![
            ok("a", "x"),
            fail("b", "y", "z"),
            skip("c", "w"),
            check("d", Status::Warn, "v", None),
        ];
        assert_eq!(summary(&mixed), "1 passed, 1 failed, 1 warning, 1 skipped");
    }

    #[test]
    fn a_detail_is_one_line() {
        let c = fail("x", "two\nlines", "and\r\nmore");
        assert_eq!(
            (c.detail.as_str(), c.fix.as_deref()),
            ("two lines", Some("and more"))
        );
    }
}
