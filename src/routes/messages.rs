//! The Anthropic-native front door: `/v1/messages` and `/v1/messages/count_tokens`, passed
//! through to the upstream with the account's credential in place of the client's key.
//!
//! The body goes upstream byte for byte unless cloaking must change it ([`crate::backends::cloak`]).
//! Transient failures (529, 5xx, no connection) are retried before anything reaches the
//! client; a 401 triggers one refresh and one more try. The final answer — success or the
//! upstream's own error JSON and status — is relayed as it arrives, with the headers clients
//! use (`request-id`, `retry-after`, `anthropic-ratelimit-*`).

use std::io::Read;
use std::time::Duration;

use tiny_http::Request;
use ureq::http::Response;
use ureq::Body;

use crate::anthropic::usage::Usage;
use crate::backends::account::{Credential, Unavailable};
use crate::backends::cloak::{self, Cloak};
use crate::backends::upstream::{self, Call, UpstreamError};
use crate::base::jsonspan;
use crate::base::log;
use crate::guard::keys::KeyInfo;
use crate::http::{self, ApiError, ErrorKind, Protocol, RawResponse};
use crate::routes::relay::{self, StreamEnd};
use crate::server::State;

/// Longest we honour an upstream `retry-after` between our own retries.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(20);
/// A non-streaming answer up to this size is read whole before the client gets its status.
const BUFFERED_BODY: usize = 4 << 20;

type Cors = [(&'static str, String)];

/// Handles one request; returns the status sent (for the log line).
pub fn handle(
    state: &State,
    mut rq: Request,
    key: &KeyInfo,
    count_tokens: bool,
    cors: &Cors,
) -> u16 {
    match prepare(state, &mut rq, key, count_tokens) {
        Ok(prepared) => forward(state, rq, prepared, cors),
        Err(err) => {
            let status = err.status();
            http::send(rq, err.reply(Protocol::Anthropic), cors);
            status
        }
    }
}

/// A request ready to send: path, headers without the credential, body, and the credential.
/// The body keeps its reservation in the body budget until the request is done.
pub(crate) struct Prepared<'a> {
    path: String,
    headers: Vec<(String, String)>,
    body: http::Body<'a>,
    cred: Credential,
    count_tokens: bool,
}

pub(crate) fn unavailable(u: Unavailable) -> ApiError {
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

fn prepare<'a>(
    state: &'a State,
    rq: &mut Request,
    key: &KeyInfo,
    count_tokens: bool,
) -> Result<Prepared<'a>, ApiError> {
    let mut body = http::read_body(rq, state.config.max_body_bytes, &state.bodies)?;
    let text = std::str::from_utf8(&body.bytes).map_err(|_| {
        ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body is not valid UTF-8 JSON",
        )
    })?;
    let Some(members) = jsonspan::object_members(text) else {
        let why = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) => format!("the request body is not valid JSON: {e}"),
            Ok(_) => "the request body must be a JSON object".into(),
        };
        return Err(ApiError::new(ErrorKind::InvalidRequest, why));
    };
    // The model for the audit log, read from the spans already found (no second parse).
    if let Some(m) = members.iter().find(|m| m.key == "model") {
        if let Some(Ok(model)) = text.get(m.value.clone()).map(serde_json::from_str::<&str>) {
            crate::observe::audit::note_model(model);
        }
    }
    let cred = state.account.credential().map_err(unavailable)?;

    let user_agent = http::header(rq, "User-Agent");
    let cloaked = state.cloak.applies(user_agent, http::header(rq, "x-app"));
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut betas: Vec<&str> = Vec::new();
    let mut version = None;
    for h in rq.headers() {
        let name = h.field.as_str().as_str();
        let value = h.value.as_str();
        if name.eq_ignore_ascii_case("anthropic-beta") {
            betas.push(value);
        } else if name.eq_ignore_ascii_case("anthropic-version") {
            version = Some(value);
        } else if upstream::forwardable(name) && !(cloaked && Cloak::replaces_header(name)) {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    let required: &[&str] = if cloaked {
        cloak::CLAUDE_CODE_BETAS
    } else {
        &["oauth-2025-04-20"]
    };
    headers.push((
        "anthropic-version".into(),
        version.unwrap_or("2023-06-01").to_string(),
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
        let session = state.cloak.session_id(&key.label);
        headers.extend(state.cloak.headers(&session));
        let cloaked = state
            .cloak
            .body(text, &cred.account_uuid, &session, count_tokens)
            .map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e))?;
        // Replaces the client's copy: one copy of the body is held at a time.
        body.bytes = cloaked.into_bytes();
    }
    Ok(Prepared {
        path: rq.url().to_string(),
        headers,
        body,
        cred,
        count_tokens,
    })
}

