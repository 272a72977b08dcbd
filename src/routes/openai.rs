//! The HTTP side of `/v1/chat/completions` and `/v1/responses`, on either backend: read and
//! translate the request ([`crate::openai`]), get the answer as Anthropic events (the OAuth
//! backend's upstream stream, or the CLI backend's run), then turn the events into the client's
//! chunks (streaming) or one response (collected). Errors are OpenAI-shaped throughout.

use serde_json::Value;
use tiny_http::Request;

use crate::anthropic::collector::Collector;
use crate::anthropic::drain::{self, Ending};
use crate::anthropic::event::Event;
use crate::anthropic::sse::EventReader;
use crate::backends::abandon;
use crate::backends::cli::CliError;
use crate::backends::upstream;
use crate::base::error::{ApiError, ErrorKind, Protocol};
use crate::base::jsonspan::{Doc, Grammar, Member};
use crate::config::Backend;
use crate::guard::budget::Body;
use crate::guard::keys::KeyInfo;
use crate::http::stream::RawResponse;
use crate::http::{self, Cors};
use crate::observe::metrics::METRICS;
use crate::openai::{chat, responses};
use crate::routes::not_json;
use crate::routes::state::State;

/// Which OpenAI API the request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Chat,
    Responses,
}

/// Handles one request; returns the status sent (for the log line).
pub fn handle(state: &State, mut rq: Request, key: &KeyInfo, door: Door, cors: &Cors) -> u16 {
    let body = match http::body::read_body(&mut rq, state.config.max_body_bytes, &state.bodies) {
        Ok(b) => b,
        Err(e) => return http::fail(rq, e, Protocol::OpenAi, cors),
    };
    match state.config.backend {
        Backend::Oauth => oauth(state, rq, key, body, door, cors),
        Backend::ClaudeCli => {
            let req: Value = match serde_json::from_slice(&body.bytes) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    let err = not_json(&body.bytes, Grammar::Value);
                    return http::fail(rq, err, Protocol::OpenAi, cors);
                }
            };
            drop(body);
            if let Some(model) = req.get("model").and_then(Value::as_str) {
                crate::observe::record::note_model(model);
            }
            cli(state, rq, &req, &key.label, door, cors)
        }
    }
}

/// A translated request: its Anthropic JSON, and what the answer needs to know.
struct Translation {
    json: Vec<u8>,
    /// Where the top-level members of `json` are (noted while writing it).
    members: Vec<Member>,
    /// The Anthropic model the request names (resolved).
    model: Option<String>,
    /// The client's parameters without the conversation (the Responses API echoes some).
    params: Value,
    stream: bool,
    client_model: String,
    betas: Vec<&'static str>,
    include_usage: bool,
}

/// Reads the client's JSON text once ([`Doc`]) and writes the Anthropic request: the
/// conversation's text is copied over as the client wrote it, never decoded. The scan accepts
/// exactly what serde_json's `Value` accepts, so a body it refuses is told why in serde_json's
/// words ([`not_json`]).
fn translate(state: &State, bytes: &[u8], door: Door) -> Result<Translation, ApiError> {
    let not_json = |bytes| not_json(bytes, Grammar::Value);
    let text = std::str::from_utf8(bytes).map_err(|_| not_json(bytes))?;
    let doc = Doc::parse(text, Grammar::Value).ok_or_else(|| not_json(bytes))?;
    let history = match door {
        Door::Chat => "messages",
        Door::Responses => "input",
    };
    let req = crate::openai::Request::read(&doc, history).ok_or_else(|| not_json(bytes))?;
    if let Some(model) = req.params.get("model").and_then(Value::as_str) {
        crate::observe::record::note_model(model);
    }
    let resolve = |m: &str| state.models.resolve(m).to_string();
    let mut t = match door {
        Door::Chat => chat::translate(&req, &resolve),
        Door::Responses => responses::translate(&req, &resolve),
    }?;
    crate::openai::add_cache_markers(&mut t.body);
    let (json, members) = t.body.to_json_with_members(bytes.len());
    Ok(Translation {
        json,
        members,
        model: t
            .body
            .head
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        params: Value::Object(req.params),
        stream: t.stream,
        client_model: t.client_model,
        betas: t.betas,
        include_usage: t.include_usage,
    })
}

