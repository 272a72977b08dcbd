//! The HTTP side of `/v1/chat/completions` and `/v1/responses`: read and translate the
//! request, send it with the shared retry logic, then turn the upstream's events into the
//! client's chunks (streaming) or one response (collected). Errors are OpenAI-shaped throughout.

use serde_json::{json, Value};
use tiny_http::Request;

use crate::anthropic::collector::Collector;
use crate::anthropic::event::{parse_event, Event};
use crate::anthropic::sse::EventReader;
use crate::anthropic::usage::Usage;
use crate::backends::upstream;
use crate::guard::keys::KeyInfo;
use crate::http::{self, ApiError, ErrorKind, Protocol, RawResponse};
use crate::openai::{chat, responses};
use crate::routes::messages;
use crate::server::State;

type Cors = [(&'static str, String)];

/// Which OpenAI API the request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Chat,
    Responses,
}

fn fail(rq: Request, err: ApiError, cors: &Cors) -> u16 {
    let status = err.status();
    http::send(rq, err.reply(Protocol::OpenAi), cors);
    status
}

/// Handles one request; returns the status sent (for the log line).
pub fn handle(state: &State, mut rq: Request, key: &KeyInfo, door: Door, cors: &Cors) -> u16 {
    let body = match http::read_body(&mut rq, state.config.max_body_bytes, &state.bodies) {
        Ok(b) => b,
        Err(e) => return fail(rq, e, cors),
    };
    let req: Value = match serde_json::from_slice(&body.bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            let e = ApiError::new(
                ErrorKind::InvalidRequest,
                "the request body must be a JSON object",
            );
            return fail(rq, e, cors);
        }
        Err(e) => {
            let e = ApiError::new(
                ErrorKind::InvalidRequest,
                format!("the request body is not valid JSON: {e}"),
            );
            return fail(rq, e, cors);
        }
    };
    if let Some(model) = req.get("model").and_then(Value::as_str) {
        crate::observe::audit::note_model(model);
    }
    let resolve = |m: &str| state.models.resolve(m).to_string();
    let translated = match door {
        Door::Chat => chat::translate_request(&req, &resolve),
        Door::Responses => responses::translate_request(&req, &resolve),
    };
    let mut t = match translated {
        Ok(t) => t,
        Err(e) => {
            return fail(
                rq,
                ApiError::new(ErrorKind::InvalidRequest, e.message).param(e.param),
                cors,
            )
        }
    };
    crate::openai::add_cache_markers(&mut t.body);
    let mut prepared = match messages::prepare_translated(state, key, body, &t.body, &t.betas) {
        Ok(p) => p,
        Err(e) => return fail(rq, e, cors),
    };
    let sent = messages::send(state, &mut prepared);
    drop(prepared); // the translated body is no longer needed: free its share of the budget
    let (mut resp, returned) = match sent {
        Ok(r) => r,
        Err(e) => return fail(rq, e, cors),
    };
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = upstream::read_error_body(&mut resp);
        return upstream_error(rq, status, &body, &returned, cors);
    }
    let created = crate::base::clock::unix_now();
    let id = match door {
        Door::Chat => format!("chatcmpl-{}", random_hex()),
        Door::Responses => format!("resp_{}", random_hex()),
    };
    let reader = EventReader::new(resp.into_body().into_reader());
    let client = Client {
        door,
        id,
        created,
        req: &req,
        model: t.client_model.clone(),
    };
    if t.stream {
        stream(state, rq, reader, &client, t.include_usage, &returned, cors)
    } else {
        collect(state, rq, reader, &client, &returned, cors)
    }
}

fn random_hex() -> String {
    crate::base::ids::hex(&crate::base::ids::random::<12>().unwrap_or([7; 12]))
}

/// What the response needs to know about the request.
struct Client<'a> {
    door: Door,
    id: String,
    created: u64,
    req: &'a Value,
    model: String,
}

