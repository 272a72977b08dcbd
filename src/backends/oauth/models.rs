//! The upstream's model list: `GET /v1/models` on the API host, with the account's OAuth token
//! as a Bearer and the `oauth-2025-04-20` beta, every page of it (`limit`, then `after_id` =
//! the last id while `has_more`; <https://platform.claude.com/docs/en/api/models-list>).
//!
//! [`keep_current`] runs on a thread of its own, started by the server: it fetches at start and
//! every `models.refresh_s`, and hands each good list to the catalogue
//! ([`crate::anthropic::catalogue`]), which merges it under the configuration. Never on a
//! request's path: a slow or failing endpoint delays no request. A failure (no usable login, an
//! error status, a body that is no list, an empty list) keeps the last good list and is logged
//! without secrets (the upstream's words are redacted), and the fetch is tried again after at
//! most 10 minutes.
//!
//! The call leaves the account's health and the metrics alone: it is our own housekeeping, not
//! a client's request, and a refusal of this one endpoint says nothing about the Messages API.
//! For the same reason a 401 here does not refresh the token (the token thread and the next
//! request's 401 do that).

use std::time::Duration;

use serde_json::Value;

use super::login::percent_encode;
use super::OauthBackend;
use crate::anthropic::catalogue::Catalogue;
use crate::backends::upstream;
use crate::base::error::UpstreamError;
use crate::base::log;
use crate::base::redact::redact;
use crate::config::{Backend, Config};

/// Models asked for per page: the most the endpoint gives, so one page is the usual answer.
const PAGE_LIMIT: u32 = 1000;
/// Pages followed at most (5000 models; Anthropic lists a few dozen): the upstream controls
/// `has_more`, and what is past the last page followed is left out.
const MAX_PAGES: usize = 5;
/// The largest page read; a page of 1000 models with all their details (about 1.5 KB each) is
/// well under it.
const MAX_PAGE_BYTES: u64 = 4 << 20;
/// A model id longer than this is not kept (the config's own ids are held to the same).
const MAX_ID_LEN: usize = 200;
/// The longest wait before a failed fetch is tried again (when `models.refresh_s` is longer):
/// a start without network, or a passing error, need not cost a day.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(600);

impl OauthBackend {
    /// Every model the upstream lists for this account, newest first, each object as it came.
    /// `whole_call` bounds each page from connecting to its last byte. The error says what
    /// went wrong, without secrets.
    pub fn list_models(&self, whole_call: Duration) -> Result<Vec<Value>, String> {
        let cred = self.account.credential().map_err(|e| e.message())?;
        let headers = [
            (
                "anthropic-version",
                crate::anthropic::API_VERSION.to_string(),
            ),
            ("anthropic-beta", crate::anthropic::betas::OAUTH.to_string()),
            ("Accept", "application/json".to_string()),
            ("Authorization", format!("Bearer {}", cred.access_token)),
        ]
        .map(|(name, value)| (name.to_string(), value));
        let mut models = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut path = format!("/v1/models?limit={PAGE_LIMIT}");
            if let Some(id) = &after {
                path.push_str(&format!("&after_id={}", percent_encode(id)));
            }
            let page = self.models_page(&path, &headers, whole_call)?;
            let (data, next) = read_page(&page)?;
            models.extend(data);
            match next {
                Some(last) if after.as_deref() != Some(last.as_str()) => after = Some(last),
                _ => break,
            }
        }
        if models.is_empty() {
            return Err("the upstream listed no models".into());
        }
        Ok(models)
    }

    /// One page, parsed; a non-2xx answer is an error naming its status and message.
    fn models_page(
        &self,
        path: &str,
        headers: &[(String, String)],
        whole_call: Duration,
    ) -> Result<Value, String> {
        let failed = |e: UpstreamError| redact(&e.to_string());
        let mut resp = self
            .upstream
            .get(path, headers, whole_call)
            .map_err(failed)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let said = upstream::error_said(status, &mut resp);
            return Err(format!("the upstream answered {status}: {said}"));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_PAGE_BYTES)
            .read_to_vec()
            .map_err(|e| failed(UpstreamError::from_ureq(e)))?;
        serde_json::from_slice(&body).map_err(|_| "the upstream's answer is not JSON".into())
    }
}

/// A page's models (objects with an id of 1 to [`MAX_ID_LEN`] characters; others skipped) and
/// the id to ask for the next page after, when `has_more` says there is one.
fn read_page(page: &Value) -> Result<(Vec<Value>, Option<String>), String> {
    let Some(data) = page.get("data").and_then(Value::as_array) else {
        return Err("the upstream's answer has no `data` list".into());
    };
    let models: Vec<Value> = data
        .iter()
        .filter(|m| {
            m.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
        })
        .cloned()
        .collect();
    let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
    let last = page
        .get("last_id")
        .and_then(Value::as_str)
        .or_else(|| data.last()?.get("id")?.as_str())
        .filter(|id| !id.is_empty())
        .map(String::from);
    Ok((models, last.filter(|_| more && !data.is_empty())))
}

/// Whether the list is fetched at all: `models.refresh_s` is not 0 and the OAuth backend
/// answers (the CLI backend serves only `cli.allowed_models`, and may have no OAuth login).
pub fn wanted(config: &Config) -> bool {
    config.backend == Backend::Oauth && config.models.refresh_s > 0
}

/// Fetches the list now and every `models.refresh_s`, handing each good one to `catalogue`;
/// runs forever on its own thread. Each page must arrive whole within `timeouts.response_ms`.
pub fn keep_current(backend: &OauthBackend, catalogue: &Catalogue, config: &Config) {
    let every = Duration::from_secs(config.models.refresh_s);
    let whole_call = Duration::from_millis(config.timeouts.response_ms);
    loop {
        let wait = match backend.list_models(whole_call) {
            Ok(models) => {
                log::verbose(&format!(
                    "model list: the upstream lists {} models",
                    models.len()
                ));
                catalogue.update(models);
                every
            }
            Err(why) => {
                log::error(&format!(
                    "cannot fetch the upstream's model list ({why}); /v1/models keeps serving \
                     the last good one"
                ));
                every.min(RETRY_AFTER_FAILURE)
            }
        };
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_reads_its_models_and_where_the_next_begins() {
        let page = json!({"data": [{"id": "claude-b-1"}, {"id": ""}, {"no": "id"}, {"id": "x".repeat(201)}, {"id": "claude-a-1"}],
            "has_more": true, "first_id": "claude-b-1", "last_id": "claude-a-1"});
        let (models, next) = read_page(&page).unwrap();
        assert_eq!(
            models,
            [json!({"id": "claude-b-1"}), json!({"id": "claude-a-1"})]
        );
        assert_eq!(next.as_deref(), Some("claude-a-1"));

        let last = json!({"data": [{"id": "claude-z"}], "has_more": false, "last_id": "claude-z"});
        assert_eq!(read_page(&last).unwrap().1, None, "no more pages");
        let unnamed = json!({"data": [{"id": "claude-z"}], "has_more": true});
        assert_eq!(read_page(&unnamed).unwrap().1.as_deref(), Some("claude-z"));
        let empty = json!({"data": [], "has_more": true, "last_id": "claude-z"});
        assert_eq!(
            read_page(&empty).unwrap().1,
            None,
            "an empty page ends the walk"
        );

        for bad in [json!({"data": "nope"}), json!([]), json!({"type": "error"})] {
            assert!(read_page(&bad).is_err(), "{bad}");
        }
    }
}
