//! The interactive Claude login: everything `claudegate login` needs to obtain one credential,
//! short of talking to the user (that is [`crate::commands::login`]).
//!
//! A browser sign-in uses PKCE: [`Pkce`] makes one attempt's secrets, [`authorize_url`] the
//! page to open, and the redirect is caught by a [`RedirectListener`] on the local port of
//! `oauth.redirect_uri` (or pasted by the user on a headless host: [`parse_pasted`]); then
//! [`exchange_code`] trades the code for tokens at the token endpoint ([`super::token`]). A login
//! may also be copied from Claude Code ([`import_claude_code`]) or be a long-lived token from
//! `claude setup-token` ([`long_lived_token`]).
//!
//! claudegate serves exactly one account: [`store_login`] refuses a login as a different account
//! until `claudegate logout`, so one stray command cannot silently switch whose subscription is
//! used; [`precheck_oauth`] refuses early, before a browser round trip, when it could never tell.
//!
//! Nothing here prints a token: text from a server, a file or the browser passes through
//! [`crate::base::redact::redact`] before it reaches a message or a page.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backends::oauth::token::{
    load_token, locked, plausible_token, post_json, save_token, server_reason, token_from_response,
    Token, TokenKind,
};
use crate::base::clock;
use crate::base::fsutil;
use crate::config::OauthConfig;

/// How long `claudegate login` waits for the browser's redirect, unless
/// [`LOGIN_TIMEOUT_ENV`] says otherwise.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Environment variable overriding `LOGIN_TIMEOUT`, in milliseconds (tests use a short one).
pub const LOGIN_TIMEOUT_ENV: &str = "CLAUDEGATE_LOGIN_TIMEOUT_MS";
/// Largest request head the callback listener reads from the browser.
const MAX_CALLBACK_HEAD: usize = 16 * 1024;
/// How long one connection to the callback listener may take to send its request head.
const CALLBACK_READ_TIMEOUT: Duration = Duration::from_secs(3);

// --- Encodings ---------------------------------------------------------------------------------

/// Percent-encodes everything but RFC 3986's unreserved characters (so a space is `%20`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a query-string component: `%XX` escapes and `+` as a space. A malformed escape is
/// kept as it is; invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match bytes[i] {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of `name` in a query string (`a=1&b=2`), decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// Escapes text for the listener's page, which may quote an error from the sign-in page.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// --- PKCE and the authorize URL ----------------------------------------------------------------

/// One login attempt's secrets: the PKCE verifier (sent only with the code exchange), its
/// challenge (in the authorize URL) and the `state` that ties the redirect to this attempt.
pub struct Pkce {
    verifier: String,
    pub challenge: String,
    pub state: String,
}

impl Pkce {
    /// Fresh secrets from the OS random number generator.
    pub fn new() -> Result<Pkce, String> {
        let mut verifier = [0u8; 32];
        let mut state = [0u8; 32];
        getrandom::fill(&mut verifier)
            .and_then(|()| getrandom::fill(&mut state))
            .map_err(|e| format!("the OS random number generator failed: {e}"))?;
        let verifier = crate::base::base64::encode_url(&verifier);
        Ok(Pkce {
            challenge: pkce_challenge(&verifier),
            verifier,
            state: crate::guard::keys::hex(&state),
        })
    }
}

/// The S256 code challenge of a verifier: base64url(sha256(verifier)) (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    crate::base::base64::encode_url(&Sha256::digest(verifier.as_bytes()))
}

/// Where the user signs in; `code=true` makes Claude's page show `code#state` when the redirect
/// cannot be reached, which is what `--manual` accepts.
pub fn authorize_url(cfg: &OauthConfig, challenge: &str, state: &str) -> String {
    let sep = if cfg.authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    format!(
        "{}{sep}code=true&client_id={}&response_type=code&redirect_uri={}&scope={}\
         &code_challenge={}&code_challenge_method=S256&state={}",
        cfg.authorize_url,
        percent_encode(&cfg.client_id),
        percent_encode(&cfg.redirect_uri),
        percent_encode(&cfg.scopes),
        percent_encode(challenge),
        percent_encode(state),
    )
}

