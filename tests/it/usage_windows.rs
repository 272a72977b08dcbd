//! The subscription's usage windows (issue 13, items 1 to 3): the unified rate-limit headers
//! and the usage endpoint read into windows shown in `/admin/accounts`, `/metrics` and
//! `claudegate status`; cooldowns that last until the rejected window resets, days away if
//! need be, end early when the usage endpoint shows room, and bench only the model family whose
//! own window is rejected.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use serde_json::{json, Value};
use std::time::Duration;

const SONNET: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
const OPUS: &str =
    r#"{"model":"claude-opus-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;

fn metrics(gate: &Gate, key: &str) -> String {
    let r = get(&gate.url("/metrics"), &[("x-api-key", key)]);
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

fn window<'a>(account: &'a Value, name: &str) -> &'a Value {
    account["usage"]["windows"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == name))
        .unwrap_or_else(|| panic!("no window {name} in {account}"))
}

use claudegate::base::clock::rfc3339;

use crate::common::run::eventually;

/// `claudegate status` on the gate's own config and data.
fn status(gate: &Gate) -> String {
    let out = gate.setup.cli(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains(STORED_ACCESS_TOKEN), "{stdout}");
    stdout
}

/// The `Retry-After` of a locally answered 429, checked to be `want` give or take 5 s.
fn assert_retry_after(r: &Resp, want: u64, case: &str) {
    let secs: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{case}: no Retry-After in {r:?}"));
    assert!(
        secs <= want && secs + 5 >= want,
        "{case}: Retry-After {secs}, want about {want}"
    );
}

/// One answer's headers with every kind of window: 5-hour allowed, weekly past its warning
/// threshold, Opus's weekly window, an overage and a fallback field, and a window nobody knows
/// yet. The usage endpoint is absent, so they are shown from the headers: structured in
/// `/admin/accounts`, as the usage gauges in `/metrics`, and as a line per window with its
/// percentage and reset countdown in `claudegate status`.
#[test]
fn header_windows_are_shown_in_accounts_metrics_and_status() {
    let mock = MockUpstream::start();
    mock.usage_reply(Some(Reply::error(404, "not_found_error", "Not found")));
    let (gate, key) = logged_in(&mock.url(), json!({"oauth": {"usage_refresh_s": 1}}));
    let now = unix_now();
    let (r5, r7) = (now + 3 * 3600, now + 4 * 86_400);
    mock.enqueue(
        "/v1/messages",
        Reply::message(DEFAULT_MODEL, "hi")
            .unified("allowed_warning", r7, "seven_day")
            .window("5h", "allowed", 0.35, r5)
            .window("7d", "allowed_warning", 0.85, r7)
            .window("7d_opus", "allowed", 0.5, r7)
            .window("7d_newthing", "allowed", 0.05, r7)
            .header("anthropic-ratelimit-unified-overage-status", "rejected")
            .header(
                "anthropic-ratelimit-unified-overage-disabled-reason",
                "org_level_disabled",
            )
            .header("anthropic-ratelimit-unified-fallback-percentage", "0.5"),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    assert_eq!(r.status, 200, "{r:?}");

    let a = accounts(&gate, &key);
    let usage = &a["usage"];
    assert_eq!(usage["source"], "headers", "{a}");
    assert!(usage["observed_at"].is_string(), "{a}");
    assert_eq!(usage["representative_claim"], "seven_day", "{a}");
    assert_eq!(usage["overage"]["status"], "rejected", "{a}");
    assert_eq!(
        usage["overage"]["disabled-reason"], "org_level_disabled",
        "{a}"
    );
    assert_eq!(
        window(&a, "5h"),
        &json!({"name": "5h", "status": "allowed", "utilization": 0.35,
                "resets_at": rfc3339(r5), "model": null})
    );
    let seven = window(&a, "7d");
    assert_eq!(seven["status"], "allowed_warning");
    assert_eq!(seven["utilization"], 0.85);
    assert_eq!(window(&a, "7d_opus")["model"], "opus");
    assert_eq!(
        window(&a, "7d_newthing")["utilization"],
        0.05,
        "unknown kept"
    );
    assert_eq!(window(&a, "overall")["status"], "allowed_warning");
    assert_eq!(a["state"], "ok");
    assert_eq!(a["cooldowns"], json!([]));

    let page = metrics(&gate, &key);
    for want in [
        "claudegate_usage_utilization{window=\"5h\"} 0.35".to_string(),
        "claudegate_usage_utilization{window=\"7d\"} 0.85".to_string(),
        format!("claudegate_usage_reset_timestamp_seconds{{window=\"5h\"}} {r5}"),
        "claudegate_usage_status{window=\"7d\",status=\"allowed_warning\"} 1".to_string(),
        "claudegate_usage_status{window=\"7d\",status=\"allowed\"} 0".to_string(),
        "claudegate_usage_status{window=\"5h\",status=\"allowed\"} 1".to_string(),
    ] {
        assert!(page.contains(&want), "{want} in:\n{page}");
    }

    // `status` cannot read the endpoint (absent), so it shows what the server saved.
    let mut out = String::new();
    let shown = eventually(Duration::from_secs(8), || {
        out = status(&gate);
        out.contains("  7d:")
    });
    assert!(shown, "{out}");
    assert!(out.contains("from the last answer's headers"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("  {name}:")))
            .unwrap_or_else(|| panic!("no {name} line in:\n{out}"))
            .to_string()
    };
    let five = line("5h");
    assert!(
        five.contains("[####------]") && five.contains(" 35%"),
        "{five}"
    );
    assert!(
        five.contains("resets in 2h 59m") || five.contains("resets in 3h 0m"),
        "{five}"
    );
    assert!(line("7d").contains("allowed_warning"), "{out}");
    assert!(line("7d").contains("resets in 3d 23h") || line("7d").contains("resets in 4d 0h"));
    assert!(line("7d_opus").contains("opus models only"), "{out}");
}

