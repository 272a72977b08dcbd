//! Claude OAuth: PKCE login flows, token exchange and refresh, and the token file.
//!
//! `claudegate login` obtains one credential and stores it in `data_dir/token.json` (atomic
//! write, mode 0600): by a browser sign-in whose redirect is caught on the local port of
//! `oauth.redirect_uri`, by pasting that redirect on a headless host (`--manual`), by copying
//! Claude Code's login (`--import-claude-code`) or from a long-lived `claude setup-token` token
//! (`--token`). `logout` and `status` work on that file without a server. The server uses
//! [`load_token`], [`save_token`] and [`refresh`] (one attempt; it owns retries and backoff).
//!
//! claudegate serves exactly one account: a login as a different account is refused until
//! `claudegate logout`, so one stray command cannot silently switch whose subscription is used.
//!
//! No access or refresh token ever reaches stdout, stderr or an error message. Text that comes
//! from a server or a file passes through [`redact`], which masks anything shaped like an
//! Anthropic token, and [`Token`]'s `Debug` output hides both tokens.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::base::clock;
use crate::base::fsutil;
use crate::config::{Config, OauthConfig};

/// How long `claudegate login` waits for the browser's redirect, unless
/// [`LOGIN_TIMEOUT_ENV`] says otherwise.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Environment variable overriding [`LOGIN_TIMEOUT`], in milliseconds (tests use a short one).
pub const LOGIN_TIMEOUT_ENV: &str = "CLAUDEGATE_LOGIN_TIMEOUT_MS";
/// Largest token-endpoint answer read; a real one is well under 4 KiB.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// Largest request head the callback listener reads from the browser.
const MAX_CALLBACK_HEAD: usize = 16 * 1024;
/// How long one connection to the callback listener may take to send its request head.
const CALLBACK_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// How the stored credential was obtained, and so whether it can be refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An OAuth login with a refresh token (browser, manual paste or Claude Code import).
    Oauth,
    /// A long-lived inference token from `claude setup-token`; never refreshed.
    LongLived,
}

impl TokenKind {
    fn name(self) -> &'static str {
        match self {
            TokenKind::Oauth => "oauth",
            TokenKind::LongLived => "long_lived",
        }
    }
}

/// The stored login: `data_dir/token.json` (atomic write, mode 0600).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub kind: TokenKind,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Unix seconds; `None` when unknown (long-lived tokens).
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub scopes: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub account_uuid: Option<String>,
    #[serde(default)]
    pub organization_uuid: Option<String>,
    #[serde(default)]
    pub organization_name: Option<String>,
    /// `browser`, `manual`, `claude-code` or `token`.
    pub source: String,
    /// Unix seconds of the last successful login or refresh.
    #[serde(default)]
    pub last_refresh: Option<u64>,
    /// Set by the server when the refresh token is rejected (`invalid_grant`): why a new
    /// `claudegate login` is needed. Cleared by a successful login.
    #[serde(default)]
    pub needs_login: Option<String>,
}

// Written by hand so that a `{:?}` anywhere (a log line, a failed assertion) cannot leak a token.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |t: &Option<String>| t.as_ref().map(|_| "<hidden>");
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("access_token", &"<hidden>")
            .field("refresh_token", &hidden(&self.refresh_token))
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("email", &self.email)
            .field("account_uuid", &self.account_uuid)
            .field("organization_uuid", &self.organization_uuid)
            .field("organization_name", &self.organization_name)
            .field("source", &self.source)
            .field("last_refresh", &self.last_refresh)
            .field("needs_login", &self.needs_login)
            .finish()
    }
}

impl Token {
    /// The account for messages: its email, else its uuid, else "unknown account".
    pub fn account_label(&self) -> String {
        match (&self.email, &self.account_uuid) {
            (Some(e), _) => e.clone(),
            (None, Some(u)) => format!("account {u}"),
            (None, None) => "unknown account".into(),
        }
    }

