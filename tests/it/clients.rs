//! The drop-in clients in `contrib/clients/` (Python, standard library only; JavaScript, no
//! dependencies), each driven end to end against the real binary in front of the mock upstream.
//!
//! Each test runs one call through a driver (`tests/clients/drive.py` or `drive.mjs`), which
//! prints one JSON line in the same shape for both languages, so every scenario is checked
//! alike for both: a completion (through the drop-in function configured from the environment
//! only, and through a client object), a page fetch, a wrong key typed as an auth error with
//! the server's message, a 429 with `Retry-After` waited out and then answered, a
//! `Retry-After` beyond the client's cap failing at once, the client's own timeout, and a 503
//! without `Retry-After` failing at once. No output of a driver may contain a key (the driver
//! prints the client's repr and each error's str and repr, so that check means something).
//!
//! The interpreters are the machine's `python3` and `node` (Node ≥ 18, for the global
//! `fetch`). `make test` gets Node from `tests/e2e/install.sh` (Debian's `nodejs` on a fresh
//! machine) and Python is part of Debian; a missing one skips locally with a banner and fails
//! under `CLAUDEGATE_E2E_REQUIRED=1`.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use crate::common::run::{repo, run_with_deadline, skip_unless_required};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Longest a driver may run; every scenario needs a few seconds at most.
const DEADLINE: Duration = Duration::from_secs(30);
/// The model id the mock's answers name.
const HAIKU: &str = "claude-haiku-4-5-20251001";

#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Node,
}

impl Lang {
    fn program(self) -> &'static str {
        match self {
            Lang::Python => "python3",
            Lang::Node => "node",
        }
    }

    fn driver(self) -> PathBuf {
        repo().join(match self {
            Lang::Python => "tests/clients/drive.py",
            Lang::Node => "tests/clients/drive.mjs",
        })
    }
}

/// The interpreter on `PATH`, or `None` (a skip, or a failure under CLAUDEGATE_E2E_REQUIRED=1).
fn interpreter(lang: Lang, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(lang.program()))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = match lang {
            Lang::Python => "python3 is not on PATH (Debian: apt-get install python3)",
            Lang::Node => "node is not on PATH (`make e2e-deps` installs Debian's nodejs)",
        };
        skip_unless_required(test, why);
    }
    found
}

/// Runs one call (`spec`, see drive.py) with `CLAUDEGATE_URL` = the gate and `CLAUDEGATE_KEY` =
/// `key`; returns the driver's JSON line. Fails if any output holds a secret in `secrets`.
fn drive(
    lang: Lang,
    interp: &PathBuf,
    gate: &Gate,
    key: &str,
    spec: Value,
    secrets: &[&str],
) -> Value {
    let home = TempDir::new();
    let mut cmd = Command::new(interp);
    cmd.arg(lang.driver())
        .arg(spec.to_string())
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CLAUDEGATE_URL", gate.url(""))
        .env("CLAUDEGATE_KEY", key);
    let run = run_with_deadline(&mut cmd, DEADLINE);
    for secret in secrets.iter().chain([&key]) {
        // The failure message shows the output with the key masked: it must not spread it.
        let masked = |s: &str| s.replace(secret, "<KEY>");
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a key appears in the {lang:?} client's output:\n{}\n{}",
            masked(&run.stdout),
            masked(&run.stderr)
        );
    }
    run.assert_success(&format!("{lang:?} driver"));
    let line = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "the {lang:?} driver printed no JSON line ({e}):\n{}\n--- stderr:\n{}",
            run.stdout, run.stderr
        )
    })
}

/// The error the driver reported, checked to be of `class` (and `kind`) with `status`; fails
/// if the call succeeded.
fn expect_error<'a>(out: &'a Value, class: &str, kind: &str, status: Value) -> &'a Value {
    let e = &out["error"];
    assert!(e.is_object(), "expected an error, got {out}");
    assert_eq!(
        (&e["class"], &e["kind"], &e["status"]),
        (&json!(class), &json!(kind), &status),
        "{out}"
    );
    e
}

/// The driver's elapsed time, and how many calls reached the mock's `/v1/messages`.
fn elapsed_and_calls(out: &Value, mock: &MockUpstream) -> (u64, usize) {
    let elapsed = out["elapsed_ms"].as_u64().unwrap();
    (elapsed, mock.requests_to("/v1/messages").len())
}

// --- the scenarios, each run for both clients ------------------------------------------------