/// A 429 whose headers say the 5-hour window is rejected, resetting in two hours: the account
/// cools down until then (not the one-hour cap of a limit that names no window), and the next
/// request is answered locally with the real wait.
#[test]
fn a_rejected_5h_window_cools_down_until_its_reset() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let reset = unix_now() + 2 * 3600;
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "limited")
            .unified("rejected", reset, "five_hour")
            .window("5h", "rejected", 1.0, reset)
            .retry_after(2 * 3600),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    r.assert_anthropic_error(429, "rate_limit_error");

    let a = accounts(&gate, &key);
    assert_eq!(a["state"], "cooldown", "{a}");
    assert_eq!(a["cooldowns"][0]["window"], "5h", "{a}");
    assert_eq!(a["cooldowns"][0]["until"], rfc3339(reset), "{a}");
    assert_eq!(a["cooldowns"][0]["model"], Value::Null, "{a}");
    assert_eq!(a["cooldown_until"], rfc3339(reset), "{a}");
    assert_eq!(window(&a, "5h")["status"], "rejected");
    let page = metrics(&gate, &key);
    assert!(
        page.contains(&format!("claudegate_cooldown_until_seconds {reset}")),
        "{page}"
    );

    let before = mock.count();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], OPUS);
    r.assert_anthropic_error(429, "rate_limit_error");
    assert_eq!(mock.count(), before, "answered locally");
    assert_retry_after(&r, reset - unix_now(), "5h");
}

/// A rejected weekly window resetting in three days: every door refuses locally with a
/// `Retry-After` of about three days (more than the old one-day ceiling), and
/// `claudegate status` shows the cooldown.
#[test]
fn a_rejected_weekly_window_cools_down_for_days_with_the_real_retry_after() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let reset = unix_now() + 3 * 86_400;
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "weekly limit reached")
            .unified("rejected", reset, "seven_day")
            .window("5h", "allowed", 0.2, unix_now() + 3600)
            .window("7d", "rejected", 1.0, reset),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    r.assert_anthropic_error(429, "rate_limit_error");
    let a = accounts(&gate, &key);
    assert_eq!(a["state"], "cooldown", "{a}");
    assert_eq!(a["cooldowns"][0]["window"], "7d", "{a}");

    let before = mock.count();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    r.assert_anthropic_error(429, "rate_limit_error");
    assert_retry_after(&r, reset - unix_now(), "messages");
    let chat = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {key}");
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &bearer)],
        &chat.to_string(),
    );
    r.assert_openai_error(429);
    assert_retry_after(&r, reset - unix_now(), "chat");
    let r = post(
        &gate.url("/v1/complete"),
        &[("x-api-key", &key)],
        r#"{"prompt":"hi"}"#,
    );
    assert_eq!(r.status, 429, "{r:?}");
    assert_retry_after(&r, reset - unix_now(), "complete");
    assert_eq!(mock.count(), before, "answered locally");

    let mut out = String::new();
    let shown = eventually(Duration::from_secs(8), || {
        out = status(&gate);
        out.contains("cooldown:")
    });
    assert!(shown, "{out}");
    let line = out.lines().find(|l| l.starts_with("cooldown:")).unwrap();
    assert!(
        line.contains("the account until")
            && (line.contains("(in 2d 23h)") || line.contains("(in 3d 0h)")),
        "{line}"
    );
    assert!(line.contains("7d window"), "{line}");
}