    /// `account user@example.com`, `account <uuid>` or `unknown account`.
    fn account_phrase(&self) -> String {
        match (&self.email, &self.account_uuid) {
            (Some(id), _) | (None, Some(id)) => format!("account {id}"),
            (None, None) => "unknown account".into(),
        }
    }
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The refresh token was rejected (`invalid_grant` and similar): only a new login helps.
    InvalidGrant(String),
    /// Network error, timeout, 5xx or 429: worth retrying later.
    Transient(String),
    /// Nothing to refresh with (long-lived token, or no refresh token stored).
    NotRefreshable,
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::InvalidGrant(m) => write!(f, "refresh token rejected: {m}"),
            RefreshError::Transient(m) => write!(f, "refresh failed (will retry): {m}"),
            RefreshError::NotRefreshable => f.write_str("this login has no refresh token"),
        }
    }
}

/// The token file's path inside the data directory.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("token.json")
}

/// The path of the redirect URI (`/callback`), which the listener answers on.
fn callback_path(redirect_uri: &str) -> String {
    let rest = redirect_uri.strip_prefix("http://").unwrap_or(redirect_uri);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

// --- The token file ----------------------------------------------------------------------------

/// Reads the stored login: `Ok(None)` when there is none. A file that cannot be read or parsed is
/// an error (and is left alone: the user may want to repair it rather than lose it).
pub fn load_token(path: &Path) -> Result<Option<Token>, String> {
    let shown = path.display();
    let fix = "fix the file, or run `claudegate logout` to remove it and log in again";
    let bytes = match fsutil::read_optional(path) {
        Ok(None) => return Ok(None),
        Ok(Some(bytes)) => bytes,
        Err(e) => return Err(format!("cannot read the token file {shown}: {e}; {fix}")),
    };
    match serde_json::from_slice::<Token>(&bytes) {
        Ok(t) if !t.access_token.trim().is_empty() => Ok(Some(t)),
        Ok(_) => Err(format!(
            "the token file {shown} has an empty access_token; {fix}"
        )),
        // serde's message may quote a value from the file, hence the redaction.
        Err(e) => Err(format!(
            "the token file {shown} is corrupt ({}); {fix}",
            crate::base::redact::redact(&e.to_string())
        )),
    }
}

/// Stores the login atomically with mode 0600, creating the data directory (0700) if needed.
pub fn save_token(path: &Path, token: &Token) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::ensure_private_dir(dir)
            .map_err(|e| format!("cannot create data_dir {}: {e}", dir.display()))?;
    }
    let mut bytes =
        serde_json::to_vec_pretty(token).map_err(|e| format!("cannot encode the token: {e}"))?;
    bytes.push(b'\n');
    fsutil::write_private(path, &bytes)
        .map_err(|e| format!("cannot write the token file {}: {e}", path.display()))
}

// --- Token endpoint ----------------------------------------------------------------------------

/// One HTTP agent for the token endpoint, built on first use.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(30)))
            // A token endpoint has no business redirecting; following one could carry a
            // refresh token somewhere else. A 3xx is reported as an unexpected answer instead.
            .max_redirects(0)
            .tls_config(crate::backends::upstream::tls_config())
            .build()
            .into()
    })
}

/// POSTs `body` as JSON to the token endpoint: the status and the body text, or a network
/// error (which never quotes the request, so never a token).
fn post_json(url: &str, body: &Value) -> Result<(u16, String), String> {
    let sent = agent()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .send(body.to_string());
    let mut resp = sent.map_err(|e| {
        format!(
            "cannot reach the token endpoint {url}: {}",
            crate::base::redact::redact(&e.to_string())
        )
    })?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_TOKEN_RESPONSE)
        .lossy_utf8(true)
        .read_to_string();
    match text {
        Ok(t) => Ok((status, t)),
        // The status alone is enough to classify an error answer.
        Err(_) if !(200..300).contains(&status) => Ok((status, String::new())),
        Err(e) => Err(format!(
            "reading the token endpoint's answer (HTTP {status}) failed: {}",
            crate::base::redact::redact(&e.to_string())
        )),
    }
}

