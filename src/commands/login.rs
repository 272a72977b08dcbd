//! `claudegate login`, `logout` and `status`: the conversation with the user around the stored
//! login. The OAuth protocol and the login flows themselves are the backend's
//! ([`crate::backends::oauth::login`], [`crate::backends::oauth::token`]); this module prints the
//! URL to open, opens a browser when there is a display, reads what the user pastes or pipes in,
//! and shows what was stored. `logout` and `status` work on the token file without a server.
//!
//! `status` also shows the subscription's usage windows, a line each with a bar, the percentage
//! used and the reset countdown: live from the usage endpoint when the stored token is usable
//! ([`crate::backends::oauth::usage`]), else as a running server last saved them (from the usage
//! endpoint or from its last answer's headers), with the server's cooldowns.
//!
//! No access or refresh token is ever printed: `status` shows the account, never a credential,
//! and [`LoginMode`]'s `Debug` output hides a token given to `--token`.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backends::oauth::login::{self, Pkce, RedirectListener};
use crate::backends::oauth::token::{load_token, token_path, LoginState, Token, TokenKind};
use crate::backends::oauth::usage;
use crate::base::clock;
use crate::config::Config;

/// How `claudegate login` obtains the credential.
#[derive(Clone)]
pub enum LoginMode {
    Browser,
    Manual,
    ImportClaudeCode(Option<PathBuf>),
    Token(String),
}

// By hand, so that the token given to `--token` never shows in a `{:?}`.
impl fmt::Debug for LoginMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginMode::Browser => f.write_str("Browser"),
            LoginMode::Manual => f.write_str("Manual"),
            LoginMode::ImportClaudeCode(p) => f.debug_tuple("ImportClaudeCode").field(p).finish(),
            LoginMode::Token(_) => f.write_str("Token(<hidden>)"),
        }
    }
}

/// `claudegate login …`: obtains a credential and stores it (one account at a time).
pub fn login(config: &Config, mode: LoginMode) -> Result<(), String> {
    let cfg = &config.oauth;
    let path = token_path(&config.data_dir());
    match mode {
        LoginMode::Token(raw) => {
            // `-` reads the token from stdin, keeping it out of the process list and history.
            let raw = if raw.trim() == "-" {
                read_stdin_line("the token")?
            } else {
                raw
            };
            let token = login::long_lived_token(&raw)?;
            store(&path, &token)
        }
        LoginMode::ImportClaudeCode(file) => {
            let token = login::import_claude_code(file)?;
            store(&path, &token)?;
            eprintln!(
                "claudegate: warning: claudegate and Claude Code now share one login. Refresh \
                 tokens rotate and work only once, so whichever refreshes first logs the other \
                 out. Keep only one of them using it: for claudegate, prefer `claude \
                 setup-token` + `claudegate login --token`, or a separate `claudegate login`."
            );
            Ok(())
        }
        LoginMode::Manual => {
            login::precheck_oauth(&path)?;
            let pkce = Pkce::new()?;
            let url = login::authorize_url(cfg, &pkce.challenge, &pkce.state);
            println!("Open this URL in a browser (on any machine) and sign in to Claude:\n");
            println!("  {url}\n");
            println!(
                "Then paste the address the browser was sent to (it may show an error page; \
                 copy its URL), or the code#state the page shows, and press Enter:"
            );
            io::stdout().flush().ok();
            let line = read_stdin_line("the redirect URL or code#state")?;
            let (code, state) = login::parse_pasted(&line)?;
            if state != pkce.state {
                return Err(
                    "the pasted state does not match this login attempt: it was copied from \
                     another (older) login attempt, or the redirect was forged (possible CSRF). \
                     Nothing was stored; run `claudegate login --manual` again and paste the \
                     result of the URL it prints"
                        .into(),
                );
            }
            let mut token = login::exchange_code(cfg, &code, &pkce)?;
            token.source = "manual".into();
            store(&path, &token)
        }
        LoginMode::Browser => {
            login::precheck_oauth(&path)?;
            let pkce = Pkce::new()?;
            let listener = RedirectListener::bind(&cfg.redirect_uri)?;
            let timeout = login::login_timeout();
            let deadline = Instant::now() + timeout;
            let url = login::authorize_url(cfg, &pkce.challenge, &pkce.state);
            println!("Open this URL in a browser and sign in to Claude:\n");
            println!("  {url}\n");
            println!(
                "Waiting for the redirect to {} (up to {}; Ctrl-C to cancel). On a machine \
                 without a browser, use `claudegate login --manual` instead.",
                cfg.redirect_uri,
                human_duration(timeout.as_secs().max(1))
            );
            io::stdout().flush().ok();
            open_browser(&url);
            let redirect = listener.wait(&pkce.state, deadline)?;
            let result = login::exchange_code(cfg, &redirect.code, &pkce).and_then(|mut token| {
                token.source = "browser".into();
                store(&path, &token)
            });
            redirect.answer(&result);
            result
        }
    }
}

