//! The OAuth backend: one Claude login calling Anthropic's Messages API directly.
//!
//! [`OauthBackend`] owns the account (token, refresh, health: [`account`]), the upstream HTTP
//! client ([`crate::backends::upstream`]) and cloaking ([`cloak`]), and makes the call every
//! route needs: a request is first *prepared* (the client's own Messages request, or one built
//! by a translator), then *sent*. Sending retries transient failures (529, 5xx, no connection)
//! before anything reaches the client, and refreshes the token once after a 401; it stops at
//! once when the client has hung up ([`crate::backends::abandon`]). The answer —
//! success or the upstream's own error, with its status — goes back to the route, which relays
//! or translates it. One of the subscription's refusals that are not rate limits
//! ([`refusals`]) goes back with a sentence of advice added to its message, and is booked
//! under its own class, never as a cooldown.
//!
//! [`token`] is the OAuth protocol itself (the token file, the token endpoint), [`login`]
//! the interactive login that `claudegate login` runs, [`models`] the upstream's model list,
//! fetched in the background for the catalogue, and [`usage`] the subscription's usage
//! windows, read from the usage endpoint in the background. [`probe`] is `claudegate
//! doctor`'s free call: is the upstream reachable, is the token accepted, what do the windows
//! say, and what time does the upstream think it is.

pub mod account;
pub mod cloak;
mod health;
pub mod login;
pub mod models;
pub mod probe;
pub mod refusals;
pub mod token;
pub mod usage;

use std::time::Duration;

use serde_json::json;
use ureq::http::Response;

use crate::anthropic::collector::Collector;
use crate::anthropic::drain::{self, Ending};
use crate::anthropic::sse::EventReader;
use crate::anthropic::usage::Usage;
use crate::backends::abandon;
use crate::backends::upstream::{self, Call, Upstream};
use crate::backends::{Answer, Completion};
use crate::base::error::{ApiError, ErrorKind};
use crate::base::jsonspan::Member;
use crate::base::log;
use crate::guard::budget::Body;
use account::{Account, Credential};
use cloak::Cloak;
use refusals::Refusal;

/// Longest we honour an upstream `retry-after` between our own retries.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(20);
/// `max_tokens` of a `/v1/complete` call: generous, since only what is generated counts.
const COMPLETE_MAX_TOKENS: u64 = 16_384;

/// The account, the upstream client and cloaking, built once at start.
pub struct OauthBackend {
    pub account: Account,
    pub upstream: Upstream,
    pub cloak: Cloak,
    /// `upstream.max_retries`: further attempts after a transient failure.
    max_retries: u32,
}

/// A request ready to send: path, headers without the credential, body, and the credential.
/// The body keeps its reservation in the body budget until the request is done.
pub struct Prepared<'a> {
    path: String,
    headers: Vec<(String, String)>,
    body: Body<'a>,
    cred: Credential,
    count_tokens: bool,
}

/// What the client's own Messages request brings besides its body.
pub struct Native<'r> {
    /// The path and query as the client sent them (`/v1/messages?beta=true`).
    pub path: &'r str,
    /// Every request header, in order.
    pub headers: &'r [(&'r str, &'r str)],
    /// `/v1/messages/count_tokens` rather than `/v1/messages`.
    pub count_tokens: bool,
    /// The body's top-level members, found by the route's check that it is an object (so
    /// cloaking does not scan a large body again).
    pub members: &'r [Member],
    /// The body's `model`, when it names one: a cooldown of that model's family refuses it.
    pub model: Option<&'r str>,
}

/// The final upstream response (any status) and the headers of it to pass back.
pub type Sent = (Response<ureq::Body>, Vec<(String, String)>);

impl OauthBackend {
    pub fn new(account: Account, upstream: Upstream, cloak: Cloak, max_retries: u32) -> Self {
        OauthBackend {
            account,
            upstream,
            cloak,
            max_retries,
        }
    }

