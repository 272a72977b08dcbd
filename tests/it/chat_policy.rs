//! One parameter policy for `/v1/chat/completions`, whichever backend answers: the same
//! top-level parameters sent to the OAuth backend (against the mock upstream) and to the CLI
//! backend (against a fake `claude` that prints a canned stream-json answer) get the same
//! accept/refuse decision, except where the CLI backend lacks a capability; its refusal then
//! names the backend and the capability.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

/// What both backends must decide about one parameter value.
#[derive(Clone, Copy, Debug)]
enum Decision {
    /// 200 from both.
    Accept,
    /// 400 naming the parameter from both.
    Refuse,
    /// 200 from the OAuth backend; 400 from the CLI backend, naming the parameter, the
    /// backend and (in its message) this word for the capability it lacks.
    CliLacks(&'static str),
}

use Decision::*;

/// A fake `claude`: reads the prompt from stdin and prints one successful stream-json answer,
/// shaped like Claude Code 2.1.330's.
pub(crate) fn fake_claude(dir: &TempDir) -> String {
    let ev = |e: Value| json!({"type": "stream_event", "event": e, "session_id": "s"}).to_string();
    let lines = [
        json!({"type": "system", "subtype": "init", "cwd": "/tmp/x", "model": "claude-sonnet-4-6", "tools": []}).to_string(),
        ev(json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}})),
        ev(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ev(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}})),
        ev(json!({"type": "content_block_stop", "index": 0})),
        ev(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 2}})),
        ev(json!({"type": "message_stop"})),
        json!({"type": "result", "subtype": "success", "is_error": false, "api_error_status": null, "result": "ok", "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 2}}).to_string(),
    ];
    let answer = dir.path().join("answer.jsonl");
    std::fs::write(&answer, lines.join("\n") + "\n").unwrap();
    let bin = dir.path().join("claude");
    let script = format!("#!/bin/sh\ncat > /dev/null\ncat '{}'\n", answer.display());
    std::fs::write(&bin, script).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin.to_string_lossy().into_owned()
}

fn chat(gate: &Gate, key: &str, body: &Value) -> Resp {
    post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &body.to_string(),
    )
}

/// The parameter a 400 names, and its message; `None` for a 200.
fn outcome(r: &Resp) -> Option<(String, String)> {
    match r.status {
        200 => None,
        400 => {
            let e = r.json()["error"].clone();
            Some((
                e["param"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            ))
        }
        s => panic!("unexpected status {s}: {}", r.body),
    }
}

#[test]
fn both_backends_decide_the_same_about_each_chat_parameter() {
    let mock = MockUpstream::start();
    let (oauth, oauth_key) = logged_in(&mock.url(), json!({"limits": {"per_key_rpm": 0}}));
    let dir = TempDir::new();
    let home = TempDir::new();
    let (cli, cli_key) = Gate::start_with_key(json!({
        "backend": "claude-cli",
        "limits": {"per_key_rpm": 0},
        "cli": {"binary": fake_claude(&dir), "home": home.path().to_string_lossy(),
            "allowed_models": ["sonnet"], "timeout_ms": 20_000},
    }));

    let tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let cases: Vec<(&str, Value, Decision)> = vec![
        ("model", json!("sonnet"), Accept),
        ("stream", json!(false), Accept),
        ("stream_options", json!({"include_usage": true}), Accept),
        ("max_tokens", json!(100), Accept),
        ("max_tokens", json!(0), Refuse),
        ("max_completion_tokens", json!(100), Accept),
        ("max_completion_tokens", json!("lots"), Refuse),
        ("user", json!("u-1"), Accept),
        ("safety_identifier", json!("s-1"), Accept),
        ("seed", json!(7), Accept),
        ("store", json!(false), Accept),
        ("metadata", json!({"k": "v"}), Accept),
        ("service_tier", json!("auto"), Accept),
        ("prompt_cache_key", json!("k"), Accept),
        ("verbosity", json!("medium"), Accept),
        ("verbosity", json!("high"), Refuse),
        ("n", json!(1), Accept),
        ("n", json!(2), Refuse),
        ("logprobs", json!(false), Accept),
        ("logprobs", json!(true), Refuse),
        ("top_logprobs", json!(0), Accept),
        ("top_logprobs", json!(2), Refuse),
        ("logit_bias", json!({}), Accept),
        ("logit_bias", json!({"50256": -100}), Refuse),
        ("frequency_penalty", json!(0), Accept),
        ("frequency_penalty", json!(0.5), Refuse),
        ("presence_penalty", json!(0.0), Accept),
        ("presence_penalty", json!(1), Refuse),
        ("modalities", json!(["text"]), Accept),
        ("modalities", json!(["text", "audio"]), Refuse),
        ("audio", json!({"voice": "alloy", "format": "mp3"}), Refuse),
        (
            "prediction",
            json!({"type": "content", "content": "x"}),
            Refuse,
        ),
        ("web_search_options", json!({}), Refuse),
        ("functions", json!([{"name": "f"}]), Refuse),
        ("function_call", json!("auto"), Refuse),
        ("frobnicate", json!(1), Refuse),
        ("tools", json!([]), Accept),
        ("tools", tools, Accept),
        ("tool_choice", json!("none"), Accept),
        ("tool_choice", json!("auto"), Accept),
        ("tool_choice", json!("sometimes"), Refuse),
        ("parallel_tool_calls", json!(false), Accept),
        ("parallel_tool_calls", json!("no"), Refuse),
        ("stop", json!([]), Accept),
        ("stop", json!(["END"]), CliLacks("stop sequences")),
        ("stop", json!("END"), CliLacks("stop sequences")),
        ("temperature", json!(0.2), CliLacks("sampling")),
        ("top_p", json!(0.5), CliLacks("sampling")),
        ("top_k", json!(40), CliLacks("sampling")),
        ("response_format", json!({"type": "text"}), Accept),
        // JSON mode is an instruction in the system prompt, which the CLI takes too (as the
        // Responses door's `text.format: json_object` always was); a schema is not.
        ("response_format", json!({"type": "json_object"}), Accept),
        (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
            CliLacks("structured output"),
        ),
        ("response_format", json!({"type": "yaml"}), Refuse),
        // Honoured on both: the CLI takes `--thinking`/`--effort` (`cli::request`).
        ("reasoning_effort", json!("high"), Accept),
        ("reasoning_effort", json!("extreme"), Refuse),
    ];
    let mut wrong = Vec::new();
    for (param, value, decision) in cases {
        let mut body = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
        body[param] = value.clone();
        let o = outcome(&chat(&oauth, &oauth_key, &body));
        let c = outcome(&chat(&cli, &cli_key, &body));
        let names = |x: &Option<(String, String)>| {
            x.as_ref()
                .is_some_and(|(p, _)| p == param || p.starts_with(&format!("{param}.")))
        };
        let ok = match decision {
            Accept => o.is_none() && c.is_none(),
            Refuse => names(&o) && names(&c),
            CliLacks(what) => {
                o.is_none()
                    && names(&c)
                    && c.as_ref().is_some_and(|(_, m)| {
                        m.contains("claude-cli") && m.to_lowercase().contains(what)
                    })
            }
        };
        if !ok {
            wrong.push(format!(
                "{param}: {value} should be {decision:?}\n  oauth: {o:?}\n  cli:   {c:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