/// Trades the authorization code for tokens. Errors carry the status and the server's reason.
pub fn exchange_code(cfg: &OauthConfig, code: &str, pkce: &Pkce) -> Result<Token, String> {
    let body = json!({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": cfg.redirect_uri,
        "client_id": cfg.client_id,
        "code_verifier": pkce.verifier,
        "state": pkce.state,
    });
    let (status, text) = post_json(&cfg.token_url, &body)?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "the token endpoint refused the authorization code: HTTP {status}{}; codes work \
             once and expire quickly, so start again with `claudegate login`",
            server_reason(&text)
        ));
    }
    let value: Value = serde_json::from_str(&text).map_err(|_| {
        format!("the token endpoint answered HTTP {status} with a body that is not JSON")
    })?;
    token_from_response(None, &value, clock::unix_now())
}

// --- Catching the redirect ---------------------------------------------------------------------

/// How long `claudegate login` waits for the browser's redirect: five minutes, unless
/// [`LOGIN_TIMEOUT_ENV`] says otherwise.
pub fn login_timeout() -> Duration {
    std::env::var(LOGIN_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(LOGIN_TIMEOUT, Duration::from_millis)
}

/// The path of the redirect URI (`/callback`), which the listener answers on.
fn callback_path(redirect_uri: &str) -> String {
    let rest = redirect_uri.strip_prefix("http://").unwrap_or(redirect_uri);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

/// The local listener that catches the browser's redirect after sign-in.
pub struct RedirectListener {
    listeners: Vec<TcpListener>,
    /// The redirect URI's path: the only one a login arrives on.
    path: String,
}

/// The redirect of this login attempt: its code, and the browser's connection awaiting a page.
pub struct Redirect {
    pub code: String,
    stream: TcpStream,
}

impl RedirectListener {
    /// Listens on the redirect URI's port: 127.0.0.1 always, and ::1 too when the URI says
    /// `localhost` and it is free (a browser may resolve `localhost` to either).
    pub fn bind(redirect_uri: &str) -> Result<RedirectListener, String> {
        let port = crate::config::callback_port(redirect_uri).ok_or_else(|| {
            format!("oauth.redirect_uri {redirect_uri:?} is not http://localhost:PORT/PATH")
        })?;
        let main = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{port} for the login redirect ({e}); is another \
                 `claudegate login` running? Free the port, or use `claudegate login --manual`"
            )
        })?;
        let mut listeners = vec![main];
        if redirect_uri.starts_with("http://localhost:") {
            if let Ok(v6) = TcpListener::bind(("::1", port)) {
                listeners.push(v6);
            }
        }
        for l in &listeners {
            l.set_nonblocking(true)
                .map_err(|e| format!("cannot set up the redirect listener: {e}"))?;
        }
        Ok(RedirectListener {
            listeners,
            path: callback_path(redirect_uri),
        })
    }

    /// Waits until the redirect for `state` arrives, or the deadline passes. The port is
    /// closed when this returns: one attempt takes one redirect.
    pub fn wait(self, state: &str, deadline: Instant) -> Result<Redirect, String> {
        loop {
            let mut accepted = None;
            for l in &self.listeners {
                match l.accept() {
                    Ok((stream, _)) => {
                        accepted = Some(stream);
                        break;
                    }
                    // WouldBlock: nobody yet. Other errors (an aborted connection) are transient.
                    Err(_) => continue,
                }
            }
            let idle = accepted.is_none();
            match accepted.map(|s| handle_callback(s, &self.path, state)) {
                Some(Callback::Code(code, stream)) => return Ok(Redirect { code, stream }),
                Some(Callback::Failed(e)) => return Err(e),
                Some(Callback::Ignored) | None => {}
            }
            if Instant::now() >= deadline {
                return Err(
                    "no redirect arrived before the login timed out; run `claudegate login` \
                     again (on a machine without a browser, use `claudegate login --manual`)"
                        .into(),
                );
            }
            if idle {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Redirect {
    /// Tells the browser how the login ended, and closes its connection.
    pub fn answer(mut self, result: &Result<(), String>) {
        match result {
            Ok(()) => respond(
                &mut self.stream,
                200,
                "Login complete",
                "claudegate is logged in. You can close this tab.",
            ),
            Err(e) => respond(&mut self.stream, 400, "Login failed", e),
        }
    }
}

/// What one connection to the callback listener amounted to.
enum Callback {
    /// The redirect for this attempt: the code, and the browser's connection awaiting a page.
    Code(String, TcpStream),
    /// The sign-in page reported an error (`?error=…`): the login has failed.
    Failed(String),
    /// Anything else (wrong path, wrong state, junk): answered, and the wait goes on.
    Ignored,
}

fn handle_callback(mut stream: TcpStream, path: &str, state: &str) -> Callback {
    let Some((method, target)) = read_request_line(&mut stream) else {
        return Callback::Ignored;
    };
    let (req_path, query) = target.split_once('?').unwrap_or((&target, ""));
    if req_path != path {
        respond(
            &mut stream,
            404,
            "Not found",
            "This is claudegate's login listener.",
        );
        return Callback::Ignored;
    }
    if method != "GET" {
        respond(
            &mut stream,
            405,
            "Method not allowed",
            "Expected a GET redirect.",
        );
        return Callback::Ignored;
    }
    if let Some(error) = query_param(query, "error") {
        let detail = query_param(query, "error_description")
            .map(|d| format!(" ({})", crate::base::redact::redact(&d)))
            .unwrap_or_default();
        let error = crate::base::redact::redact(&error);
        respond(
            &mut stream,
            400,
            "Login failed",
            &format!("The sign-in page reported: {error}{detail}. See the terminal."),
        );
        return Callback::Failed(format!(
            "the sign-in page returned an error: {error}{detail}; run `claudegate login` again"
        ));
    }
    let code = query_param(query, "code").filter(|c| !c.is_empty());
    let got_state = query_param(query, "state").filter(|s| !s.is_empty());
    let (Some(code), Some(got_state)) = (code, got_state) else {
        respond(
            &mut stream,
            400,
            "Missing code",
            "This redirect has no code or no state; still waiting for the real one.",
        );
        return Callback::Ignored;
    };
    if got_state != state {
        eprintln!(
            "claudegate: warning: ignored a redirect whose state does not match this login \
             (from an older login attempt, or forged); still waiting"
        );
        respond(
            &mut stream,
            400,
            "State mismatch",
            "This redirect does not belong to the login in progress. Use the URL the terminal \
             printed last.",
        );
        return Callback::Ignored;
    }
    Callback::Code(code, stream)
}

/// Reads a request head and returns its method and target; `None` for junk or a silent client.
fn read_request_line(stream: &mut TcpStream) -> Option<(String, String)> {
    // Accepted sockets may inherit non-blocking mode from the listener on some systems.
    stream.set_nonblocking(false).ok()?;
    let deadline = Instant::now() + CALLBACK_READ_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_CALLBACK_HEAD {
            return None;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next()?.split_whitespace();
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

/// Answers the browser with a tiny page and closes the connection.
fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>claudegate: {t}</title>\
         </head><body style=\"font-family:sans-serif;margin:3em\"><h1>{t}</h1><p>{x}</p>\
         </body></html>\n",
        t = html_escape(title),
        x = html_escape(text),
    );
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.set_write_timeout(Some(Duration::from_secs(5))).ok();
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush())
        .ok();
    stream.shutdown(std::net::Shutdown::Write).ok();
}

// --- Pasted redirects (--manual) ---------------------------------------------------------------

/// Reads the code and state from what the user pasted: the whole redirect URL
/// (`http://localhost:54545/callback?code=X&state=Y`), its query, or `X#Y` as Claude's page
/// shows it. The state is required: without it the paste cannot be tied to this attempt.
pub fn parse_pasted(input: &str) -> Result<(String, String), String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("nothing was pasted; run `claudegate login --manual` again".into());
    }
    let looks_like_url =
        s.contains("://") || s.starts_with('/') || s.starts_with('?') || s.starts_with("code=");
    if looks_like_url {
        let query = s.split_once('?').map_or(s, |(_, q)| q);
        let query = query.split('#').next().unwrap_or("");
        if let Some(error) = query_param(query, "error") {
            return Err(format!(
                "the pasted redirect carries an error from the sign-in page: {}",
                crate::base::redact::redact(&error)
            ));
        }
        let code = query_param(query, "code").filter(|c| !c.is_empty());
        let state = query_param(query, "state").filter(|c| !c.is_empty());
        return match (code, state) {
            (Some(c), Some(st)) => Ok((c, st)),
            (None, _) => Err("the pasted URL has no `code`; paste the whole address the \
                              browser was sent to after signing in"
                .into()),
            (_, None) => Err(
                "the pasted URL has no `state`; paste the whole address the \
                              browser was sent to after signing in"
                    .into(),
            ),
        };
    }
    match s.split_once('#') {
        Some((code, state)) if !code.trim().is_empty() && !state.trim().is_empty() => {
            Ok((code.trim().to_string(), state.trim().to_string()))
        }
        _ => Err(
            "that is not a redirect URL or code#state: paste the whole address the \
                  browser was sent to, or the code#state the page shows, exactly as shown"
                .into(),
        ),
    }
}

