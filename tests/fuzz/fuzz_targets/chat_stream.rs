//! The `/v1/chat/completions` answer path: upstream Anthropic SSE → `ChatStream` chunks
//! (streaming clients) and → `Collector` → `chat::completion` (non-streaming clients).
//!
//! Input: one flags byte (bit 0: `stream_options.include_usage`), then the upstream's SSE
//! bytes, read with the server's `EventReader` and `parse_event` as `anthropic::drain` does: an
//! `error` event or a stream without `message_stop` ends in `fail`, else in `finish`.
//!
//! Checks, beyond no panic:
//! - every chunk and the completion survive a JSON round trip;
//! - every chunk but the error object carries the envelope (id, object, created, model, and
//!   `usage: null` with include_usage) and only choice index 0; the first opens the
//!   assistant role;
//! - at most one `finish_reason`, exactly one on a clean end; with include_usage a clean end
//!   closes with a `choices: []` usage chunk; a failed one closes with the error object;
//! - tool call indices are 0, 1, … in order of their first chunk, and argument fragments only
//!   name calls already announced;
//! - nothing is sent after the end (`finish`, `on_event` again return nothing).
#![no_main]

use claudegate::openai::chat::{completion, ChatStream};
use claudegate::anthropic::collector::Collector;
use claudegate::anthropic::event::Event;
use claudegate_fuzz::{assert_round_trips, split_flags, upstream_events, End};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const ID: &str = "chatcmpl-fuzz";
const CREATED: u64 = 1_700_000_000;
const MODEL: &str = "client-model";

fuzz_target!(|data: &[u8]| {
    let Some((flags, sse)) = split_flags(data) else {
        return;
    };
    let include_usage = flags & 1 != 0;
    let (events, end) = upstream_events(sse);

    // Streaming.
    let mut s = ChatStream::new(ID.into(), CREATED, MODEL.into(), include_usage);
    let mut chunks = Vec::new();
    for ev in &events {
        chunks.extend(s.on_event(ev));
    }
    match &end {
        End::Clean => chunks.extend(s.finish()),
        End::Failed(kind, message) => chunks.push(s.fail(kind, message)),
    }
    assert!(s.finish().is_empty(), "finish after the end sent something");
    let late = Event {
        name: "content_block_delta".into(),
        data: json!({"index": 0, "delta": {"type": "text_delta", "text": "late"}}),
    };
    assert!(s.on_event(&late).is_empty(), "a chunk after the end");

    let mut finishes = 0;
    let mut calls = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        assert_round_trips(c);
        if c.get("error").is_some() {
            assert!(
                matches!(end, End::Failed(..)) && i == chunks.len() - 1,
                "an error object that does not close a failed stream"
            );
            continue;
        }
        assert_eq!(c["id"], ID);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["created"], CREATED);
        assert_eq!(c["model"], MODEL);
        assert_eq!(c.get("usage").is_some(), include_usage, "usage key");
        let choices = c["choices"].as_array().expect("choices is a list");
        if i == 0 {
            assert_eq!(choices[0]["delta"]["role"], "assistant", "role chunk first");
        }
        if choices.is_empty() {
            assert!(
                include_usage && i == chunks.len() - 1,
                "usage chunk not last"
            );
            assert!(
                c["usage"]["total_tokens"].is_u64(),
                "usage chunk without usage"
            );
            continue;
        }
        assert!(c["usage"].is_null(), "usage before the end");
        for ch in choices {
            assert_eq!(ch["index"], 0, "choice index");
            if !ch["finish_reason"].is_null() {
                assert!(ch["finish_reason"].is_string());
                finishes += 1;
            }
            for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let index = tc["index"].as_u64().expect("a tool call index");
                if tc.get("id").is_some() {
                    assert_eq!(index, calls, "tool call indices not contiguous");
                    calls += 1;
                } else {
                    assert!(index < calls, "arguments before their call");
                }
            }
        }
    }
    assert!(finishes <= 1, "{finishes} finish reasons");
    if end == End::Clean {
        assert_eq!(finishes, 1, "a clean end without a finish reason");
        if include_usage {
            assert_eq!(chunks.last().unwrap()["choices"], json!([]));
        }
    }

    // Non-streaming: the collector stops before an error event, as `anthropic::drain` does.
    let mut collector = Collector::new();
    for ev in &events {
        collector.push(ev);
    }
    let message = collector.message();
    assert_round_trips(&message);
    let c = completion(&message, ID, CREATED, MODEL);
    assert_round_trips(&c);
    assert_eq!(c["object"], "chat.completion");
    assert!(c["choices"][0]["finish_reason"].is_string());
    for tc in c["choices"][0]["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let args = tc["function"]["arguments"]
            .as_str()
            .expect("arguments text");
        serde_json::from_str::<Value>(args).expect("completion arguments are JSON");
    }
});