/// A rejected Opus window (`7d_opus`) refuses Opus requests locally, in both doors and under
/// an alias, while Sonnet requests keep going upstream and succeed; the account stays `ok`.
#[test]
fn a_rejected_opus_window_refuses_opus_and_serves_sonnet() {
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let reset = unix_now() + 2 * 86_400;
    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "Opus weekly limit reached")
            .unified("rejected", reset, "seven_day_opus")
            .window("5h", "allowed", 0.2, unix_now() + 3600)
            .window("7d", "allowed", 0.4, reset)
            .window("7d_opus", "rejected", 1.0, reset),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], OPUS);
    r.assert_anthropic_error(429, "rate_limit_error");

    let a = accounts(&gate, &key);
    assert_eq!(a["state"], "ok", "{a}");
    assert_eq!(
        a["cooldowns"][0]["model"], "opus",
        "a cooldown of opus only: {a}"
    );
    assert_eq!(a["cooldowns"][0]["window"], "7d_opus", "{a}");
    assert_eq!(a["cooldown_until"], Value::Null, "{a}");

    let before = mock.count();
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], OPUS);
    let e = r.assert_anthropic_error(429, "rate_limit_error");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("opus"),
        "{e}"
    );
    assert_retry_after(&r, reset - unix_now(), "opus");
    let chat = json!({"model": "opus", "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {key}");
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &bearer)],
        &chat.to_string(),
    );
    r.assert_openai_error(429);
    assert_eq!(mock.count(), before, "opus answered locally");

    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    assert_eq!(r.status, 200, "{r:?}");
    let chat = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &bearer)],
        &chat.to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(mock.count(), before + 2, "sonnet went upstream");
    // A success of another family leaves Opus's cooldown alone.
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], OPUS);
    r.assert_anthropic_error(429, "rate_limit_error");
}

/// The usage endpoint, read in the background once a second here: its windows are shown
/// (source `usage_endpoint`, utilisation turned from percent into a fraction), it is asked
/// with the subscription's token and the OAuth beta, and when it shows room in a rejected
/// window again the cooldown ends long before the window's reset.
#[test]
fn the_usage_endpoint_is_shown_and_ends_a_cooldown_early() {
    let mock = MockUpstream::start();
    let reset = unix_now() + 3 * 86_400;
    let full = |pct: f64| {
        json!({"five_hour": {"utilization": 20.0, "resets_at": rfc3339_micros(unix_now() + 3600)},
               "seven_day": {"utilization": pct, "resets_at": rfc3339_micros(reset)},
               "seven_day_opus": null})
    };
    mock.set_usage(full(100.0));
    let (gate, key) = logged_in(&mock.url(), json!({"oauth": {"usage_refresh_s": 1}}));
    assert!(
        eventually(Duration::from_secs(5), || accounts(&gate, &key)["usage"]
            ["source"]
            == "usage_endpoint"),
        "{}",
        accounts(&gate, &key)
    );
    let asked = mock.requests_to("/api/oauth/usage");
    let first = &asked[0];
    assert_eq!(first.method, "GET");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {STORED_ACCESS_TOKEN}").as_str())
    );
    assert!(
        first
            .header("anthropic-beta")
            .is_some_and(|b| b.contains("oauth-2025-04-20")),
        "{first:?}"
    );
    let a = accounts(&gate, &key);
    assert_eq!(window(&a, "7d")["utilization"], 1.0, "{a}");
    assert_eq!(window(&a, "5h")["utilization"], 0.2, "{a}");
    assert_eq!(window(&a, "7d")["resets_at"], rfc3339(reset), "{a}");
    let page = metrics(&gate, &key);
    assert!(
        page.contains("claudegate_usage_utilization{window=\"5h\"} 0.2"),
        "{page}"
    );

    mock.enqueue(
        "/v1/messages",
        Reply::error(429, "rate_limit_error", "weekly limit reached")
            .unified("rejected", reset, "seven_day")
            .window("7d", "rejected", 1.0, reset),
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    r.assert_anthropic_error(429, "rate_limit_error");
    std::thread::sleep(Duration::from_millis(1500)); // the endpoint still says 100 %
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    r.assert_anthropic_error(429, "rate_limit_error");
    assert_retry_after(&r, reset - unix_now(), "still full");

    mock.set_usage(full(40.0));
    let ended = eventually(Duration::from_secs(5), || {
        accounts(&gate, &key)["cooldowns"] == json!([])
    });
    let a = accounts(&gate, &key);
    assert!(ended, "{a}");
    assert_eq!(a["state"], "ok", "{a}");
    assert_eq!(window(&a, "7d")["utilization"], 0.4, "{a}");
    // The 429's `rejected` is older than the read that shows room: no longer shown.
    assert_eq!(window(&a, "7d")["status"], Value::Null, "{a}");
    assert!(
        gate.log().contains("cooldown ended early"),
        "{}",
        gate.log()
    );
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    assert_eq!(r.status, 200, "{r:?}");

    // `status` reads the endpoint itself.
    let out = status(&gate);
    assert!(out.contains("live from the usage endpoint"), "{out}");
    let seven = out.lines().find(|l| l.starts_with("  7d:")).unwrap();
    assert!(
        seven.contains(" 40%") && seven.contains("[####------]"),
        "{seven}"
    );
}

