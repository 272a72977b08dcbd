//! The account's health record: failure counts, what the usage windows were last seen to be
//! (from the answers' headers and the usage endpoint), and the cooldowns that follow a rate
//! limit. Plain data and its rules, no I/O and no locks: `account` holds it behind its mutex,
//! and `account/record.rs` feeds it each upstream answer.
//!
//! A cooldown follows the window that was rejected. When a 429 (or a `rate_limit_error` inside
//! a stream) names a rejected window ([`crate::anthropic::ratelimit::Snapshot::rejected`]) whose
//! reset is a plausible future time (at most eight days away), the account cools down until
//! that reset, even days away; a rejected model-specific window (`7d_opus`) cools down only
//! that model family, and every other model keeps being served. Otherwise (no window named, or
//! a reset that is no plausible time) the cooldown is the short capped one: `retry-after` or
//! the unified reset, at most [`MAX_COOLDOWN_S`]. A cooldown ends at its time, early when the
//! usage endpoint or a later answer's headers show room in its window again, and (for the
//! whole account) at any success.

use serde_json::{json, Value};

use crate::anthropic::ratelimit::{self, Snapshot};
use crate::anthropic::usage::Usage;
use crate::backends::oauth::refusals::{Refusal, Tally};
use crate::base::clock;
use crate::base::log;

/// Cooldown after a 403 (the account is refused; retrying soon will not help).
pub const FORBIDDEN_COOLDOWN_S: u64 = 600;
/// Cooldown after a rate-limit signal that names no reset time.
pub const DEFAULT_RATE_LIMIT_S: u64 = 60;
/// Longest cooldown that names no window; after it a request probes the account again.
pub const MAX_COOLDOWN_S: u64 = 3600;

/// Failure counts by class, as shown in `/admin/accounts`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Failures {
    pub request: u64,
    pub rate_limit: u64,
    pub forbidden: u64,
    pub auth: u64,
    pub transient: u64,
}

/// One cooldown: requests it covers are answered locally with a 429 until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cooldown {
    pub until: u64,
    pub reason: String,
    /// The rejected window it waits for (`7d`); `None` for a short capped cooldown.
    pub window: Option<String>,
    /// The model family it covers (`opus`); `None` for every model.
    pub model: Option<String>,
    /// When it began (usage read before then cannot end it).
    pub since: u64,
}

impl Cooldown {
    pub fn to_json(&self) -> Value {
        json!({"until": clock::rfc3339(self.until), "reason": self.reason,
               "window": self.window, "model": self.model})
    }
}

/// What was last seen of the usage windows, from each source.
#[derive(Debug, Default)]
pub struct UsageSeen {
    /// The last answer's unified headers, and when.
    pub headers: Option<(Snapshot, u64)>,
    /// The usage endpoint's last good answer, and when; used while `endpoint_ok`.
    pub endpoint: Option<(Snapshot, u64)>,
    /// Whether the last read of the usage endpoint succeeded.
    pub endpoint_ok: bool,
    /// Changed since it was last saved for `claudegate status`.
    pub unsaved: bool,
}

#[derive(Debug, Default)]
pub struct Health {
    pub cooldowns: Vec<Cooldown>,
    pub needs_login: Option<String>,
    pub failures: Failures,
    /// The subscription's refusals, and whether one blocks the login.
    pub refused: Tally,
    pub requests: u64,
    pub successes: u64,
    pub tokens: Usage,
    pub last_refresh: Option<u64>,
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    /// Last seen `anthropic-ratelimit-unified-*` headers (name without prefix → value).
    pub ratelimit: std::collections::BTreeMap<String, String>,
    pub usage: UsageSeen,
}

impl Health {
    /// The cooldown a request for `model` waits for now (the longest that covers it).
    pub fn cooling(&self, model: Option<&str>, now: u64) -> Option<&Cooldown> {
        self.cooldowns
            .iter()
            .filter(|c| c.until > now && ratelimit::covers(c.model.as_deref(), model))
            .max_by_key(|c| c.until)
    }

    /// The cooldowns still running, as `/admin/accounts` shows them.
    pub fn cooldowns_json(&self, now: u64) -> Vec<Value> {
        self.cooldowns
            .iter()
            .filter(|c| c.until > now)
            .map(Cooldown::to_json)
            .collect()
    }

    /// The whole account's cooldown now, if any.
    pub fn account_cooldown(&self, now: u64) -> Option<&Cooldown> {
        self.cooldowns
            .iter()
            .filter(|c| c.until > now && c.model.is_none())
            .max_by_key(|c| c.until)
    }

    /// Sets a cooldown, replacing one for the same window and model.
    pub fn set(&mut self, c: Cooldown) {
        let now = c.since;
        self.cooldowns
            .retain(|o| o.until > now && !(o.window == c.window && o.model == c.model));
        log::info(&format!(
            "Claude account cooling down{} for {} s: {}",
            c.model
                .as_ref()
                .map_or(String::new(), |m| format!(" for {m} models")),
            c.until - now,
            c.reason
        ));
        self.cooldowns.push(c);
        self.usage.unsaved = true;
    }

