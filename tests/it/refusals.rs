//! The subscription's refusals that are not rate limits (issue 13, item 4): a third-party app's
//! request charged to extra usage, the 1M-token context window without extra usage, an
//! organisation that does not allow OAuth, and a disabled organisation. Each comes from the mock
//! upstream worded as Anthropic words it (`common::mock_upstream`, with the trackers quoted), and
//! must reach the client of every door (Anthropic `/v1/messages`, OpenAI chat, the relay's
//! `/v1/complete`) with the upstream's status, Anthropic's text and one sentence on what to do;
//! must never cool the account down (the next request goes upstream); and is counted under its
//! own class in `/admin/accounts` (`failure_classes`) and `/metrics`
//! (`claudegate_account_failures_total{class}`). The two organisation refusals set the account
//! state `blocked`, which a success or a new login clears.

use std::time::Duration;

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use crate::common::run::eventually;
use serde_json::json;

const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

/// One refusal: how the mock sends it and what the client and the account must show.
struct Case {
    class: &'static str,
    reply: fn() -> Reply,
    status: u16,
    error_type: &'static str,
    text: &'static str,
    /// A piece of claudegate's advice sentence that only this class's advice has.
    advice: &'static str,
    /// Whether the refusal sets the state `blocked`.
    blocks: bool,
}

const CASES: [Case; 4] = [
    Case {
        class: "third_party_extra_usage",
        reply: Reply::third_party_extra_usage,
        status: 400,
        error_type: "invalid_request_error",
        text: THIRD_PARTY_MESSAGE,
        advice: "cloaking.strict",
        blocks: false,
    },
    Case {
        class: "long_context_extra_usage",
        reply: Reply::long_context_extra_usage,
        status: 429,
        error_type: "rate_limit_error",
        text: LONG_CONTEXT_MESSAGE,
        advice: "context-1m-2025-08-07",
        blocks: false,
    },
    Case {
        class: "oauth_not_allowed",
        reply: Reply::oauth_not_allowed,
        status: 403,
        error_type: "permission_error",
        text: OAUTH_NOT_ALLOWED_MESSAGE,
        advice: "allow Claude subscription access",
        blocks: true,
    },
    Case {
        class: "organization_disabled",
        reply: Reply::organization_disabled,
        status: 400,
        error_type: "invalid_request_error",
        text: ORGANIZATION_DISABLED_MESSAGE,
        advice: "with another account",
        blocks: true,
    },
];

/// The message keeps Anthropic's text whole, first, and adds one sentence with the advice.
fn assert_explained(case: &Case, door: &str, message: &str) {
    let Some(added) = message.strip_prefix(case.text) else {
        panic!(
            "{}/{door}: Anthropic's text is not kept first: {message:?}",
            case.class
        );
    };
    assert!(
        added.contains(case.advice),
        "{}/{door}: no advice in {message:?}",
        case.class
    );
    assert!(
        added.starts_with(' ') && added.ends_with('.'),
        "{}/{door}: the advice is not a sentence after the text: {added:?}",
        case.class
    );
}

