//! The status page: `GET /status`, one HTML page compiled into the binary, and
//! `GET /admin/status` (admin scope), the JSON it reads every 10 seconds.
//!
//! The page is `status/page.html` with `status/page.css` and `status/page.js` put inline, so
//! it needs no other asset. It is served under a Content-Security-Policy that allows nothing
//! by default (`default-src 'none'`), exactly those two inline blocks by their SHA-256 hashes
//! (CSP Level 3 hash sources: <https://www.w3.org/TR/CSP3/#grammardef-hash-source>), and
//! connections to its own origin only; no form may be submitted, no base URL changed, and no
//! other site may frame it. `/status` itself needs no key: it is the sign-in form. The admin
//! key typed there stays in the tab's `sessionStorage` and travels only as the
//! `Authorization` header of `/admin/status` (never in a URL or a cookie).
//!
//! `/admin/status` composes what lives elsewhere and computes nothing of its own: the
//! account's admin view (the `accounts` of `/admin/accounts`, passed on as opaque JSON, so
//! whatever the account adds to it — usage windows, cooldowns, failure classes — reaches the
//! page unchanged), the per-key totals of the audit log for today and for the last 7 UTC days
//! ([`crate::observe::audit::totals`], the figures `claudegate usage` prints), the version and
//! the uptime. The page interprets nothing itself: the usage windows, the binding one
//! (`representative_window`) and the cooldowns come understood from
//! [`crate::anthropic::ratelimit`] and the account.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::base::clock;
use crate::base::sync::lock;
use crate::http::Reply;
use crate::observe::audit::{self, Totals};
use crate::routes::state::State;

const HTML: &str = include_str!("status/page.html");
const CSS: &str = include_str!("status/page.css");
const JS: &str = include_str!("status/page.js");

/// Where the stylesheet and the script go in [`HTML`].
const STYLE_SLOT: &str = "{{style}}";
const SCRIPT_SLOT: &str = "{{script}}";

/// The page with its blocks inline, and the policy that allows exactly them.
struct Page {
    html: String,
    csp: String,
}

/// `'sha256-…'`: the CSP source that allows an inline block whose text is `text`.
fn hash_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        crate::base::base64::encode(digest.as_slice())
    )
}

/// Built once: the files are fixed at compile time, so the hashes are too.
fn built() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = HTML
            .replacen(STYLE_SLOT, CSS, 1)
            .replacen(SCRIPT_SLOT, JS, 1);
        let csp = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash_source(JS),
            hash_source(CSS)
        );
        Page { html, csp }
    })
}

/// `GET /status`: the page, to anyone (it holds no data; the data needs an admin key).
pub fn page() -> Reply {
    let page = built();
    Reply {
        status: 200,
        headers: vec![
            ("Content-Type", "text/html; charset=utf-8".into()),
            ("Content-Security-Policy", page.csp.clone()),
            ("X-Content-Type-Options", "nosniff".into()),
            ("X-Frame-Options", "DENY".into()),
            ("Referrer-Policy", "no-referrer".into()),
            ("Cache-Control", "no-store".into()),
        ],
        body: page.html.clone().into_bytes(),
    }
}

/// `GET /admin/status`: version, uptime, the accounts' admin view and the per-key totals.
pub fn admin_status(state: &State) -> Reply {
    let mut view = state.oauth.account.admin_view();
    let accounts = match view.get_mut("accounts") {
        Some(a) => a.take(),
        None => json!([]),
    };
    let path = audit::log_path(&state.config.audit, &state.config.data_dir());
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
        "accounts": accounts,
        "keys": per_key(path, clock::day_of(clock::unix_now())),
    });
    let mut reply = Reply::json(200, body.to_string().into_bytes());
    reply.headers.push(("Cache-Control", "no-store".into()));
    reply
}

// ---- per-key totals, read from the audit log ------------------------------------------------

/// Days in "the last 7 days": today and the six UTC days before it.
const WEEK_DAYS: u64 = 7;
/// However many tabs refresh, the audit log (up to `audit.max_bytes` × (`audit.keep` + 1)) is
/// read at most this often; an unchanged log is not read again at all.
const REREAD_AFTER: Duration = Duration::from_secs(2);