// --- Claude Code import and long-lived tokens --------------------------------------------------

/// Copies Claude Code's login from its credentials file (and its account from `.claude.json`).
pub fn import_claude_code(path: Option<PathBuf>) -> Result<Token, String> {
    let path = match path {
        Some(p) => fsutil::expand_home(&p.to_string_lossy()),
        None => fsutil::expand_home("~/.claude/.credentials.json"),
    };
    let shown = path.display();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!(
                "no Claude Code login at {shown}: log in with `claude` first, or name the file \
                 with `--import-claude-code PATH` (on macOS Claude Code keeps its login in the \
                 Keychain: use `claude setup-token` and `claudegate login --token` instead)"
            )
        } else {
            format!("cannot read Claude Code's credentials {shown}: {e}")
        }
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{shown} is not valid JSON ({}); expected Claude Code's .credentials.json",
            crate::base::redact::redact(&e.to_string())
        )
    })?;
    let o = &v["claudeAiOauth"];
    if !o.is_object() {
        return Err(format!(
            "{shown} holds no Claude subscription login (no `claudeAiOauth`); log in to Claude \
             Code with your Claude account first"
        ));
    }
    let text = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let access_token = text(&o["accessToken"])
        .filter(|t| plausible_token(t))
        .ok_or_else(|| format!("{shown} has no usable claudeAiOauth.accessToken"))?;
    let refresh_token = text(&o["refreshToken"]);
    if refresh_token
        .as_deref()
        .is_some_and(|t| !plausible_token(t))
    {
        return Err(format!(
            "{shown} has a malformed claudeAiOauth.refreshToken"
        ));
    }
    let expires_at = o["expiresAt"]
        .as_u64()
        .or_else(|| {
            o["expiresAt"]
                .as_f64()
                .filter(|f| *f >= 0.0)
                .map(|f| f as u64)
        })
        .map(|ms| ms / 1000);
    let scopes = match &o["scopes"] {
        Value::Array(a) => {
            let s: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            (!s.is_empty()).then(|| s.join(" "))
        }
        other => text(other),
    };
    let mut token = Token {
        kind: if refresh_token.is_some() || expires_at.is_some() {
            TokenKind::Oauth
        } else {
            TokenKind::LongLived
        },
        access_token,
        refresh_token,
        expires_at,
        scopes,
        email: None,
        account_uuid: None,
        organization_uuid: None,
        organization_name: None,
        source: "claude-code".into(),
        last_refresh: Some(clock::unix_now()),
        needs_login: None,
    };
    read_claude_account(&path, &mut token);
    Ok(token)
}

