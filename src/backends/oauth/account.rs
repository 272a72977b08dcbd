//! The one Claude account: its current token, single-flight refresh, and its health.
//!
//! Health has four states. `ok`; `cooldown` after Anthropic said the account itself is limited
//! (429, 403, or a `rate_limit_error` inside a stream), during which requests are answered
//! locally at once; `needs_login` when the refresh token is rejected, which only
//! `claudegate login` fixes; and `blocked` when Anthropic refuses the login's organisation
//! ([`refusals`](crate::backends::oauth::refusals): shown, not enforced; a success or a new
//! login clears it). A client's own mistake (400, 404, 413, …) never changes the state: one
//! app's bad request must not lock every app out, and neither does one of the subscription's
//! refusals. How long a cooldown lasts, and which models it covers (a rejected Opus window
//! benches only Opus), is [`crate::backends::oauth::health`]; recording each answer into it is
//! `account/record.rs`; what the account shows (`/admin/accounts`, `/metrics`, the usage
//! windows) is `account/view.rs`.
//!
//! Refresh runs ahead of expiry (a background thread, `oauth.refresh_before_expiry_s`) and
//! after an upstream 401. It is single-flight: concurrent callers wait for one refresh and
//! share its result. The rotated refresh token is saved before the new access token is used.
//! The token file is re-read when it changes, so a `claudegate login` applies without restart.
//! A refreshed token that could not be saved (a full disk) is kept in memory and saved again
//! at the next file check, since the refresh token on disk is already spent; a login written
//! to the file meanwhile still wins over it.

mod record;
pub mod view;

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::backends::oauth::health::{state_name, Cooldown, Health};
use crate::backends::oauth::token::{self, RefreshError, Token, TokenKind};
use crate::base::clock;
use crate::base::error::{ApiError, ErrorKind};
use crate::base::log;
use crate::base::sync::lock;
use crate::config::OauthConfig;

/// How often the token file is checked for an outside change (a new login).
const FILE_CHECK: Duration = Duration::from_secs(1);
/// A token this close to expiry is refreshed before use, even by a request.
const MUST_REFRESH_WITHIN_S: u64 = 60;

/// Why the account cannot take a request now; rendered by the front door in its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No login stored.
    NotLoggedIn,
    /// The login must be renewed with `claudegate login`.
    NeedsLogin(String),
    /// Anthropic limited the account (or, with `model`, one model family of it); seconds
    /// until the cooldown ends.
    Cooldown {
        retry_after: u64,
        until: u64,
        reason: String,
        model: Option<String>,
    },
    /// A refresh failed for a passing reason and the token has expired.
    RefreshFailed(String),
}

impl Unavailable {
    pub fn message(&self) -> String {
        match self {
            Unavailable::NotLoggedIn => {
                "claudegate has no Claude login yet; on the server run `claudegate login`".into()
            }
            Unavailable::NeedsLogin(why) => format!(
                "claudegate's Claude login needs renewing ({why}); on the server run `claudegate login`"
            ),
            Unavailable::Cooldown {
                until,
                reason,
                model: None,
                ..
            } => format!(
                "the Claude account is cooling down until {} after Anthropic limited it ({reason}); retry later",
                clock::rfc3339(*until)
            ),
            Unavailable::Cooldown {
                until,
                reason,
                model: Some(family),
                ..
            } => format!(
                "the Claude account's {family} models are cooling down until {} after Anthropic \
                 limited them ({reason}); other models are still served: retry later or ask \
                 for another model",
                clock::rfc3339(*until)
            ),
            Unavailable::RefreshFailed(why) => format!(
                "the Claude access token expired and refreshing it failed ({why}); retry shortly"
            ),
        }
    }
}

impl Unavailable {
    /// The error for a request that the cooldown `c` covers.
    fn cooling(c: &Cooldown, now: u64) -> Unavailable {
        Unavailable::Cooldown {
            retry_after: c.until - now,
            until: c.until,
            reason: c.reason.clone(),
            model: c.model.clone(),
        }
    }
}