/// What identifies one reading of the log: the day and the live file's size and time. Lines
/// are only ever appended, and a rotation replaces the live file, so an equal stamp means the
/// same totals.
#[derive(Clone, PartialEq, Debug)]
struct Stamp {
    path: PathBuf,
    today: u64,
    len: u64,
    modified: Option<SystemTime>,
}

struct Cached {
    stamp: Stamp,
    at: Instant,
    keys: Value,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The `keys` of `/admin/status` for the log at `path` on UTC day `today`; the lock is held
/// only to look and to store, never while the files are read.
fn per_key(path: PathBuf, today: u64) -> Value {
    let meta = std::fs::metadata(&path).ok();
    let stamp = Stamp {
        today,
        len: meta.as_ref().map_or(0, |m| m.len()),
        modified: meta.and_then(|m| m.modified().ok()),
        path,
    };
    if let Some(c) = lock(&CACHE).as_ref() {
        let same_log = c.stamp.path == stamp.path && c.stamp.today == stamp.today;
        if c.stamp == stamp || (same_log && c.at.elapsed() < REREAD_AFTER) {
            return c.keys.clone();
        }
    }
    let week = audit::totals(&stamp.path, Some(today.saturating_sub(WEEK_DAYS - 1)));
    let day = audit::totals(&stamp.path, Some(today));
    let keys = keys_json(&day, &week);
    *lock(&CACHE) = Some(Cached {
        stamp,
        at: Instant::now(),
        keys: keys.clone(),
    });
    keys
}

/// One entry per key seen in the last 7 days, in label order; a key idle today shows zeros.
fn keys_json(today: &BTreeMap<String, Totals>, week: &BTreeMap<String, Totals>) -> Value {
    let none = Totals::default();
    let keys: Vec<Value> = week
        .iter()
        .map(|(label, w)| {
            json!({
                "label": label,
                "today": figures(today.get(label).unwrap_or(&none)),
                "last_7_days": figures(w),
            })
        })
        .collect();
    Value::Array(keys)
}

/// A key's totals under the names of the audit line's fields.
fn figures(t: &Totals) -> Value {
    json!({
        "requests": t.requests,
        "errors": t.errors,
        "input_tokens": t.input,
        "output_tokens": t.output,
        "cache_read_tokens": t.cache_read,
        "cache_creation_tokens": t.cache_creation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_inline_blocks() {
        let page = built();
        assert!(!page.html.contains(STYLE_SLOT) && !page.html.contains(SCRIPT_SLOT));
        // Each block is whole: its text cannot end its own element early.
        assert!(!CSS.contains("</style") && !JS.contains("</script"));
        assert!(page.html.contains(&format!("<style>{CSS}</style>")));
        assert!(page.html.contains(&format!("<script>{JS}</script>")));
        assert!(page
            .csp
            .contains(&format!("script-src {};", hash_source(JS))));
        assert!(page
            .csp
            .contains(&format!("style-src {};", hash_source(CSS))));
        assert!(page.csp.starts_with("default-src 'none';"));
        // A known vector: the hash of the empty string.
        assert_eq!(
            hash_source(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }

    #[test]
    fn keys_are_the_week_s_labels_with_today_s_figures_or_zeros() {
        let t = |requests, errors, input| Totals {
            requests,
            errors,
            input,
            ..Totals::default()
        };
        let today = BTreeMap::from([("b".to_string(), t(1, 1, 10))]);
        let week = BTreeMap::from([
            ("a".to_string(), t(5, 0, 50)),
            ("b".to_string(), t(2, 1, 30)),
        ]);
        let v = keys_json(&today, &week);
        assert_eq!(v[0]["label"], "a");
        assert_eq!(v[0]["today"]["requests"], 0);
        assert_eq!(v[0]["last_7_days"]["input_tokens"], 50);
        assert_eq!(v[1]["label"], "b");
        assert_eq!(v[1]["today"]["errors"], 1);
        assert_eq!(v[1]["last_7_days"]["requests"], 2);
        assert_eq!(v[1]["today"].as_object().map(|o| o.len()), Some(6), "{v}");
        assert_eq!(keys_json(&BTreeMap::new(), &BTreeMap::new()), json!([]));
    }
}
