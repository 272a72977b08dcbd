//! `claudegate login`, `logout` and `status`: the conversation with the user around the stored
//! login. The OAuth protocol and the login flows themselves are the backend's
//! ([`crate::backends::oauth::login`], [`crate::backends::oauth::token`]); this module prints the
//! URL to open, opens a browser when there is a display, reads what the user pastes or pipes in,
//! and shows what was stored. `logout` and `status` work on the token file without a server.
//!
//! No access or refresh token is ever printed: `status` shows the account, never a credential,
//! and [`LoginMode`]'s `Debug` output hides a token given to `--token`.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backends::oauth::login::{self, Pkce, RedirectListener};
use crate::backends::oauth::token::{load_token, token_path, Token, TokenKind};
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
    let Some(t) = load_token(&path)? else {
        print_aligned(&[("state", "not logged in (run `claudegate login`)".into())]);
        return Ok(());
    };
    let now = clock::unix_now();
    let state = if let Some(reason) = &t.needs_login {
        format!("needs_login: {reason} (run `claudegate login`)")
    } else if t.expires_at.is_some_and(|e| e <= now) {
        if t.kind == TokenKind::Oauth && t.refresh_token.is_some() {
            "expired (the server refreshes it on next use)".into()
        } else {
            "expired (run `claudegate login`)".into()
        }
    } else {
        "ok".into()
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
    print_aligned(&[
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
    ]);
    Ok(())
}

// --- Output and input helpers ------------------------------------------------------------------

fn print_aligned(lines: &[(&str, String)]) {
    let width = lines.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    for (k, v) in lines {
        println!("{:<width$} {v}", format!("{k}:"));
    }
}

/// `2026-11-22T21:40:05Z (in 7h 59m)`, `… (expired 3m ago)`, or why there is no expiry.
fn expiry_text(t: &Token, now: u64) -> String {
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
fn human_duration(secs: u64) -> String {
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