/// The account's state as the caller's error: a cooldown is a 429 with `Retry-After`; no
/// usable login is a 503.
impl From<Unavailable> for ApiError {
    fn from(u: Unavailable) -> ApiError {
        let message = u.message();
        match u {
            Unavailable::Cooldown { retry_after, .. } => {
                ApiError::new(ErrorKind::RateLimited, message).retry_after(retry_after)
            }
            Unavailable::RefreshFailed(_) => {
                ApiError::new(ErrorKind::Unavailable, message).retry_after(5)
            }
            Unavailable::NotLoggedIn | Unavailable::NeedsLogin(_) => {
                ApiError::new(ErrorKind::Unavailable, message)
            }
        }
    }
}

/// A usable credential and the token generation it came from (to detect a refresh since).
#[derive(Debug, Clone)]
pub struct Credential {
    pub access_token: String,
    pub account_uuid: String,
    generation: u64,
}

struct Slot {
    token: Option<Token>,
    generation: u64,
    stamp: token::Stamp,
    checked: Instant,
    /// `token` is newer than the file (its save failed) and is saved again at each check.
    unsaved: bool,
}

#[derive(Default)]
struct Gate {
    busy: bool,
    round: u64,
    last_failure: Option<Unavailable>,
}

/// The account, shared by every worker.
pub struct Account {
    cfg: OauthConfig,
    path: PathBuf,
    slot: Mutex<Slot>,
    gate: Mutex<Gate>,
    refreshed: Condvar,
    health: Mutex<Health>,
}

impl Account {
    /// Loads the stored login (absent is fine: requests then get a clear "not logged in").
    pub fn load(cfg: OauthConfig, path: PathBuf) -> Result<Account, String> {
        let token = token::load_token(&path)?;
        let needs_login = token.as_ref().and_then(|t| t.needs_login.clone());
        let last_refresh = token.as_ref().and_then(|t| t.last_refresh);
        Ok(Account {
            cfg,
            slot: Mutex::new(Slot {
                token,
                generation: 0,
                stamp: token::stamp(&path),
                checked: Instant::now(),
                unsaved: false,
            }),
            path,
            gate: Mutex::new(Gate::default()),
            refreshed: Condvar::new(),
            health: Mutex::new(Health {
                needs_login,
                last_refresh,
                ..Health::default()
            }),
        })
    }

    /// Picks up a login written by `claudegate login` while we run.
    fn reload_if_changed(&self) {
        self.reload(false)
    }

    /// Re-reads the token file if it changed; unless `force`, at most every [`FILE_CHECK`].
    fn reload(&self, force: bool) {
        {
            let mut slot = lock(&self.slot);
            if !force && slot.checked.elapsed() < FILE_CHECK {
                return;
            }
            slot.checked = Instant::now();
            if token::stamp(&self.path) == slot.stamp {
                let unsaved = slot.unsaved;
                drop(slot);
                if unsaved {
                    self.save_unsaved();
                }
                return;
            }
        }
        let stamp = token::stamp(&self.path);
        match token::load_token(&self.path) {
            Ok(token) => {
                let mut slot = lock(&self.slot);
                let changed = slot.token.as_ref().map(|t| &t.access_token)
                    != token.as_ref().map(|t| &t.access_token);
                if slot.unsaved {
                    // Written by `claudegate login` (or `logout`) after our save failed: the
                    // newer login wins over the refreshed token we could not save.
                    log::info("a login was stored while the refreshed token was unsaved; the stored login wins");
                    slot.unsaved = false;
                }
                if changed {
                    log::info("the stored login changed on disk; using it");
                    let mut h = lock(&self.health);
                    h.needs_login = token.as_ref().and_then(|t| t.needs_login.clone());
                    h.cooldowns.clear();
                    h.refused.unblock(); // a new login may belong to another organisation
                    slot.generation += 1;
                }
                slot.token = token;
                slot.stamp = stamp;
            }
            Err(e) => {
                log::info(&format!("{e}; keeping the login loaded before"));
                lock(&self.slot).stamp = stamp;
            }
        }
    }

