//! Live usage without spending a request: `GET /api/oauth/usage` on the API host, with the
//! subscription's bearer token and the `oauth-2025-04-20` beta, as Claude Code's `/usage` asks
//! it (its answer's shape and reading: [`crate::anthropic::ratelimit`]). A login without the
//! `user:profile` scope (a `claude setup-token` token) is refused there; the windows then come
//! from the last answer's headers.
//!
//! [`keep_current`] runs on a thread of its own, started by the server for the OAuth backend:
//! it reads the endpoint at start and every `oauth.usage_refresh_s` (default 60, so at most
//! once a minute; one of Claude Code's own readers waits 5 minutes between reads), and hands
//! each answer to the account, which shows it in `/admin/accounts` and `/metrics` and ends
//! each cooldown whose window has room again. Never on a request's path: a slow or failing
//! endpoint delays no request. A failure falls back to the headers and is tried again after 10 minutes (or
//! `oauth.usage_refresh_s` when longer; a 429's `retry-after`, at most an hour, is honoured).
//! The same thread saves what the account shows to `data_dir/subscription.json`, at most every
//! 5 s when it changed, so that `claudegate status` can show it without a server to ask.
//!
//! Like the model list ([`super::models`]) the call leaves the account's health and the
//! request metrics alone, and a 401 here refreshes nothing: it is housekeeping.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::OauthBackend;
use crate::anthropic::ratelimit::{self, Snapshot};
use crate::backends::upstream::{self, Upstream};
use crate::base::clock;
use crate::base::error::UpstreamError;
use crate::base::log;
use crate::base::redact::redact;
use crate::config::{Backend, Config};

/// Where the endpoint is, on the API host.
pub const PATH: &str = "/api/oauth/usage";
/// The largest answer read (a real one is well under 2 KB).
const MAX_BODY_BYTES: u64 = 256 << 10;
/// The longest wait before a failed read is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(600);
/// The longest `retry-after` of a 429 honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often the view for `claudegate status` is saved at most.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Why a read failed, and how long it asks us to wait (a 429's `retry-after`).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub wait: Option<Duration>,
    /// No network involved (no usable login): worth trying again soon.
    pub local: bool,
}

impl Failure {
    fn said(message: String) -> Failure {
        Failure {
            message,
            wait: None,
            local: false,
        }
    }
}

/// Reads the endpoint with `access_token`, bounded by `whole_call` from connecting to the last
/// byte. The error says what went wrong, without secrets.
pub fn read(
    upstream: &Upstream,
    access_token: &str,
    whole_call: Duration,
) -> Result<Snapshot, Failure> {
    let failed = |e: UpstreamError| Failure::said(redact(&e.to_string()));
    let mut resp = upstream
        .get(PATH, &headers(access_token), whole_call)
        .map_err(failed)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let wait = upstream::retry_after_s(&resp).map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
        let said = upstream::error_said(status, &mut resp);
        return Err(Failure {
            wait,
            ..Failure::said(format!("the usage endpoint answered {status}: {said}"))
        });
    }
    read_answer(&mut resp).map_err(Failure::said)
}

/// The request headers of a read of the endpoint with `access_token`.
pub(super) fn headers(access_token: &str) -> Vec<(String, String)> {
    [
        (
            "anthropic-version",
            crate::anthropic::API_VERSION.to_string(),
        ),
        ("anthropic-beta", crate::anthropic::betas::OAUTH.to_string()),
        ("Accept", "application/json".to_string()),
        ("Content-Type", "application/json".to_string()),
        ("Authorization", format!("Bearer {access_token}")),
    ]
    .map(|(name, value)| (name.to_string(), value))
    .into()
}

/// Reads a successful answer's body (capped) into windows; the error says what is wrong.
pub(super) fn read_answer(resp: &mut ureq::http::Response<ureq::Body>) -> Result<Snapshot, String> {
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|e| redact(&UpstreamError::from_ureq(e).to_string()))?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|_| "the usage endpoint's answer is not JSON".to_string())?;
    ratelimit::from_usage_endpoint(&value)
}

impl OauthBackend {
    /// Reads the usage endpoint with the account's token, whatever its cooldowns.
    pub fn read_usage(&self, whole_call: Duration) -> Result<Snapshot, Failure> {
        let cred = self.account.login_credential().map_err(|e| Failure {
            local: true,
            ..Failure::said(e.message())
        })?;
        read(&self.upstream, &cred.access_token, whole_call)
    }
}

/// Where the server saves the usage view for `claudegate status`.
pub fn saved_path(data_dir: &Path) -> PathBuf {
    data_dir.join("subscription.json")
}

/// The usage view the server saved last, if any (absent or unreadable: none).
pub fn read_saved(path: &Path) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the thread runs: only the OAuth backend sees the subscription's windows.
pub fn wanted(config: &Config) -> bool {
    config.backend == Backend::Oauth
}

/// Reads the endpoint now and every `oauth.usage_refresh_s` (0: never) and saves the usage
/// view to `save_to` when it changed; runs forever on its own thread.
pub fn keep_current(backend: &OauthBackend, config: &Config, save_to: &Path) {
    let every = Duration::from_secs(config.oauth.usage_refresh_s);
    let whole_call = Duration::from_millis(config.timeouts.response_ms);
    let mut next_read = Some(Instant::now()).filter(|_| !every.is_zero());
    let mut last_failure = String::new();
    let mut last_save: Option<Instant> = None;
    let mut save_failed = false;
    loop {
        if next_read.is_some_and(|at| Instant::now() >= at) {
            let started = clock::unix_now();
            let read = backend.read_usage(whole_call);
            let wait = match &read {
                Ok(_) => {
                    last_failure.clear();
                    every
                }
                Err(f) => {
                    // Said once at error level; again only when it changes.
                    if f.message != last_failure {
                        log::error(&format!(
                            "cannot read the subscription's usage ({}); showing the windows of \
                             the last answer's headers instead",
                            f.message
                        ));
                        last_failure = f.message.clone();
                    }
                    match (f.local, f.wait) {
                        (true, _) => every,
                        (false, Some(wait)) => wait.max(every),
                        (false, None) => every.max(RETRY_AFTER_FAILURE),
                    }
                }
            };
            backend
                .account
                .record_usage_read(read.map_err(|f| f.message), started);
            next_read = Some(Instant::now() + wait);
        }
        if last_save.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
            if let Some(view) = backend.account.usage_to_save() {
                last_save = Some(Instant::now());
                let bytes = view.to_string().into_bytes();
                match crate::base::fsutil::write_private(save_to, &bytes) {
                    Ok(()) => save_failed = false,
                    Err(e) => {
                        // Said once (a full disk would say it every 5 s); tried again.
                        if !save_failed {
                            log::error(&format!(
                                "cannot save the usage view to {} for `claudegate status`: {e}",
                                save_to.display()
                            ));
                        }
                        save_failed = true;
                        backend.account.usage_unsaved();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
