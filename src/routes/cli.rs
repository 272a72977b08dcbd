//! The routes served by the claude-cli backend (`backend: "claude-cli"`): `/v1/complete` and
//! text-only `/v1/chat/completions`, each one locked-down `claude -p` run
//! ([`crate::backends::cli`]). The CLI's `stream_event` lines are Anthropic stream events, so
//! the chat translator serves this backend unchanged.

use serde_json::{json, Value};
use tiny_http::Request;

use crate::anthropic::collector::Collector;
use crate::anthropic::event::Event;
use crate::backends::cli::{self, CliError};
use crate::http::{self, ApiError, ErrorKind, Protocol, RawResponse};
use crate::openai::chat;
use crate::routes::complete::{Answer, CompleteRequest};
use crate::server::State;

type Cors = [(&'static str, String)];

/// A CLI failure as an HTTP error (the front door picks the body's shape).
fn cli_error(e: CliError) -> ApiError {
    let status = e.status();
    let message = e.message();
    let retry = match &e {
        CliError::Busy { retry_after } => Some(*retry_after),
        CliError::RateLimited(_) => Some(60),
        _ => None,
    };
    let kind = match status {
        400 => ErrorKind::InvalidRequest,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Unavailable,
        504 => ErrorKind::GatewayTimeout,
        _ => ErrorKind::BadGateway,
    };
    let err = ApiError::new(kind, message);
    match retry {
        Some(s) => err.retry_after(s),
        None => err,
    }
}

/// `/v1/complete` on the CLI backend.
pub fn complete(state: &State, req: &CompleteRequest) -> Result<Answer, ApiError> {
    let cli_req = cli::CliRequest {
        prompt: req.prompt.clone(),
        system: req.system.clone(),
        model: req.model.clone(),
    };
    let answer = state.cli.run(&cli_req, &mut |_| true).map_err(cli_error)?;
    Ok(Answer {
        model: answer.model,
        text: answer.text,
        usage: answer.usage,
    })
}

fn fail(rq: Request, err: ApiError, cors: &Cors) -> u16 {
    let status = err.status();
    http::send(rq, err.reply(Protocol::OpenAi), cors);
    status
}

/// The events of a complete answer, for a CLI run that produced text but no stream events.
fn synthetic_events(model: &str, text: &str) -> Vec<Event> {
    let ev = |name: &str, data: Value| Event {
        name: name.into(),
        data,
    };
    vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_cli", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 0}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

/// `/v1/chat/completions` on the CLI backend: text conversations only.
pub fn chat(state: &State, mut rq: Request, cors: &Cors) -> u16 {
    let body = match http::read_body(&mut rq, state.config.max_body_bytes, &state.bodies) {
        Ok(b) => b,
        Err(e) => return fail(rq, e, cors),
    };
    let req: Value = match serde_json::from_slice(&body.bytes) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let e = ApiError::new(
                ErrorKind::InvalidRequest,
                "the request body must be a JSON object",
            );
            return fail(rq, e, cors);
        }
    };
    drop(body);
    let (cli_req, stream, client_model) = match cli::flatten_chat(&req) {
        Ok(x) => x,
        Err(e) => {
            return fail(
                rq,
                ApiError::new(ErrorKind::InvalidRequest, e.message).param(e.param),
                cors,
            )
        }
    };
    crate::observe::audit::note_model(&client_model);
    let include_usage = req.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
    let id = format!(
        "chatcmpl-{}",
        crate::base::ids::hex(&crate::base::ids::random::<12>().unwrap_or([7; 12]))
    );
    let created = crate::base::clock::unix_now();

    if !stream {
        let mut collector = Collector::new();
        let mut saw_events = false;
        let result = state.cli.run(&cli_req, &mut |ev| {
            saw_events = true;
            collector.push(ev);
            true
        });
        return match result {
            Ok(answer) => {
                crate::observe::audit::note_usage(answer.usage);
                if !saw_events {
                    synthetic_events(&answer.model, &answer.text)
                        .iter()
                        .for_each(|ev| collector.push(ev));
                }
                let completion =
                    chat::completion(&collector.message(), &id, created, &client_model);
                http::send(
                    rq,
                    http::Reply::json(200, completion.to_string().into_bytes()),
                    cors,
                );
                200
            }
            Err(e) => fail(rq, cli_error(e), cors),
        };
    }

    // Streaming: the response starts with the first event, so a failure before any output
    // (bad model, busy, not logged in) still gets its proper status.
    let mut pending = Some(rq);
    let mut out: Option<RawResponse> = None;
    let mut t = chat::ChatStream::new(id, created, client_model, include_usage);
    let headers = vec![
        ("Content-Type".to_string(), "text/event-stream".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
        ("X-Accel-Buffering".to_string(), "no".to_string()),
    ];
    let write = |out: &mut Option<RawResponse>,
                 pending: &mut Option<Request>,
                 chunks: Vec<Value>,
                 tail: &[u8]|
     -> bool {
        if out.is_none() {
            let Some(rq) = pending.take() else {
                return false;
            };
            match RawResponse::start(rq, 200, &headers, cors) {
                Ok(o) => *out = Some(o),
                Err(_) => return false,
            }
        }
        let Some(o) = out.as_mut() else { return false };
        let mut buf = Vec::new();
        for c in chunks {
            buf.extend_from_slice(b"data: ");
            buf.extend_from_slice(c.to_string().as_bytes());
            buf.extend_from_slice(b"\n\n");
        }
        buf.extend_from_slice(tail);
        o.write(&buf).and_then(|_| o.flush()).is_ok()
    };
    let _streaming = crate::observe::metrics::METRICS.stream();
    let mut saw_events = false;
    let result = state.cli.run(&cli_req, &mut |ev| {
        saw_events = true;
        let chunks = t.on_event(ev);
        chunks.is_empty() || write(&mut out, &mut pending, chunks, b"")
    });
    match result {
        Ok(answer) => {
            crate::observe::audit::note_usage(answer.usage);
            if !saw_events {
                for ev in synthetic_events(&answer.model, &answer.text) {
                    let chunks = t.on_event(&ev);
                    write(&mut out, &mut pending, chunks, b"");
                }
            }
            let chunks = t.finish();
            write(&mut out, &mut pending, chunks, b"data: [DONE]\n\n");
        }
        Err(e) => match pending.take() {
            // Nothing sent yet: a proper error response.
            Some(rq) => return fail(rq, cli_error(e), cors),
            None => {
                let err = cli_error(e);
                let chunk = t.fail("api_error", &err.message);
                write(&mut out, &mut pending, vec![chunk], b"");
            }
        },
    }
    if let Some(o) = out {
        o.finish().ok();
    }
    200
}