/// The OAuth backend: the translated request goes upstream (always streamed).
fn oauth(
    state: &State,
    rq: Request,
    key: &KeyInfo,
    mut body: Body<'_>,
    door: Door,
    cors: &Cors,
) -> u16 {
    let t = match translate(state, &body.bytes, door) {
        Ok(t) => t,
        Err(e) => return http::fail(rq, e, Protocol::OpenAi, cors),
    };
    // The translated text takes the client's place (and its share of the body budget).
    body.bytes = t.json;
    let req = &t.params;
    let prepared = state.oauth.prepare_translated(
        &key.label,
        body,
        t.model.as_deref(),
        Some(&t.members),
        &t.betas,
    );
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(e) => return http::fail(rq, e, Protocol::OpenAi, cors),
    };
    let sent = state.oauth.send(&mut prepared);
    drop(prepared); // the translated body is no longer needed: free its share of the budget
    let (mut resp, returned) = match sent {
        Ok(r) => r,
        Err(e) => return http::fail(rq, e, Protocol::OpenAi, cors),
    };
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = upstream::read_error_body(&mut resp);
        return upstream_error(rq, ApiError::from_upstream(status, &body), &returned, cors);
    }
    let answer = Answer::new(door, req, t.client_model.clone(), t.include_usage);
    let mut reader = EventReader::new(resp.into_body().into_reader());
    if !t.stream {
        let mut collector = Collector::new();
        let mut drained = drain::drain(&mut reader, |ev, _| {
            collector.push(ev);
            true
        });
        state
            .oauth
            .book(&mut drained.ending, drained.usage, &returned);
        let failure = match drained.ending {
            Ending::Complete => None,
            Ending::ErrorEvent { kind, message } => Some((kind, message)),
            Ending::CutShort | Ending::Stopped => Some((
                "api_error".into(),
                "the upstream ended the stream early".into(),
            )),
            Ending::Broken(e) => Some((
                "api_error".into(),
                format!("the upstream stream failed: {e}"),
            )),
        };
        if let Some((kind, message)) = failure {
            if let Some(err) = abandon::stop_error() {
                return http::fail(rq, err, Protocol::OpenAi, cors);
            }
            let err = ApiError::from_stream_error(&kind, &message);
            return upstream_error(rq, err, &returned, cors);
        }
        return answer.send_whole(rq, &collector.message(), &returned, cors);
    }

    let Some(mut out) = SseOut::start(rq, &returned, cors) else {
        return 200; // the client went away before the answer started
    };
    let _streaming = METRICS.stream();
    let mut t = answer.translator(&mut out.buf);
    let mut drained = drain::drain(&mut reader, |ev, more| {
        if ev.name == "ping" {
            // Upstream keep-alives become SSE comments, so proxies and clients in between
            // see traffic during long silent thinking.
            out.buf.extend_from_slice(b": ping\n\n");
        }
        t.on_event(ev, &mut out.buf);
        more || out.flush()
    });
    state
        .oauth
        .book(&mut drained.ending, drained.usage, &returned);
    let finished = matches!(drained.ending, Ending::Complete | Ending::ErrorEvent { .. });
    if let Some(err) = (!finished).then(abandon::stop_error).flatten() {
        // The stopping server cut it off, whatever the cut looked like below.
        t.fail(err.kind.anthropic_type(), &err.message, &mut out.buf);
        out.finish();
        return 200;
    }
    match drained.ending {
        Ending::Complete => t.finish(&mut out.buf),
        Ending::ErrorEvent { kind, message } => t.fail(&kind, &message, &mut out.buf),
        Ending::CutShort => t.fail(
            "api_error",
            "the upstream ended the stream early; the answer is incomplete",
            &mut out.buf,
        ),
        Ending::Broken(e) => t.fail(
            "api_error",
            &format!("the upstream stream failed ({e}); the answer is incomplete"),
            &mut out.buf,
        ),
        // The client went away; dropping the reader closes the upstream.
        Ending::Stopped => return 200,
    }
    out.finish();
    200
}