/// Refreshes an OAuth login: ONE request to the token endpoint. The caller retries
/// [`RefreshError::Transient`] with backoff, stores the new token at once (the old refresh token
/// is spent), and records [`RefreshError::InvalidGrant`] as `needs_login`.
pub fn refresh(cfg: &OauthConfig, old: &Token) -> Result<Token, RefreshError> {
    let rt = match (old.kind, old.refresh_token.as_deref()) {
        (TokenKind::Oauth, Some(rt)) if !rt.trim().is_empty() => rt,
        _ => return Err(RefreshError::NotRefreshable),
    };
    let body = json!({
        "grant_type": "refresh_token",
        "refresh_token": rt,
        "client_id": cfg.client_id,
    });
    let (status, text) = post_json(&cfg.token_url, &body).map_err(RefreshError::Transient)?;
    if !(200..300).contains(&status) {
        return Err(classify_refresh_failure(status, &text));
    }
    let value: Value = serde_json::from_str(&text).map_err(|_| {
        RefreshError::Transient(format!(
            "the token endpoint answered HTTP {status} with a body that is not JSON"
        ))
    })?;
    token_from_response(Some(old), &value, clock::unix_now()).map_err(RefreshError::Transient)
}

/// Sorts a failed refresh: the server refusing the refresh token (any 4xx but 408 and 429) means
/// only a new login helps; rate limits, timeouts, 5xx and anything odd are worth a retry.
pub fn classify_refresh_failure(status: u16, body: &str) -> RefreshError {
    let msg = format!(
        "the token endpoint answered HTTP {status}{}",
        server_reason(body)
    );
    match status {
        408 | 429 => RefreshError::Transient(msg),
        400..=499 => RefreshError::InvalidGrant(msg),
        _ => RefreshError::Transient(msg),
    }
}

/// `": invalid_grant (Refresh token not found or invalid)"` from an OAuth error body (or an
/// Anthropic-shaped one), redacted and shortened; empty when the body says nothing useful.
fn server_reason(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    fn text(v: &Value) -> Option<&str> {
        v.as_str().map(str::trim).filter(|s| !s.is_empty())
    }
    let (code, desc) = match &v["error"] {
        Value::String(code) => (Some(code.trim()), text(&v["error_description"])),
        e @ Value::Object(_) => (text(&e["type"]), text(&e["message"])),
        _ => (None, text(&v["error_description"]).or(text(&v["message"]))),
    };
    let reason = match (code, desc) {
        (Some(c), Some(d)) => format!("{c} ({d})"),
        (Some(s), None) | (None, Some(s)) => s.to_string(),
        (None, None) => return String::new(),
    };
    let mut reason = crate::base::redact::redact(&reason);
    if reason.chars().count() > 300 {
        reason = reason.chars().take(300).collect::<String>() + "…";
    }
    format!(": {reason}")
}

/// Builds the stored token from a token-endpoint answer. For a refresh, `old` supplies every
/// field the answer leaves out (a refresh answer may omit the account, or not rotate the
/// refresh token); for a login it is `None`.
pub fn token_from_response(old: Option<&Token>, json: &Value, now: u64) -> Result<Token, String> {
    let text = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let keep = |field: fn(&Token) -> &Option<String>| old.and_then(|o| field(o).clone());
    let access_token =
        text(&json["access_token"]).ok_or("the token endpoint's answer has no access_token")?;
    if !plausible_token(&access_token) {
        return Err("the token endpoint's answer has a malformed access_token".into());
    }
    let refresh_token = text(&json["refresh_token"]).or_else(|| keep(|o| &o.refresh_token));
    if refresh_token
        .as_deref()
        .is_some_and(|t| !plausible_token(t))
    {
        return Err("the token endpoint's answer has a malformed refresh_token".into());
    }
    let expires_in = json["expires_in"].as_u64().or_else(|| {
        json["expires_in"]
            .as_f64()
            .filter(|f| *f >= 0.0)
            .map(|f| f as u64)
    });
    Ok(Token {
        kind: TokenKind::Oauth,
        access_token,
        refresh_token,
        expires_at: expires_in
            .map(|s| now.saturating_add(s))
            .or_else(|| old.and_then(|o| o.expires_at)),
        scopes: text(&json["scope"]).or_else(|| keep(|o| &o.scopes)),
        email: text(&json["account"]["email_address"]).or_else(|| keep(|o| &o.email)),
        account_uuid: text(&json["account"]["uuid"]).or_else(|| keep(|o| &o.account_uuid)),
        organization_uuid: text(&json["organization"]["uuid"])
            .or_else(|| keep(|o| &o.organization_uuid)),
        organization_name: text(&json["organization"]["name"])
            .or_else(|| keep(|o| &o.organization_name)),
        source: old.map_or_else(|| "browser".to_string(), |o| o.source.clone()),
        last_refresh: Some(now),
        needs_login: None,
    })
}

