//! The Anthropic-native front door: `/v1/messages` and `/v1/messages/count_tokens`, passed
//! through to the upstream with the account's credential in place of the client's key; on the
//! claude-cli backend, `/v1/messages` runs the request through the CLI ([`cli`]) and answers
//! with its Anthropic events, streamed or collected (`count_tokens` is a 501 there, see
//! `server::dispatch`).
//!
//! The body goes upstream byte for byte unless cloaking must change it ([`crate::backends::oauth::cloak`]).
//! Transient failures (529, 5xx, no connection) are retried before anything reaches the
//! client; a 401 triggers one refresh and one more try. The final answer — success or the
//! upstream's own error JSON and status — is relayed as it arrives, with the headers clients
//! use (`request-id`, `retry-after`, `anthropic-ratelimit-*`).

use std::io::Read;

use tiny_http::Request;
use ureq::http::Response;
use ureq::Body;

use crate::anthropic::collector::Collector;
use crate::anthropic::event::error_event;
use crate::anthropic::usage::Usage;
use crate::backends::abandon;
use crate::backends::oauth::{Native, Prepared};
use crate::backends::upstream;
use crate::base::error::{ApiError, ErrorKind, Protocol, UpstreamError};
use crate::base::jsonspan::{self, Grammar};
use crate::base::log;
use crate::guard::keys::KeyInfo;
use crate::http::stream::RawResponse;
use crate::http::{self, Cors, Reply};
use crate::routes::not_json;
use crate::routes::openai::{named, SseOut};
use crate::routes::relay::{self, StreamEnd};
use crate::routes::state::State;

/// A non-streaming answer up to this size is read whole before the client gets its status.
const BUFFERED_BODY: usize = 4 << 20;

/// Handles one request; returns the status sent (for the log line).
pub fn handle(
    state: &State,
    mut rq: Request,
    key: &KeyInfo,
    count_tokens: bool,
    cors: &Cors,
) -> u16 {
    if state.config.backend == crate::config::Backend::ClaudeCli {
        return cli(state, rq, &key.label, cors);
    }
    let sent = prepare(state, &mut rq, key, count_tokens).and_then(|mut prepared| {
        let sent = state.oauth.send(&mut prepared);
        drop(prepared); // the request body is no longer needed: free its share of the budget
        sent
    });
    match sent {
        Ok((resp, returned)) => relay(state, rq, resp, returned, cors),
        Err(err) => http::fail(rq, err, Protocol::Anthropic, cors),
    }
}

/// The claude-cli backend: the request as the client sent it goes to the CLI backend, which
/// refuses what it cannot honour (400 naming it) and yields Anthropic events. A streaming
/// answer starts with the first event, so a failure before any output (a refusal, busy, not
/// logged in) still gets its own status; a failure after it ends the stream with an `error`
/// event, as the Messages API does.
fn cli(state: &State, mut rq: Request, owner: &str, cors: &Cors) -> u16 {
    let req = match read_json_object(state, &mut rq) {
        Ok(v) => v,
        Err(e) => return http::fail(rq, e, Protocol::Anthropic, cors),
    };
    if let Some(model) = req.get("model").and_then(serde_json::Value::as_str) {
        crate::observe::record::note_model(model);
    }
    if req.get("stream") != Some(&serde_json::Value::Bool(true)) {
        let mut collector = Collector::new();
        let result = state.cli.run_messages(&req, owner, &mut |ev| {
            collector.push(ev);
            true
        });
        return match result {
            Ok(_) => {
                let body = collector.message().to_string();
                http::send(rq, Reply::json(200, body.into_bytes()), cors);
                200
            }
            Err(e) => http::fail(rq, e.into(), Protocol::Anthropic, cors),
        };
    }
    let mut out = SseOut::lazy(rq, cors);
    let _streaming = crate::observe::metrics::METRICS.stream();
    let result = state.cli.run_messages(&req, owner, &mut |ev| {
        named(&mut out.buf, &ev.name, &ev.data);
        out.flush()
    });
    if let Err(e) = result {
        match out.unstarted() {
            // Nothing sent yet: a proper error response.
            Some(rq) => return http::fail(rq, e.into(), Protocol::Anthropic, cors),
            None => {
                let err = ApiError::from(e);
                out.buf
                    .extend(error_event(err.kind.anthropic_type(), &err.message));
            }
        }
    }
    out.finish();
    200
}