    /// Saves a token whose earlier save failed, unless the file changed since (then the next
    /// check loads what is there: a login stored meanwhile wins). Failures stay quiet (the
    /// first one was logged); success is logged once.
    fn save_unsaved(&self) {
        let (token, seen, generation) = {
            let mut slot = lock(&self.slot);
            let Some(token) = slot.token.clone() else {
                slot.unsaved = false;
                return;
            };
            (token, slot.stamp, slot.generation)
        };
        match token::save_unless_changed(&self.path, &token, seen) {
            Ok(None) => {}
            Ok(Some(stamp)) => {
                let mut slot = lock(&self.slot);
                if slot.generation == generation {
                    slot.unsaved = false;
                    slot.stamp = stamp;
                }
                log::info(&format!(
                    "saved the refreshed Claude login to {}; it could not be saved before",
                    self.path.display()
                ));
            }
            Err(e) => log::verbose(&format!("the refreshed Claude login is still unsaved: {e}")),
        }
    }

    /// A credential for one upstream call that names no model, refreshing first when the
    /// token is about to expire; refused while the whole account cools down.
    pub fn credential(&self) -> Result<Credential, Unavailable> {
        self.credential_for(None)
    }

    /// A credential for one upstream call for `model` (an id or alias, as the request names
    /// it): refused while the whole account, or that model's family, cools down. A login that
    /// needs renewing is said first: a cooldown may last days, and waiting it out would not help.
    pub fn credential_for(&self, model: Option<&str>) -> Result<Credential, Unavailable> {
        self.reload_if_changed();
        let now = clock::unix_now();
        {
            let h = lock(&self.health);
            if let Some(why) = &h.needs_login {
                return Err(Unavailable::NeedsLogin(why.clone()));
            }
            if let Some(c) = h.cooling(model, now) {
                return Err(Unavailable::cooling(c, now));
            }
        }
        self.credential_now(now)
    }

    /// A credential whatever the cooldowns (for the usage endpoint, whose answer is how a
    /// cooldown ends early), refreshing first when the token is about to expire.
    pub fn login_credential(&self) -> Result<Credential, Unavailable> {
        self.reload_if_changed();
        if let Some(why) = &lock(&self.health).needs_login {
            return Err(Unavailable::NeedsLogin(why.clone()));
        }
        self.credential_now(clock::unix_now())
    }