/// An upstream error before anything was sent: the status kept, Anthropic's message in an
/// OpenAI-shaped body, and the headers clients use (`retry-after`, `request-id`).
fn upstream_error(
    rq: Request,
    status: u16,
    body: &[u8],
    returned: &[(String, String)],
    cors: &Cors,
) -> u16 {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let kind = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/type"))
        .and_then(Value::as_str)
        .unwrap_or("api_error")
        .to_string();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "the upstream answered {status}: {}",
                String::from_utf8_lossy(body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )
        });
    let err = json!({"error": {"message": message, "type": chat::error_type(&kind), "param": null, "code": kind}});
    let mut headers: Vec<(String, String)> = returned
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
        .cloned()
        .collect();
    headers.push(("Content-Type".into(), "application/json".into()));
    if let Ok(mut out) = RawResponse::start(rq, status, &headers, cors) {
        out.write(err.to_string().as_bytes()).ok();
        out.finish().ok();
    }
    status
}

/// Tracks what the account's books need from the events.
#[derive(Default)]
struct Books {
    usage: Usage,
    stopped: bool,
}

impl Books {
    fn see(&mut self, ev: &Event) {
        match ev.name.as_str() {
            "message_start" => {
                if let Some(u) = ev.data.pointer("/message/usage") {
                    self.usage.merge(u);
                }
            }
            "message_delta" => {
                if let Some(u) = ev.data.get("usage") {
                    self.usage.merge(u);
                }
            }
            "message_stop" => self.stopped = true,
            _ => {}
        }
    }
}

fn error_of(ev: &Event) -> (String, String) {
    let kind = ev
        .data
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let message = ev
        .data
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error");
    (kind.to_string(), message.to_string())
}

/// The per-door translator state machine behind one interface.
enum Translator {
    Chat(chat::ChatStream),
    Responses(Box<responses::ResponsesStream>),
}

