//! Golden files under `tests/golden/chat/`:
//! - `request_*.json`: `{"request", "expected", "expected_betas"?, "expected_stream"?,
//!   "expected_include_usage"?}` or `{"request", "error": {"param"}}`;
//! - `stream_*.json`: `{"include_usage", "events": [[name, data], …], "expected_chunks",
//!   "expected_completion"}`. Chunks are written without their envelope (`id`, `object`,
//!   `created`, `model`), which the runner checks on every chunk. An `error` event is
//!   passed to `fail`, whose object ends the expected chunks; `expected_completion` is then
//!   `null` (the non-streaming path answers with an error instead).
//!
//! `UPDATE_GOLDEN=1` rewrites the expected parts from the code's output: review every diff.

use super::response::finish_reason;
use super::*;
use crate::anthropic::collector::Collector;
use crate::anthropic::event::Event;
use serde_json::{json, Value};
use std::path::Path;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/chat");
const ID: &str = "chatcmpl-test";
const CREATED: u64 = 1_700_000_000;
const MODEL: &str = "client-model";

fn resolve(name: &str) -> String {
    let c = crate::anthropic::catalogue::Catalogue::new(crate::config::Config::default().models, 0);
    c.resolve(name).to_string()
}

fn update() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn write(path: &Path, v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap() + "\n";
    std::fs::write(path, text).unwrap();
}

#[test]
fn golden_files() {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .expect("tests/golden/chat")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "golden cases missing");
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = if name.starts_with("request_") {
            run_request(path, case)
        } else if name.starts_with("stream_") {
            run_stream(path, case)
        } else {
            Err("unknown golden file kind".to_string())
        };
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

fn diff(what: &str, got: &Value, want: &Value) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} differs\n got: {}\nwant: {}",
            serde_json::to_string(got).unwrap(),
            serde_json::to_string(want).unwrap()
        ))
    }
}

fn run_request(path: &Path, mut case: Value) -> Result<(), String> {
    let got = translate_request(&case["request"], &resolve);
    if let Some(want) = case.get("error") {
        return match got {
            Err(e) => diff("error param", &json!(e.param), &want["param"]),
            Ok(t) => Err(format!("expected an error, got {}", t.body)),
        };
    }
    let t = got.map_err(|e| format!("unexpected error {e:?}"))?;
    let client_model = case["request"]["model"].as_str().unwrap_or("").to_string();
    if t.client_model != client_model {
        return Err(format!("client_model {}", t.client_model));
    }
    if t.body["stream"] != json!(true) {
        return Err("upstream body must stream".into());
    }
    let betas = json!(t.betas);
    let stream = json!(t.stream);
    let include_usage = json!(t.include_usage);
    if update() {
        case["expected"] = t.body;
        case["expected_betas"] = betas;
        case["expected_stream"] = stream;
        case["expected_include_usage"] = include_usage;
        write(path, &case);
        return Ok(());
    }
    diff("body", &t.body, &case["expected"])?;
    diff(
        "betas",
        &betas,
        case.get("expected_betas").unwrap_or(&json!([])),
    )?;
    diff(
        "stream",
        &stream,
        case.get("expected_stream").unwrap_or(&json!(false)),
    )?;
    diff(
        "include_usage",
        &include_usage,
        case.get("expected_include_usage").unwrap_or(&json!(false)),
    )
}