/// Stores a new login (under the one-account rule) and prints what was stored.
fn store(path: &Path, new: &Token) -> Result<(), String> {
    let replaced = login::store_login(path, new)?;
    let now = clock::unix_now();
    let mut lines = vec![
        ("account", new.account_label()),
        (
            "kind",
            format!("{} (source: {})", new.kind.name(), new.source),
        ),
        ("expires", expiry_text(new, now)),
    ];
    if replaced {
        lines.push((
            "note",
            "replaced the stored login of the same account".into(),
        ));
    }
    println!("logged in");
    print_aligned(&lines);
    Ok(())
}

/// `claudegate logout`: removes the stored login (even a corrupt one).
pub fn logout(config: &Config) -> Result<(), String> {
    let path = token_path(&config.data_dir());
    let who = match load_token(&path) {
        Ok(None) => {
            println!("not logged in (no login stored); nothing to do");
            return Ok(());
        }
        Ok(Some(t)) => t.account_phrase(),
        Err(_) => "the token file was unreadable".into(),
    };
    // Under the token file's lock: a running server saving a refreshed token checks the file
    // under it too, so it cannot write the login back just after it was removed.
    crate::backends::oauth::token::locked(&path, || match std::fs::remove_file(&path) {
        Ok(()) => {
            println!("logged out ({who})");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!("not logged in (no login stored); nothing to do");
            Ok(())
        }
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    })
}