    /// Prepares the client's own Messages request: forwarded byte for byte unless cloaking
    /// applies (a client other than Claude Code), with the client's forwardable headers and
    /// betas merged with the ones the subscription needs.
    pub fn prepare_native<'a>(
        &self,
        native: &Native<'_>,
        text_body: Body<'a>,
        key_label: &str,
    ) -> Result<Prepared<'a>, ApiError> {
        let mut body = text_body;
        let cred = self.account.credential_for(native.model)?;
        let header = |name: &str| {
            native
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let cloaked = self.cloak.applies(header("User-Agent"), header("x-app"));
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut betas: Vec<&str> = Vec::new();
        let mut version = None;
        for (name, value) in native.headers {
            if name.eq_ignore_ascii_case("anthropic-beta") {
                betas.push(value);
            } else if name.eq_ignore_ascii_case("anthropic-version") {
                version = Some(*value);
            } else if upstream::forwardable(name) && !(cloaked && Cloak::replaces_header(name)) {
                headers.push((name.to_string(), value.to_string()));
            }
        }
        let required: &[&str] = if cloaked {
            cloak::CLAUDE_CODE_BETAS
        } else {
            &[crate::anthropic::betas::OAUTH]
        };
        headers.push((
            "anthropic-version".into(),
            version.unwrap_or(crate::anthropic::API_VERSION).to_string(),
        ));
        headers.push((
            "anthropic-beta".into(),
            upstream::merge_betas(&betas, required),
        ));
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        if cloaked {
            let session = self.cloak.session_id(key_label);
            headers.extend(self.cloak.headers(&session));
            // The route checked that the body is UTF-8 JSON and found its members: not again.
            // Edited in place: one copy of the body is held at a time.
            self.cloak
                .body_with(
                    &mut body.bytes,
                    native.members,
                    &cred.account_uuid,
                    &session,
                    native.count_tokens,
                )
                .map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e))?;
        }
        Ok(Prepared {
            path: native.path.to_string(),
            headers,
            body,
            cred,
            count_tokens: native.count_tokens,
        })
    }

    /// Prepares a request built by a translator (the OpenAI doors, `/v1/complete`): `body`
    /// holds the Anthropic request's JSON text, written in place of the client's own body (so
    /// it keeps the budget reservation). The client's own headers are not forwarded, since
    /// they were meant for another API; the body is cloaked unless `cloaking.mode` is `never`
    /// (these clients are never Claude Code). `model` is the request's (resolved) model, for
    /// the cooldown of its family. `members` are the text's top-level members when the
    /// translator noted them as it wrote the text; `None` has them found here.
    pub fn prepare_translated<'a>(
        &self,
        key_label: &str,
        mut body: Body<'a>,
        model: Option<&str>,
        members: Option<&[Member]>,
        betas: &[&str],
    ) -> Result<Prepared<'a>, ApiError> {
        let cred = self.account.credential_for(model)?;
        let cloaked = self.cloak.applies(None, None);
        let mut required: Vec<&str> = if cloaked {
            cloak::CLAUDE_CODE_BETAS.to_vec()
        } else {
            vec![crate::anthropic::betas::OAUTH]
        };
        required.extend_from_slice(betas);
        let mut headers = vec![
            (
                "anthropic-version".to_string(),
                crate::anthropic::API_VERSION.to_string(),
            ),
            (
                "anthropic-beta".to_string(),
                upstream::merge_betas(&[], &required),
            ),
            ("Content-Type".to_string(), "application/json".to_string()),
        ];
        if cloaked {
            let session = self.cloak.session_id(key_label);
            headers.extend(self.cloak.headers(&session));
            // A translator writes only UTF-8: the text is not checked again, only cloaked, in
            // place (one copy of the body is held at a time).
            let cloaked = match members {
                Some(members) => self.cloak.body_with(
                    &mut body.bytes,
                    members,
                    &cred.account_uuid,
                    &session,
                    false,
                ),
                // A small request (`/v1/complete`): its members are found here.
                None => std::str::from_utf8(&body.bytes)
                    .map_err(|_| "a translated request was not UTF-8".to_string())
                    .and_then(|text| self.cloak.body(text, &cred.account_uuid, &session, false))
                    .map(|text| body.bytes = text.into_bytes()),
            };
            cloaked.map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e))?;
        }
        Ok(Prepared {
            path: "/v1/messages?beta=true".into(),
            headers,
            body,
            cred,
            count_tokens: false,
        })
    }

    /// Sends a prepared request: transient failures are retried (jittered backoff, or the
    /// upstream's `retry-after` up to 20 s), a 401 refreshes the token once. Returns the final
    /// upstream response (any status) with the headers to pass back, or a local error.
    pub fn send(&self, p: &mut Prepared<'_>) -> Result<Sent, ApiError> {
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            let mut headers = p.headers.clone();
            headers.push((
                "Authorization".into(),
                format!("Bearer {}", p.cred.access_token),
            ));
            let call = Call {
                path: &p.path,
                headers: &headers,
                body: &p.body.bytes,
                whole_call: p.count_tokens,
            };
            let mut resp = match self.upstream.post(&call) {
                Ok(resp) => resp,
                // Our own doing, not the upstream's: the server shut the call down because its
                // client hung up or the server is stopping (backends::abandon). Nothing to
                // retry, nothing to book.
                Err(_) if abandon::client_gone() => return Err(client_gone()),
                Err(e) => {
                    log::error(&format!("upstream attempt {} failed: {e}", attempt + 1));
                    self.account.record_transient(&e.to_string());
                    if attempt < self.max_retries {
                        attempt += 1;
                        if !abandon::pause(backoff(attempt)) {
                            return Err(client_gone());
                        }
                        continue;
                    }
                    let err = ApiError::from(e);
                    let message = format!("{} (after {} attempts)", err.message, attempt + 1);
                    return Err(ApiError { message, ..err });
                }
            };
            let status = resp.status().as_u16();
            let returned = upstream::returned_headers(&resp);
            let (peeked, refusal) = refusals::peek(resp);
            resp = peeked;
            self.account.record_response(status, &returned, refusal);
            crate::observe::metrics::METRICS.upstream_status(status);
            if let Some((_, id)) = returned
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("request-id"))
            {
                crate::observe::record::note_request_id(id);
            }
            if status == 401 {
                let body = upstream::read_error_body(&mut resp);
                if refreshed {
                    let why = format!(
                        "Anthropic rejected a freshly refreshed token (401: {})",
                        String::from_utf8_lossy(&body)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    );
                    return Err(ApiError::new(ErrorKind::Unavailable, why));
                }
                refreshed = true;
                p.cred = self.account.refresh_after_401(&p.cred)?;
                continue;
            }
            if upstream::transient_status(status) && attempt < self.max_retries {
                attempt += 1;
                let wait = upstream::retry_after_s(&resp)
                    .map(Duration::from_secs)
                    .filter(|d| *d <= MAX_RETRY_WAIT)
                    .unwrap_or_else(|| backoff(attempt));
                upstream::read_error_body(&mut resp);
                log::error(&format!(
                    "upstream answered {status}; retrying in {} ms",
                    wait.as_millis()
                ));
                if !abandon::pause(wait) {
                    return Err(client_gone());
                }
                continue;
            }
            return Ok((resp, returned));
        }
    }

    /// Books the tokens an answer used, for the account and the request's record.
    pub fn record_usage(&self, usage: Usage) {
        self.account.record_usage(usage);
        crate::observe::record::note_usage(usage);
    }

    /// Books what a drained stream reported: its usage, and the account's health when it
    /// ended in a rate-limit error, one of the subscription's refusals (whose message then gets
    /// its advice, for whoever shows it) or broke. `returned` are the upstream's response
    /// headers.
    pub fn book(&self, ending: &mut Ending, usage: Usage, returned: &[(String, String)]) {
        self.record_usage(usage);
        match ending {
            Ending::ErrorEvent { kind, message } => {
                if let Some(refusal) = Refusal::classify(None, kind, message) {
                    self.account.record_refusal(refusal);
                    *message = refusal.explain(message);
                } else if kind == "rate_limit_error" {
                    self.account.record_stream_rate_limit(returned)
                }
            }
            Ending::Broken(e) => self.account.record_transient(&format!("mid-stream: {e}")),
            _ => {}
        }
    }

    /// `/v1/complete`: one Messages call (streamed upstream), collected into its text.
    pub fn complete(
        &self,
        key_label: &str,
        body: Body<'_>,
        req: &Completion,
        model: &str,
    ) -> Result<Answer, ApiError> {
        let mut anthropic = json!({
            "model": model,
            "max_tokens": COMPLETE_MAX_TOKENS,
            "messages": [{"role": "user", "content": req.prompt}],
            "stream": true,
        });
        if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
            anthropic["system"] = json!([{"type": "text", "text": system}]);
        }
        let mut body = body;
        body.bytes = crate::base::jsonout::to_vec(&anthropic);
        let mut prepared =
            self.prepare_translated(key_label, body, anthropic["model"].as_str(), None, &[])?;
        let sent = self.send(&mut prepared);
        drop(prepared); // the request body is no longer needed: free its share of the budget
        let (mut resp, returned) = sent?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = upstream::read_error_body(&mut resp);
            let mut err = ApiError::from_upstream(status, &body);
            if let Some(refusal) = refusals::of_body(status, &body) {
                err.kind = refusal.kind(); // the relay shows the upstream's own status
            }
            return Err(match upstream::retry_after_s(&resp) {
                Some(secs) => err.retry_after(secs),
                None => err,
            });
        }
        let mut reader = EventReader::new(resp.into_body().into_reader());
        let mut collector = Collector::new();
        let mut drained = drain::drain(&mut reader, |ev, _| {
            collector.push(ev);
            true
        });
        self.book(&mut drained.ending, drained.usage, &returned);
        match drained.ending {
            Ending::Complete => {}
            Ending::ErrorEvent { kind, message } => {
                return Err(ApiError::from_stream_error(&kind, &message))
            }
            Ending::CutShort | Ending::Stopped => {
                return Err(ApiError::new(
                    ErrorKind::BadGateway,
                    "the upstream ended the answer early",
                ))
            }
            Ending::Broken(e) => {
                return Err(ApiError::new(
                    ErrorKind::BadGateway,
                    format!("the upstream answer broke: {e}"),
                ))
            }
        }
        let message = collector.message();
        Ok(Answer {
            model: message["model"].as_str().unwrap_or(model).to_string(),
            text: crate::anthropic::collector::text_of(&message),
            usage: drained.usage,
        })
    }
}

/// The error of a call given up because it was abandoned: its client hung up (no one reads
/// it; it ends the request's record), or the server is stopping (a 503 the client reads).
fn client_gone() -> ApiError {
    abandon::abandoned_error()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * (1 << attempt.min(5)) / 2 + crate::base::ids::jitter(250))
}