/// An absent usage endpoint (404) leaves the windows to the headers; one with odd fields
/// (a percentage as text, over 100, a time that is no time, a window nobody knows, `null`s,
/// a list, an `extra_usage` that is no object) is read for what it has, without harm.
#[test]
fn an_absent_or_odd_usage_endpoint_is_survived() {
    let mock = MockUpstream::start();
    mock.usage_reply(Some(Reply::error(404, "not_found_error", "Not found")));
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"oauth": {"usage_refresh_s": 1}, "debug": "errors"}),
    );
    assert!(eventually(Duration::from_secs(5), || !mock
        .requests_to("/api/oauth/usage")
        .is_empty()));
    let r = post(&gate.url("/v1/messages"), &[("x-api-key", &key)], SONNET);
    assert_eq!(r.status, 200, "{r:?}");
    let a = accounts(&gate, &key);
    assert_eq!(a["usage"]["source"], "headers", "{a}");
    assert_eq!(
        window(&a, "5h")["utilization"],
        0.01,
        "the mock's default headers"
    );
    assert!(gate.log().contains("cannot read the subscription's usage"));
    assert!(!gate.log().contains(STORED_ACCESS_TOKEN));

    mock.usage_reply(None);
    mock.set_usage(json!({
        "five_hour": {"utilization": "55", "resets_at": "not a time", "extra": [1, 2]},
        "seven_day": null,
        "seven_day_sonnet": {"utilization": 250, "resets_at": null},
        "brand_new_window": {"utilization": 3},
        "limits": [{"kind": "weekly", "percent": 3}],
        "extra_usage": 5,
        "label": "hello",
    }));
    // A failed read waits 10 minutes: a restart reads again at once.
    let mut gate = gate;
    gate.restart();
    let shown = eventually(Duration::from_secs(5), || {
        accounts(&gate, &key)["usage"]["source"] == "usage_endpoint"
    });
    let a = accounts(&gate, &key);
    assert!(shown, "{a}");
    assert_eq!(
        window(&a, "5h"),
        &json!({"name": "5h", "status": null, "utilization": 0.55, "resets_at": null,
                "model": null})
    );
    assert_eq!(window(&a, "7d_sonnet")["utilization"], 1.0, "{a}");
    assert_eq!(window(&a, "7d_sonnet")["model"], "sonnet", "{a}");
    assert_eq!(window(&a, "brand_new_window")["utilization"], 0.03, "{a}");
    assert_eq!(a["usage"]["windows"].as_array().unwrap().len(), 3, "{a}");
    assert_eq!(a["usage"]["overage"], Value::Null, "{a}");
    gate.assert_healthy();
    let out = status(&gate);
    assert!(out.contains("live from the usage endpoint"), "{out}");
    assert!(out.contains("brand_new_window"), "{out}");
}