/// Fills the account from Claude Code's `.claude.json`, when one sits where Claude Code keeps
/// it: next to the `.claude` directory (`~/.claude.json`), or inside the config directory when
/// `CLAUDE_CONFIG_DIR` is used. Missing or unreadable: the account stays unknown.
fn read_claude_account(credentials: &Path, token: &mut Token) {
    let Some(dir) = credentials.parent() else {
        return;
    };
    let mut candidates = Vec::new();
    if dir.file_name().is_some_and(|n| n == ".claude") {
        if let Some(home) = dir.parent() {
            candidates.push(home.join(".claude.json"));
        }
    }
    candidates.push(dir.join(".claude.json"));
    for file in candidates {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            eprintln!(
                "claudegate: warning: {} is not valid JSON; the account stays unknown",
                file.display()
            );
            return;
        };
        let a = &v["oauthAccount"];
        let text = |v: &Value| {
            v.as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        token.email = text(&a["emailAddress"]);
        token.account_uuid = text(&a["accountUuid"]);
        token.organization_uuid = text(&a["organizationUuid"]);
        token.organization_name = text(&a["organizationName"]);
        return;
    }
}

/// A long-lived token from `claude setup-token`, checked to be one: not a claudegate key, a
/// refresh token or an API key, and fit for an HTTP header.
pub fn long_lived_token(raw: &str) -> Result<Token, String> {
    let t = raw.trim();
    let setup = "run `claude setup-token` and pass the token it prints";
    if t.is_empty() {
        return Err(format!("--token needs a token: {setup}"));
    }
    if t.starts_with(crate::guard::keys::KEY_PREFIX) {
        return Err(format!(
            "that is a claudegate key (cgk_…), not a Claude token; {setup}"
        ));
    }
    if t.starts_with("sk-ant-ort") {
        return Err(format!(
            "that is a refresh token, not an inference token; {setup}"
        ));
    }
    if t.starts_with("sk-ant-api") {
        return Err(format!(
            "that is an Anthropic API key, which bills the API, not your subscription; {setup}"
        ));
    }
    if !plausible_token(t) {
        return Err(format!(
            "that does not look like a token (expected one word of at least 20 characters, \
             like sk-ant-oat01-…); {setup}"
        ));
    }
    Ok(Token {
        kind: TokenKind::LongLived,
        access_token: t.to_string(),
        refresh_token: None,
        expires_at: None,
        scopes: None,
        email: None,
        account_uuid: None,
        organization_uuid: None,
        organization_name: None,
        source: "token".into(),
        last_refresh: Some(clock::unix_now()),
        needs_login: None,
    })
}

