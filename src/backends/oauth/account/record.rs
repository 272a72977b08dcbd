//! Recording what each upstream answer says about the account (its status and its
//! rate-limit headers, a `rate_limit_error` inside a stream, a failure to reach the upstream,
//! the tokens used, a read of the usage endpoint) into its health record
//! ([`crate::backends::oauth::health`], where the cooldown rules live).

use crate::anthropic::ratelimit::{self, Snapshot};
use crate::anthropic::usage::Usage;
use crate::backends::oauth::account::Account;
use crate::backends::oauth::health::{
    cooldown_from_headers, refused, Health, DEFAULT_RATE_LIMIT_S, FORBIDDEN_COOLDOWN_S,
};
use crate::backends::oauth::refusals::Refusal;
use crate::base::clock;
use crate::base::sync::lock;

impl Account {
    /// Records an upstream attempt's outcome and its rate-limit headers. `refusal`: the answer
    /// is one of the subscription's refusals ([`crate::backends::oauth::refusals`]), booked by
    /// [`Account::record_refusal`] instead of by its status.
    pub fn record_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        refusal: Option<Refusal>,
    ) {
        let now = clock::unix_now();
        // Read the headers before taking the lock every worker shares.
        let unified: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(name, value)| {
                let rest = name
                    .to_ascii_lowercase()
                    .strip_prefix("anthropic-ratelimit-unified-")?
                    .to_string();
                Some((rest, value.clone()))
            })
            .collect();
        let seen = ratelimit::from_headers(headers);
        let mut h = lock(&self.health);
        h.requests += 1;
        for (rest, value) in unified {
            if h.ratelimit.len() < 64 || h.ratelimit.contains_key(&rest) {
                h.ratelimit.insert(rest, value);
            }
        }
        if let Some(seen) = &seen {
            h.clear_where_room(seen, now, "the upstream's answer");
        }
        match refusal {
            Some(refusal) => refused(&mut h, refusal),
            None => record_status(&mut h, status, headers, seen.as_ref(), now),
        }
        // Kept last, so the snapshot moves in instead of being copied.
        if let Some(seen) = seen {
            h.usage.headers = Some((seen, now));
            h.usage.unsaved = true;
        }
    }

    /// One of the subscription's refusals as an `error` event inside a 200 stream (the 200 was
    /// booked already).
    pub fn record_refusal(&self, refusal: Refusal) {
        refused(&mut lock(&self.health), refusal);
    }

    /// A rate-limit `error` event inside a 200 stream: the account is limited all the same.
    pub fn record_stream_rate_limit(&self, headers: &[(String, String)]) {
        let now = clock::unix_now();
        let seen = ratelimit::from_headers(headers);
        let mut h = lock(&self.health);
        h.failures.rate_limit += 1;
        let fallback = cooldown_from_headers(headers, now).or(Some(DEFAULT_RATE_LIMIT_S));
        h.limited(
            now,
            seen.as_ref(),
            fallback,
            "rate_limit_error inside the stream",
        );
    }

    /// A failure to reach the upstream at all. A call the server shut down itself because its
    /// client hung up (`backends::abandon`) is no upstream failure and is not counted.
    pub fn record_transient(&self, what: &str) {
        if crate::backends::abandon::client_gone() {
            return;
        }
        let mut h = lock(&self.health);
        h.requests += 1;
        h.failures.transient += 1;
        h.last_error = Some(format!("transient: {what}"));
    }

    pub fn record_usage(&self, usage: Usage) {
        let mut h = lock(&self.health);
        h.tokens.input += usage.input;
        h.tokens.output += usage.output;
        h.tokens.cache_read += usage.cache_read;
        h.tokens.cache_creation += usage.cache_creation;
    }

    /// The usage endpoint's answer (`Ok`, read at `read_at`: when the call began) or why it
    /// could not be read. A good answer is shown from now on and ends each cooldown whose
    /// window it shows room in; a failure falls back to the last headers seen.
    pub fn record_usage_read(&self, read: Result<Snapshot, String>, read_at: u64) {
        let mut h = lock(&self.health);
        match read {
            Ok(seen) => {
                h.clear_where_room(&seen, read_at, "the usage endpoint");
                h.usage.endpoint = Some((seen, read_at));
                h.usage.endpoint_ok = true;
            }
            Err(_) => h.usage.endpoint_ok = false,
        }
        h.usage.unsaved = true;
    }
}

/// What an answer's status (no refusal) says about the account; `seen`: its usage windows.
fn record_status(
    h: &mut Health,
    status: u16,
    headers: &[(String, String)],
    seen: Option<&Snapshot>,
    now: u64,
) {
    match status {
        200..=299 => {
            h.successes += 1;
            h.last_success = Some(now);
            h.refused.unblock();
            // The whole account answers again; a model's cooldown waits for its window.
            h.cooldowns.retain(|c| c.model.is_some());
        }
        429 => {
            h.failures.rate_limit += 1;
            let fallback = cooldown_from_headers(headers, now);
            h.limited(now, seen, fallback, "upstream 429 rate_limit_error");
            h.last_error = Some("rate_limit: upstream 429".into());
        }
        403 => {
            h.failures.forbidden += 1;
            h.cool_down(
                now,
                FORBIDDEN_COOLDOWN_S,
                "upstream 403: the account is not allowed to make this call",
            );
            h.last_error = Some("forbidden: upstream 403".into());
        }
        401 => h.failures.auth += 1,
        s if crate::backends::upstream::transient_status(s) => {
            h.failures.transient += 1;
            h.last_error = Some(format!("transient: upstream {s}"));
        }
        s => {
            h.failures.request += 1;
            h.last_error = Some(format!(
                "request: upstream {s} (caused by the request; no cooldown)"
            ));
        }
    }
}