/// Reads the client's body as a JSON object (the CLI backend's `/v1/messages`).
fn read_json_object(state: &State, rq: &mut Request) -> Result<serde_json::Value, ApiError> {
    let body = http::body::read_body(rq, state.config.max_body_bytes, &state.bodies)?;
    match serde_json::from_slice::<serde_json::Value>(&body.bytes) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        _ => Err(not_json(&body.bytes, Grammar::Value)),
    }
}

/// Reads the client's body, checks that it is a JSON object, notes its model, and hands it
/// with the client's headers to the backend to prepare.
fn prepare<'a>(
    state: &'a State,
    rq: &mut Request,
    key: &KeyInfo,
    count_tokens: bool,
) -> Result<Prepared<'a>, ApiError> {
    let body = http::body::read_body(rq, state.config.max_body_bytes, &state.bodies)?;
    let text = std::str::from_utf8(&body.bytes).map_err(|_| {
        ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body is not valid UTF-8 JSON",
        )
    })?;
    let Some(members) = jsonspan::object_members(text) else {
        return Err(not_json(&body.bytes, Grammar::Raw));
    };
    // The model for the audit log and the model's cooldown, read from the spans already
    // found (no second parse).
    let model = members
        .iter()
        .find(|m| m.key == "model")
        .and_then(|m| text.get(m.value.clone()))
        .and_then(|v| serde_json::from_str::<&str>(v).ok())
        .map(str::to_string);
    if let Some(model) = &model {
        crate::observe::record::note_model(model);
    }
    let headers: Vec<(&str, &str)> = rq
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str(), h.value.as_str()))
        .collect();
    let native = Native {
        path: rq.url(),
        headers: &headers,
        count_tokens,
        members: &members,
        model: model.as_deref(),
    };
    state.oauth.prepare_native(&native, body, &key.label)
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
            if let Some(err) = abandon::stop_error() {
                return http::fail(rq, err, Protocol::Anthropic, cors);
            }
            let e = UpstreamError::from_io(e);
            log_broken_body(&e);
            state.oauth.account.record_transient(&format!("body: {e}"));
            let message =
                format!("the upstream answer ({status}) broke: {e}; the answer is incomplete");
            let mut err = ApiError {
                message,
                ..ApiError::from(e)
            };
            if let Some((_, id)) = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("request-id"))
            {
                err = err.with_header("request-id", id.clone());
            }
            return http::fail(rq, err, Protocol::Anthropic, cors);
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
        state.oauth.record_usage(seen.usage);
        match &end {
            // One of the subscription's refusals is no rate limit, whatever its `error.type`
            // says: counted under its class, never a cooldown.
            StreamEnd::UpstreamErrorEvent(kind) => match seen.refusal {
                Some(refusal) => state.oauth.account.record_refusal(refusal),
                None if kind == "rate_limit_error" => {
                    state.oauth.account.record_stream_rate_limit(&headers)
                }
                None => {}
            },
            StreamEnd::UpstreamFailed(e) => state
                .oauth
                .account
                .record_transient(&format!("mid-stream: {e}")),
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
                log_broken_body(&UpstreamError::from_io(e));
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
        state.oauth.record_usage(usage);
    }
}

/// A broken upstream body is worth an error line, unless claudegate broke it itself because
/// the client hung up or the server is stopping (`backends::abandon`).
fn log_broken_body(e: &UpstreamError) {
    if abandon::client_gone() {
        log::verbose("the call was abandoned (its client left, or the server is stopping)");
    } else {
        log::error(&format!("upstream body broke: {e}"));
    }
}
