//! `POST /v1/complete` on the oauth backend: the relay seed's shapes, against the mock upstream.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};

fn complete(gate: &Gate, key: &str, body: Value) -> Resp {
    post(
        &gate.url("/v1/complete"),
        &[("authorization", &format!("Bearer {key}"))],
        &body.to_string(),
    )
}

#[test]
fn text_and_json_answers_in_the_seed_shape() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events_with_usage(
            "claude-haiku-4-5-20251001",
            &["[\"red\",", "\"blue\"]"],
            12,
        )),
    );
    let r = complete(
        &gate,
        &key,
        json!({"system": "You are terse.", "prompt": "Name 2 colors as JSON.", "model": "haiku"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["text"], "[\"red\",\"blue\"]");
    assert_eq!(
        v["model"], "claude-haiku-4-5-20251001",
        "the id actually used upstream"
    );
    assert!(v["duration_ms"].is_u64());
    let up = mock.last_request().unwrap().json();
    assert_eq!(up["model"], "claude-haiku-4-5-20251001", "alias resolved");
    assert_eq!(up["stream"], true);
    assert!(up["system"].to_string().contains("You are terse."));
    assert_eq!(
        up["messages"],
        json!([{"role": "user", "content": "Name 2 colors as JSON."}])
    );

    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events_with_usage("claude-sonnet-4-6", &["ok"], 12)),
    );
    let r = complete(
        &gate,
        &key,
        json!({"prompt": "hi", "output_format": "json"}),
    );
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"], "ok");
    assert_eq!(v["model"], "claude-sonnet-4-6", "default model");
    assert_eq!(v["usage"]["input_tokens"], 12);
    assert!(v["usage"]["output_tokens"].is_u64());
    assert!(v.get("text").is_none());
}

#[test]
fn bad_requests_and_upstream_errors_are_ok_false() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    complete(&gate, &key, json!({"system": "x"})).assert_relay_error(400);
    complete(&gate, &key, json!({"prompt": "  "})).assert_relay_error(400);
    let v = complete(&gate, &key, json!({"prompt": "hi", "output_format": "xml"}))
        .assert_relay_error(400);
    assert!(v["error"].as_str().unwrap().contains("output_format"));
    let v =
        complete(&gate, &key, json!({"prompt": "hi", "temperature": 1})).assert_relay_error(400);
    assert!(v["error"].as_str().unwrap().contains("temperature"));
    assert_eq!(mock.count(), 0);

    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "usage limit").retry_after(11),
    );
    let r = complete(&gate, &key, json!({"prompt": "hi"}));
    let v = r.assert_relay_error(429);
    assert!(v["error"].as_str().unwrap().contains("usage limit"));
    assert_eq!(r.header("retry-after"), Some("11"));
    // Cooling down: answered at once, same shape.
    let r = complete(&gate, &key, json!({"prompt": "hi"}));
    let v = r.assert_relay_error(429);
    assert!(v["error"].as_str().unwrap().contains("cooling down"));
}