fn completes(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));

    // The drop-in function, configured from the environment alone.
    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events_with_usage(HAIKU, &["Hello", " there"], 12)),
    );
    let spec = json!({"client": null, "call": "complete",
        "args": {"prompt": "Say hello.", "system": "You are terse.", "model": "haiku"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    let r = &out["result"];
    assert_eq!(r["text"], "Hello there", "{out}");
    assert_eq!(r["model"], HAIKU, "{out}");
    assert!(r["duration_ms"].is_u64(), "{out}");
    assert_eq!(r["usage"], Value::Null, "{out}");
    let up = mock.last_request().unwrap().json();
    assert_eq!(
        up["messages"],
        json!([{"role": "user", "content": "Say hello."}])
    );
    assert!(up["system"].to_string().contains("You are terse."), "{up}");

    // A client object, with token counts asked for.
    mock.enqueue(
        "/v1/messages",
        Reply::sse(sse_text_events_with_usage(HAIKU, &["ok"], 7)),
    );
    let spec = json!({"client": {"timeout_s": 10}, "call": "complete",
        "args": {"prompt": "Say ok.", "output_format": "json"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    assert_eq!(out["result"]["text"], "ok", "{out}");
    assert_eq!(out["result"]["usage"]["input_tokens"], 7, "{out}");
    assert!(
        out["client"].as_str().unwrap().contains(&gate.url("")),
        "{out}"
    );
}

fn fetches(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    // The page, on 127.0.0.2; the fetcher's debug-build seam (src/backends/web/seam.rs) sends
    // what the real guard approved for the public 1.2.3.4 there (see tests/it/fetch.rs).
    let site = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2 (Linux loopback)");
    let port = site.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // One page per connection; a bounded number, so the thread ends with the test binary.
        for mut s in site.incoming().take(8).flatten() {
            let mut head = String::new();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            while reader.read_line(&mut head).is_ok_and(|n| n > 2) {}
            let body = "<html><head><script>DROP-ME</script></head><body><p>Fetched through claudegate</p></body></html>";
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(reply.as_bytes()).ok();
        }
    });
    let mock = MockUpstream::start();
    let (setup, key) = logged_in_setup(&mock.url(), json!({}));
    let gate = Gate::spawn_with_env(
        setup,
        &[
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("CLAUDEGATE_TEST_FETCH_DNS", "site.test=1.2.3.4"),
            ("CLAUDEGATE_TEST_FETCH_ROUTE", "1.2.3.4=127.0.0.2"),
        ],
    );
    let url = format!("http://site.test:{port}/page");
    let spec = json!({"client": null, "call": "fetch", "args": {"url": url}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    let r = &out["result"];
    assert_eq!(r["status"], 200, "{out}");
    assert_eq!(r["final_url"], url, "{out}");
    assert!(
        r["content_type"].as_str().unwrap().starts_with("text/html"),
        "{out}"
    );
    assert_eq!(r["truncated"], false, "{out}");
    let html = r["html"].as_str().unwrap();
    assert!(
        html.contains("Fetched through claudegate") && !html.contains("DROP-ME"),
        "{out}"
    );
    assert_eq!(mock.count(), 0, "a fetch never reaches the model upstream");
}

fn wrong_key_is_an_auth_error(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let wrong = "cgk_this-key-was-never-minted-0123456789";
    let spec = json!({"client": {"key": wrong}, "call": "complete", "args": {"prompt": "hi"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[wrong]);
    let e = expect_error(&out, "AuthError", "auth", json!(401));
    assert_eq!(e["error_type"], "authentication_error", "{out}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid API key"),
        "the server's own: {out}"
    );
    assert!(e["str"].as_str().unwrap().contains(message), "{out}");
    assert_eq!(e["retry_after"], Value::Null, "{out}");
    assert_eq!(mock.count(), 0);
}

fn waits_out_a_429_then_succeeds(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    let mock = MockUpstream::start();
    // claudegate passes the upstream's 429 and its Retry-After on instead of retrying itself.
    let (gate, key) = logged_in(&mock.url(), json!({"upstream": {"max_retries": 0}}));
    let limited = Reply::error(429, "rate_limit_error", "slow down").retry_after(1);
    mock.enqueue("/v1/messages", limited);
    let answer = Reply::sse(sse_text_events(HAIKU, &["after the wait"]));
    mock.enqueue("/v1/messages", answer);
    let client = json!({"max_retries": 3, "max_retry_wait_s": 5});
    let spec = json!({"client": client, "call": "complete", "args": {"prompt": "hi"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    assert_eq!(out["result"]["text"], "after the wait", "{out}");
    let (elapsed, calls) = elapsed_and_calls(&out, &mock);
    assert!(
        elapsed >= 900,
        "Retry-After: 1 waited out ({elapsed} ms): {out}"
    );
    assert_eq!(calls, 2, "{out}");
}

fn retry_after_beyond_the_cap_fails_at_once(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({"upstream": {"max_retries": 0}}));
    let limited = Reply::error(429, "rate_limit_error", "come back in two minutes");
    mock.enqueue("/v1/messages", limited.retry_after(120));
    let client = json!({"max_retries": 3, "max_retry_wait_s": 60});
    let spec = json!({"client": client, "call": "complete", "args": {"prompt": "hi"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    let e = expect_error(&out, "RateLimitError", "rate_limit", json!(429));
    assert_eq!(e["error_type"], "rate_limit_error", "{out}");
    assert_eq!(e["message"], "come back in two minutes", "{out}");
    assert_eq!(e["retry_after"], 120.0, "{out}");
    let (elapsed, calls) = elapsed_and_calls(&out, &mock);
    assert!(elapsed < 3000, "failed at once ({elapsed} ms): {out}");
    assert_eq!(calls, 1, "never retried: {out}");
}

fn times_out(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = logged_in(&mock.url(), json!({}));
    let slow = Reply::sse(sse_text_events(HAIKU, &["too late"])).delay_before_ms(10_000);
    mock.enqueue("/v1/messages", slow);
    let spec = json!({"client": {"timeout_s": 1}, "call": "complete", "args": {"prompt": "hi"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    expect_error(&out, "ClientTimeoutError", "timeout", Value::Null);
    let (elapsed, calls) = elapsed_and_calls(&out, &mock);
    assert!(
        (900..5000).contains(&elapsed),
        "the 1 s deadline held ({elapsed} ms): {out}"
    );
    assert_eq!(calls, 1, "a timeout is not retried: {out}");
}

fn no_login_is_unavailable_at_once(lang: Lang, test: &str) {
    let Some(interp) = interpreter(lang, test) else {
        return;
    };
    let mock = MockUpstream::start();
    let (gate, key) = Gate::start_with_key(upstream_config(&mock.url()));
    let spec = json!({"client": {"max_retries": 3}, "call": "complete", "args": {"prompt": "hi"}});
    let out = drive(lang, &interp, &gate, &key, spec, &[]);
    let e = expect_error(&out, "UnavailableError", "unavailable", json!(503));
    assert_eq!(e["retry_after"], Value::Null, "{out}");
    assert!(
        e["message"].as_str().unwrap().contains("claudegate login"),
        "{out}"
    );
    let (elapsed, calls) = elapsed_and_calls(&out, &mock);
    assert!(
        elapsed < 2000,
        "no Retry-After, no retry ({elapsed} ms): {out}"
    );
    assert_eq!(calls, 0, "{out}");
}

/// The hand-written `claudegate.d.ts` declares exactly what `claudegate.mjs` exports (no
/// TypeScript compiler is needed to catch the two drifting apart).
#[test]
fn the_typescript_declarations_match_the_module() {
    let read =
        |name: &str| std::fs::read_to_string(repo().join("contrib/clients/js").join(name)).unwrap();
    let exported = |text: &str, prefixes: &[&str]| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| prefixes.iter().find_map(|p| l.strip_prefix(p)))
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    };
    let module = exported(
        &read("claudegate.mjs"),
        &["export class ", "export function ", "export const "],
    );
    let declared = exported(
        &read("claudegate.d.ts"),
        &[
            "export declare class ",
            "export declare function ",
            "export declare const ",
        ],
    );
    assert!(module.len() >= 17, "{module:?}");
    assert_eq!(
        module, declared,
        "claudegate.mjs exports (left) vs claudegate.d.ts declares (right)"
    );
}

/// One test per scenario and client.
macro_rules! both {
    ($($scenario:ident => $py:ident, $js:ident;)*) => {$(
        #[test]
        fn $py() {
            $scenario(Lang::Python, stringify!($py));
        }
        #[test]
        fn $js() {
            $scenario(Lang::Node, stringify!($js));
        }
    )*};
}

both! {
    completes => python_completes, node_completes;
    fetches => python_fetches_a_page, node_fetches_a_page;
    wrong_key_is_an_auth_error => python_wrong_key_is_an_auth_error, node_wrong_key_is_an_auth_error;
    waits_out_a_429_then_succeeds => python_waits_out_a_429_then_succeeds, node_waits_out_a_429_then_succeeds;
    retry_after_beyond_the_cap_fails_at_once => python_retry_after_beyond_the_cap_fails_at_once, node_retry_after_beyond_the_cap_fails_at_once;
    times_out => python_times_out, node_times_out;
    no_login_is_unavailable_at_once => python_no_login_is_unavailable_at_once, node_no_login_is_unavailable_at_once;
}
