//! One thinking plan for both OpenAI doors, through the real binary and the mock upstream:
//! every model family × every reasoning effort goes in through `/v1/chat/completions`
//! (`reasoning_effort`) and `/v1/responses` (`reasoning.effort`), and the upstream must receive
//! the same `thinking`, `output_config` and `max_tokens` from both, equal to the table below
//! (written out by hand, so a wrong shared plan fails too).

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};

/// How a model takes thinking, as the documented table says.
#[derive(Clone, Copy, Debug)]
enum Class {
    /// `thinking: {type: enabled, budget_tokens}`, no effort.
    Budget,
    /// `thinking: {type: adaptive}` + `output_config.effort`; `xhigh` is accepted.
    AdaptiveXhigh,
    /// Adaptive, but `xhigh` falls back to `high`.
    Adaptive,
}

/// Every family the gate must tell apart, by the id the upstream receives.
const MODELS: &[(&str, Class)] = &[
    ("claude-3-7-sonnet-20250219", Class::Budget),
    ("claude-sonnet-4-5", Class::Budget),
    ("claude-haiku-4-5", Class::Budget),
    ("claude-opus-4-5", Class::Budget),
    ("claude-opus-4-6", Class::Adaptive),
    ("claude-sonnet-4-6", Class::Adaptive),
    ("claude-sonnet-4-6[1m]", Class::Adaptive),
    ("claude-opus-4-7", Class::AdaptiveXhigh),
    ("claude-opus-4-8", Class::AdaptiveXhigh),
    ("claude-mythos-preview", Class::Adaptive),
    ("claude-mythos-1", Class::Adaptive),
    ("claude-sonnet-5", Class::AdaptiveXhigh),
    ("claude-opus-5", Class::AdaptiveXhigh),
    ("claude-fable-5-1", Class::AdaptiveXhigh),
    ("claude-haiku-5-5", Class::AdaptiveXhigh),
    ("my-own-model", Class::Budget),
];

/// effort → (budget on budget models, effort on adaptive models with xhigh, without xhigh,
/// default `max_tokens`). `None` budget: no thinking at all.
const EFFORTS: &[(&str, Option<u64>, &str, &str, u64)] = &[
    ("none", None, "", "", 8192),
    ("minimal", Some(1024), "low", "low", 9216),
    ("low", Some(2048), "low", "low", 10240),
    ("medium", Some(8192), "medium", "medium", 16384),
    ("high", Some(16384), "high", "high", 24576),
    ("xhigh", Some(24576), "xhigh", "high", 32768),
    ("max", Some(32000), "max", "max", 40192),
];

/// What the upstream received that the plan decides.
#[derive(Debug, PartialEq)]
struct Sent {
    thinking: Value,
    output_config: Value,
    max_tokens: Value,
    effort_beta: bool,
}

fn gate() -> (MockUpstream, Gate, String) {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"limits": {"per_key_rpm": 0}}));
    (mock, gate, key)
}

/// Sends `body` to `path` and returns what the upstream received.
fn sent(mock: &MockUpstream, gate: &Gate, key: &str, path: &str, body: &Value) -> Sent {
    mock.clear();
    let r = post(
        &gate.url(path),
        &[("authorization", &format!("Bearer {key}"))],
        &body.to_string(),
    );
    if r.status != 200 {
        // Reported as a thinking nobody wants, so the table test lists every wrong cell.
        return Sent {
            thinking: json!(format!("HTTP {}: {}", r.status, r.body)),
            output_config: Value::Null,
            max_tokens: Value::Null,
            effort_beta: false,
        };
    }
    let up = mock.last_request().expect("the upstream was called");
    let b = up.json();
    Sent {
        thinking: b.get("thinking").cloned().unwrap_or(Value::Null),
        output_config: b.get("output_config").cloned().unwrap_or(Value::Null),
        max_tokens: b["max_tokens"].clone(),
        effort_beta: up
            .header("anthropic-beta")
            .is_some_and(|h| h.contains("effort-2025-11-24")),
    }
}

/// A chat request and the equivalent Responses request. `extra_chat`/`extra_responses` are
/// merged in (e.g. a client max, tools).
fn both(model: &str, effort: &str, extra_chat: Value, extra_responses: Value) -> (Value, Value) {
    let mut chat = json!({"model": model, "reasoning_effort": effort, "messages": [{"role": "user", "content": "hi"}]});
    let mut responses = json!({"model": model, "reasoning": {"effort": effort}, "input": "hi"});
    merge(&mut chat, &extra_chat);
    merge(&mut responses, &extra_responses);
    (chat, responses)
}

/// Sends the pair and checks both doors agree; returns what they sent.
fn agreed(mock: &MockUpstream, gate: &Gate, key: &str, pair: (Value, Value)) -> Sent {
    let chat = sent(mock, gate, key, "/v1/chat/completions", &pair.0);
    let responses = sent(mock, gate, key, "/v1/responses", &pair.1);
    assert_eq!(
        chat, responses,
        "the doors disagree on {} / {}",
        pair.0, pair.1
    );
    chat
}