// --- One account -------------------------------------------------------------------------------

/// Whether two logins are the same account: by account uuid when both know it, else by email;
/// `None` when it cannot be told.
fn same_account(a: &Token, b: &Token) -> Option<bool> {
    if let (Some(x), Some(y)) = (&a.account_uuid, &b.account_uuid) {
        return Some(x == y);
    }
    if let (Some(x), Some(y)) = (&a.email, &b.email) {
        return Some(x.eq_ignore_ascii_case(y));
    }
    None
}

/// Whether `new` may replace the stored login `old`: the same account, or a long-lived token
/// replacing a long-lived token when neither names its account.
fn check_replace(old: &Token, new: &Token) -> Result<(), String> {
    let allowed = match same_account(old, new) {
        Some(same) => same,
        None => old.kind == TokenKind::LongLived && new.kind == TokenKind::LongLived,
    };
    if allowed {
        return Ok(());
    }
    let who = match same_account(old, new) {
        Some(false) => format!(
            "claudegate serves one account, and this login is {}",
            new.account_label()
        ),
        _ => "the new login's account cannot be compared with it".to_string(),
    };
    Err(format!(
        "already logged in as {} ({}); {who}. Run `claudegate logout` first, then log in again \
         (nothing was changed)",
        old.account_label(),
        old.kind.name()
    ))
}

