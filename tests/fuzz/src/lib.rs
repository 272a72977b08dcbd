//! Helpers shared by the fuzz targets in `fuzz_targets/`: a reader that hands out its bytes in
//! input-determined pieces (to exercise buffering boundaries), and the upstream event loop of
//! `src/anthropic/drain.rs` (read SSE, parse, stop at `error`, note `message_stop`) without the
//! HTTP around it.

use std::io::{self, Read};

use claudegate::anthropic::event::{parse_event, Event};
use claudegate::anthropic::sse::EventReader;
use serde_json::Value;

/// The first byte of the input as control flags, and the rest; `None` for an empty input.
pub fn split_flags(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(f, rest)| (*f, rest))
}

/// A `Read` that returns `data` in pieces of 1..=`max_piece` bytes (sizes from a small PRNG
/// seeded by `seed`), sometimes an `Interrupted` error first (which `BufReader` retries), and,
/// when `fail` is set, an error instead of the clean end of stream.
pub struct Pieces<'a> {
    data: &'a [u8],
    state: u32,
    max_piece: usize,
    fail: Option<io::ErrorKind>,
}

impl<'a> Pieces<'a> {
    pub fn new(data: &'a [u8], seed: u8, fail: Option<io::ErrorKind>) -> Pieces<'a> {
        Pieces {
            data,
            state: 0x9E37_79B9 ^ u32::from(seed),
            // 1, 2, 4, … 128 bytes at most per read, or 16 KiB (whole-buffer reads).
            max_piece: if seed & 0x08 != 0 {
                16 * 1024
            } else {
                1 << (seed & 0x07)
            },
            fail,
        }
    }

    fn next(&mut self) -> u32 {
        // xorshift32: deterministic, so a crash input replays the same piece sizes.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        self.state
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.next();
        if r % 29 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.data.is_empty() {
            return match self.fail {
                Some(kind) => Err(io::Error::new(kind, "injected by the fuzz target")),
                None => Ok(0),
            };
        }
        let n = (r as usize % self.max_piece + 1)
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// How an upstream stream ended, as `drain.rs` decides it.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// The body ended after a `message_stop` event: the translator's `finish`.
    Clean,
    /// An `error` event (its type and message), or a stream that ended early or broke: the
    /// translator's `fail`.
    Failed(String, String),
}

/// Reads `sse` with the server's own [`EventReader`] and [`parse_event`], exactly as the
/// OpenAI front doors do: events that do not parse are skipped, an `error` event ends the
/// stream. Returns the events to feed and how the stream ended.
pub fn upstream_events(sse: &[u8]) -> (Vec<Event>, End) {
    let mut reader = EventReader::new(sse);
    let mut events = Vec::new();
    let mut stopped = false;
    loop {
        match reader.next_event() {
            Ok(Some((name, data))) => {
                let Some(ev) = parse_event(&name, &data) else {
                    continue;
                };
                if ev.name == "error" {
                    let s = |p: &str, default: &str| {
                        ev.data
                            .pointer(p)
                            .and_then(Value::as_str)
                            .unwrap_or(default)
                            .to_string()
                    };
                    let end = End::Failed(
                        s("/error/type", "api_error"),
                        s("/error/message", "upstream error"),
                    );
                    return (events, end);
                }
                stopped |= ev.name == "message_stop";
                events.push(ev);
            }
            Ok(None) if stopped => return (events, End::Clean),
            Ok(None) => {
                return (
                    events,
                    End::Failed("api_error".into(), "ended early".into()),
                )
            }
            Err(e) => return (events, End::Failed("api_error".into(), e.to_string())),
        }
    }
}

/// Asserts that `v` survives the trip to JSON text and back unchanged (what the client gets).
pub fn assert_round_trips(v: &Value) {
    let text = serde_json::to_string(v).expect("a Value always serialises");
    let back: Value = serde_json::from_str(&text).expect("serialised JSON parses");
    assert_eq!(&back, v, "JSON round trip changed the value");
}

/// The server's default model catalogue: aliases resolve as in production, other names pass
/// through (so the fuzzer reaches every model family by name).
pub fn resolve(name: &str) -> String {
    static CATALOGUE: std::sync::OnceLock<claudegate::anthropic::catalogue::Catalogue> =
        std::sync::OnceLock::new();
    CATALOGUE
        .get_or_init(|| {
            claudegate::anthropic::catalogue::Catalogue::new(claudegate::config::Config::default().models, 0)
        })
        .resolve(name)
        .to_string()
}

/// What every translated request must satisfy, for either front door, whatever the client
/// sent (the module docs of `src/openai/chat/`, `responses/` and `reasoning.rs` promise these):
/// - the body is an object with the resolved `model`, `"stream": true`, a positive
///   `max_tokens`, and a non-empty `messages` list of user/assistant turns whose roles
///   alternate (same-role messages are merged) and whose content is a non-empty list of
///   typed blocks;
/// - `system`, when present, is a non-empty list of text blocks;
/// - manual thinking has `1024 <= budget_tokens < max_tokens`, and thinking of any kind comes
///   without `temperature`, `top_p` and `top_k` (Anthropic requires the defaults);
/// - `temperature` is within Anthropic's 0..1;
/// - no beta is listed twice; the body survives a JSON round trip.
pub fn check_translated(req: &Value, t: &claudegate::openai::Translated) {
    let body = t.body.as_object().expect("the body is an object");
    assert_eq!(
        req.get("model").and_then(Value::as_str),
        Some(t.client_model.as_str()),
        "client_model is the request's model"
    );
    assert_eq!(
        body["model"],
        resolve(&t.client_model),
        "model not resolved"
    );
    assert_eq!(body["stream"], true, "the upstream body must stream");
    let max_tokens = body["max_tokens"]
        .as_u64()
        .expect("max_tokens is an integer");
    assert!(max_tokens > 0, "max_tokens must be positive");

    let messages = body["messages"].as_array().expect("messages is a list");
    assert!(!messages.is_empty(), "messages is empty");
    let mut last_role = "";
    for m in messages {
        let role = m["role"].as_str().expect("a role");
        assert!(role == "user" || role == "assistant", "bad role {role}");
        assert_ne!(role, last_role, "consecutive turns of one role");
        last_role = role;
        let content = m["content"].as_array().expect("content is a list");
        assert!(!content.is_empty(), "empty turn");
        for b in content {
            assert!(b["type"].is_string(), "untyped block {b}");
        }
    }
    if let Some(system) = body.get("system") {
        let system = system.as_array().expect("system is a list");
        assert!(!system.is_empty(), "empty system list");
        for b in system {
            assert_eq!(b["type"], "text", "non-text system block {b}");
        }
    }
    if let Some(thinking) = body.get("thinking") {
        if thinking["type"] == "enabled" {
            let budget = thinking["budget_tokens"].as_u64().expect("a budget");
            assert!(
                (1024..max_tokens).contains(&budget),
                "budget {budget} outside 1024..{max_tokens}"
            );
        }
        for k in ["temperature", "top_p", "top_k"] {
            assert!(!body.contains_key(k), "{k} sent with thinking");
        }
    }
    if let Some(temp) = body.get("temperature") {
        let temp = temp.as_f64().expect("temperature is a number");
        assert!(
            (0.0..=1.0).contains(&temp),
            "temperature {temp} out of range"
        );
    }
    let mut betas = t.betas.clone();
    betas.sort_unstable();
    betas.dedup();
    assert_eq!(betas.len(), t.betas.len(), "a beta listed twice");
    assert_round_trips(&t.body);
}
