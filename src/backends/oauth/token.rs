//! The Claude OAuth token: the stored login (`data_dir/token.json`, atomic write, mode 0600),
//! the token endpoint, and turning the endpoint's answers into a [`Token`].
//!
//! The server uses [`load_token`], [`save_token`] and [`refresh`] (one attempt; the account owns
//! retries and backoff). The interactive login ([`super::login`]) trades its authorization code
//! at the same endpoint, through the same client and the same parsing.
//!
//! No access or refresh token ever reaches stdout, stderr or an error message. Text that comes
//! from a server or a file passes through [`crate::base::redact::redact`], which masks anything
//! shaped like an Anthropic token, and [`Token`]'s `Debug` output hides both tokens.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::base::clock;
use crate::base::fsutil;
use crate::base::sys::FileLock;
use crate::config::OauthConfig;

/// Largest token-endpoint answer read; a real one is well under 4 KiB.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

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
    /// The kind as stored in the token file: `oauth` or `long_lived`.
    pub fn name(self) -> &'static str {
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
    pub fn account_phrase(&self) -> String {
        match (&self.email, &self.account_uuid) {
            (Some(id), _) | (None, Some(id)) => format!("account {id}"),
            (None, None) => "unknown account".into(),
        }
    }
}

/// What a stored login (or its absence) means for the next request. One home for the words
/// `claudegate status` prints and the warning `serve` gives at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginState {
    /// No `token.json`: nothing can be sent upstream.
    Missing,
    /// The upstream refused the login (or its refresh); only a new login helps.
    NeedsLogin(String),
    /// Past its expiry; `refreshable` when the server can renew it by itself.
    Expired {
        refreshable: bool,
    },
    Ok,
}

impl LoginState {
    pub fn of(token: Option<&Token>, now: u64) -> LoginState {
        let Some(t) = token else {
            return LoginState::Missing;
        };
        if let Some(reason) = &t.needs_login {
            LoginState::NeedsLogin(reason.clone())
        } else if t.expires_at.is_some_and(|e| e <= now) {
            LoginState::Expired {
                refreshable: t.kind == TokenKind::Oauth && t.refresh_token.is_some(),
            }
        } else {
            LoginState::Ok
        }
    }

    /// True when requests will fail until a person runs `claudegate login`.
    pub fn needs_action(&self) -> bool {
        !matches!(
            self,
            LoginState::Ok | LoginState::Expired { refreshable: true }
        )
    }

    /// One line: the state and, where one is needed, the command that fixes it.
    pub fn describe(&self) -> String {
        match self {
            LoginState::Missing => "not logged in (run `claudegate login`)".into(),
            LoginState::NeedsLogin(reason) => {
                format!("needs_login: {reason} (run `claudegate login`)")
            }
            LoginState::Expired { refreshable: true } => {
                "expired (the server refreshes it on next use)".into()
            }
            LoginState::Expired { refreshable: false } => "expired (run `claudegate login`)".into(),
            LoginState::Ok => "ok".into(),
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

/// What tells one version of the token file from another: its inode (a save is a rename of a
/// new file) and modification time. `None` while there is no file.
pub type Stamp = Option<(u64, i64, i64)>;

/// The token file's [`Stamp`] now.
pub fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

/// Saves `token` unless the file changed since the caller last read or wrote it (`seen`): the
/// server's refreshed token must never overwrite a login stored meanwhile. `Ok(Some(stamp))`
/// when written (the file's new stamp), `Ok(None)` when the file changed and was left alone.
/// The check and the write hold the token file's lock ([`locked`]).
pub fn save_unless_changed(
    path: &Path,
    token: &Token,
    seen: Stamp,
) -> Result<Option<Stamp>, String> {
    locked(path, || {
        if stamp(path) != seen {
            return Ok(None);
        }
        #[cfg(test)]
        tests::before_save(path);
        save_token(path, token)?;
        Ok(Some(stamp(path)))
    })
}

/// How long a writer of the token file waits for another to let go of its lock. Every holder
/// only checks and rewrites the file (milliseconds); a holder stuck longer (a stopped process)
/// is reported instead of waited for.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Runs `change` (a check of the token file and its rewrite) holding the exclusive lock on
/// `<token file>.lock` beside it, waiting at most [`LOCK_WAIT`] for it. Every writer of the
/// token file takes it — `claudegate login` and `logout`, and the server when it saves a
/// refreshed token — so no write can land between another writer's check and its write.
pub fn locked<T>(path: &Path, change: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::ensure_private_dir(dir)
            .map_err(|e| format!("cannot create data_dir {}: {e}", dir.display()))?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| {
            format!(
                "cannot open the token lock file {}: {e}",
                lock_path.display()
            )
        })?;
    let _lock = FileLock::exclusive_within(&file, LOCK_WAIT).map_err(|e| {
        format!(
            "cannot lock {} ({e}); is another `claudegate login` stuck? Try again",
            lock_path.display()
        )
    })?;
    change()
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
pub(super) fn post_json(url: &str, body: &Value) -> Result<(u16, String), String> {
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
pub(super) fn server_reason(body: &str) -> String {
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
pub(super) fn plausible_token(t: &str) -> bool {
    (20..=8192).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A test's hook, run by [`save_unless_changed`] between its check and its write for the
    /// token file at that path (each test has its own file, so parallel tests never meet).
    type Hook = (PathBuf, Box<dyn FnOnce() + Send>);
    static BEFORE_SAVE: std::sync::Mutex<Vec<Hook>> = std::sync::Mutex::new(Vec::new());

    pub(crate) fn on_next_save(path: &Path, hook: impl FnOnce() + Send + 'static) {
        BEFORE_SAVE
            .lock()
            .unwrap()
            .push((path.to_path_buf(), Box::new(hook)));
    }

    pub(super) fn before_save(path: &Path) {
        let hook = {
            let mut hooks = BEFORE_SAVE.lock().unwrap_or_else(|e| e.into_inner());
            let i = hooks.iter().position(|(p, _)| p == path);
            i.map(|i| hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    fn cfg(token_url: &str) -> OauthConfig {
        let mut c = Config::default().oauth;
        c.token_url = token_url.to_string();
        c
    }

    /// A refreshable login of `a@example.com`, flagged `needs_login`; shared with the login
    /// and command tests.
    pub(crate) fn oauth_token() -> Token {
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

    /// A long-lived token (no refresh token, no expiry) of the same account.
    fn long_lived() -> Token {
        Token {
            kind: TokenKind::LongLived,
            refresh_token: None,
            expires_at: None,
            source: "token".into(),
            ..oauth_token()
        }
    }

    /// Serves ONE HTTP request with `status` and `body`; the thread returns the raw request.
    pub(crate) fn serve_once(
        status: u16,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<String>) {
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
        let shown = format!("{t:?}");
        assert!(!shown.contains("sk-ant-"), "{shown}");
    }
}
