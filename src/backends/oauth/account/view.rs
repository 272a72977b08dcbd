//! The account as others see it: `/admin/accounts`, the `/metrics` gauges, and the usage view
//! saved for `claudegate status`. Read under the locks, built into values, no I/O.
//!
//! The usage shown is the usage endpoint's last answer while its last read succeeded (source
//! `usage_endpoint`), each window with the status the latest headers gave it (the endpoint
//! reports none; a `rejected` older than a read that shows room in that window is dropped as
//! stale) and the headers' representative claim; else the last answer's headers (source
//! `headers`); `null` fields before either was seen.

use serde_json::{json, Value};

use crate::anthropic::ratelimit::{self, Snapshot, Window};
use crate::backends::oauth::account::Account;
use crate::backends::oauth::health::{failure_classes, state_name, UsageSeen};
use crate::base::clock;
use crate::base::sync::lock;

/// What `/metrics` shows of the account.
pub struct AccountGauges {
    /// `ok`, `cooldown`, `needs_login` or `not_logged_in`.
    pub state: &'static str,
    /// Unix seconds the whole account's cooldown ends (0 when none).
    pub cooldown_until: u64,
    /// The last seen unified rate-limit values, name without the prefix.
    pub ratelimit: std::collections::BTreeMap<String, String>,
    /// The usage windows shown (see the module docs).
    pub windows: Vec<Window>,
    /// Failure counts by class ([`failure_classes`]).
    pub failure_classes: Vec<(&'static str, u64)>,
}

impl UsageSeen {
    /// The source, the snapshot and when it was observed (see the module docs).
    fn shown(&self) -> Option<(&'static str, Snapshot, u64)> {
        let from_headers = self.headers.as_ref();
        match (&self.endpoint, self.endpoint_ok) {
            (Some((read, at)), true) => {
                let mut shown = read.clone();
                if let Some((headers, headers_at)) = from_headers {
                    for w in &mut shown.windows {
                        let said = headers.window(&w.name).and_then(|h| h.status);
                        // A `rejected` from before a read that shows room is stale: the
                        // window has reset (or the cooldown ended early) since.
                        let stale = said == Some("rejected")
                            && headers_at < at
                            && w.utilization.is_some_and(|u| u < 1.0);
                        if !stale {
                            w.status = w.status.or(said);
                        }
                    }
                    shown.representative_claim = headers.representative_claim.clone();
                    if shown.overage.is_none() {
                        shown.overage = headers.overage.clone();
                    }
                    shown.fallback = headers.fallback.clone();
                }
                Some(("usage_endpoint", shown, *at))
            }
            _ => from_headers.map(|(s, at)| ("headers", s.clone(), *at)),
        }
    }

    fn to_json(&self) -> Value {
        self.shown()
            .map_or_else(ratelimit::unknown_json, |(source, s, at)| {
                s.to_json(source, at)
            })
    }
}

impl Account {
    /// State, cooldown end, last seen unified rate-limit values, usage windows and failure
    /// counts, for `/metrics` (read under one lock).
    pub fn gauges(&self) -> AccountGauges {
        self.reload_if_changed();
        let now = clock::unix_now();
        let logged_in = lock(&self.slot).token.is_some();
        let h = lock(&self.health);
        AccountGauges {
            state: state_name(logged_in, &h, now),
            cooldown_until: h.account_cooldown(now).map_or(0, |c| c.until),
            ratelimit: h.ratelimit.clone(),
            windows: h
                .usage
                .shown()
                .map(|(_, s, _)| s.windows)
                .unwrap_or_default(),
            failure_classes: failure_classes(&h),
        }
    }

    /// The usage view for `claudegate status` when it changed since last asked (`usage` and
    /// the active `cooldowns`, as in `/admin/accounts`), else `None`.
    pub fn usage_to_save(&self) -> Option<Value> {
        let now = clock::unix_now();
        let mut h = lock(&self.health);
        if !h.usage.unsaved {
            return None;
        }
        h.usage.unsaved = false;
        let cooldowns = h.cooldowns_json(now);
        Some(
            json!({"saved_at": clock::rfc3339(now), "usage": h.usage.to_json(),
                    "cooldowns": cooldowns}),
        )
    }

    /// Marks the usage view as not saved (its save failed), so the next check tries again.
    pub fn usage_unsaved(&self) {
        lock(&self.health).usage.unsaved = true;
    }

    /// `GET /admin/accounts`.
    pub fn admin_view(&self) -> Value {
        self.reload_if_changed();
        let now = clock::unix_now();
        let slot = lock(&self.slot);
        let h = lock(&self.health);
        let t = slot.token.as_ref();
        let state = state_name(t.is_some(), &h, now);
        let time = |s: Option<u64>| s.map(clock::rfc3339);
        let f = h.failures;
        let cooling = h.account_cooldown(now);
        let cooldowns = h.cooldowns_json(now);
        let account = json!({
            "email": t.and_then(|t| t.email.clone()),
            "account_uuid": t.and_then(|t| t.account_uuid.clone()),
            "organization": t.and_then(|t| t.organization_name.clone()),
            "kind": t.map(|t| t.kind),
            "state": state,
            "needs_login_reason": h.needs_login,
            "cooldown_until": cooling.map(|c| clock::rfc3339(c.until)),
            "cooldown_reason": cooling.map(|c| c.reason.clone()),
            "cooldowns": cooldowns,
            "token_expires_at": time(t.and_then(|t| t.expires_at)),
            "last_refresh": time(h.last_refresh),
            "last_success": time(h.last_success),
            "last_error": h.last_error,
            "requests": h.requests,
            "successes": h.successes,
            "failures": {
                "request": f.request, "rate_limit": f.rate_limit, "forbidden": f.forbidden,
                "auth": f.auth, "transient": f.transient,
            },
            "failure_classes": failure_classes(&h)
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
            "tokens": {
                "input": h.tokens.input, "output": h.tokens.output,
                "cache_read": h.tokens.cache_read, "cache_creation": h.tokens.cache_creation,
            },
            "ratelimit_unified": h.ratelimit,
            "usage": h.usage.to_json(),
        });
        json!({"accounts": [account], "generated_at": clock::rfc3339(now)})
    }
}