impl Translator {
    fn on_event(&mut self, ev: &Event, out: &mut Vec<u8>) {
        match self {
            Translator::Chat(t) => t.on_event(ev).iter().for_each(|c| data_line(out, c)),
            Translator::Responses(t) => t.on_event(ev).iter().for_each(|(n, d)| named(out, n, d)),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Translator::Chat(t) => {
                t.finish().iter().for_each(|c| data_line(out, c));
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Translator::Responses(t) => t.finish().iter().for_each(|(n, d)| named(out, n, d)),
        }
    }

    /// A failure after the first byte: the client's protocol-correct error, never a clean end.
    fn fail(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        match self {
            Translator::Chat(t) => data_line(out, &t.fail(kind, message)),
            Translator::Responses(t) => t
                .fail(kind, message)
                .iter()
                .for_each(|(n, d)| named(out, n, d)),
        }
    }
}

fn data_line(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn named(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(format!("event: {name}\ndata: ").as_bytes());
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Streams translated events, flushing whenever the upstream has nothing more buffered.
fn stream<R: std::io::Read>(
    state: &State,
    rq: Request,
    mut reader: EventReader<R>,
    client: &Client,
    include_usage: bool,
    returned: &[(String, String)],
    cors: &Cors,
) -> u16 {
    let mut headers: Vec<(String, String)> = returned
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
        .cloned()
        .collect();
    headers.push(("Content-Type".into(), "text/event-stream".into()));
    headers.push(("Cache-Control".into(), "no-cache".into()));
    headers.push(("X-Accel-Buffering".into(), "no".into()));
    let Ok(mut out) = RawResponse::start(rq, 200, &headers, cors) else {
        return 200;
    };
    let _streaming = crate::observe::metrics::METRICS.stream();
    let mut buf = Vec::with_capacity(4096);
    let mut t = match client.door {
        Door::Chat => Translator::Chat(chat::ChatStream::new(
            client.id.clone(),
            client.created,
            client.model.clone(),
            include_usage,
        )),
        Door::Responses => {
            let mut r =
                responses::ResponsesStream::new(client.id.clone(), client.created, client.req);
            r.start().iter().for_each(|(n, d)| named(&mut buf, n, d));
            Translator::Responses(Box::new(r))
        }
    };
    let mut books = Books::default();
    loop {
        match reader.next_event() {
            Ok(Some((name, data))) => {
                let Some(ev) = parse_event(&name, &data) else {
                    continue;
                };
                books.see(&ev);
                if ev.name == "error" {
                    let (kind, message) = error_of(&ev);
                    if kind == "rate_limit_error" {
                        state.account.record_stream_rate_limit(returned);
                    }
                    t.fail(&kind, &message, &mut buf);
                    break;
                }
                if ev.name == "ping" {
                    // Upstream keep-alives become SSE comments, so proxies and clients in
                    // between see traffic during long silent thinking.
                    buf.extend_from_slice(b": ping\n\n");
                }
                t.on_event(&ev, &mut buf);
            }
            Ok(None) if books.stopped => {
                t.finish(&mut buf);
                break;
            }
            Ok(None) => {
                t.fail(
                    "api_error",
                    "the upstream ended the stream early; the answer is incomplete",
                    &mut buf,
                );
                break;
            }
            Err(e) => {
                state.account.record_transient(&format!("mid-stream: {e}"));
                t.fail(
                    "api_error",
                    &format!("the upstream stream failed ({e}); the answer is incomplete"),
                    &mut buf,
                );
                break;
            }
        }
        if !reader.more_buffered() && !buf.is_empty() {
            if out.write(&buf).and_then(|_| out.flush()).is_err() {
                state.account.record_usage(books.usage);
                crate::observe::audit::note_usage(books.usage);
                return 200; // the client went away; dropping the reader closes the upstream
            }
            buf.clear();
        }
    }
    state.account.record_usage(books.usage);
    crate::observe::audit::note_usage(books.usage);
    if out.write(&buf).is_ok() {
        out.finish().ok();
    }
    200
}

/// Collects the whole answer, then sends one response. Nothing has been sent yet, so an
/// upstream error inside the stream still becomes a proper HTTP error status.
fn collect<R: std::io::Read>(
    state: &State,
    rq: Request,
    mut reader: EventReader<R>,
    client: &Client,
    returned: &[(String, String)],
    cors: &Cors,
) -> u16 {
    let mut collector = Collector::new();
    let mut books = Books::default();
    let failure = loop {
        match reader.next_event() {
            Ok(Some((name, data))) => {
                let Some(ev) = parse_event(&name, &data) else {
                    continue;
                };
                books.see(&ev);
                if ev.name == "error" {
                    break Some(error_of(&ev));
                }
                collector.push(&ev);
            }
            Ok(None) if books.stopped => break None,
            Ok(None) => {
                break Some((
                    "api_error".into(),
                    "the upstream ended the stream early".into(),
                ))
            }
            Err(e) => {
                break Some((
                    "api_error".into(),
                    format!("the upstream stream failed: {e}"),
                ))
            }
        }
    };
    state.account.record_usage(books.usage);
    crate::observe::audit::note_usage(books.usage);
    if let Some((kind, message)) = failure {
        let status = match kind.as_str() {
            "rate_limit_error" => {
                state.account.record_stream_rate_limit(returned);
                429
            }
            "overloaded_error" => 529,
            "invalid_request_error" => 400,
            _ => 502,
        };
        let body =
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string();
        return upstream_error(rq, status, body.as_bytes(), returned, cors);
    }
    let message = collector.message();
    let response = match client.door {
        Door::Chat => chat::completion(&message, &client.id, client.created, &client.model),
        Door::Responses => {
            responses::response_object(&message, &client.id, client.created, client.req)
        }
    };
    let mut headers: Vec<(String, String)> = returned
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
        .cloned()
        .collect();
    headers.push(("Content-Type".into(), "application/json".into()));
    if let Ok(mut out) = RawResponse::start(rq, 200, &headers, cors) {
        out.write(response.to_string().as_bytes()).ok();
        out.finish().ok();
    }
    200
}
