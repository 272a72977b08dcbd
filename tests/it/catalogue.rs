//! The model catalogue that keeps up: `/v1/models` lists what the upstream's models endpoint
//! reports (fetched at start and every `models.refresh_s`, off the request path) merged with
//! the configured catalogue and aliases, in both shapes; a failing endpoint keeps the last good
//! list; the account's token goes upstream and nowhere else.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::common::gate::{get, logged_in, logged_in_setup, post, Gate, STORED_ACCESS_TOKEN};
use crate::common::mock_upstream::{model_info, MockUpstream, Reply};

/// A model the default catalogue does not know, with every field the upstream may report.
fn sonnet_5_7() -> Value {
    json!({
        "type": "model",
        "id": "claude-sonnet-5-7",
        "display_name": "Claude Sonnet 5.7",
        "created_at": "2027-01-15T00:00:00Z",
        "max_input_tokens": 1_000_000,
        "max_tokens": 128_000,
        "capabilities": {
            "thinking": {"supported": true, "types": {"adaptive": {"supported": true}}},
            "effort": {"supported": true, "max": {"supported": true}},
            "image_input": {"supported": true},
        },
    })
}

fn sonnet_4_6() -> Value {
    model_info(
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "2026-02-17T00:00:00Z",
    )
}

/// `/v1/models` in Anthropic's shape (`anthropic-version` sent) or OpenAI's.
fn listed(gate: &Gate, key: &str, anthropic: bool) -> Value {
    let mut headers = vec![("x-api-key", key)];
    if anthropic {
        headers.push(("anthropic-version", "2023-06-01"));
    }
    let r = get(&gate.url("/v1/models"), &headers);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn entry<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["data"].as_array()?.iter().find(|m| m["id"] == id)
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls until `/v1/models` (Anthropic's shape) lists `id`, for at most `within`.
fn wait_listed(gate: &Gate, key: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let list = listed(gate, key, true);
        if entry(&list, id).is_some() {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never listed: {list}\nlog:\n{}",
            gate.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until `done`, for at most `within`.
fn wait_for(within: Duration, what: &str, done: impl Fn() -> bool) {
    assert!(
        crate::common::run::eventually(within, done),
        "timed out waiting for {what}"
    );
}

#[test]
fn a_model_the_upstream_starts_listing_appears_in_both_shapes() {
    let mock = MockUpstream::start();
    mock.set_models(vec![sonnet_4_6()]);
    let (gate, key) = logged_in(&mock.url(), json!({"models": {"refresh_s": 1}}));
    wait_for(Duration::from_secs(5), "the first fetch", || {
        !mock.requests_to("/v1/models").is_empty()
    });
    // A new model ships while the server runs.
    mock.set_models(vec![sonnet_5_7(), sonnet_4_6()]);
    let list = wait_listed(&gate, &key, "claude-sonnet-5-7", Duration::from_secs(6));

    // Anthropic's shape carries exactly what the upstream reported.
    assert_eq!(entry(&list, "claude-sonnet-5-7"), Some(&sonnet_5_7()));
    assert_eq!(entry(&list, "claude-sonnet-4-6"), Some(&sonnet_4_6()));
    // Configured ids the upstream does not list are still there, with nothing invented.
    let opus = entry(&list, "claude-opus-4-8").expect("configured id listed");
    assert_eq!(opus["display_name"], "Claude Opus 4.8");
    for field in ["max_input_tokens", "max_tokens", "capabilities"] {
        assert!(opus.get(field).is_none(), "{field} invented: {opus}");
    }
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], list["data"][0]["id"]);
    let all = ids(&list);
    assert_eq!(list["last_id"].as_str(), all.last().map(String::as_str));
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "listed once each: {all:?}");

    // OpenAI's shape lists it too, dated as the upstream dates it.
    let openai = listed(&gate, &key, false);
    assert_eq!(openai["object"], "list");
    assert_eq!(
        entry(&openai, "claude-sonnet-5-7"),
        Some(
            &json!({"id": "claude-sonnet-5-7", "object": "model", "created": 1_799_971_200u64, "owned_by": "anthropic"})
        )
    );
    assert_eq!(ids(&openai), all, "both shapes list the same ids");

    // And a request may use it (unknown ids always passed through; now it is also listed).
    let r = post(
        &gate.url("/v1/chat/completions"),
        &[("authorization", &format!("Bearer {key}"))],
        &json!({"model": "claude-sonnet-5-7", "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    );
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn the_last_good_list_is_kept_while_the_models_endpoint_fails() {
    let mock = MockUpstream::start();
    mock.set_models(vec![sonnet_5_7(), sonnet_4_6()]);
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"models": {"refresh_s": 1}, "debug": "errors"}),
    );
    let good = wait_listed(&gate, &key, "claude-sonnet-5-7", Duration::from_secs(5));
    let good_openai = listed(&gate, &key, false);

    // The endpoint breaks in every way a list can: an error (quoting the token, as a careless
    // upstream might), a body that is no list, and an empty list.
    let failures = [
        Reply::error(
            500,
            "api_error",
            &format!("models broken for {STORED_ACCESS_TOKEN}"),
        ),
        Reply::body(200, "application/json", "{\"data\": \"nope\"}"),
        Reply::json(
            200,
            json!({"data": [], "has_more": false, "first_id": null, "last_id": null}),
        ),
    ];
    for failure in failures {
        let seen = mock.requests_to("/v1/models").len();
        mock.fail_models(Some(failure));
        wait_for(Duration::from_secs(6), "two failed refreshes", || {
            mock.requests_to("/v1/models").len() >= seen + 2
        });
        assert_eq!(listed(&gate, &key, true), good, "last good list kept");
        assert_eq!(listed(&gate, &key, false), good_openai);
    }
    let log = gate.log();
    assert!(log.contains("model list"), "failure logged:\n{log}");
    assert!(log.contains("500"), "its status logged:\n{log}");
    assert!(
        !log.contains(STORED_ACCESS_TOKEN) && !log.contains("oat01-stored"),
        "the token leaked into the log:\n{log}"
    );

    // Once it answers again, its new list is taken.
    mock.fail_models(None);
    mock.set_models(vec![sonnet_4_6()]);
    let deadline = Instant::now() + Duration::from_secs(6);
    while entry(&listed(&gate, &key, true), "claude-sonnet-5-7").is_some() {
        assert!(Instant::now() < deadline, "the recovered list never taken");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn configured_aliases_still_win() {
    let mock = MockUpstream::start();
    // The upstream lists a newer Opus, the aliases' targets, and (oddly) an id that is one of
    // our alias names.
    mock.set_models(vec![
        model_info("claude-opus-5", "Claude Opus 5", "2027-02-01T00:00:00Z"),
        model_info(
            "claude-opus-4-8",
            "Claude Opus 4.8 (upstream)",
            "2026-09-01T00:00:00Z",
        ),
        model_info("sonnet", "Not our alias", "2026-01-01T00:00:00Z"),
        sonnet_4_6(),
    ]);
    let (gate, key) = logged_in(&mock.url(), json!({"models": {"refresh_s": 3600}}));
    let list = wait_listed(&gate, &key, "claude-opus-5", Duration::from_secs(5));

    // Each alias is listed once, as configured, carrying what the upstream says of its target.
    let all = ids(&list);
    assert_eq!(
        all.iter().filter(|id| *id == "sonnet").count(),
        1,
        "{all:?}"
    );
    assert_eq!(all.iter().filter(|id| *id == "opus").count(), 1, "{all:?}");
    let opus = entry(&list, "opus").expect("alias listed");
    assert_eq!(opus["display_name"], "Claude Opus 4.8 (upstream)");
    assert_eq!(opus["created_at"], "2026-09-01T00:00:00Z");
    let sonnet = entry(&list, "sonnet").expect("alias listed");
    assert_eq!(sonnet["display_name"], "Claude Sonnet 4.6");

    // And requests resolve them as configured, not to the newest the upstream lists.
    for (alias, target) in [("opus", "claude-opus-4-8"), ("sonnet", "claude-sonnet-4-6")] {
        let r = post(
            &gate.url("/v1/chat/completions"),
            &[("authorization", &format!("Bearer {key}"))],
            &json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        );
        assert_eq!(r.status, 200, "{r:?}");
        let up = mock.requests_to("/v1/messages");
        assert_eq!(up.last().expect("sent upstream").json()["model"], target);
    }
}

#[test]
fn the_fetch_never_runs_on_a_requests_path() {
    let mock = MockUpstream::start();
    mock.set_models(vec![sonnet_5_7()]);
    mock.delay_models_ms(3000);
    // One worker: a fetch that held it would delay every request.
    let (setup, key) = logged_in_setup(
        &mock.url(),
        json!({"workers": 1, "models": {"refresh_s": 1}}),
    );
    let started = Instant::now();
    let gate = Gate::spawn(setup);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "start waited for the model list: {:?}",
        started.elapsed()
    );
    wait_for(Duration::from_secs(5), "the fetch to start", || {
        !mock.requests_to("/v1/models").is_empty()
    });

    // While the upstream takes its time, requests are answered at once.
    let t = Instant::now();
    let list = listed(&gate, &key, true);
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert!(
        entry(&list, "claude-sonnet-5-7").is_none(),
        "not fetched yet"
    );
    assert!(
        entry(&list, "claude-opus-4-8").is_some(),
        "the configured list"
    );
    let t = Instant::now();
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01")],
        r#"{"model":"sonnet","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );

    // The slow answer lands in the background.
    wait_listed(&gate, &key, "claude-sonnet-5-7", Duration::from_secs(8));
}

#[test]
fn every_page_is_fetched_with_the_token_which_stays_out_of_the_log() {
    let mock = MockUpstream::start();
    let models: Vec<Value> = (1..=5)
        .map(|n| {
            model_info(
                &format!("claude-sonnet-5-{n}"),
                &format!("Claude Sonnet 5.{n}"),
                "2027-01-01T00:00:00Z",
            )
        })
        .collect();
    mock.set_models(models);
    mock.cap_models_page(2);
    let (gate, key) = logged_in(
        &mock.url(),
        json!({"models": {"refresh_s": 3600}, "debug": "verbose"}),
    );
    wait_listed(&gate, &key, "claude-sonnet-5-5", Duration::from_secs(5));
    let list = listed(&gate, &key, true);
    for n in 1..=5 {
        assert!(entry(&list, &format!("claude-sonnet-5-{n}")).is_some());
    }

    let pages = mock.requests_to("/v1/models");
    assert_eq!(pages.len(), 3, "5 models, 2 a page");
    let after: Vec<Option<String>> = pages
        .iter()
        .map(|p| {
            p.query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("after_id=").map(String::from))
        })
        .collect();
    assert_eq!(
        after,
        [
            None,
            Some("claude-sonnet-5-2".into()),
            Some("claude-sonnet-5-4".into())
        ]
    );
    for page in &pages {
        assert_eq!(page.method, "GET");
        let bearer = format!("Bearer {STORED_ACCESS_TOKEN}");
        assert_eq!(page.header("authorization"), Some(bearer.as_str()));
        assert_eq!(page.header("x-api-key"), None);
        assert!(page
            .header("anthropic-beta")
            .is_some_and(|b| b.contains("oauth-2025-04-20")));
        assert_eq!(page.header("anthropic-version"), Some("2023-06-01"));
    }
    let log = gate.log();
    assert!(
        !log.contains(STORED_ACCESS_TOKEN) && !log.contains("oat01-stored"),
        "the token leaked into the log:\n{log}"
    );
}