/// A token goes into an HTTP header: one word of visible ASCII, of a sane length.
fn plausible_token(t: &str) -> bool {
    (20..=8192).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

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
struct Pkce {
    verifier: String,
    challenge: String,
    state: String,
}

impl Pkce {
    fn new() -> Result<Pkce, String> {
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

/// The S256 code challenge of a verifier: crate::base::base64::encode_url(sha256(verifier)) (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    crate::base::base64::encode_url(&Sha256::digest(verifier.as_bytes()))
}

/// Where the user signs in; `code=true` makes Claude's page show `code#state` when the redirect
/// cannot be reached, which is what `--manual` accepts.
fn authorize_url(cfg: &OauthConfig, challenge: &str, state: &str) -> String {
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
fn exchange_code(cfg: &OauthConfig, code: &str, pkce: &Pkce) -> Result<Token, String> {
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

fn login_timeout() -> Duration {
    std::env::var(LOGIN_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(LOGIN_TIMEOUT, Duration::from_millis)
}

/// Listens on the redirect URI's port: 127.0.0.1 always, and ::1 too when the URI says
/// `localhost` and it is free (a browser may resolve `localhost` to either).
fn bind_callback(redirect_uri: &str) -> Result<Vec<TcpListener>, String> {
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
    Ok(listeners)
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

/// Waits until the redirect for `state` arrives on `path`, or the deadline passes.
fn wait_for_code(
    listeners: &[TcpListener],
    path: &str,
    state: &str,
    deadline: Instant,
) -> Result<(String, TcpStream), String> {
    loop {
        let mut accepted = None;
        for l in listeners {
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
        match accepted.map(|s| handle_callback(s, path, state)) {
            Some(Callback::Code(code, stream)) => return Ok((code, stream)),
            Some(Callback::Failed(e)) => return Err(e),
            Some(Callback::Ignored) | None => {}
        }
        if Instant::now() >= deadline {
            return Err(
                "no redirect arrived before the login timed out; run `claudegate login` again \
                 (on a machine without a browser, use `claudegate login --manual`)"
                    .into(),
            );
        }
        if idle {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
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

// --- Pasted redirects (--manual) ---------------------------------------------------------------

/// Reads the code and state from what the user pasted: the whole redirect URL
/// (`http://localhost:54545/callback?code=X&state=Y`), its query, or `X#Y` as Claude's page
/// shows it. The state is required: without it the paste cannot be tied to this attempt.
fn parse_pasted(input: &str) -> Result<(String, String), String> {
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

// --- Claude Code import and long-lived tokens --------------------------------------------------

/// Copies Claude Code's login from its credentials file (and its account from `.claude.json`).
fn import_claude_code(path: Option<PathBuf>) -> Result<Token, String> {
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

/// A long-lived token from `claude setup-token` (`-` reads it from stdin, keeping it out of the
/// process list and shell history).
fn long_lived_token(raw: &str) -> Result<Token, String> {
    let line;
    let t = if raw.trim() == "-" {
        line = read_stdin_line("the token")?;
        line.trim()
    } else {
        raw.trim()
    };
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
fn precheck_oauth(path: &Path) -> Result<(), String> {
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

/// Stores a new login under the one-account rule and prints what was stored.
fn store_login(path: &Path, new: &Token) -> Result<(), String> {
    let old = load_token(path)?;
    if let Some(old) = &old {
        check_replace(old, new)?;
    }
    save_token(path, new)?;
    let now = clock::unix_now();
    let mut lines = vec![
        ("account", new.account_label()),
        (
            "kind",
            format!("{} (source: {})", new.kind.name(), new.source),
        ),
        ("expires", expiry_text(new, now)),
    ];
    if old.is_some() {
        lines.push((
            "note",
            "replaced the stored login of the same account".into(),
        ));
    }
    println!("logged in");
    print_aligned(&lines);
    Ok(())
}

// --- Commands ----------------------------------------------------------------------------------

/// `claudegate login …`: obtains a credential and stores it (one account at a time).
pub fn cmd_login(config: &Config, mode: LoginMode) -> Result<(), String> {
    let cfg = &config.oauth;
    let path = token_path(&config.data_dir());
    match mode {
        LoginMode::Token(raw) => {
            let token = long_lived_token(&raw)?;
            store_login(&path, &token)
        }
        LoginMode::ImportClaudeCode(file) => {
            let token = import_claude_code(file)?;
            store_login(&path, &token)?;
            eprintln!(
                "claudegate: warning: claudegate and Claude Code now share one login. Refresh \
                 tokens rotate and work only once, so whichever refreshes first logs the other \
                 out. Keep only one of them using it: for claudegate, prefer `claude \
                 setup-token` + `claudegate login --token`, or a separate `claudegate login`."
            );
            Ok(())
        }
        LoginMode::Manual => {
            precheck_oauth(&path)?;
            let pkce = Pkce::new()?;
            let url = authorize_url(cfg, &pkce.challenge, &pkce.state);
            println!("Open this URL in a browser (on any machine) and sign in to Claude:\n");
            println!("  {url}\n");
            println!(
                "Then paste the address the browser was sent to (it may show an error page; \
                 copy its URL), or the code#state the page shows, and press Enter:"
            );
            io::stdout().flush().ok();
            let line = read_stdin_line("the redirect URL or code#state")?;
            let (code, state) = parse_pasted(&line)?;
            if state != pkce.state {
                return Err(
                    "the pasted state does not match this login attempt: it was copied from \
                     another (older) login attempt, or the redirect was forged (possible CSRF). \
                     Nothing was stored; run `claudegate login --manual` again and paste the \
                     result of the URL it prints"
                        .into(),
                );
            }
            let mut token = exchange_code(cfg, &code, &pkce)?;
            token.source = "manual".into();
            store_login(&path, &token)
        }
        LoginMode::Browser => {
            precheck_oauth(&path)?;
            let pkce = Pkce::new()?;
            let listeners = bind_callback(&cfg.redirect_uri)?;
            let timeout = login_timeout();
            let deadline = Instant::now() + timeout;
            let url = authorize_url(cfg, &pkce.challenge, &pkce.state);
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
            let (code, mut stream) = wait_for_code(
                &listeners,
                &callback_path(&cfg.redirect_uri),
                &pkce.state,
                deadline,
            )?;
            drop(listeners);
            let result = exchange_code(cfg, &code, &pkce).and_then(|mut token| {
                token.source = "browser".into();
                store_login(&path, &token)
            });
            match &result {
                Ok(()) => respond(
                    &mut stream,
                    200,
                    "Login complete",
                    "claudegate is logged in. You can close this tab.",
                ),
                Err(e) => respond(&mut stream, 400, "Login failed", e),
            }
            result
        }
    }
}

/// `claudegate logout`: removes the stored login (even a corrupt one).
pub fn cmd_logout(config: &Config) -> Result<(), String> {
    let path = token_path(&config.data_dir());
    let who = match load_token(&path) {
        Ok(None) => {
            println!("not logged in (no login stored); nothing to do");
            return Ok(());
        }
        Ok(Some(t)) => t.account_phrase(),
        Err(_) => "the token file was unreadable".into(),
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {
            println!("logged out ({who})");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!("not logged in (no login stored); nothing to do");
            Ok(())
        }
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// `claudegate status`: the stored login, without asking a server.
pub fn cmd_status(config: &Config) -> Result<(), String> {
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

// --- Output helpers ----------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn cfg(token_url: &str) -> OauthConfig {
        let mut c = Config::default().oauth;
        c.token_url = token_url.to_string();
        c
    }

    fn oauth_token() -> Token {
        Token {
            kind: TokenKind::Oauth,
            access_token: "sk-ant-oat01-old-access-token-000000".into(),
            refresh_token: Some("sk-ant-ort01-old-refresh-token-00000".into()),
            expires_at: Some(1_000),
            scopes: Some("user:inference".into()),
            email: Some("a@example.com".into()),
            account_uuid: Some("uuid-a".into()),
            organization_uuid: Some("org-a".into()),
            organization_name: Some("Org A".into()),
            source: "browser".into(),
            last_refresh: Some(500),
            needs_login: Some("refresh token rejected".into()),
        }
    }

    fn long_lived() -> Token {
        long_lived_token("sk-ant-oat01-long-lived-token-0123456789").unwrap()
    }

    /// Serves ONE HTTP request with `status` and `body`; the thread returns the raw request.
    fn serve_once(status: u16, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/oauth/token", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (mut req, mut buf) = (Vec::new(), [0u8; 4096]);
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    assert!(n > 0, "request head cut short");
                    continue;
                };
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let l = l.to_ascii_lowercase();
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if n == 0 || req.len() >= end + 4 + len {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body.as_bytes()).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, handle)
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
    fn login_response_builds_a_token() {
        let v = json!({
            "access_token": "sk-ant-oat01-new-access-token-1111",
            "refresh_token": "sk-ant-ort01-new-refresh-token-1111",
            "expires_in": 28800,
            "scope": "user:inference user:profile",
            "account": {"uuid": "u-1", "email_address": "b@example.com"},
            "organization": {"uuid": "o-1", "name": "Org B"},
        });
        let t = token_from_response(None, &v, 1_000).unwrap();
        assert_eq!(t.kind, TokenKind::Oauth);
        assert_eq!(t.access_token, "sk-ant-oat01-new-access-token-1111");
        assert_eq!(
            t.refresh_token.as_deref(),
            Some("sk-ant-ort01-new-refresh-token-1111")
        );
        assert_eq!(t.expires_at, Some(29_800));
        assert_eq!(t.scopes.as_deref(), Some("user:inference user:profile"));
        assert_eq!(t.email.as_deref(), Some("b@example.com"));
        assert_eq!(t.account_uuid.as_deref(), Some("u-1"));
        assert_eq!(t.organization_uuid.as_deref(), Some("o-1"));
        assert_eq!(t.organization_name.as_deref(), Some("Org B"));
        assert_eq!(t.last_refresh, Some(1_000));
        assert_eq!(t.needs_login, None);
        assert!(token_from_response(None, &json!({}), 1).is_err());
        assert!(token_from_response(None, &json!({"access_token": ""}), 1).is_err());
        let bad = json!({"access_token": "sk-ant-oat01 has spaces in it, no"});
        assert!(token_from_response(None, &bad, 1)
            .unwrap_err()
            .contains("malformed"));
    }

    #[test]
    fn refresh_response_keeps_what_it_leaves_out() {
        let old = oauth_token();
        let v = json!({"access_token": "sk-ant-oat01-rotated-access-2222"});
        let t = token_from_response(Some(&old), &v, 2_000).unwrap();
        assert_eq!(t.access_token, "sk-ant-oat01-rotated-access-2222");
        assert_eq!(
            t.refresh_token, old.refresh_token,
            "not rotated: the old one stays"
        );
        assert_eq!(t.expires_at, old.expires_at);
        assert_eq!(t.scopes, old.scopes);
        assert_eq!(t.email, old.email);
        assert_eq!(t.account_uuid, old.account_uuid);
        assert_eq!(t.organization_uuid, old.organization_uuid);
        assert_eq!(t.organization_name, old.organization_name);
        assert_eq!(t.source, "browser");
        assert_eq!(t.last_refresh, Some(2_000));
        assert_eq!(
            t.needs_login, None,
            "a refresh that works clears needs_login"
        );
        let v = json!({
            "access_token": "sk-ant-oat01-rotated-access-3333",
            "refresh_token": "sk-ant-ort01-rotated-refresh-3333",
            "expires_in": 60,
        });
        let t = token_from_response(Some(&old), &v, 2_000).unwrap();
        assert_eq!(
            t.refresh_token.as_deref(),
            Some("sk-ant-ort01-rotated-refresh-3333")
        );
        assert_eq!(t.expires_at, Some(2_060));
        assert_eq!(t.email, old.email);
    }

    #[test]
    fn refresh_failures_are_classified() {
        let grant =
            r#"{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}"#;
        match classify_refresh_failure(400, grant) {
            RefreshError::InvalidGrant(m) => {
                assert!(m.contains("400") && m.contains("invalid_grant"), "{m}");
                assert!(m.contains("Refresh token not found"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        for status in [401, 403, 404, 422] {
            assert!(matches!(
                classify_refresh_failure(status, ""),
                RefreshError::InvalidGrant(_)
            ));
        }
        for status in [408, 429, 500, 502, 503, 529, 302, 100] {
            assert!(
                matches!(
                    classify_refresh_failure(status, "<html>"),
                    RefreshError::Transient(_)
                ),
                "{status}"
            );
        }
        let anthropic =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        match classify_refresh_failure(529, anthropic) {
            RefreshError::Transient(m) => {
                assert!(m.contains("overloaded_error (Overloaded)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // A server echoing a token must not get it into a message.
        let echo = r#"{"error":"invalid_grant","error_description":"token sk-ant-ort01-SECRET123 is spent"}"#;
        let RefreshError::InvalidGrant(m) = classify_refresh_failure(400, echo) else {
            panic!()
        };
        assert!(
            !m.contains("SECRET123") && m.contains("sk-ant-[redacted] is spent"),
            "{m}"
        );
    }

    #[test]
    fn refresh_rotates_against_a_server() {
        let (url, server) = serve_once(
            200,
            r#"{"access_token":"sk-ant-oat01-fresh-access-4444","refresh_token":"sk-ant-ort01-fresh-refresh-4444","expires_in":3600}"#,
        );
        let old = oauth_token();
        let before = clock::unix_now();
        let t = refresh(&cfg(&url), &old).unwrap();
        let request = server.join().unwrap();
        assert_eq!(t.access_token, "sk-ant-oat01-fresh-access-4444");
        assert_eq!(
            t.refresh_token.as_deref(),
            Some("sk-ant-ort01-fresh-refresh-4444")
        );
        let exp = t.expires_at.unwrap();
        assert!(exp >= before + 3600 && exp <= clock::unix_now() + 3600);
        assert_eq!(t.email, old.email);
        assert_eq!(t.needs_login, None);
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /v1/oauth/token HTTP/1.1"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("accept: application/json"), "{head}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            json!({
                "grant_type": "refresh_token",
                "refresh_token": "sk-ant-ort01-old-refresh-token-00000",
                "client_id": Config::default().oauth.client_id,
            })
        );
    }

    #[test]
    fn refresh_errors_against_a_server() {
        let old = oauth_token();
        let (url, server) = serve_once(
            400,
            r#"{"error":"invalid_grant","error_description":"Refresh token not found or invalid"}"#,
        );
        let e = refresh(&cfg(&url), &old).unwrap_err();
        server.join().unwrap();
        assert!(
            matches!(&e, RefreshError::InvalidGrant(m) if m.contains("invalid_grant")),
            "{e:?}"
        );

        let (url, server) = serve_once(500, r#"{"error":"server_error"}"#);
        let e = refresh(&cfg(&url), &old).unwrap_err();
        server.join().unwrap();
        assert!(
            matches!(&e, RefreshError::Transient(m) if m.contains("500")),
            "{e:?}"
        );

        let (url, server) = serve_once(429, "{}");
        let e = refresh(&cfg(&url), &old).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, RefreshError::Transient(_)), "{e:?}");

        let (url, server) = serve_once(200, "not json");
        let e = refresh(&cfg(&url), &old).unwrap_err();
        server.join().unwrap();
        assert!(matches!(e, RefreshError::Transient(_)), "{e:?}");

        // Connection refused: a port that was free a moment ago.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = refresh(&cfg(&format!("http://127.0.0.1:{port}/t")), &old).unwrap_err();
        let RefreshError::Transient(m) = &e else {
            panic!("{e:?}")
        };
        assert!(!m.contains("sk-ant-"), "{m}");

        assert_eq!(
            refresh(&cfg(&url), &long_lived()),
            Err(RefreshError::NotRefreshable)
        );
        let mut no_rt = oauth_token();
        no_rt.refresh_token = None;
        assert_eq!(
            refresh(&cfg(&url), &no_rt),
            Err(RefreshError::NotRefreshable)
        );
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

    #[test]
    fn token_file_round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("cg-oauth-{}", std::process::id()));
        let path = token_path(&dir.join("data"));
        assert_eq!(load_token(&path).unwrap(), None);
        let t = oauth_token();
        save_token(&path, &t).unwrap();
        assert_eq!(load_token(&path).unwrap(), Some(t));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "{\"kind\": \"oauth\", \"access_token\": ").unwrap();
        let e = load_token(&path).unwrap_err();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("claudegate logout"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"kind\": \"oauth\", \"access_token\": ",
            "a corrupt file is left alone"
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
