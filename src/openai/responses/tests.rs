//! The golden files in `tests/golden/responses/` (`UPDATE_GOLDEN=1` rewrites their expected
//! parts: review every diff), and the stream translator's edge cases found by fuzzing.

use std::collections::{BTreeMap, BTreeSet};

use super::items::{decode_reasoning, encode_reasoning, REASONING_PREFIX};
use super::*;
use crate::anthropic::collector::Collector;
use crate::anthropic::event::Event;
use serde_json::{json, Map, Value};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/responses");
const ID: &str = "resp_test";
const CREATED: u64 = 1_700_000_000;

/// The default aliases, as the server's catalogue resolves them.
fn resolve(model: &str) -> String {
    match model {
        "opus" => "claude-opus-4-8",
        "sonnet" => "claude-sonnet-4-6",
        "haiku" => "claude-haiku-4-5-20251001",
        other => other,
    }
    .to_string()
}

fn events(v: &Value) -> Vec<Event> {
    v.as_array()
        .expect("`events` is a list")
        .iter()
        .map(|e| Event {
            name: e[0].as_str().expect("event name").to_string(),
            data: e[1].clone(),
        })
        .collect()
}

fn pairs(out: &[(String, Value)]) -> Value {
    out.iter().map(|(n, d)| json!([n, d])).collect()
}

/// `request_*.json`: the translation, or the error.
fn run_request(file: &Value) -> (Map<String, Value>, Vec<String>) {
    let mut got = Map::new();
    let mut problems = Vec::new();
    match translate_request(&file["request"], &resolve) {
        Ok(t) => {
            if t.body["stream"] != json!(true) {
                problems.push("the upstream body is not streamed".to_string());
            }
            got.insert("expected".into(), t.body);
            got.insert(
                "meta".into(),
                json!({"stream": t.stream, "client_model": t.client_model,
                    "betas": t.betas, "include_usage": t.include_usage}),
            );
        }
        Err(e) => {
            got.insert(
                "error".into(),
                json!({"param": e.param, "message": e.message}),
            );
        }
    }
    (got, problems)
}

/// `stream_*.json`: the client events, and the non-streaming object for the same events.
fn run_stream(file: &Value) -> (Map<String, Value>, Vec<String>) {
    let req = &file["request"];
    let upstream = events(&file["events"]);
    let mut stream = ResponsesStream::new(ID.into(), CREATED, req);
    let mut out = stream.start();
    for ev in &upstream {
        out.extend(stream.on_event(ev));
    }
    match file.get("fail") {
        Some(f) => {
            out.extend(stream.fail(f[0].as_str().unwrap_or(""), f[1].as_str().unwrap_or("")))
        }
        None => out.extend(stream.finish()),
    }
    assert!(
        stream.finish().is_empty(),
        "finish after the end sends nothing"
    );
    let mut collector = Collector::new();
    for ev in &upstream {
        collector.push(ev);
    }
    let mut problems = invariants(&out);
    let completed = out.last().is_some_and(|(n, _)| n == "response.completed");
    let non_stream = if completed {
        let object = response_object(&collector.message(), ID, CREATED, req);
        if out.last().map(|(_, d)| &d["response"]) != Some(&object) {
            problems.push(format!(
                "stream and non-stream disagree\nstream:     {}\nnon-stream: {object}",
                out.last()
                    .map(|(_, d)| d["response"].to_string())
                    .unwrap_or_default()
            ));
        }
        object
    } else {
        Value::Null
    };
    let mut got = Map::new();
    got.insert("expected_events".into(), pairs(&out));
    got.insert("expected_response".into(), non_stream);
    (got, problems)
}