/// The value of the metrics sample `line_start` (the name and its labels), if present.
fn metric(gate: &Gate, key: &str, line_start: &str) -> Option<f64> {
    let page = get(&gate.url("/metrics"), &[("x-api-key", key)]);
    assert_eq!(page.status, 200, "{page:?}");
    page.body
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

/// After a refusal: the state is `blocked` or `ok` (never `cooldown`), and the next request
/// goes upstream and succeeds, which leaves the account `ok`.
fn assert_not_benched(gate: &Gate, key: &str, mock: &MockUpstream, case: &Case, door: &str) {
    let a = accounts(gate, key);
    let want = if case.blocks { "blocked" } else { "ok" };
    assert_eq!(a["state"], want, "{}/{door}: {a}", case.class);
    assert!(a["cooldown_until"].is_null(), "{}/{door}: {a}", case.class);
    let before = mock.count();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", key)], MESSAGE);
    assert_eq!(
        r.status, 200,
        "{}/{door}: the next request: {r:?}",
        case.class
    );
    assert_eq!(
        mock.count(),
        before + 1,
        "{}/{door}: went upstream",
        case.class
    );
    assert_eq!(accounts(gate, key)["state"], "ok", "{}/{door}", case.class);
}

/// Every refusal through each door: the upstream's status, Anthropic's text plus the advice in
/// the door's own error shape, no cooldown (the following request reaches the upstream), and
/// the class counted once per door in `/admin/accounts` and `/metrics`.
#[test]
fn each_refusal_reaches_every_door_explained_and_never_benches_the_account() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({}));
    let bearer = format!("Bearer {key}");
    let chat = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
    for case in &CASES {
        mock.enqueue("/v1/messages", (case.reply)());
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
        let v = r.assert_anthropic_error(case.status, case.error_type);
        assert_explained(case, "messages", v["error"]["message"].as_str().unwrap());
        assert!(
            v["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("req_")),
            "{}: the upstream's request_id is kept: {v}",
            case.class
        );
        assert_not_benched(&gate, &key, &mock, case, "messages");

        mock.enqueue("/v1/messages", (case.reply)());
        let r = post(
            &gate.url("/v1/chat/completions"),
            &[("authorization", &bearer)],
            &chat.to_string(),
        );
        let v = r.assert_openai_error(case.status);
        assert_eq!(v["error"]["code"], case.error_type, "{v}");
        assert_explained(case, "chat", v["error"]["message"].as_str().unwrap());
        assert_not_benched(&gate, &key, &mock, case, "chat");

        mock.enqueue("/v1/messages", (case.reply)());
        let r = post(
            &gate.url("/v1/complete"),
            &[("x-api-key", &key)],
            r#"{"prompt":"hi"}"#,
        );
        let v = r.assert_relay_error(case.status);
        assert_explained(case, "complete", v["error"].as_str().unwrap());
        assert_not_benched(&gate, &key, &mock, case, "complete");

        let a = accounts(&gate, &key);
        assert_eq!(a["failure_classes"][case.class], 3, "{}: {a}", case.class);
        let sample = format!(
            "claudegate_account_failures_total{{class=\"{}\"}}",
            case.class
        );
        assert_eq!(metric(&gate, &key, &sample), Some(3.0), "{sample}");
    }
    // None of them was booked as a rate limit, a 403 or a client's own bad request.
    let a = accounts(&gate, &key);
    for class in ["rate_limit", "forbidden", "request"] {
        assert_eq!(a["failure_classes"][class], 0, "{class}: {a}");
        let sample = format!("claudegate_account_failures_total{{class=\"{class}\"}}");
        assert_eq!(metric(&gate, &key, &sample), Some(0.0), "{sample}");
    }
    assert_eq!(a["failures"]["rate_limit"], 0, "{a}");
    gate.assert_healthy();
}

/// A 200 stream (under a `retry-after`) that starts, then ends in the long-context refusal as
/// an `error` event.
fn long_context_in_stream() -> Reply {
    let mut events = sse_text_events(DEFAULT_MODEL, &["x"]);
    events.truncate(1);
    events.push(sse_error_event("rate_limit_error", LONG_CONTEXT_MESSAGE));
    Reply::sse(events).retry_after(30)
}

/// The long-context refusal as an `error` event inside a 200 stream (under a `retry-after`):
/// the collected chat answer and `/v1/complete` carry the advice with the 429 a
/// `rate_limit_error` answers with, and the account is not cooled down.
#[test]
fn a_refusal_inside_a_stream_is_explained_and_never_benches_the_account() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let case = &CASES[1];
    mock.enqueue("/v1/messages", long_context_in_stream());
    let chat = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &chat.to_string(),
    );
    let v = r.assert_openai_error(429);
    assert_explained(case, "chat stream", v["error"]["message"].as_str().unwrap());
    assert_not_benched(&gate, &key, &mock, case, "chat stream");

    mock.enqueue("/v1/messages", long_context_in_stream());
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        r#"{"prompt":"hi"}"#,
    );
    let v = r.assert_relay_error(429);
    assert_explained(case, "complete stream", v["error"].as_str().unwrap());
    assert_not_benched(&gate, &key, &mock, case, "complete stream");
    assert_eq!(accounts(&gate, &key)["failure_classes"][case.class], 2);
}