    /// The loaded token as a credential, refreshed first when it is about to expire (the
    /// callers have reloaded the file and checked the health).
    fn credential_now(&self, now: u64) -> Result<Credential, Unavailable> {
        let (cred, expires_at, refreshable) = {
            let slot = lock(&self.slot);
            let Some(t) = &slot.token else {
                return Err(Unavailable::NotLoggedIn);
            };
            let cred = Credential {
                access_token: t.access_token.clone(),
                account_uuid: t.account_uuid.clone().unwrap_or_default(),
                generation: slot.generation,
            };
            (
                cred,
                t.expires_at,
                t.kind == TokenKind::Oauth && t.refresh_token.is_some(),
            )
        };
        match expires_at {
            Some(exp) if refreshable && exp <= now + MUST_REFRESH_WITHIN_S => {
                match self.refresh(cred.generation) {
                    Ok(fresh) => Ok(fresh),
                    // A passing failure while the old token still works: use it.
                    Err(Unavailable::RefreshFailed(_)) if exp > now => Ok(cred),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(cred),
        }
    }

    /// After an upstream 401: refresh (once for everyone who saw the same token) and return
    /// the new credential.
    pub fn refresh_after_401(&self, stale: &Credential) -> Result<Credential, Unavailable> {
        let kind = lock(&self.slot).token.as_ref().map(|t| t.kind);
        let refreshable = lock(&self.slot)
            .token
            .as_ref()
            .is_some_and(|t| t.kind == TokenKind::Oauth && t.refresh_token.is_some());
        if !refreshable {
            let why = match kind {
                Some(TokenKind::LongLived) => {
                    "Anthropic rejected the stored long-lived token (401)"
                }
                _ => "Anthropic rejected the access token (401) and there is no refresh token",
            };
            self.set_needs_login(why);
            return Err(Unavailable::NeedsLogin(why.into()));
        }
        self.refresh(stale.generation)
    }

    /// Single-flight refresh: the first caller refreshes, the others wait and share the result.
    fn refresh(&self, seen_generation: u64) -> Result<Credential, Unavailable> {
        let mut gate = lock(&self.gate);
        let my_round = gate.round;
        loop {
            if let Some(cred) = self.current_if_newer(seen_generation) {
                return Ok(cred);
            }
            if gate.round != my_round {
                if let Some(failure) = &gate.last_failure {
                    return Err(failure.clone());
                }
            }
            if !gate.busy {
                gate.busy = true;
                break;
            }
            gate = self.refreshed.wait(gate).unwrap_or_else(|p| p.into_inner());
        }
        drop(gate);
        let result = self.refresh_now();
        let mut gate = lock(&self.gate);
        gate.busy = false;
        gate.round += 1;
        gate.last_failure = result.as_ref().err().cloned();
        self.refreshed.notify_all();
        result
    }

    /// The token file's stamp when we last read or wrote it.
    fn seen(&self) -> token::Stamp {
        lock(&self.slot).stamp
    }

    /// Whether a refresh is under way (a stopping server waits for it to save its token: the
    /// old refresh token is already spent).
    pub fn refreshing(&self) -> bool {
        lock(&self.gate).busy
    }

    fn current_if_newer(&self, seen_generation: u64) -> Option<Credential> {
        let slot = lock(&self.slot);
        let t = slot.token.as_ref()?;
        (slot.generation != seen_generation).then(|| Credential {
            access_token: t.access_token.clone(),
            account_uuid: t.account_uuid.clone().unwrap_or_default(),
            generation: slot.generation,
        })
    }

    /// One refresh with retries for passing failures (1 s, 2 s, plus jitter).
    fn refresh_now(&self) -> Result<Credential, Unavailable> {
        let (old, old_generation) = {
            let slot = lock(&self.slot);
            let Some(t) = slot.token.clone() else {
                return Err(Unavailable::NotLoggedIn);
            };
            (t, slot.generation)
        };
        let mut last = String::new();
        for attempt in 0..3u64 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(
                    1000 * attempt + crate::base::ids::jitter(250),
                ));
            }
            match token::refresh(&self.cfg, &old) {
                Ok(new) => {
                    // Persist first: the old refresh token is already spent, so losing the new
                    // one would mean a new login. But a `claudegate login` (or logout) that
                    // changed the file meanwhile wins: never overwrite it with the refreshed
                    // old login.
                    let mut saved = token::save_unless_changed(&self.path, &new, self.seen());
                    if let Ok(None) = saved {
                        log::info("a new login was stored during a refresh; using the new login");
                        self.reload(true);
                        if let Some(cred) = self.current_if_newer(old_generation) {
                            return Ok(cred);
                        }
                        if lock(&self.slot).token.is_none() {
                            return Err(Unavailable::NotLoggedIn); // logged out meanwhile
                        }
                        saved = token::save_unless_changed(&self.path, &new, self.seen());
                    }
                    let saved = saved.and_then(|stamp| {
                        stamp.ok_or_else(|| "the token file kept changing".to_string())
                    });
                    if let Err(e) = &saved {
                        log::info(&format!(
                            "refreshed the Claude token but could not save it: {e}; retrying \
                             every few seconds (until then a restart would need a new login)"
                        ));
                    }
                    crate::observe::metrics::METRICS.refresh(true);
                    let mut slot = lock(&self.slot);
                    slot.unsaved = saved.is_err();
                    slot.token = Some(new.clone());
                    slot.generation += 1;
                    if let Ok(stamp) = saved {
                        slot.stamp = stamp;
                    }
                    let mut h = lock(&self.health);
                    h.last_refresh = new.last_refresh;
                    h.needs_login = None;
                    log::info(&format!(
                        "refreshed the Claude access token; it expires {}",
                        new.expires_at
                            .map_or("at an unknown time".into(), clock::rfc3339)
                    ));
                    return Ok(Credential {
                        access_token: new.access_token,
                        account_uuid: new.account_uuid.unwrap_or_default(),
                        generation: slot.generation,
                    });
                }
                Err(RefreshError::InvalidGrant(why)) => {
                    crate::observe::metrics::METRICS.refresh(false);
                    let why = format!("the refresh token was rejected: {why}");
                    self.set_needs_login(&why);
                    return Err(Unavailable::NeedsLogin(why));
                }
                Err(RefreshError::NotRefreshable) => {
                    crate::observe::metrics::METRICS.refresh(false);
                    let why = "the stored login cannot be refreshed".to_string();
                    self.set_needs_login(&why);
                    return Err(Unavailable::NeedsLogin(why));
                }
                Err(RefreshError::Transient(why)) => {
                    log::error(&format!(
                        "token refresh attempt {} failed: {why}",
                        attempt + 1
                    ));
                    last = why;
                }
            }
        }
        crate::observe::metrics::METRICS.refresh(false);
        lock(&self.health).failures.auth += 1;
        Err(Unavailable::RefreshFailed(last))
    }

    /// Marks the account as needing a new login, in the token file (so `claudegate status`
    /// shows it) and then in memory. In that order: a request that finds the state in memory
    /// answers at once, and by then the file says so too.
    fn set_needs_login(&self, why: &str) {
        log::info(&format!(
            "the Claude login needs renewing: {why}; run `claudegate login`"
        ));
        let flagged = {
            let mut slot = lock(&self.slot);
            let seen = slot.stamp;
            slot.token.as_mut().map(|t| {
                t.needs_login = Some(why.to_string());
                (t.clone(), seen)
            })
        };
        // Not over a login stored meanwhile: the next check loads that one instead.
        if let Some((flagged, seen)) = flagged {
            if let Ok(Some(stamp)) = token::save_unless_changed(&self.path, &flagged, seen) {
                let mut slot = lock(&self.slot);
                slot.stamp = stamp;
                slot.unsaved = false;
            }
        }
        let mut h = lock(&self.health);
        h.needs_login = Some(why.to_string());
        h.failures.auth += 1;
        h.last_error = Some(format!("auth: {why}"));
    }

    /// Background refresh ahead of expiry; runs forever on its own thread.
    pub fn keep_fresh(&self) {
        loop {
            self.reload_if_changed();
            let due = {
                let slot = lock(&self.slot);
                slot.token.as_ref().and_then(|t| {
                    let refreshable = t.kind == TokenKind::Oauth
                        && t.refresh_token.is_some()
                        && t.needs_login.is_none();
                    let exp = t.expires_at?;
                    (refreshable && exp <= clock::unix_now() + self.cfg.refresh_before_expiry_s)
                        .then_some(slot.generation)
                })
            };
            if let Some(generation) = due {
                if let Err(e) = self.refresh(generation) {
                    log::error(&format!("background token refresh: {}", e.message()));
                }
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    }

    /// The state now (`ok`, `cooldown`, `needs_login`, `not_logged_in`), for the audit log.
    pub fn state(&self) -> &'static str {
        let logged_in = lock(&self.slot).token.is_some();
        state_name(logged_in, &lock(&self.health), clock::unix_now())
    }
}

#[cfg(test)]
mod tests;