/// What every Responses stream must satisfy, whatever the golden file says.
fn invariants(out: &[(String, Value)]) -> Vec<String> {
    let mut problems = Vec::new();
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    if names.get(..2) != Some(&["response.created", "response.in_progress"][..]) {
        problems.push("the stream must open with created, in_progress".into());
    }
    let terminal = ["response.completed", "response.failed"];
    if !names.last().is_some_and(|n| terminal.contains(n))
        || names.iter().filter(|n| terminal.contains(n)).count() != 1
    {
        problems.push("exactly one terminal event, last".into());
    }
    let mut added = Vec::new();
    let mut done: BTreeMap<u64, Value> = BTreeMap::new();
    for (i, (name, data)) in out.iter().enumerate() {
        if data["sequence_number"] != json!(i) || data["type"] != json!(name) {
            problems.push(format!("event {i} has a wrong sequence_number or type"));
        }
        let at = data["output_index"].as_u64().unwrap_or(u64::MAX);
        if name == "response.output_item.added" {
            added.push(at);
        } else if name == "response.output_item.done"
            && done.insert(at, data["item"].clone()).is_some()
        {
            problems.push(format!("item {at} done twice"));
        }
    }
    if added != (0..added.len() as u64).collect::<Vec<_>>() {
        problems.push(format!("output_index not contiguous: {added:?}"));
    }
    let ids: BTreeSet<String> = done.values().map(|i| i["id"].to_string()).collect();
    if ids.len() != done.len() {
        problems.push("item ids are not distinct".into());
    }
    if let Some((_, last)) = out.last() {
        let output: Vec<Value> = done.values().cloned().collect();
        if last["response"]["output"] != json!(output) {
            problems.push("the final output is not the list of done items".into());
        }
        if last["type"] == "response.completed" && done.len() != added.len() {
            problems.push("an item was added but never done".into());
        }
    }
    problems
}

