//! The `/v1/responses` answer path: upstream Anthropic SSE → `ResponsesStream` events
//! (streaming clients) and → `Collector` → `responses::response_object` (non-streaming).
//!
//! Input: one flags byte (unused, kept for a common layout with `chat_stream`), then the
//! client's request JSON on one line (its tools and echoed fields shape the answer; anything
//! that does not parse stands for `null`), then the upstream's SSE bytes, read as in
//! `chat_stream`.
//!
//! Checks (the stream invariants of the golden tests in `src/openai/responses/tests.rs`, on any
//! upstream), beyond no panic:
//! - every event round-trips as JSON; its `type` is its name and `sequence_number` counts
//!   0, 1, …;
//! - the stream opens with `response.created`, `response.in_progress` and closes with exactly
//!   one terminal event (`response.completed` or `response.failed`), last;
//! - `output_item.added` uses output indices 0, 1, … in order; no item is done twice; item
//!   ids are distinct; the final response's `output` is the list of done items, and a
//!   completed response has every added item done;
//! - nothing is sent after the end;
//! - the non-streaming object round-trips, with status `completed` or `incomplete`.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use claudegate::openai::responses::{response_object, ResponsesStream};
use claudegate::anthropic::collector::Collector;
use claudegate_fuzz::{assert_round_trips, split_flags, upstream_events, End};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Some((_flags, rest)) = split_flags(data) else {
        return;
    };
    let (line, sse) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let req: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let (events, end) = upstream_events(sse);

    let mut s = ResponsesStream::new("resp_fuzz".into(), 1_700_000_000, &req);
    let mut out = s.start();
    for ev in &events {
        out.extend(s.on_event(ev));
    }
    match &end {
        End::Clean => out.extend(s.finish()),
        End::Failed(kind, message) => out.extend(s.fail(kind, message)),
    }
    assert!(s.finish().is_empty(), "finish after the end sent something");
    assert!(s.fail("api_error", "late").is_empty(), "fail after the end");

    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.get(..2),
        Some(&["response.created", "response.in_progress"][..]),
        "the stream must open with created, in_progress"
    );
    let terminal = ["response.completed", "response.failed"];
    assert_eq!(
        names.iter().filter(|n| terminal.contains(n)).count(),
        1,
        "exactly one terminal event"
    );
    assert!(
        terminal.contains(names.last().unwrap()),
        "terminal event not last"
    );
    let mut added = Vec::new();
    let mut done: BTreeMap<u64, Value> = BTreeMap::new();
    for (i, (name, data)) in out.iter().enumerate() {
        assert_round_trips(data);
        assert_eq!(data["sequence_number"], json!(i), "sequence_number");
        assert_eq!(data["type"], json!(name), "type is not the event name");
        let at = data["output_index"].as_u64().unwrap_or(u64::MAX);
        if name == "response.output_item.added" {
            added.push(at);
        } else if name == "response.output_item.done" {
            assert!(
                done.insert(at, data["item"].clone()).is_none(),
                "item {at} done twice"
            );
        }
    }
    assert_eq!(
        added,
        (0..added.len() as u64).collect::<Vec<_>>(),
        "output_index not contiguous"
    );
    let ids: BTreeSet<String> = done.values().map(|i| i["id"].to_string()).collect();
    assert_eq!(ids.len(), done.len(), "item ids are not distinct");
    let (last_name, last) = out.last().unwrap();
    let output: Vec<Value> = done.values().cloned().collect();
    assert_eq!(
        last["response"]["output"],
        json!(output),
        "the final output is not the list of done items"
    );
    if last_name == "response.completed" {
        assert_eq!(done.len(), added.len(), "an item was added but never done");
    }

    // Non-streaming.
    let mut collector = Collector::new();
    for ev in &events {
        collector.push(ev);
    }
    let message = collector.message();
    let object = response_object(&message, "resp_fuzz", 1_700_000_000, &req);
    assert_round_trips(&object);
    let status = object["status"].as_str().unwrap_or("");
    assert!(
        status == "completed" || status == "incomplete",
        "non-streaming status {status}"
    );
});
