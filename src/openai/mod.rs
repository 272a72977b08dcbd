//! The OpenAI-compatible front doors: `/v1/chat/completions` ([`chat`]) and `/v1/responses`
//! ([`responses`]), and what they share. Both backends get the same translation: the CLI
//! backend takes the translated Anthropic request as the OAuth backend does.
//!
//! Everything inside speaks Anthropic Messages. A front door translates the client's request
//! into an Anthropic request (always `stream: true` upstream), then feeds the upstream's events
//! one at a time to a translator state machine that yields the client's chunks or events. A
//! non-streaming client gets the same events collected into one message first, so both paths
//! report the same content and the same numbers. Translators do no I/O: they are pure and are
//! tested with golden files under `tests/golden/`.
//!
//! Each fact the two doors share lives once: the chat parameter policy ([`params`]), the
//! reasoning plan ([`reasoning`]), content parts and turn order ([`content`]), tool choice,
//! JSON mode, sampling and betas ([`draft`]), stop reasons and usage ([`answer`]), and the
//! translated request itself, which keeps the conversation's text as the client wrote it
//! ([`body`]: a 5 MB history costs one scan and one copy).
//!
//! A door reads a [`Request`]: the client's JSON text scanned once
//! ([`crate::base::jsonspan::Doc`]), every top-level member but the conversation as a
//! `Value`, the conversation as spans of the text. `translate_request(&Value)` (each door's)
//! takes a `Value` instead, for the tests and the fuzz targets: it writes the `Value` out as
//! text and takes the same path.

pub mod answer;
pub mod body;
pub mod chat;
pub mod content;
pub mod draft;
pub mod params;
pub mod reasoning;
pub mod responses;

use serde_json::{Map, Value};

use crate::base::error::{ApiError, ErrorKind};
use crate::base::jsonspan::{Doc, Grammar, Item};

pub use body::add_cache_markers;

/// A request the translator cannot honour: rendered as a 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// The offending parameter, e.g. `n` or `messages[2].content[0].type`.
    pub param: Option<String>,
    pub message: String,
}

impl TranslateError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError {
            param: Some(param.into()),
            message: message.into(),
        }
    }
}

/// A refused request as the caller's error: a 400 naming the parameter.
impl From<TranslateError> for ApiError {
    fn from(e: TranslateError) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest, e.message).param(e.param)
    }
}

/// What every translated request carries besides the body. The body is a [`body::Body`] on
/// the server's path and a `Value` for the `Value` entry points (the default).
#[derive(Debug, Clone, PartialEq)]
pub struct Translated<B = Value> {
    /// The Anthropic Messages request, with `"stream": true`.
    pub body: B,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The model name as the client gave it (echoed back in responses).
    pub client_model: String,
    /// Betas the translated body needs beyond the defaults (e.g. structured outputs).
    pub betas: Vec<&'static str>,
    /// Chat only: `stream_options.include_usage` (a final usage chunk before `[DONE]`).
    pub include_usage: bool,
}

/// A client's request as a door reads it: every top-level member but the conversation as a
/// `Value` (small: model, settings, tools, instructions), and the conversation (`messages`,
/// `input`) as a span of the client's JSON text, left there.
pub struct Request<'a> {
    /// Every member but the conversation, `null`s included.
    pub params: Map<String, Value>,
    /// The conversation member, when present (`null` included).
    pub history: Option<Item<'a>>,
}

impl<'a> Request<'a> {
    /// Reads `doc` (scanned with [`Grammar::Value`]), whose conversation is the member
    /// `history`; `None` when the document is not an object.
    pub fn read(doc: &'a Doc<'a>, history: &str) -> Option<Request<'a>> {
        let root = doc.root();
        if !root.is_object() {
            return None;
        }
        let mut params = Map::new();
        for (k, v) in root.members() {
            let key = k.as_str().unwrap_or_default();
            if key != history {
                params.insert(key.into_owned(), v.to_value());
            }
        }
        Some(Request {
            params,
            history: root.get(history),
        })
    }
}

/// A door's translation of a `Value` (the tests' and fuzz targets' entry point): `req`
/// written out as JSON text and read as the server reads a body. `not_object` is the door's
/// error for a request that is not a JSON object.
pub(crate) fn translate_value(
    req: &Value,
    history: &str,
    not_object: TranslateError,
    translate: impl for<'a> Fn(&Request<'a>) -> Result<Translated<body::Body<'a>>, TranslateError>,
) -> Result<Translated, TranslateError> {
    let text = String::from_utf8(crate::base::jsonout::to_vec(req)).unwrap_or_default();
    let Some(doc) = Doc::parse(&text, Grammar::Value) else {
        return Err(TranslateError {
            param: None,
            message: "the request is not JSON serde_json can read back".into(),
        });
    };
    let request = Request::read(&doc, history).ok_or(not_object)?;
    let t = translate(&request)?;
    Ok(Translated {
        body: t.body.to_value(),
        stream: t.stream,
        client_model: t.client_model,
        betas: t.betas,
        include_usage: t.include_usage,
    })
}
