//! `POST /v1/fetch`: fetches one public web page through this host, for apps whose own address
//! gets bot-walled. The request is `{url, max_bytes?, strip?}`; the answer is
//! `{ok: true, status, final_url, content_type, truncated, html}` (HTTP 200 whatever the remote
//! status was: `status` is the remote's) or `{ok: false, error}` with a status saying why:
//!
//! | status | when |
//! |---|---|
//! | 400 | bad JSON or fields, a URL that is not http(s), carries a user name, or whose host is (or resolves to, or redirects to) a non-public address |
//! | 404 | `fetch.enabled` is false |
//! | 408, 413, 503 | the request body came too slowly, is over `max_body_bytes`, or the server holds too many bodies (as on every route) |
//! | 415 | the remote answered with a non-text content type (images, PDFs, archives…) |
//! | 429 | the key's fetch bucket (`fetch.rpm`) is empty, or the key already has `limits.per_key_concurrent` requests in flight; `Retry-After` says when to retry |
//! | 502 | the remote cannot be resolved or reached, TLS fails, the answer is malformed, or there are too many redirects |
//! | 504 | the whole fetch, redirects included, took longer than `fetch.timeout_ms` |
//!
//! The fetching itself, with the address guard (SSRF checks, connection pinning, redirects
//! checked hop by hop), the content rules and the debug-build test seam, is the page fetcher's:
//! [`crate::backends::web`]. This module reads the request, spends the key's fetch bucket and
//! writes the answer.
//!
//! **Budget.** Each key has its own fetch bucket (`fetch.rpm` per minute, bursts up to one
//! minute's worth; 0 = no limit), apart from the model limits, so page fetches never spend the
//! model budget and vice versa. A fetch also holds one of its key's places under
//! `limits.per_key_concurrent` (shared with the key's model requests) while it runs. Both are
//! taken before the body is read, so a request refused for its body (bad JSON, a blocked
//! address) has spent its token too, and a key over its limits never holds a worker while its
//! body arrives.

use std::sync::Mutex;
use std::time::Instant;

use tiny_http::Request;

use crate::backends::web::{self, Page};
use crate::base::bucket::{Rate, Table};
use crate::base::error::{ApiError, ErrorKind, Protocol};
use crate::config::FETCH_MAX_BYTES_LIMIT;
use crate::guard::keys::KeyInfo;
use crate::guard::limits::Slot;
use crate::http::{self, Cors, Reply};
use crate::routes::state::State;

/// Most keys with a fetch bucket kept in memory (keys come from the key file, so this is only
/// reached after many revocations; full buckets are forgotten first).
pub const MAX_BUCKETS: usize = 1024;

/// The request body, checked.
#[derive(Debug)]
struct FetchRequest {
    url: String,
    max_bytes: Option<u64>,
    strip: bool,
}

impl FetchRequest {
    /// Parses the body by hand so that every refusal names the field at fault.
    fn parse(bytes: &[u8]) -> Result<FetchRequest, ApiError> {
        let bad = |m: String| ApiError::new(ErrorKind::InvalidRequest, m);
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("request body must be a JSON object".into()))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "url" | "max_bytes" | "strip"))
        {
            return Err(bad(format!(
                "unknown field {k:?}; /v1/fetch takes url, max_bytes and strip"
            )));
        }
        let url = match obj.get("url") {
            Some(serde_json::Value::String(u)) => u.clone(),
            None | Some(serde_json::Value::Null) => return Err(bad("url is required".into())),
            Some(_) => return Err(bad("url must be a string".into())),
        };
        let range =
            || format!("max_bytes must be an integer between 1 and {FETCH_MAX_BYTES_LIMIT}");
        let max_bytes = match obj.get("max_bytes") {
            None | Some(serde_json::Value::Null) => None,
            Some(n) => match n.as_u64() {
                Some(n) if (1..=FETCH_MAX_BYTES_LIMIT).contains(&n) => Some(n),
                _ => return Err(bad(range())),
            },
        };
        let strip = match obj.get("strip") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(bad("strip must be true or false".into())),
        };
        Ok(FetchRequest {
            url,
            max_bytes,
            strip,
        })
    }
}

/// Serves `POST /v1/fetch`; returns the status sent.
pub fn handle(state: &State, mut rq: Request, key: &KeyInfo, cors: &Cors) -> u16 {
    // Held until the answer is written: the worker is this key's until then.
    let _slot = match admit(state, key) {
        Ok(slot) => slot,
        Err(e) => return http::fail(rq, e, Protocol::Relay, cors),
    };
    match answer(state, &mut rq) {
        Ok(page) => {
            let body = serde_json::json!({
                "ok": true,
                "status": page.status,
                "final_url": page.final_url,
                "content_type": page.content_type,
                "truncated": page.truncated,
                "html": page.text,
            });
            http::send(rq, Reply::json(200, body.to_string().into_bytes()), cors);
            200
        }
        Err(e) => http::fail(rq, e, Protocol::Relay, cors),
    }
}

/// Everything a fetch spends before its body is read, so a key over its limits is refused at
/// once instead of holding a worker while its body trickles in: a place under the key's cap on
/// requests in flight (`limits.per_key_concurrent`), then a token from its fetch bucket.
/// Nothing is spent when fetching is disabled, and the token is not spent when the place is
/// refused.
fn admit<'a>(state: &'a State, key: &KeyInfo) -> Result<Slot<'a>, ApiError> {
    if !state.config.fetch.enabled {
        // Not read: the server skips an unread body on its own.
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "/v1/fetch is disabled on this server (fetch.enabled is false)",
        ));
    }
    let slot = state.limits.admit_fetch(key)?;
    take_token(&state.fetch_buckets, state.config.fetch.rpm, key)?;
    Ok(slot)
}

/// Reads the body and fetches.
fn answer(state: &State, rq: &mut Request) -> Result<Page, ApiError> {
    let body = http::body::read_body(rq, state.config.max_body_bytes, &state.bodies)?;
    let req = FetchRequest::parse(&body.bytes)?;
    drop(body);
    // fetch.max_bytes is validated by the config (1..=2 MB).
    let max_bytes = req.max_bytes.unwrap_or(state.config.fetch.max_bytes);
    let target = web::parse_url(&req.url)?;
    state.fetcher.fetch(target, max_bytes, req.strip)
}

/// Takes one token from `key`'s fetch bucket (`rpm` per minute; 0 = no limit), or says when
/// to retry.
fn take_token(buckets: &Mutex<Table<String>>, rpm: u32, key: &KeyInfo) -> Result<(), ApiError> {
    if rpm == 0 {
        return Ok(());
    }
    let mut buckets = crate::base::sync::lock(buckets);
    buckets
        .take(&key.label, Rate::per_minute(rpm), Instant::now())
        .map_err(|wait| {
            ApiError::new(
                ErrorKind::RateLimited,
                format!(
                    "key {:?} is over its {rpm} page fetches per minute (fetch.rpm)",
                    key.label
                ),
            )
            .retry_after(wait)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refuse_after_rpm() {
        let buckets = Mutex::new(Table::new(MAX_BUCKETS));
        let key = |l: &str| KeyInfo {
            label: l.into(),
            rpm: None,
            daily: None,
        };
        assert!(take_token(&buckets, 2, &key("a")).is_ok());
        assert!(take_token(&buckets, 2, &key("a")).is_ok());
        let refused = take_token(&buckets, 2, &key("a")).unwrap_err();
        assert_eq!(refused.status(), 429);
        assert!(refused.retry_after.is_some_and(|secs| secs >= 1));
        assert!(take_token(&buckets, 2, &key("b")).is_ok());
    }
}