fn budget(n: u64) -> Value {
    json!({"type": "enabled", "budget_tokens": n})
}

fn adaptive(level: &str) -> (Value, Value) {
    (json!({"type": "adaptive"}), json!({"effort": level}))
}

#[test]
fn every_family_and_effort_gets_the_documented_plan_through_both_doors() {
    let (mock, gate, key) = gate();
    // Each door is checked against the table, so both agreeing follows.
    let mut wrong = Vec::new();
    for (model, class) in MODELS {
        for (effort, nominal, with_xhigh, without_xhigh, max_tokens) in EFFORTS {
            let (chat, responses) = both(model, effort, json!({}), json!({}));
            let from_chat = sent(&mock, &gate, &key, "/v1/chat/completions", &chat);
            let from_responses = sent(&mock, &gate, &key, "/v1/responses", &responses);
            let (thinking, output_config) = match (class, nominal) {
                (_, None) => (Value::Null, Value::Null),
                (Class::Budget, Some(n)) => (budget(*n), Value::Null),
                (Class::AdaptiveXhigh, Some(_)) => adaptive(with_xhigh),
                (Class::Adaptive, Some(_)) => adaptive(without_xhigh),
            };
            let want = Sent {
                effort_beta: !output_config.is_null(),
                thinking,
                output_config,
                max_tokens: json!(max_tokens),
            };
            for (door, got) in [("chat", from_chat), ("responses", from_responses)] {
                if got != want {
                    wrong.push(format!(
                        "{model} × {effort} via {door}:\n  got  {got:?}\n  want {want:?}"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// A client limit caps thinking: budget = min(nominal, limit − 1024), none below 1024; the
/// limit itself is sent unchanged.
#[test]
fn a_client_limit_clamps_the_budget_the_same_way_on_both_doors() {
    let (mock, gate, key) = gate();
    for (model, effort, limit, thinking, output_config) in [
        ("claude-haiku-4-5", "high", 4000, budget(2976), Value::Null),
        ("claude-haiku-4-5", "low", 4000, budget(2048), Value::Null),
        (
            "claude-haiku-4-5",
            "minimal",
            2048,
            budget(1024),
            Value::Null,
        ),
        ("claude-haiku-4-5", "medium", 2047, Value::Null, Value::Null),
        ("claude-haiku-4-5", "medium", 500, Value::Null, Value::Null),
        (
            "claude-sonnet-4-6",
            "high",
            500,
            json!({"type": "adaptive"}),
            json!({"effort": "high"}),
        ),
    ] {
        let pair = both(
            model,
            effort,
            json!({"max_completion_tokens": limit}),
            json!({"max_output_tokens": limit}),
        );
        let got = agreed(&mock, &gate, &key, pair);
        let want = Sent {
            effort_beta: !output_config.is_null(),
            thinking,
            output_config,
            max_tokens: json!(limit),
        };
        assert_eq!(got, want, "{model} × {effort} with a limit of {limit}");
    }
}

/// A forced tool choice drops thinking everywhere (adaptive models keep their effort); a last
/// assistant turn that calls a tool without a signed thinking block drops it on budget models
/// only. The default `max_tokens` follows the effort asked for either way.
#[test]
fn thinking_is_dropped_where_anthropic_would_refuse_it_on_both_doors() {
    let (mock, gate, key) = gate();
    let chat_tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let responses_tools = json!([{"type": "function", "name": "lookup"}]);
    let forced = (
        json!({"tools": chat_tools, "tool_choice": "required"}),
        json!({"tools": responses_tools, "tool_choice": "required"}),
    );
    let continued = (
        json!({"tools": chat_tools, "messages": [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "tool_calls": [{"id": "toolu_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "found"}]}),
        json!({"tools": responses_tools, "input": [
            {"role": "user", "content": "look it up"},
            {"type": "function_call", "call_id": "toolu_1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "found"}]}),
    );
    let cases = [
        ("claude-haiku-4-5", &forced, Value::Null, Value::Null),
        (
            "claude-sonnet-4-6",
            &forced,
            Value::Null,
            json!({"effort": "high"}),
        ),
        ("claude-haiku-4-5", &continued, Value::Null, Value::Null),
        (
            "claude-sonnet-4-6",
            &continued,
            json!({"type": "adaptive"}),
            json!({"effort": "high"}),
        ),
    ];
    for (model, (chat, responses), thinking, output_config) in cases {
        let pair = both(model, "high", chat.clone(), responses.clone());
        let got = agreed(&mock, &gate, &key, pair);
        let want = Sent {
            effort_beta: !output_config.is_null(),
            thinking,
            output_config,
            max_tokens: json!(24576),
        };
        assert_eq!(got, want, "{model} with {chat}");
    }
}