/// Prepares a request built by a translator (the OpenAI front doors): the client's own headers
/// are not forwarded, since they were meant for another API; the body is cloaked unless
/// `cloaking.mode` is `never` (these clients are never Claude Code).
pub(crate) fn prepare_translated<'a>(
    state: &'a State,
    key: &KeyInfo,
    mut body: http::Body<'a>,
    anthropic: &serde_json::Value,
    betas: &[&str],
) -> Result<Prepared<'a>, ApiError> {
    let cred = state.account.credential().map_err(unavailable)?;
    let cloaked = state.cloak.applies(None, None);
    let mut required: Vec<&str> = if cloaked {
        cloak::CLAUDE_CODE_BETAS.to_vec()
    } else {
        vec!["oauth-2025-04-20"]
    };
    required.extend_from_slice(betas);
    let mut headers = vec![
        ("anthropic-version".to_string(), "2023-06-01".to_string()),
        (
            "anthropic-beta".to_string(),
            upstream::merge_betas(&[], &required),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let text = anthropic.to_string();
    body.bytes = if cloaked {
        let session = state.cloak.session_id(&key.label);
        headers.extend(state.cloak.headers(&session));
        let out = state.cloak.body(&text, &cred.account_uuid, &session, false);
        out.map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e))?
            .into_bytes()
    } else {
        text.into_bytes()
    };
    Ok(Prepared {
        path: "/v1/messages?beta=true".into(),
        headers,
        body,
        cred,
        count_tokens: false,
    })
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * (1 << attempt.min(5)) / 2 + crate::base::ids::jitter(250))
}

/// Sends with retries and relays the final answer.
fn forward(state: &State, rq: Request, mut p: Prepared<'_>, cors: &Cors) -> u16 {
    match send(state, &mut p) {
        Ok((resp, returned)) => relay(state, rq, resp, returned, cors),
        Err(err) => {
            http::send(rq, err.reply(Protocol::Anthropic), cors);
            err.status()
        }
    }
}

/// The final upstream response and the headers of it to pass back.
pub(crate) type Sent = (Response<Body>, Vec<(String, String)>);

/// Sends a prepared request: transient failures are retried (jittered backoff, or the
/// upstream's `retry-after` up to 20 s), a 401 refreshes the token once. Returns the final
/// upstream response (any status) with the headers to pass back, or a local error.
pub(crate) fn send(state: &State, p: &mut Prepared<'_>) -> Result<Sent, ApiError> {
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
        let mut resp = match state.upstream.post(&call) {
            Ok(resp) => resp,
            Err(e) => {
                log::error(&format!("upstream attempt {} failed: {e}", attempt + 1));
                state.account.record_transient(&e.to_string());
                if attempt < state.config.upstream.max_retries {
                    attempt += 1;
                    std::thread::sleep(backoff(attempt));
                    continue;
                }
                let kind = match e {
                    UpstreamError::Timeout(_) => ErrorKind::GatewayTimeout,
                    UpstreamError::Unreachable(_) => ErrorKind::BadGateway,
                };
                return Err(ApiError::new(
                    kind,
                    format!("{e} (after {} attempts)", attempt + 1),
                ));
            }
        };
        let status = resp.status().as_u16();
        let returned = upstream::returned_headers(&resp);
        state.account.record_response(status, &returned);
        crate::observe::metrics::METRICS.upstream_status(status);
        if let Some((_, id)) = returned
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("request-id"))
        {
            crate::observe::audit::note_request_id(id);
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
            p.cred = state
                .account
                .refresh_after_401(&p.cred)
                .map_err(unavailable)?;
            continue;
        }
        if upstream::transient_status(status) && attempt < state.config.upstream.max_retries {
            attempt += 1;
            let wait = upstream::header(&resp, "retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .filter(|d| *d <= MAX_RETRY_WAIT)
                .unwrap_or_else(|| backoff(attempt));
            upstream::read_error_body(&mut resp);
            log::error(&format!(
                "upstream answered {status}; retrying in {} ms",
                wait.as_millis()
            ));
            std::thread::sleep(wait);
            continue;
        }
        return Ok((resp, returned));
    }
}

