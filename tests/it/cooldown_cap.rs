//! The account's cooldown is capped at one hour whatever the upstream says (issue "Hardening
//! II", item 6): a huge `retry-after`, a far-off unified reset time, or a `rate_limit_error`
//! inside a stream whose headers say the same, must never lock every app out for longer, nor
//! overflow into a nonsense `Retry-After`.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::json;

/// The longest cooldown claudegate keeps (`MAX_COOLDOWN_S` in `backends/oauth/account.rs`).
const MAX_COOLDOWN_S: u64 = 3600;

const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

/// The `claudegate_cooldown_until_seconds` gauge (unix seconds; 0 when there is none).
fn cooldown_until(gate: &Gate, key: &str) -> u64 {
    let page = get(&gate.url("/metrics"), &[("x-api-key", key)]);
    assert_eq!(page.status, 200, "{page:?}");
    page.body
        .lines()
        .find_map(|l| l.strip_prefix("claudegate_cooldown_until_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no cooldown gauge in {}", page.body)) as u64
}

/// After the upstream limited the account: the account cools down for at most an hour, seen
/// in `/admin/accounts`, in the metrics gauge, and in the `Retry-After` of the next request,
/// which claudegate answers itself.
fn assert_capped_cooldown(gate: &Gate, key: &str, mock: &MockUpstream, case: &str) {
    let accounts = get(&gate.url("/admin/accounts"), &[("x-api-key", key)]).json();
    assert_eq!(
        accounts["accounts"][0]["state"], "cooldown",
        "{case}: {accounts}"
    );
    let now = unix_now();
    let until = cooldown_until(gate, key);
    assert!(
        until > now && until <= now + MAX_COOLDOWN_S,
        "{case}: the cooldown ends {} s from now",
        until.saturating_sub(now)
    );
    let before = mock.count();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", key)], MESSAGE);
    r.assert_anthropic_error(429, "rate_limit_error");
    assert_eq!(mock.count(), before, "{case}: answered locally");
    let retry = r.header("retry-after").unwrap_or("none");
    let secs: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("{case}: Retry-After {retry:?}"));
    assert!(
        (1..=MAX_COOLDOWN_S).contains(&secs),
        "{case}: Retry-After {secs}"
    );
}

/// An upstream 429 with `retry-after: 100000`, then `retry-after: 18446744073709551615`
/// (u64::MAX), then one naming only a unified reset time at u64::MAX, then a 200 chat stream
/// that ends in a `rate_limit_error` under `retry-after: 18446744073709551615`. Proves each
/// cooldown ends within 3600 s (`/admin/accounts` says `cooldown`, the metrics gauge's end
/// time, and the locally answered 429's `Retry-After` ≤ 3600), and the server lives on.
#[test]
fn an_upstream_retry_after_or_reset_never_cools_down_past_the_cap() {
    let mock = MockUpstream::start();
    let (mut gate, key) = logged_in(&mock.url(), json!({}));
    let far = u64::MAX.to_string();
    for (case, retry_after) in [("100000", "100000"), ("u64::MAX", far.as_str())] {
        mock.enqueue(
            "/v1/messages",
            Reply::error(429, "rate_limit_error", "limited").header("retry-after", retry_after),
        );
        let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
        r.assert_anthropic_error(429, "rate_limit_error");
        assert_capped_cooldown(&gate, &key, &mock, case);
        gate.restart(); // a fresh account state for the next case
    }

    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "limited")
            .header("anthropic-ratelimit-unified-reset", &far)
            .header("anthropic-ratelimit-unified-5h-reset", &far),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], MESSAGE);
    r.assert_anthropic_error(429, "rate_limit_error");
    assert_capped_cooldown(&gate, &key, &mock, "unified reset u64::MAX");
    gate.restart();

    let mut events = sse_text_events(DEFAULT_MODEL, &["par"]);
    events.truncate(2);
    events.push(sse_error_event("rate_limit_error", "limited mid-stream"));
    mock.enqueue(
        "/v1/messages",
        Reply::sse(events).header("retry-after", &far),
    );
    let chat = json!({"model": "sonnet", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let l = post_lines(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &chat.to_string(),
    );
    assert_eq!(l.status, 200, "{l:?}");
    assert!(l.text().contains("limited mid-stream"), "{l:?}");
    assert_capped_cooldown(&gate, &key, &mock, "stream rate_limit_error");
    gate.assert_healthy();
    assert!(!gate.log().contains("panicked"), "{}", gate.log());
}

/// `/v1/complete` turns the upstream's own 429 into its relay answer, `Retry-After` included:
/// a `retry-after` of u64::MAX from the upstream comes out bounded (at most eight days: the
/// bound was one day until a rejected weekly window's real wait had to fit under it).
#[test]
fn a_relayed_retry_after_is_bounded_too() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "limited")
            .header("retry-after", &u64::MAX.to_string()),
    );
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        r#"{"prompt":"hi"}"#,
    );
    assert_eq!(r.status, 429, "{r:?}");
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in {r:?}"));
    assert!((1..=8 * 86_400).contains(&secs), "Retry-After {secs}");
}
