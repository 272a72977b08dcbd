//! `POST /v1/complete`: the relay seed's small API for scripts — a prompt in, text out.
//!
//! `{prompt, system?, model?, output_format?: "text"|"json"}` →
//! `{ok, model, duration_ms, text}` (text) or `{ok, model, duration_ms, result, usage}` (json),
//! where `model` is the id actually used upstream. Errors are `{ok: false, error}` with the
//! right status. On the oauth backend it is one Messages call (streamed upstream, collected
//! here); on the claude-cli backend it is one locked-down `claude -p` run.

use serde::Deserialize;
use serde_json::json;
use std::time::Instant;
use tiny_http::Request;

use crate::backends::Completion;
use crate::base::error::{ApiError, ErrorKind, Protocol};
use crate::config::Backend;
use crate::guard::keys::KeyInfo;
use crate::http::{self, Cors, Reply};
use crate::routes::state::State;

/// Model used when a request names none (an alias, resolved through the catalogue).
const DEFAULT_MODEL: &str = "sonnet";

/// The request, as the seed defines it; anything else is refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    output_format: Option<String>,
}

/// Handles one request; returns the status sent.
pub fn handle(state: &State, mut rq: Request, key: &KeyInfo, cors: &Cors) -> u16 {
    let started = Instant::now();
    let body = match http::body::read_body(&mut rq, state.config.max_body_bytes, &state.bodies) {
        Ok(b) => b,
        Err(e) => return http::fail(rq, e, Protocol::Relay, cors),
    };
    let req: CompleteRequest = match serde_json::from_slice(&body.bytes) {
        Ok(r) => r,
        Err(e) => {
            let e = ApiError::new(ErrorKind::InvalidRequest, format!("bad request body: {e}"));
            return http::fail(rq, e, Protocol::Relay, cors);
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
            return http::fail(rq, e, Protocol::Relay, cors);
        }
    };
    let default_model = match state.config.backend {
        Backend::Oauth => DEFAULT_MODEL,
        Backend::ClaudeCli => state.config.cli.default_model.as_str(),
    };
    crate::observe::record::note_model(req.model.as_deref().unwrap_or(default_model));
    if req.prompt.trim().is_empty() {
        let e = ApiError::new(ErrorKind::InvalidRequest, "prompt must not be empty");
        return http::fail(rq, e, Protocol::Relay, cors);
    }
    let completion = Completion {
        prompt: req.prompt,
        system: req.system,
        model: req.model,
    };
    let answer = match state.config.backend {
        Backend::Oauth => {
            let model = completion.model.as_deref().unwrap_or(DEFAULT_MODEL);
            let model = state.models.resolve(model).to_string();
            state.oauth.complete(&key.label, body, &completion, &model)
        }
        Backend::ClaudeCli => {
            drop(body);
            state.cli.complete(&completion)
        }
    };
    let answer = match answer {
        Ok(a) => a,
        // A call the stopping server cut off says so, whatever the cut looked like below.
        Err(e) => {
            let e = crate::backends::abandon::stop_error().unwrap_or(e);
            return http::fail(rq, e, Protocol::Relay, cors);
        }
    };
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