/// `claudegate status`: the stored login, without asking a server.
pub fn status(config: &Config) -> Result<(), String> {
    let path = token_path(&config.data_dir());
    let token = load_token(&path)?;
    let now = clock::unix_now();
    let state = LoginState::of(token.as_ref(), now).describe();
    let Some(t) = token else {
        print_aligned(&[("state", state)]);
        return Ok(());
    };
    let unknown = || "unknown".to_string();
    let organization = match (&t.organization_name, &t.organization_uuid) {
        (Some(n), Some(u)) => format!("{n} ({u})"),
        (Some(n), None) => n.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => unknown(),
    };
    let last_refresh = t.last_refresh.map_or_else(unknown, |r| {
        format!(
            "{} ({} ago)",
            clock::rfc3339(r),
            human_duration(now.saturating_sub(r))
        )
    });
    let mut lines: Vec<(String, String)> = [
        ("state", state),
        (
            "account",
            t.email.clone().unwrap_or_else(|| "unknown account".into()),
        ),
        (
            "account uuid",
            t.account_uuid.clone().unwrap_or_else(unknown),
        ),
        ("organization", organization),
        ("kind", t.kind.name().into()),
        ("source", t.source.clone()),
        ("expires", expiry_text(&t, now)),
        ("last refresh", last_refresh),
        ("scopes", t.scopes.clone().unwrap_or_else(unknown)),
        ("token file", path.display().to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    lines.extend(usage_lines(config, &t, now));
    print_aligned(&lines);
    Ok(())
}

/// The longest `status` waits for the usage endpoint.
const LIVE_USAGE_WAIT: Duration = Duration::from_secs(10);

/// The usage lines of `status`: where they come from, a line per window, and the cooldowns the
/// server saved (see the module docs).
fn usage_lines(config: &Config, t: &Token, now: u64) -> Vec<(String, String)> {
    let usable = LoginState::of(Some(t), now) == LoginState::Ok;
    let wait = Duration::from_millis(config.timeouts.response_ms).min(LIVE_USAGE_WAIT);
    let live = usable.then(|| {
        let upstream = crate::backends::upstream::Upstream::new(config);
        usage::read(&upstream, &t.access_token, wait)
    });
    let saved = usage::read_saved(&usage::saved_path(&config.data_dir()));
    let (source, shown) = match (live, &saved) {
        (Some(Ok(snapshot)), _) => (
            "live from the usage endpoint".to_string(),
            snapshot.to_json("usage_endpoint", now),
        ),
        (live, Some(saved)) if saved["usage"]["source"].is_string() => {
            let at = saved["usage"]["observed_at"]
                .as_str()
                .and_then(clock::parse_rfc3339);
            let from = match saved["usage"]["source"].as_str() {
                Some("usage_endpoint") => "the usage endpoint",
                _ => "the last answer's headers",
            };
            let ago = at.map_or(String::new(), |a| {
                format!(" {} ago", human_duration(now.saturating_sub(a)))
            });
            let why = match live {
                Some(Err(f)) => format!("; live: {}", f.message),
                _ => String::new(),
            };
            (
                format!("as the server saw it{ago}, from {from}{why}"),
                saved["usage"].clone(),
            )
        }
        (live, _) => {
            let why = match live {
                Some(Err(f)) => f.message,
                _ => "the stored token is not usable now".into(),
            };
            let line = format!("unknown (live: {why}; no server has saved any yet)");
            return vec![("usage".into(), line)];
        }
    };
    let mut lines = vec![("usage".to_string(), source)];
    for w in shown["windows"].as_array().into_iter().flatten() {
        let name = w["name"].as_str().unwrap_or("?");
        let (key, mut value) = if name.len() <= 10 {
            (format!("  {name}"), String::new())
        } else {
            ("  window".to_string(), format!("{name} "))
        };
        value.push_str(&window_text(w, now));
        lines.push((key, value));
    }
    let cooldowns = saved.as_ref().map(|s| s["cooldowns"].clone());
    for c in cooldowns
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(until) = c["until"].as_str().and_then(clock::parse_rfc3339) else {
            continue;
        };
        if until <= now {
            continue;
        }
        let scope = c["model"]
            .as_str()
            .map_or("the account".to_string(), |m| format!("{m} models"));
        lines.push((
            "cooldown".into(),
            format!(
                "{scope} until {} (in {}): {}",
                clock::rfc3339(until),
                human_duration(until - now),
                c["reason"].as_str().unwrap_or("")
            ),
        ));
    }
    lines
}

/// `[####------]  42%  allowed, resets in 3h 12m (2026-11-22T21:40:05Z)`.
pub(super) fn window_text(w: &Value, now: u64) -> String {
    let mut out = match w["utilization"].as_f64() {
        Some(u) => {
            let u = u.clamp(0.0, 1.0);
            let filled = (u * 10.0).round() as usize;
            format!(
                "[{}{}] {:>3.0}%",
                "#".repeat(filled),
                "-".repeat(10 - filled),
                u * 100.0
            )
        }
        None => format!("[{}]    ?", " ".repeat(10)),
    };
    if let Some(status) = w["status"].as_str() {
        out.push_str(&format!("  {status}"));
    }
    match w["resets_at"].as_str().and_then(clock::parse_rfc3339) {
        Some(r) if r > now => out.push_str(&format!(
            "  resets in {} ({})",
            human_duration(r - now),
            clock::rfc3339(r)
        )),
        Some(r) => out.push_str(&format!("  reset at {}", clock::rfc3339(r))),
        None => {}
    }
    if let Some(model) = w["model"].as_str() {
        out.push_str(&format!("  ({model} models only)"));
    }
    out
}

// --- Output and input helpers ------------------------------------------------------------------

fn print_aligned<K: AsRef<str>>(lines: &[(K, String)]) {
    let width = lines
        .iter()
        .map(|(k, _)| k.as_ref().len() + 1)
        .max()
        .unwrap_or(0);
    for (k, v) in lines {
        println!("{:<width$} {v}", format!("{}:", k.as_ref()));
    }
}

/// `2026-11-22T21:40:05Z (in 7h 59m)`, `… (expired 3m ago)`, or why there is no expiry.
pub(super) fn expiry_text(t: &Token, now: u64) -> String {
    match t.expires_at {
        None if t.kind == TokenKind::LongLived => "unknown (long-lived token)".into(),
        None => "unknown".into(),
        Some(e) if e > now => format!("{} (in {})", clock::rfc3339(e), human_duration(e - now)),
        Some(e) => format!(
            "{} (expired {} ago)",
            clock::rfc3339(e),
            human_duration(now - e)
        ),
    }
}

/// `45s`, `12m`, `5h 12m`, `3d 4h`.
pub(super) fn human_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// One line of what the user pasted or piped in (at most 64 KiB); `what` names it in errors.
fn read_stdin_line(what: &str) -> Result<String, String> {
    let mut line = String::new();
    let n = io::stdin()
        .lock()
        .take(64 * 1024)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read {what} from stdin: {e}"))?;
    if n == 0 {
        return Err(format!("no input: expected {what} on stdin"));
    }
    Ok(line)
}

/// Opens the URL in a browser when there is a display to show one; failures are ignored (the
/// URL is on the terminal anyway).
fn open_browser(url: &str) {
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if has_display {
        "xdg-open"
    } else {
        return;
    };
    let child = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = child {
        // Reap it whenever it ends, so it does not linger as a zombie while we wait.
        std::thread::spawn(move || child.wait().ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::oauth::token::tests::oauth_token;

    fn long_lived() -> Token {
        login::long_lived_token("sk-ant-oat01-long-lived-token-0123456789").unwrap()
    }

    #[test]
    fn nothing_prints_a_token() {
        let t = oauth_token();
        let shown = format!("{t:?} {:?}", LoginMode::Token(t.access_token.clone()));
        assert!(!shown.contains("sk-ant-"), "{shown}");
    }

    #[test]
    fn durations_and_expiry() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(5 * 3600 + 12 * 60 + 5), "5h 12m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d 4h");
        let mut t = oauth_token();
        t.expires_at = Some(20_000);
        assert_eq!(
            expiry_text(&t, 20_000 - 3 * 3600),
            "1970-01-01T05:33:20Z (in 3h 0m)"
        );
        assert_eq!(
            expiry_text(&t, 20_180),
            "1970-01-01T05:33:20Z (expired 3m ago)"
        );
        assert_eq!(expiry_text(&long_lived(), 0), "unknown (long-lived token)");
    }
}