/// Refuses early, before a browser round trip, when the stored login could never be replaced
/// by an OAuth login (its account is unknown).
pub fn precheck_oauth(path: &Path) -> Result<(), String> {
    if let Some(old) = load_token(path)? {
        if old.account_uuid.is_none() && old.email.is_none() {
            return Err(format!(
                "already logged in ({}, {}, account unknown) and the new login's account \
                 cannot be compared with it. Run `claudegate logout` first, then log in again",
                old.kind.name(),
                old.source
            ));
        }
    }
    Ok(())
}

/// Stores a new login under the one-account rule: `Ok(true)` when it replaced a stored login
/// (necessarily of the same account), `Ok(false)` when there was none. The check and the write
/// hold the token file's lock ([`locked`]), as the server's save of a refreshed token does, so
/// neither can land between the other's check and write.
pub fn store_login(path: &Path, new: &Token) -> Result<bool, String> {
    locked(path, || {
        let old = load_token(path)?;
        if let Some(old) = &old {
            check_replace(old, new)?;
        }
        save_token(path, new)?;
        Ok(old.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::oauth::token::tests::oauth_token;
    use crate::config::Config;

    fn long_lived() -> Token {
        long_lived_token("sk-ant-oat01-long-lived-token-0123456789").unwrap()
    }

    #[test]
    fn percent_encoding_round_trips() {
        assert_eq!(
            percent_encode("http://localhost:54545/callback"),
            "http%3A%2F%2Flocalhost%3A54545%2Fcallback"
        );
        assert_eq!(
            percent_encode("user:profile user:inference"),
            "user%3Aprofile%20user%3Ainference"
        );
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_decode("a%20b+c%3a%2F"), "a b c:/");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        for s in ["", "x y&z=1#2", "ünï/cødé?", "%%+"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
        assert_eq!(
            query_param("a=1&code=x%2By&state=s", "code").as_deref(),
            Some("x+y")
        );
        assert_eq!(query_param("flag&a=1", "flag").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "b"), None);
    }

    #[test]
    fn pasted_redirects() {
        let ok = |s: &str| parse_pasted(s).unwrap();
        let want = ("C0de".to_string(), "st4te".to_string());
        assert_eq!(
            ok("http://localhost:54545/callback?code=C0de&state=st4te"),
            want
        );
        assert_eq!(
            ok("  http://localhost:54545/callback?state=st4te&code=C0de#frag \n"),
            want
        );
        assert_eq!(
            ok("https://console.anthropic.com/oauth/code/callback?code=C0de&state=st4te"),
            want
        );
        assert_eq!(ok("/callback?code=C0de&state=st4te"), want);
        assert_eq!(ok("?code=C0de&state=st4te"), want);
        assert_eq!(ok("code=C0de&state=st4te"), want);
        assert_eq!(ok("C0de#st4te\n"), want);
        let err = |s: &str| parse_pasted(s).unwrap_err();
        assert!(err("").contains("nothing"));
        assert!(
            err("C0de").contains("code#state"),
            "a bare code needs its state"
        );
        assert!(err("C0de#").contains("code#state"));
        assert!(err("#st4te").contains("code#state"));
        assert!(err("http://localhost:1/callback?code=C0de").contains("state"));
        assert!(err("http://localhost:1/callback?state=s").contains("code"));
        assert!(err("http://localhost:1/callback?error=access_denied").contains("access_denied"));
    }

    #[test]
    fn pkce_rfc7636_vector_and_fresh_values() {
        // RFC 7636 appendix B: the verifier's 32 octets, the verifier, and its S256 challenge.
        // (The verifier is often misquoted as "dBjftJeZ4CVP-mJ0kZhlrY6-mmuvPD4qk9wy3hwZvv8",
        // which does not hash to this challenge.)
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let verifier = crate::base::base64::encode_url(&octets);
        assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            pkce_challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (a, b) = (Pkce::new().unwrap(), Pkce::new().unwrap());
        assert_eq!(a.verifier.len(), 43, "32 random bytes");
        assert_eq!(a.challenge, pkce_challenge(&a.verifier));
        assert_eq!(a.state.len(), 64);
        assert!(a.state.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.verifier, b.verifier);
        assert_ne!(a.state, b.state);
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let c = Config::default().oauth;
        let url = authorize_url(&c, "CHAL", "STATE");
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://claude.ai/oauth/authorize");
        let p = |k| query_param(query, k).unwrap();
        assert_eq!(p("code"), "true");
        assert_eq!(p("client_id"), c.client_id);
        assert_eq!(p("response_type"), "code");
        assert_eq!(p("redirect_uri"), "http://localhost:54545/callback");
        assert_eq!(p("scope"), c.scopes);
        assert_eq!(p("code_challenge"), "CHAL");
        assert_eq!(p("code_challenge_method"), "S256");
        assert_eq!(p("state"), "STATE");
        assert!(!query.contains(' '));
        assert_eq!(
            callback_path("http://localhost:54545/callback"),
            "/callback"
        );
        assert_eq!(callback_path("http://127.0.0.1:1/a/b?x=1"), "/a/b");
        assert_eq!(callback_path("http://127.0.0.1:1"), "/");
    }

    #[test]
    fn one_account_rule() {
        let a = oauth_token();
        let mut a2 = oauth_token();
        a2.access_token = "sk-ant-oat01-another-access-token-5".into();
        assert!(check_replace(&a, &a2).is_ok(), "same account: replaced");
        let mut b = oauth_token();
        b.account_uuid = Some("uuid-b".into());
        b.email = Some("b@example.com".into());
        let e = check_replace(&a, &b).unwrap_err();
        assert!(
            e.contains("a@example.com") && e.contains("b@example.com"),
            "{e}"
        );
        assert!(e.contains("claudegate logout"), "{e}");
        // Email decides when a uuid is missing on one side; case does not matter.
        let mut a_by_mail = oauth_token();
        a_by_mail.account_uuid = None;
        a_by_mail.email = Some("A@Example.com".into());
        assert!(check_replace(&a, &a_by_mail).is_ok());
        // Unknown identity: only long-lived over long-lived.
        assert!(check_replace(&long_lived(), &long_lived()).is_ok());
        assert!(check_replace(&a, &long_lived())
            .unwrap_err()
            .contains("logout"));
        assert!(check_replace(&long_lived(), &a)
            .unwrap_err()
            .contains("logout"));
    }

    #[test]
    fn long_lived_tokens_are_checked() {
        let t = long_lived();
        assert_eq!(t.kind, TokenKind::LongLived);
        assert_eq!((t.refresh_token, t.expires_at), (None, None));
        assert_eq!(t.source, "token");
        for junk in [
            "",
            "   ",
            "short",
            "sk-ant-oat01 with spaces inside it",
            "cgk_0123456789abcdef0123",
        ] {
            assert!(long_lived_token(junk).is_err(), "{junk:?}");
        }
        let e = long_lived_token("sk-ant-ort01-a-refresh-token-0123456789").unwrap_err();
        assert!(e.contains("refresh token"), "{e}");
    }
}