fn run_stream(path: &Path, mut case: Value) -> Result<(), String> {
    let include_usage = case["include_usage"].as_bool().unwrap_or(false);
    let mut s = ChatStream::new(ID.into(), CREATED, MODEL.into(), include_usage);
    let mut collector = Collector::new();
    let mut chunks = Vec::new();
    let mut failed = false;
    for e in case["events"].as_array().ok_or("no events")? {
        let ev = Event {
            name: e[0].as_str().unwrap().to_string(),
            data: e[1].clone(),
        };
        collector.push(&ev);
        if ev.name == "error" {
            let err = &ev.data["error"];
            chunks.push(s.fail(
                err["type"].as_str().unwrap(),
                err["message"].as_str().unwrap(),
            ));
            failed = true;
            break;
        }
        chunks.extend(s.on_event(&ev));
    }
    if !failed {
        chunks.extend(s.finish());
    }
    assert!(s.finish().is_empty(), "finish must be idempotent");

    // The envelope, checked on every chunk here rather than in every file.
    let mut bare = Vec::new();
    for c in &chunks {
        if c.get("error").is_some() {
            bare.push(c.clone());
            continue;
        }
        if c["id"] != ID
            || c["object"] != "chat.completion.chunk"
            || c["created"] != CREATED
            || c["model"] != MODEL
        {
            return Err(format!("bad chunk envelope {c}"));
        }
        if c["choices"]
            .as_array()
            .is_some_and(|a| a.iter().any(|ch| ch["index"] != 0))
        {
            return Err(format!("choice index must be 0: {c}"));
        }
        let mut c = c.as_object().unwrap().clone();
        for k in ["id", "object", "created", "model"] {
            c.remove(k);
        }
        bare.push(Value::Object(c));
    }
    let completion = if failed {
        Value::Null
    } else {
        completion(&collector.message(), ID, CREATED, MODEL)
    };
    if !failed {
        agree(&chunks, &completion)?;
    }
    if update() {
        case["expected_chunks"] = Value::Array(bare);
        case["expected_completion"] = completion;
        write(path, &case);
        return Ok(());
    }
    diff("chunks", &Value::Array(bare), &case["expected_chunks"])?;
    diff("completion", &completion, &case["expected_completion"])
}

/// The streamed chunks, folded up, say what the non-streaming completion says.
fn agree(chunks: &[Value], completion: &Value) -> Result<(), String> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<(Value, Value, String)> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    for c in chunks {
        if c["choices"].as_array().is_some_and(Vec::is_empty) {
            usage = c["usage"].clone();
        }
        for ch in c["choices"].as_array().into_iter().flatten() {
            let d = &ch["delta"];
            content += d["content"].as_str().unwrap_or("");
            reasoning += d["reasoning_content"].as_str().unwrap_or("");
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if tc.get("id").is_some() {
                    if i != calls.len() {
                        return Err(format!("tool call index {i} is not contiguous"));
                    }
                    calls.push((
                        tc["id"].clone(),
                        tc["function"]["name"].clone(),
                        String::new(),
                    ));
                }
                let call = calls.get_mut(i).ok_or("arguments before the call")?;
                call.2 += tc["function"]["arguments"].as_str().unwrap_or("");
            }
            if !ch["finish_reason"].is_null() {
                finish = ch["finish_reason"].clone();
            }
        }
    }
    let m = &completion["choices"][0]["message"];
    diff(
        "content",
        &json!(content),
        &json!(m["content"].as_str().unwrap_or("")),
    )?;
    diff(
        "reasoning",
        &json!(reasoning),
        &json!(m["reasoning_content"].as_str().unwrap_or("")),
    )?;
    let want_calls: Vec<Value> = m["tool_calls"].as_array().cloned().unwrap_or_default();
    if calls.len() != want_calls.len() {
        return Err("tool call count differs".into());
    }
    for ((id, name, args), want) in calls.iter().zip(&want_calls) {
        diff("tool call id", id, &want["id"])?;
        diff("tool call name", name, &want["function"]["name"])?;
        let parsed: Value =
            serde_json::from_str(args).map_err(|e| format!("streamed arguments {args:?}: {e}"))?;
        let want_args: Value =
            serde_json::from_str(want["function"]["arguments"].as_str().unwrap()).unwrap();
        diff("tool call arguments", &parsed, &want_args)?;
    }
    diff(
        "finish_reason",
        &finish,
        &completion["choices"][0]["finish_reason"],
    )?;
    if !usage.is_null() {
        diff("usage", &usage, &completion["usage"])?;
    }
    Ok(())
}

#[test]
fn finish_reasons() {
    for (a, o) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(finish_reason(Some(a)), o);
    }
}