    /// Ends each cooldown waiting for a window that `seen` says has room again.
    pub fn clear_where_room(&mut self, seen: &Snapshot, read_at: u64, source: &str) {
        let before = self.cooldowns.len();
        self.cooldowns.retain(|c| {
            let room = c
                .window
                .as_deref()
                .and_then(|w| seen.window(w))
                .is_some_and(|w| w.has_room() && read_at >= c.since);
            if room {
                log::info(&format!(
                    "cooldown ended early: {source} shows room in the {} window again",
                    c.window.as_deref().unwrap_or("")
                ));
            }
            !room
        });
        if self.cooldowns.len() != before {
            self.usage.unsaved = true;
        }
    }

    /// A rate limit: a cooldown until each rejected window's reset when the answer names one
    /// with a plausible reset; else the capped cooldown of `fallback` seconds (none when the
    /// answer named no wait at all: often not a real account limit, passed through).
    pub fn limited(
        &mut self,
        now: u64,
        seen: Option<&Snapshot>,
        fallback: Option<u64>,
        reason: &str,
    ) {
        let mut named = false;
        for w in seen.map(|s| s.rejected()).unwrap_or_default() {
            let Some(until) = w.resets_at.and_then(|r| ratelimit::plausible_reset(r, now)) else {
                continue;
            };
            let scope = w
                .model
                .as_ref()
                .map_or(String::new(), |m| format!(" ({m} models only)"));
            self.set(Cooldown {
                until,
                reason: format!("{reason}: the {} window is used up{scope}", w.name),
                window: Some(w.name.clone()),
                model: w.model.clone(),
                since: now,
            });
            named = true;
        }
        if let (false, Some(secs)) = (named, fallback) {
            self.cool_down(now, secs, reason);
        }
    }

    /// The short cooldown of the whole account that names no window.
    pub fn cool_down(&mut self, now: u64, secs: u64, reason: &str) {
        // Clamp before anything else: the upstream controls `secs`, and jitter computed from
        // the unclamped value went far past the cap (`retry-after: 100000` cooled down for
        // 3.3 h, u64::MAX until a restart). The jitter keeps clients told the same Retry-After
        // out of lockstep; the sum stays within the cap.
        let secs = secs.clamp(1, MAX_COOLDOWN_S);
        let secs = (secs + crate::base::ids::jitter(secs / 10 + 1)).min(MAX_COOLDOWN_S);
        self.set(Cooldown {
            until: now.saturating_add(secs),
            reason: reason.to_string(),
            window: None,
            model: None,
            since: now,
        });
    }
}

pub fn state_name(logged_in: bool, h: &Health, now: u64) -> &'static str {
    if !logged_in {
        "not_logged_in"
    } else if h.needs_login.is_some() {
        "needs_login"
    } else if h.refused.blocked().is_some() {
        "blocked"
    } else if h.account_cooldown(now).is_some() {
        "cooldown"
    } else {
        "ok"
    }
}

/// Books one of the subscription's refusals: its own class, `blocked` when it refuses the login
/// itself, and never a cooldown (waiting does not help; the next request may well succeed).
pub fn refused(h: &mut Health, refusal: Refusal) {
    h.last_error = Some(format!("{}: {}", refusal.class(), refusal.advice()));
    if h.refused.book(refusal) {
        log::info(&format!(
            "the Claude account is blocked ({}): {}",
            refusal.class(),
            refusal.advice()
        ));
    }
}

/// Failure counts by class, `/admin/accounts`' `failure_classes` and the
/// `claudegate_account_failures_total` counter: the account's own classes, then one per
/// refusal of the subscription.
pub fn failure_classes(h: &Health) -> Vec<(&'static str, u64)> {
    let f = h.failures;
    let own = [
        ("request", f.request),
        ("rate_limit", f.rate_limit),
        ("forbidden", f.forbidden),
        ("auth", f.auth),
        ("transient", f.transient),
    ];
    own.into_iter().chain(h.refused.counts()).collect()
}

/// Seconds to cool down for, from `retry-after` (seconds) or the unified reset time, at most
/// [`MAX_COOLDOWN_S`]; `None` when the 429 names neither (often not a real account limit:
/// pass it through, no cooldown).
pub fn cooldown_from_headers(headers: &[(String, String)], now: u64) -> Option<u64> {
    raw_cooldown(headers, now).map(|secs| secs.clamp(1, MAX_COOLDOWN_S))
}

/// What the headers ask for, unclamped (the upstream controls it).
fn raw_cooldown(headers: &[(String, String)], now: u64) -> Option<u64> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    if let Some(secs) = get("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(secs);
    }
    let reset = get("anthropic-ratelimit-unified-reset")
        .or_else(|| get("anthropic-ratelimit-unified-5h-reset"))
        .and_then(|v| v.parse::<u64>().ok())?;
    Some(reset.saturating_sub(now).max(1))
}