/// Relays the upstream's answer to the client: SSE event by event as it arrives; anything else
/// read whole first (up to 4 MiB), so a body that breaks can still become an error status.
fn relay(
    state: &State,
    rq: Request,
    resp: Response<Body>,
    mut headers: Vec<(String, String)>,
    cors: &Cors,
) -> u16 {
    let status = resp.status().as_u16();
    let is_sse =
        upstream::header(&resp, "content-type").is_some_and(|c| c.starts_with("text/event-stream"));
    if is_sse {
        headers.push(("Cache-Control".into(), "no-cache".into()));
        headers.push(("X-Accel-Buffering".into(), "no".into()));
    }
    let mut reader = resp.into_body().into_reader();
    // Not a stream: read the body (up to 4 MiB) before answering, so an upstream body that
    // breaks (cut short, bad framing, stalled) becomes a 502/504 error JSON rather than a 200
    // with half a message, which a client reading to a closed connection would take as whole.
    // Anthropic sends a non-streaming answer only once it is complete, so this adds no wait.
    let mut kept = Vec::new();
    if !is_sse {
        // `read_to_end` grows the buffer with the body: a typical answer of a few hundred
        // bytes then costs no 32 KiB scratch buffer (which musl's allocator maps and unmaps).
        if let Err(e) = (&mut reader)
            .take(BUFFERED_BODY as u64)
            .read_to_end(&mut kept)
        {
            let e = UpstreamError::from_io(e);
            log::error(&format!("upstream body broke: {e}"));
            state.account.record_transient(&format!("body: {e}"));
            let kind = match e {
                UpstreamError::Timeout(_) => ErrorKind::GatewayTimeout,
                UpstreamError::Unreachable(_) => ErrorKind::BadGateway,
            };
            let mut err = ApiError::new(
                kind,
                format!("the upstream answer ({status}) broke: {e}; the answer is incomplete"),
            );
            if let Some((_, id)) = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("request-id"))
            {
                err = err.with_header("request-id", id.clone());
            }
            http::send(rq, err.reply(Protocol::Anthropic), cors);
            return err.status();
        }
    }
    if !is_sse && kept.len() < BUFFERED_BODY {
        // The whole answer is here: one write with Content-Length, no chunked framing.
        RawResponse::whole(rq, status, &headers, cors, &kept).ok();
        note_answer_usage(state, status, &kept);
        return status;
    }
    let Ok(mut out) = RawResponse::start(rq, status, &headers, cors) else {
        return status; // the client went away before the answer started
    };
    if is_sse {
        let _streaming = crate::observe::metrics::METRICS.stream();
        let (end, seen) = relay::relay(reader, &mut out);
        state.account.record_usage(seen.usage);
        crate::observe::audit::note_usage(seen.usage);
        match &end {
            StreamEnd::UpstreamErrorEvent(kind) if kind == "rate_limit_error" => {
                state.account.record_stream_rate_limit(&headers)
            }
            StreamEnd::UpstreamFailed(e) => {
                state.account.record_transient(&format!("mid-stream: {e}"))
            }
            StreamEnd::ClientGone => {
                log::verbose("client went away during a stream; upstream closed")
            }
            _ => {}
        }
        if end != StreamEnd::ClientGone {
            out.finish().ok();
        }
        return status;
    }
    // Not a stream, over 4 MiB: send what was read, then copy the rest through.
    if out.write(&kept).is_err() {
        return status;
    }
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.write(&buf[..n]).is_err() {
                    return status;
                }
            }
            Err(e) => {
                // Headers are out; the body cannot be completed. Closing without the final
                // chunk tells the client the response is incomplete.
                log::error(&format!(
                    "upstream body broke: {}",
                    UpstreamError::from_io(e)
                ));
                return status;
            }
        }
    }
    note_answer_usage(state, status, &kept);
    out.flush().ok();
    out.finish().ok();
    status
}

/// Books the token usage of a successful non-streaming answer (for the account and audit).
fn note_answer_usage(state: &State, status: u16, body: &[u8]) {
    if !(200..300).contains(&status) {
        return;
    }
    if let Some(u) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .as_ref()
        .and_then(|v| v.get("usage"))
    {
        let mut usage = Usage::default();
        usage.merge(u);
        state.account.record_usage(usage);
        crate::observe::audit::note_usage(usage);
    }
}
