//! The OpenAI front doors through the real binary, against the mock upstream: what the
//! upstream receives, streaming and collected answers, and error mapping.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};

/// POSTs and returns the status and the raw body lines (for SSE).
fn sse_lines(url: &str, key: &str, body: &Value) -> (u16, Vec<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let resp = agent
        .post(url)
        .header("authorization", &format!("Bearer {key}"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .expect("request");
    let status = resp.status().as_u16();
    let lines = BufReader::new(resp.into_body().into_reader())
        .lines()
        .map_while(Result::ok)
        .collect();
    (status, lines)
}

fn data_json(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn usage_events(model: &str) -> Vec<SseEvent> {
    let mut events = sse_text_events(model, &["Hi", " there"]);
    // Give the stream cache numbers to map: input 10, cache read 30, cache creation 5, output 7.
    events[0] = SseEvent::new(
        "message_start",
        json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":model,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":30,"cache_creation_input_tokens":5,"output_tokens":1}}}).to_string(),
    );
    let last_delta = events
        .iter()
        .position(|e| e.event == "message_delta")
        .unwrap();
    events[last_delta] = SseEvent::new(
        "message_delta",
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}).to_string(),
    );
    events
}

#[test]
fn chat_request_is_translated_and_always_streamed_upstream() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &json!({"model": "sonnet", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]}).to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sonnet", "the client's model name is echoed");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        DEFAULT_TEXT_CHUNKS.concat()
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let up = mock.last_request().unwrap();
    assert_eq!(up.path_only(), "/v1/messages");
    let body = up.json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "claude-sonnet-4-6", "alias resolved");
    assert!(body["system"].to_string().contains("Be brief."));
    assert_eq!(body["messages"][0]["role"], "user");
    // Prompt caching: the system prompt and the latest user turn are marked (two markers).
    let system = body["system"].as_array().unwrap();
    assert_eq!(system.last().unwrap()["cache_control"]["type"], "ephemeral");
    assert_eq!(
        body["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    assert_eq!(body.to_string().matches("cache_control").count(), 2);
    assert_eq!(
        up.header("authorization"),
        Some("Bearer sk-ant-oat01-stored")
    );
    assert!(up
        .header("anthropic-beta")
        .unwrap()
        .contains("oauth-2025-04-20"));
}

#[test]
fn chat_streaming_with_usage_matches_the_collected_numbers() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let req = json!({"model": "claude-sonnet-4-6", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]});
    mock.enqueue(
        "/v1/messages",
        Reply::sse(usage_events("claude-sonnet-4-6")),
    );
    let (status, lines) = sse_lines(&gate.url("/v1/chat/completions"), &key, &req);
    assert_eq!(status, 200);
    assert_eq!(
        lines
            .iter()
            .rfind(|l| l.starts_with("data: "))
            .map(String::as_str),
        Some("data: [DONE]")
    );
    let chunks = data_json(&lines);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hi there");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let streamed = usage_chunk["usage"].clone();
    assert_eq!(streamed["prompt_tokens"], 45);
    assert_eq!(streamed["prompt_tokens_details"]["cached_tokens"], 30);
    assert_eq!(streamed["completion_tokens"], 7);
    // The same answer collected gives the same numbers.
    mock.enqueue(
        "/v1/messages",
        Reply::sse(usage_events("claude-sonnet-4-6")),
    );
    let mut plain = req.clone();
    plain["stream"] = json!(false);
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &plain.to_string(),
    );
    let collected = r.json()["usage"].clone();
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(collected[k], streamed[k], "{k}");
    }
    assert_eq!(collected["prompt_tokens_details"]["cached_tokens"], 30);
}