/// The 403 "OAuth authentication is currently not allowed for this organization." sets the
/// state `blocked` (not a cooldown that repeats forever): requests still go upstream and get the
/// explained refusal, `/metrics` shows the state, and a new login stored on disk (what
/// `claudegate login` writes) clears it.
#[test]
fn oauth_not_allowed_blocks_the_account_until_a_new_login() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let case = &CASES[2];
    for round in 0..2 {
        mock.enqueue("/v1/messages", Reply::oauth_not_allowed());
        let before = mock.count();
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
        assert_eq!(mock.count(), before + 1, "round {round}: went upstream");
        let v = r.assert_anthropic_error(403, "permission_error");
        assert_explained(case, "messages", v["error"]["message"].as_str().unwrap());
        assert!(r.header("retry-after").is_none(), "{r:?}");
        let a = accounts(&gate, &key);
        assert_eq!(a["state"], "blocked", "round {round}: {a}");
        assert!(a["cooldown_until"].is_null(), "{a}");
        let blocked = metric(&gate, &key, "claudegate_account_state{state=\"blocked\"}");
        assert_eq!(blocked, Some(1.0), "round {round}");
        assert_eq!(
            metric(&gate, &key, "claudegate_cooldown_active"),
            Some(0.0),
            "round {round}"
        );
    }
    assert_eq!(
        accounts(&gate, &key)["failure_classes"]["oauth_not_allowed"],
        2
    );
    assert_eq!(accounts(&gate, &key)["failure_classes"]["forbidden"], 0);

    gate.setup.store_login(oauth_login(
        "sk-ant-oat01-new-login",
        "sk-ant-ort01-new",
        8 * 3600,
    ));
    assert!(
        eventually(Duration::from_secs(5), || accounts(&gate, &key)["state"]
            == "ok"),
        "still {}",
        accounts(&gate, &key)
    );
    assert_eq!(
        metric(&gate, &key, "claudegate_account_state{state=\"blocked\"}"),
        Some(0.0)
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
    assert_eq!(r.status, 200, "{r:?}");
    let last = mock.requests_to("/v1/messages").pop().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some("Bearer sk-ant-oat01-new-login")
    );
}

/// The long-context refusal as an `error` event inside a 200 stream that is streamed on to the
/// client (`/v1/messages` relayed as it arrives, OpenAI chat translated as it arrives): the
/// client's own error event carries Anthropic's text and the advice, the account is not cooled
/// down (though the 200 names a `retry-after`), and the class is counted.
#[test]
fn a_refusal_streamed_on_to_the_client_is_explained_and_never_benches_the_account() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let case = &CASES[1];
    let streamed = r#"{"model":"claude-sonnet-4-6","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    mock.enqueue("/v1/messages", long_context_in_stream());
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], streamed);
    assert_eq!(r.status, 200, "{r:?}");
    let events = parse_sse(&r.body);
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .unwrap_or_else(|| panic!("no error event in {:?}", r.body));
    let v = error.data_json();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_explained(
        case,
        "messages stream",
        v["error"]["message"].as_str().unwrap(),
    );
    assert_not_benched(&gate, &key, &mock, case, "messages stream");

    mock.enqueue("/v1/messages", long_context_in_stream());
    let chat = json!({"model": "sonnet", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &chat.to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let failed = parse_sse(&r.body)
        .iter()
        .map(|e| e.data_json())
        .find(|v| v.get("error").is_some())
        .unwrap_or_else(|| panic!("no error chunk in {:?}", r.body));
    assert_explained(
        case,
        "chat stream",
        failed["error"]["message"].as_str().unwrap(),
    );
    assert_not_benched(&gate, &key, &mock, case, "chat stream");
    let a = accounts(&gate, &key);
    assert_eq!(a["failure_classes"][case.class], 2, "{a}");
    assert_eq!(a["failure_classes"]["rate_limit"], 0, "{a}");
}
