//! The status page over HTTP (no browser): `GET /status` is one self-contained HTML page with
//! a strict Content-Security-Policy whose hashes match its inline script and style, served
//! without a key; `GET /admin/status` needs an admin key and composes the account's admin view,
//! the per-key totals of the audit log for today and the last 7 days (the figures
//! `claudegate usage` prints), the version and the uptime. The page in a real browser is
//! `status_browser`.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use claudegate::base::clock;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// The text between `open` (its `>` included) and `close` in `html`: an inline block's body.
fn inline_block<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the page"));
    let body = &html[start..];
    let body = &body[body.find('>').unwrap() + 1..];
    &body[..body.find(close).unwrap_or_else(|| panic!("no {close}"))]
}

/// CSP hash source of `text`: `'sha256-BASE64'`.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        claudegate::base::base64::encode(digest.as_slice())
    )
}

/// The CSP's directives, name → sources.
fn directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut parts = d.split_whitespace().map(str::to_string);
            (parts.next().unwrap(), parts.collect())
        })
        .collect()
}

#[test]
fn the_page_is_served_without_a_key_under_a_strict_csp() {
    let mock = MockUpstream::start();
    let (gate, _key) = logged_in(&mock.url(), json!({}));
    let r = get(&gate.url("/status"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{r:?}"
    );
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(r.header(name), Some(want), "{name}: {:?}", r.headers);
    }
    let csp = r
        .header("content-security-policy")
        .expect("a Content-Security-Policy header");
    let d = directives(csp);
    let get_d = |name: &str| {
        d.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
    };
    assert_eq!(get_d("default-src"), ["'none'"], "{csp}");
    assert_eq!(get_d("connect-src"), ["'self'"], "{csp}");
    assert_eq!(get_d("base-uri"), ["'none'"], "{csp}");
    assert_eq!(get_d("form-action"), ["'none'"], "{csp}");
    assert_eq!(get_d("frame-ancestors"), ["'none'"], "{csp}");
    // Scripts and styles: only the page's own inline blocks, by hash; nothing unsafe.
    let html = &r.body;
    assert_eq!(
        get_d("script-src"),
        [csp_hash(inline_block(html, "<script", "</script>"))],
        "{csp}"
    );
    assert_eq!(
        get_d("style-src"),
        [csp_hash(inline_block(html, "<style", "</style>"))],
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    // One block of each, no external assets, no inline handlers or style attributes (which
    // the policy would block), and a viewport for phones.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert_eq!(html.matches("<style").count(), 1, "{html}");
    for banned in [
        " src=",
        " href=",
        " onclick=",
        " onload=",
        " style=",
        "http://",
        "https://",
    ] {
        assert!(!html.contains(banned), "the page holds {banned:?}");
    }
    assert!(html.contains("name=\"viewport\""), "{html}");
    // The key field has no name, so no form submission could ever carry it.
    assert!(html.contains("type=\"password\""), "{html}");
    assert!(!html.contains("name=\"key\""), "{html}");
    // /status asks for nothing upstream and is not an API: no key, no audit line, no upstream.
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
    let wrong = request("POST", &gate.url("/status"), &[]);
    assert_eq!(wrong.status, 405, "{wrong:?}");
}

#[test]
fn admin_status_needs_an_admin_key() {
    let mock = MockUpstream::start();
    let (gate, admin) = logged_in(&mock.url(), json!({}));
    let app = gate.setup.add_key("phone", &[]);
    let url = gate.url("/admin/status");
    assert_eq!(get(&url, &[]).status, 401);
    let wrong = get(&url, &[("authorization", "Bearer cgk_not-a-key")]);
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(
        wrong.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid API key")),
        "{wrong:?}"
    );
    let scoped = get(&url, &[("authorization", &format!("Bearer {app}"))]);
    assert_eq!(scoped.status, 403, "{scoped:?}");
    assert!(scoped.body.contains("admin scope"), "{scoped:?}");
    let ok = get(&url, &[("authorization", &format!("Bearer {admin}"))]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("cache-control"), Some("no-store"), "{ok:?}");
    assert!(!ok.body.contains(&admin), "the key is not echoed");
}

/// One audit line as the server writes it (the fields `claudegate usage` adds up).
fn audit_line(unix: u64, key: &str, status: u16, input: u64, output: u64) -> String {
    json!({
        "time": clock::rfc3339(unix), "key": key, "ip": "127.0.0.1", "route": "messages",
        "backend": "oauth", "model": "claude-sonnet-4-6", "status": status,
        "duration_ms": 10, "ttfb_ms": 5, "input_tokens": input, "output_tokens": output,
        "cache_read_tokens": 7, "cache_creation_tokens": 3, "request_id": null,
        "account_state": "ok",
    })
    .to_string()
}

/// `claudegate usage --since DAY`'s row for `label`: its six numbers.
fn usage_row(gate: &Gate, since: &str, label: &str) -> Vec<u64> {
    let out = gate.setup.cli(&["usage", "--since", since]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let row = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no row for {label}:\n{text}"));
    row.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// A key's figures in `/admin/status`, in `claudegate usage`'s column order.
fn figures(v: &Value) -> Vec<u64> {
    [
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}")))
    .collect()
}

/// The subscription as the mock reports it, seen on real requests: `phone` sends a bad request
/// (a 400), then `admin` a good one whose answer carries the unified rate-limit headers (5h at
/// 0.42; 7d at 0.73, `allowed_warning`, resetting at `reset_7d`). The failure goes first because
/// every answer replaces the last seen headers.
pub fn phone_fails_then_admin_sees_the_usage(
    gate: &Gate,
    mock: &MockUpstream,
    phone: &str,
    admin: &str,
    reset_7d: u64,
) {
    mock.enqueue(
        "/v1/messages",
        Reply::error(400, "invalid_request_error", "bad request"),
    );
    mock.enqueue(
        "/v1/messages",
        Reply::message("claude-sonnet-4-6", "hi")
            .header("anthropic-ratelimit-unified-5h-utilization", "0.42")
            .header("anthropic-ratelimit-unified-7d-utilization", "0.73")
            .header("anthropic-ratelimit-unified-7d-status", "allowed_warning")
            .header(
                "anthropic-ratelimit-unified-7d-reset",
                &reset_7d.to_string(),
            ),
    );
    let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    for (key, want) in [(phone, 400), (admin, 200)] {
        let r = post(
            &gate.url("/v1/messages"),
            &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
            &body,
        );
        assert_eq!(r.status, want, "{r:?}");
    }
}

#[test]
fn admin_status_composes_the_account_the_keys_the_version_and_the_uptime() {
    let mock = MockUpstream::start();
    let (setup, admin) = logged_in_setup(&mock.url(), json!({}));
    // History written before the server started: three days ago counts in the last 7 days
    // only, ten days ago in neither; a torn line is skipped as `claudegate usage` skips it.
    let now = clock::unix_now();
    let history = [
        audit_line(now - 3 * 86_400, "app", 200, 100, 20),
        audit_line(now - 3 * 86_400, "old-phone", 529, 0, 0),
        audit_line(now - 10 * 86_400, "app", 200, 5000, 500),
        "{\"time\":\"torn".to_string(),
    ];
    std::fs::write(
        setup.data_dir().join("audit.log"),
        history.join("\n") + "\n",
    )
    .unwrap();
    let gate = Gate::spawn(setup);
    let phone = gate.setup.add_key("phone", &[]);

    let reset_7d = now + 3 * 86_400 + 1800;
    phone_fails_then_admin_sees_the_usage(&gate, &mock, &phone, &admin, reset_7d);

    let auth = format!("Bearer {admin}");
    let read = || {
        let r = get(&gate.url("/admin/status"), &[("authorization", &auth)]);
        assert_eq!(r.status, 200, "{r:?}");
        r.json()
    };
    // The audit writer batches; wait (bounded) until today's two requests are in. Each read of
    // /admin/status is itself audited (once answered), so `app`'s count grows as we poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let v = read();
        let phone_today = v["keys"]
            .as_array()
            .and_then(|k| k.iter().find(|k| k["label"] == "phone"));
        if phone_today.is_some_and(|p| p["today"]["requests"] == 1) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "phone's request never counted: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    let uptime = status["uptime_s"].as_u64().expect("uptime_s");
    assert!(uptime < 60, "{status}");

    // The account: exactly the admin view of /admin/accounts (read as opaque JSON).
    let accounts = get(&gate.url("/admin/accounts"), &[("authorization", &auth)]).json();
    let mine = &status["accounts"];
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(mine[0]["email"], accounts["accounts"][0]["email"]);
    assert_eq!(mine[0]["state"], "ok", "{status}");
    assert_eq!(
        mine[0]["ratelimit_unified"]["5h-utilization"], "0.42",
        "{status}"
    );
    assert_eq!(
        mine[0]["ratelimit_unified"]["7d-status"], "allowed_warning",
        "{status}"
    );

    // Per key, the same figures `claudegate usage` prints for today and for the last 7 days.
    let keys = status["keys"].as_array().expect("keys");
    let labels: Vec<&str> = keys.iter().filter_map(|k| k["label"].as_str()).collect();
    assert_eq!(labels, ["app", "old-phone", "phone"], "{status}");
    let today = clock::day_string(clock::day_of(now));
    let week = clock::day_string(clock::day_of(now) - 6);
    for k in keys {
        let label = k["label"].as_str().unwrap();
        // `app` reads /admin/status while we compare: compare what was read before, with the
        // CLI's figures less the reads audited since.
        if label == "app" {
            let t = figures(&k["today"]);
            let w = figures(&k["last_7_days"]);
            assert_eq!(&w[2..], &[t[2] + 100, t[3] + 20, t[4] + 7, t[5] + 3]);
            assert_eq!(w[0], t[0] + 1, "{k}");
            continue;
        }
        assert_eq!(
            figures(&k["last_7_days"]),
            usage_row(&gate, &week, label),
            "{label}"
        );
        match label {
            "phone" => {
                assert_eq!(figures(&k["today"]), usage_row(&gate, &today, label));
                assert_eq!(k["today"]["errors"], 1, "{k}");
            }
            _ => assert_eq!(figures(&k["today"]), [0; 6], "{k}"),
        }
    }
    // No key's secret anywhere in the answer.
    let text = status.to_string();
    assert!(!text.contains(&admin) && !text.contains(&phone), "{text}");
}
