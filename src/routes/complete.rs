//! `POST /v1/complete`: the relay seed's small API for scripts — a prompt in, text out.
//!
//! `{prompt, system?, model?, output_format?: "text"|"json"}` →
//! `{ok, model, duration_ms, text}` (text) or `{ok, model, duration_ms, result, usage}` (json),
//! where `model` is the id actually used upstream. Errors are `{ok: false, error}` with the
//! right status. On the oauth backend it is one Messages call (streamed upstream, collected
//! here); on the claude-cli backend it is one locked-down `claude -p` run.

use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;
use tiny_http::Request;

use crate::anthropic::collector::Collector;
use crate::anthropic::event::parse_event;
use crate::anthropic::sse::EventReader;
use crate::anthropic::usage::Usage;
use crate::backends::upstream;
use crate::config::Backend;
use crate::guard::keys::KeyInfo;
use crate::http::{self, ApiError, ErrorKind, Protocol, Reply};
use crate::routes::messages;
use crate::server::State;

/// Model used when a request names none (an alias, resolved through the catalogue).
const DEFAULT_MODEL: &str = "sonnet";
/// `max_tokens` for the Messages call: generous, since only what is generated counts.
const MAX_TOKENS: u64 = 16_384;

/// The request, as the seed defines it; anything else is refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub prompt: String,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub output_format: Option<String>,
}

/// What either backend produced.
pub struct Answer {
    /// The model id actually used upstream.
    pub model: String,
    pub text: String,
    pub usage: Usage,
}

type Cors = [(&'static str, String)];

fn fail(rq: Request, err: ApiError, cors: &Cors) -> u16 {
    let status = err.status();
    http::send(rq, err.reply(Protocol::Relay), cors);
    status
}

/// Handles one request; returns the status sent.
pub fn handle(state: &State, mut rq: Request, key: &KeyInfo, cors: &Cors) -> u16 {
    let started = Instant::now();
    let body = match http::read_body(&mut rq, state.config.max_body_bytes, &state.bodies) {
        Ok(b) => b,
        Err(e) => return fail(rq, e, cors),
    };
    let req: CompleteRequest = match serde_json::from_slice(&body.bytes) {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::new(ErrorKind::InvalidRequest, format!("bad request body: {e}"));
            return fail(rq, e, cors);
        }
    };
    let json_output = match req.output_format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            let e = ApiError::new(
                ErrorKind::InvalidRequest,
                format!("output_format must be \"text\" or \"json\", not {other:?}"),
            );
            return fail(rq, e, cors);
        }
    };
    let default_model = match state.config.backend {
        Backend::Oauth => DEFAULT_MODEL,
        Backend::ClaudeCli => state.config.cli.default_model.as_str(),
    };
    crate::observe::audit::note_model(req.model.as_deref().unwrap_or(default_model));
    if req.prompt.trim().is_empty() {
        let e = ApiError::new(ErrorKind::InvalidRequest, "prompt must not be empty");
        return fail(rq, e, cors);
    }
    let answer = match state.config.backend {
        Backend::Oauth => oauth(state, key, body, &req),
        Backend::ClaudeCli => {
            drop(body);
            crate::routes::cli::complete(state, &req)
        }
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return fail(rq, e, cors),
    };
    crate::observe::audit::note_usage(answer.usage);
    let duration_ms = started.elapsed().as_millis() as u64;
    let out = if json_output {
        let u = answer.usage;
        json!({
            "ok": true, "model": answer.model, "duration_ms": duration_ms, "result": answer.text,
            "usage": {
                "input_tokens": u.input, "output_tokens": u.output,
                "cache_read_input_tokens": u.cache_read, "cache_creation_input_tokens": u.cache_creation,
            },
        })
    } else {
        json!({"ok": true, "model": answer.model, "duration_ms": duration_ms, "text": answer.text})
    };
    http::send(rq, Reply::json(200, out.to_string().into_bytes()), cors);
    200
}

/// An upstream error status as the relay reports it.
fn upstream_failure(status: u16, body: &[u8], retry_after: Option<u64>) -> ApiError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("the upstream answered {status}"));
    let kind = match status {
        400 | 404 | 422 => ErrorKind::InvalidRequest,
        413 => ErrorKind::TooLarge,
        429 => ErrorKind::RateLimited,
        401 | 403 => ErrorKind::Unavailable,
        _ => ErrorKind::BadGateway,
    };
    let err = ApiError::new(kind, message);
    match retry_after {
        Some(s) => err.retry_after(s),
        None => err,
    }
}

fn oauth(
    state: &State,
    key: &KeyInfo,
    body: http::Body<'_>,
    req: &CompleteRequest,
) -> Result<Answer, ApiError> {
    let model = req.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let mut anthropic = json!({
        "model": state.models.resolve(model),
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": req.prompt}],
        "stream": true,
    });
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        anthropic["system"] = json!([{"type": "text", "text": system}]);
    }
    let mut prepared = messages::prepare_translated(state, key, body, &anthropic, &[])?;
    let sent = messages::send(state, &mut prepared);
    drop(prepared);
    let (mut resp, returned) = sent?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = upstream::read_error_body(&mut resp);
        let retry = upstream::header(&resp, "retry-after").and_then(|v| v.trim().parse().ok());
        return Err(upstream_failure(status, &body, retry));
    }
    let mut reader = EventReader::new(resp.into_body().into_reader());
    let mut collector = Collector::new();
    let mut stopped = false;
    loop {
        match reader.next_event() {
            Ok(Some((name, data))) => {
                let Some(ev) = parse_event(&name, &data) else {
                    continue;
                };
                if ev.name == "error" {
                    let kind = ev
                        .data
                        .pointer("/error/type")
                        .and_then(Value::as_str)
                        .unwrap_or("api_error");
                    if kind == "rate_limit_error" {
                        state.account.record_stream_rate_limit(&returned);
                    }
                    let body = ev.data.to_string();
                    let status = if kind == "rate_limit_error" { 429 } else { 502 };
                    return Err(upstream_failure(status, body.as_bytes(), None));
                }
                stopped |= ev.name == "message_stop";
                collector.push(&ev);
            }
            Ok(None) if stopped => break,
            Ok(None) => {
                return Err(ApiError::new(
                    ErrorKind::BadGateway,
                    "the upstream ended the answer early",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    ErrorKind::BadGateway,
                    format!("the upstream answer broke: {e}"),
                ))
            }
        }
    }
    let message = collector.message();
    let mut usage = Usage::default();
    if let Some(u) = message.get("usage") {
        usage.merge(u);
    }
    state.account.record_usage(usage);
    let text = message["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<String>()
        })
        .unwrap_or_default();
    Ok(Answer {
        model: message["model"].as_str().unwrap_or(model).to_string(),
        text,
        usage,
    })
}