#[test]
fn golden_files() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut paths: Vec<_> = std::fs::read_dir(DIR)
        .expect("tests/golden/responses exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() > 20, "golden files missing");
    let mut failures = Vec::new();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("readable");
        let mut file: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let (got, problems) = if name.starts_with("request_") {
            run_request(&file)
        } else if name.starts_with("stream_") {
            run_stream(&file)
        } else {
            panic!("{name}: golden files start with request_ or stream_");
        };
        failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
        if update {
            for k in ["expected", "meta", "error"] {
                file.as_object_mut().unwrap().remove(k);
            }
            for (k, v) in got {
                file[k.as_str()] = v;
            }
            let pretty = serde_json::to_string_pretty(&file).unwrap() + "\n";
            std::fs::write(&path, pretty).expect("writable");
            continue;
        }
        for (k, v) in &got {
            if file.get(k) != Some(v) {
                failures.push(format!(
                    "{name}: `{k}` differs\nexpected: {}\nactual:   {v}",
                    file.get(k).map(Value::to_string).unwrap_or("(none)".into())
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn reasoning_round_trips_byte_for_byte() {
    let block = json!({"type": "thinking", "thinking": "a \"quoted\" é\n\u{2028}",
        "signature": "Ep4B+/=\\u0000sig"});
    let content = encode_reasoning(&block);
    assert!(content.starts_with(REASONING_PREFIX));
    assert_eq!(decode_reasoning(&content), Some(block));
    let redacted = json!({"type": "redacted_thinking", "data": "EmwKAhgBEgy"});
    assert_eq!(
        decode_reasoning(&encode_reasoning(&redacted)),
        Some(redacted)
    );
    assert_eq!(decode_reasoning("gAAAAABoFvD0-openai-content"), None);
    assert_eq!(
        decode_reasoning("claudegate:v1:e30="),
        None,
        "{{}} is no block"
    );
}

/// The loop Codex relies on: a response's output items, sent back as the next request's
/// input, reproduce the upstream blocks exactly.
#[test]
fn output_items_replay_as_the_upstream_blocks() {
    let req = json!({"model": "claude-sonnet-4-5", "input": "go", "tools": [
        {"type": "namespace", "name": "mcp__fs__", "tools": [{"type": "function", "name": "read"}]},
        {"type": "custom", "name": "apply_patch"}]});
    let ev = |name: &str, data: Value| Event {
        name: name.into(),
        data,
    };
    let thinking = "Tricky: \"quotes\", \\ backslash, é, \u{1F600}, \u{2028}";
    let events = vec![
        ev(
            "message_start",
            json!({"message": {"usage": {"input_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"index": 0, "delta": {"type": "thinking_delta", "thinking": thinking}}),
        ),
        ev(
            "content_block_delta",
            json!({"index": 0, "delta": {"type": "signature_delta", "signature": "Ep+/=\\\"sig"}}),
        ),
        ev("content_block_stop", json!({"index": 0})),
        ev(
            "content_block_start",
            json!({"index": 1, "content_block": {"type": "tool_use", "id": "toolu_01X", "name": "mcp__fs__read", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": \"ä.txt\"}"}}),
        ),
        ev("content_block_stop", json!({"index": 1})),
        ev(
            "content_block_start",
            json!({"index": 2, "content_block": {"type": "tool_use", "id": "toolu_02Y", "name": "apply_patch", "input": {}}}),
        ),
        ev(
            "content_block_delta",
            json!({"index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"input\": \"*** Begin Patch\\n\"}"}}),
        ),
        ev("content_block_stop", json!({"index": 2})),
        ev(
            "message_delta",
            json!({"delta": {"stop_reason": "tool_use"}}),
        ),
        ev("message_stop", json!({})),
    ];
    let mut stream = ResponsesStream::new(ID.into(), CREATED, &req);
    let mut collector = Collector::new();
    let mut out = stream.start();
    for e in &events {
        out.extend(stream.on_event(e));
        collector.push(e);
    }
    let output = out.last().unwrap().1["response"]["output"].clone();
    let mut input = vec![json!({"role": "user", "content": "go"})];
    input.extend(output.as_array().unwrap().iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "toolu_01X", "output": "x"}));
    input.push(json!({"type": "custom_tool_call_output", "call_id": "toolu_02Y", "output": "ok"}));
    let mut next = req.clone();
    next["input"] = json!(input);
    next["reasoning"] = json!({"effort": "low"});
    let t = translate_request(&next, &resolve).unwrap();
    assert_eq!(
        t.body["messages"][1]["content"],
        collector.message()["content"]
    );
    assert!(
        t.body["thinking"].is_object(),
        "a signed tool turn keeps thinking on"
    );
}

/// Found by fuzzing (`tests/fuzz`, target `responses_stream`): a second
/// `content_block_start` for an index still open replaced the open block, so the first call
/// was added but never done, and `response.completed` left it hanging.
#[test]
fn a_reopened_block_index_still_closes_its_item() {
    let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
    let mut out = s.start();
    let tool = |id: &str| Event {
        name: "content_block_start".into(),
        data: json!({"index": 0, "content_block":
            {"type": "tool_use", "id": id, "name": "f", "input": {}}}),
    };
    out.extend(s.on_event(&tool("toolu_A")));
    out.extend(s.on_event(&tool("toolu_B")));
    out.extend(s.on_event(&Event {
        name: "message_stop".into(),
        data: json!({}),
    }));
    assert_eq!(invariants(&out), Vec::<String>::new());
    let output = &out.last().unwrap().1["response"]["output"];
    assert_eq!(output[0]["call_id"], "toolu_A");
    assert_eq!(output[1]["call_id"], "toolu_B");
}

/// Found by fuzzing (`tests/fuzz`, target `responses_stream`): a second web search under
/// the id of one still waiting for its result replaced it, so the first search item was
/// added but never done.
#[test]
fn a_repeated_search_id_still_closes_the_first_search() {
    let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
    let mut out = s.start();
    for index in 0..2 {
        for (name, data) in [
            (
                "content_block_start",
                json!({"index": index, "content_block": {"type":
                "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
            ),
            ("content_block_stop", json!({"index": index})),
        ] {
            out.extend(s.on_event(&Event {
                name: name.into(),
                data,
            }));
        }
    }
    out.extend(s.finish());
    assert_eq!(invariants(&out), Vec::<String>::new());
}

/// Found by fuzzing (`tests/fuzz`, target `responses_stream`): a text or thinking delta
/// for the index of a tool call removed the call's block, so its item was never done.
#[test]
fn a_delta_of_the_wrong_kind_leaves_the_block_open() {
    for delta in [
        json!({"type": "text_delta", "text": "x"}),
        json!({"type": "thinking_delta", "thinking": "x"}),
    ] {
        let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
        let mut out = s.start();
        for (name, data) in [
            (
                "content_block_start",
                json!({"index": 0, "content_block":
                {"type": "tool_use", "id": "toolu_A", "name": "f", "input": {}}}),
            ),
            ("content_block_delta", json!({"index": 0, "delta": delta})),
            ("content_block_stop", json!({"index": 0})),
            ("message_stop", json!({})),
        ] {
            out.extend(s.on_event(&Event {
                name: name.into(),
                data,
            }));
        }
        assert_eq!(invariants(&out), Vec::<String>::new(), "{delta}");
        let output = &out.last().unwrap().1["response"]["output"];
        assert_eq!(output[0]["call_id"], "toolu_A");
    }
}

#[test]
fn events_after_the_end_are_ignored() {
    let mut s = ResponsesStream::new(ID.into(), CREATED, &json!({"model": "m"}));
    s.start();
    assert_eq!(s.fail("overloaded_error", "Overloaded").len(), 1);
    assert!(s.fail("overloaded_error", "again").is_empty());
    assert!(s.finish().is_empty());
    let ev = Event {
        name: "message_stop".into(),
        data: json!({}),
    };
    assert!(s.on_event(&ev).is_empty());
}