/// The CLI backend: the request translated by the same translators as on the OAuth backend
/// (a chat request first checked against the chat door's policy for this backend, so what the
/// CLI lacks is refused under the client's own parameter name), then run by the CLI backend,
/// whose events the same translator turns into the answer. The stream starts with the first
/// event, so a failure before any output (bad model, busy, not logged in) still gets its own
/// status.
fn cli(state: &State, rq: Request, req: &Value, owner: &str, door: Door, cors: &Cors) -> u16 {
    let keep = |m: &str| m.to_string();
    let translated = match door {
        Door::Chat => crate::openai::params::ChatRequest::read(req, &crate::openai::params::CLI)
            .and_then(|_| chat::translate_request(req, &keep)),
        Door::Responses => responses::translate_request(req, &keep),
    };
    let t = match translated {
        Ok(t) => t,
        Err(e) => return http::fail(rq, e.into(), Protocol::OpenAi, cors),
    };
    let answer = Answer::new(door, req, t.client_model.clone(), t.include_usage);
    let refused = |e: CliError| -> ApiError {
        match (door, e) {
            (Door::Responses, CliError::Refused { param, message }) => {
                let theirs = responses_param(&param);
                let message = match theirs == param {
                    true => message,
                    false => format!("{message} (asked for by `{theirs}`)"),
                };
                ApiError::from(CliError::Refused {
                    param: theirs.to_string(),
                    message,
                })
            }
            (_, e) => e.into(),
        }
    };
    if !t.stream {
        let mut collector = Collector::new();
        let result = state.cli.run_messages(&t.body, owner, &mut |ev| {
            collector.push(ev);
            true
        });
        return match result {
            Ok(_) => answer.send_whole(rq, &collector.message(), &[], cors),
            Err(e) => http::fail(rq, refused(e), Protocol::OpenAi, cors),
        };
    }
    let mut out = SseOut::lazy(rq, cors);
    let _streaming = METRICS.stream();
    let mut tr = answer.translator(&mut out.buf);
    let result = state.cli.run_messages(&t.body, owner, &mut |ev| {
        tr.on_event(ev, &mut out.buf);
        out.flush()
    });
    match result {
        Ok(_) => tr.finish(&mut out.buf),
        Err(e) => match out.unstarted() {
            // Nothing sent yet (the Responses door's opening events wait in the buffer): a
            // proper error response.
            Some(rq) => return http::fail(rq, refused(e), Protocol::OpenAi, cors),
            None => {
                let kind = match e {
                    CliError::Stopping => ErrorKind::Busy.anthropic_type(),
                    _ => "api_error",
                };
                tr.fail(kind, &ApiError::from(e).message, &mut out.buf)
            }
        },
    }
    out.finish();
    200
}

/// The Responses parameter behind an Anthropic field the CLI backend refused.
fn responses_param(anthropic: &str) -> &str {
    match anthropic {
        "thinking" | "output_config.effort" => "reasoning",
        "output_config.format" => "text.format",
        other => other,
    }
}

/// An upstream error before anything was sent: its status kept, Anthropic's message in an
/// OpenAI-shaped body, and the headers clients use (`retry-after`, `request-id`).
fn upstream_error(rq: Request, err: ApiError, returned: &[(String, String)], cors: &Cors) -> u16 {
    let status = err.status();
    let mut headers = passed_on(returned);
    headers.push(("Content-Type".into(), "application/json".into()));
    RawResponse::whole(rq, status, &headers, cors, &err.body(Protocol::OpenAi)).ok();
    status
}

/// The upstream's headers that go back to the client, without its content type.
fn passed_on(returned: &[(String, String)]) -> Vec<(String, String)> {
    returned
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
        .cloned()
        .collect()
}

/// What the answer needs to know about the request.
struct Answer<'a> {
    door: Door,
    id: String,
    created: u64,
    req: &'a Value,
    /// The model name as the client gave it (echoed back).
    model: String,
    /// Chat: a final usage chunk before `[DONE]`.
    include_usage: bool,
}

impl<'a> Answer<'a> {
    fn new(door: Door, req: &'a Value, model: String, include_usage: bool) -> Answer<'a> {
        let random = crate::base::ids::hex(&crate::base::ids::random::<12>().unwrap_or([7; 12]));
        let id = match door {
            Door::Chat => format!("chatcmpl-{random}"),
            Door::Responses => format!("resp_{random}"),
        };
        Answer {
            door,
            id,
            created: crate::base::clock::unix_now(),
            req,
            model,
            include_usage,
        }
    }

    /// The stream translator for this door; the Responses API's opening events go into `buf`.
    fn translator(&self, buf: &mut Vec<u8>) -> Translator {
        match self.door {
            Door::Chat => Translator::Chat(chat::ChatStream::new(
                self.id.clone(),
                self.created,
                self.model.clone(),
                self.include_usage,
            )),
            Door::Responses => {
                let mut r =
                    responses::ResponsesStream::new(self.id.clone(), self.created, self.req);
                r.start().iter().for_each(|(n, d)| named(buf, n, d));
                Translator::Responses(Box::new(r))
            }
        }
    }

    /// The collected message as one response object, sent whole.
    fn send_whole(
        &self,
        rq: Request,
        message: &Value,
        returned: &[(String, String)],
        cors: &Cors,
    ) -> u16 {
        let response = match self.door {
            Door::Chat => chat::completion(message, &self.id, self.created, &self.model),
            Door::Responses => {
                responses::response_object(message, &self.id, self.created, self.req)
            }
        };
        let mut headers = passed_on(returned);
        headers.push(("Content-Type".into(), "application/json".into()));
        RawResponse::whole(rq, 200, &headers, cors, response.to_string().as_bytes()).ok();
        200
    }
}

/// The per-door translator state machine behind one interface, writing SSE into a buffer.
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

// The event's JSON is written by `jsonout` (serde_json's bytes, without its piecewise writes):
// every Response object of the Responses door echoes the request's instructions and tools,
// tens of kilobytes for a coding agent, three times per answer.
fn data_line(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&crate::base::jsonout::to_vec(v));
    out.extend_from_slice(b"\n\n");
}