#[test]
fn a_mid_stream_error_is_an_error_object_not_a_clean_done() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let mut events = sse_text_events("m", &["par"]);
    events.truncate(4);
    events.push(sse_error_event("overloaded_error", "Overloaded"));
    mock.enqueue("/v1/messages", Reply::sse(events));
    let req =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (_, lines) = sse_lines(&gate.url("/v1/chat/completions"), &key, &req);
    assert!(!lines.iter().any(|l| l == "data: [DONE]"), "{lines:?}");
    let last = data_json(&lines).pop().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"),
        "{last}"
    );

    // The Responses API ends with response.failed.
    let mut events = sse_text_events("m", &["par"]);
    events.truncate(4);
    mock.enqueue("/v1/messages", Reply::reset_mid_stream(events, 4));
    let req = json!({"model": "m", "stream": true, "input": "hi"});
    let (_, lines) = sse_lines(&gate.url("/v1/responses"), &key, &req);
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.failed"), "{lines:?}");
}

#[test]
fn errors_before_the_first_byte_keep_status_and_message_in_openai_shape() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(400, "invalid_request_error", "max_tokens: too large"),
    );
    let auth = format!("Bearer {key}");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &auth)],
        &body,
    );
    let v = r.assert_openai_error(400);
    assert_eq!(v["error"]["message"], "max_tokens: too large");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "slow down").retry_after(9),
    );
    let r = post(
        &gate.url("/v1/responses"),
        &[("authorization", &auth)],
        &json!({"model": "m", "input": "hi"}).to_string(),
    );
    r.assert_openai_error(429);
    assert_eq!(r.header("retry-after"), Some("9"));
    // Now cooling down: answered locally, OpenAI-shaped, with Retry-After.
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &auth)],
        &body,
    );
    let v = r.assert_openai_error(429);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cooling down"));
    assert!(r.header("retry-after").is_some());
}

#[test]
fn parameters_that_cannot_be_honoured_are_refused_by_name() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let auth = format!("Bearer {key}");
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &auth)],
        &json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
    );
    let v = r.assert_openai_error(400);
    assert_eq!(v["error"]["param"], "n");
    let r = post(
        &gate.url("/v1/responses"),
        &[("authorization", &auth)],
        &json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}).to_string(),
    );
    let v = r.assert_openai_error(400);
    assert_eq!(v["error"]["param"], "previous_response_id");
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &auth)],
        "{bad json",
    );
    r.assert_openai_error(400);
    assert_eq!(mock.count(), 0, "nothing refused reaches the upstream");
}

#[test]
fn responses_collected_and_streamed_agree() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let auth = format!("Bearer {key}");
    mock.enqueue("/v1/messages", Reply::sse(usage_events("m")));
    let r = post(
        &gate.url("/v1/responses"),
        &[("authorization", &auth)],
        &json!({"model": "m", "input": "hi", "instructions": "Be brief."}).to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let collected = r.json();
    assert_eq!(collected["object"], "response");
    assert_eq!(collected["status"], "completed");
    assert_eq!(collected["output"][0]["type"], "message");
    assert_eq!(collected["output"][0]["content"][0]["text"], "Hi there");
    assert_eq!(collected["usage"]["input_tokens"], 45);
    assert_eq!(
        collected["usage"]["input_tokens_details"]["cached_tokens"],
        30
    );
    let up = mock.last_request().unwrap().json();
    assert!(
        up["messages"][0]["content"].to_string().contains("hi"),
        "{up}"
    );

    mock.enqueue("/v1/messages", Reply::sse(usage_events("m")));
    let (_, lines) = sse_lines(
        &gate.url("/v1/responses"),
        &key,
        &json!({"model": "m", "input": "hi", "stream": true}),
    );
    let datas = data_json(&lines);
    let done = datas
        .iter()
        .find(|d| d["type"] == "response.completed")
        .expect("response.completed");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "Hi there"
    );
    assert_eq!(done["response"]["usage"]["input_tokens"], 45);
    let seq: Vec<u64> = datas
        .iter()
        .filter_map(|d| d["sequence_number"].as_u64())
        .collect();
    assert_eq!(
        seq,
        (0..seq.len() as u64).collect::<Vec<_>>(),
        "sequence numbers"
    );
}