/// One named SSE event (`event:` and `data:` lines); also the CLI backend's `/v1/messages`
/// stream (`routes::messages`).
pub(super) fn named(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&crate::base::jsonout::to_vec(v));
    out.extend_from_slice(b"\n\n");
}

/// The client's SSE answer: what is waiting to be written, and the response once started.
/// (Also the CLI backend's `/v1/messages` stream, `routes::messages`.)
pub(super) struct SseOut<'c> {
    /// The request, until the response starts.
    pending: Option<Request>,
    out: Option<RawResponse>,
    headers: Vec<(String, String)>,
    cors: &'c Cors,
    /// Bytes translated and not yet written.
    pub(super) buf: Vec<u8>,
    /// Writing failed: the client went away.
    gone: bool,
}

impl<'c> SseOut<'c> {
    /// Starts the response now (the upstream already answered 200), passing on its headers.
    fn start(rq: Request, returned: &[(String, String)], cors: &'c Cors) -> Option<SseOut<'c>> {
        let mut headers = passed_on(returned);
        headers.extend(sse_headers());
        let out = RawResponse::start(rq, 200, &headers, cors).ok()?;
        Some(SseOut {
            pending: None,
            out: Some(out),
            headers,
            cors,
            buf: Vec::with_capacity(4096),
            gone: false,
        })
    }

    /// A response that starts with its first write.
    pub(super) fn lazy(rq: Request, cors: &'c Cors) -> SseOut<'c> {
        SseOut {
            pending: Some(rq),
            out: None,
            headers: sse_headers(),
            cors,
            buf: Vec::with_capacity(4096),
            gone: false,
        }
    }

    /// The request, while nothing has been sent: the caller can still answer it otherwise.
    pub(super) fn unstarted(&mut self) -> Option<Request> {
        self.pending.take()
    }

    /// Writes and flushes what is buffered (starting the response if needed); false once the
    /// client is gone.
    pub(super) fn flush(&mut self) -> bool {
        if self.buf.is_empty() || self.gone {
            return !self.gone;
        }
        if self.out.is_none() {
            let Some(rq) = self.pending.take() else {
                self.gone = true;
                return false;
            };
            match RawResponse::start(rq, 200, &self.headers, self.cors) {
                Ok(o) => self.out = Some(o),
                Err(_) => {
                    self.gone = true;
                    return false;
                }
            }
        }
        let Some(out) = self.out.as_mut() else {
            return false;
        };
        if out.write(&self.buf).and_then(|_| out.flush()).is_err() {
            self.gone = true;
            return false;
        }
        self.buf.clear();
        true
    }

    /// Writes the rest and ends the response properly.
    pub(super) fn finish(mut self) {
        if self.flush() {
            if let Some(out) = self.out.take() {
                out.finish().ok();
            }
        }
    }
}

fn sse_headers() -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "text/event-stream".into()),
        ("Cache-Control".into(), "no-cache".into()),
        ("X-Accel-Buffering".into(), "no".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `named` writes what `format!` with `Value`'s `Display` wrote before (the CLI backend's
    /// `/v1/messages` stream used that).
    #[test]
    fn named_writes_the_bytes_display_writes() {
        let data = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "é \"quoted\"\n\u{2028}😀"}, "n": -1.5e-7});
        let mut out = Vec::new();
        named(&mut out, "content_block_delta", &data);
        let before = format!("event: {}\ndata: {}\n\n", "content_block_delta", data);
        assert_eq!(String::from_utf8(out).unwrap(), before);
    }
}
