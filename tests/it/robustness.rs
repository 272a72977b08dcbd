//! Bad input on every route: a bounded run of random and hostile bodies (malformed JSON, wrong
//! types, deep nesting, invalid UTF-8, huge strings within the limit). Every answer must be a
//! well-formed HTTP response with a JSON (or SSE) body and no 500 (a 500 is only ever a caught
//! panic); afterwards the server still answers `/health` and a normal request.

use crate::common::gate::*;
use crate::common::mock_upstream::MockUpstream;
use serde_json::json;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ROUTES: &[&str] = &[
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/complete",
    "/v1/fetch",
];

/// One hostile body.
fn body(rng: &mut Rng) -> Vec<u8> {
    let scalar = |rng: &mut Rng| match rng.below(7) {
        0 => json!(null),
        1 => json!(rng.below(2) == 1),
        2 => json!(rng.next() as i64),
        3 => json!(-1.5e308),
        4 => json!("x".repeat(rng.below(64) as usize)),
        5 => json!([]),
        _ => json!({}),
    };
    match rng.below(12) {
        0 => b"{not json".to_vec(),
        1 => vec![0xff, 0xfe, b'{', 0xc3, b'}'], // invalid UTF-8
        2 => "[".repeat(5000).into_bytes(),      // deep nesting
        3 => format!("{{\"a\":{}}}", "[".repeat(200)).into_bytes(),
        4 => json!({"model": "m", "messages": "x".repeat(1 << 20), "prompt": "y".repeat(1 << 19)}).to_string().into_bytes(),
        5 => json!({"model": scalar(rng), "messages": scalar(rng), "input": scalar(rng), "prompt": scalar(rng), "url": scalar(rng)}).to_string().into_bytes(),
        6 => json!({"model": "claude-sonnet-4-6", "messages": [{"role": scalar(rng), "content": [{"type": scalar(rng), "text": scalar(rng)}]}], "stream": scalar(rng), "max_tokens": scalar(rng)}).to_string().into_bytes(),
        7 => json!({"model": "m", "input": [{"type": "function_call_output", "call_id": scalar(rng), "output": scalar(rng)}, {"type": "reasoning", "encrypted_content": "claudegate:v1:!!!"}], "tools": [{"type": scalar(rng)}]}).to_string().into_bytes(),
        8 => json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}], "tool_choice": scalar(rng), "n": scalar(rng)}).to_string().into_bytes(),
        9 => json!({"url": "http://[::1", "max_bytes": scalar(rng), "strip": scalar(rng)}).to_string().into_bytes(),
        10 => Vec::new(),
        _ => (0..rng.below(2048)).map(|_| rng.next() as u8).collect(),
    }
}

#[test]
fn a_thousand_hostile_bodies_on_every_route() {
    let mock = MockUpstream::start();
    let (setup, key) = logged_in_setup(
        &mock.url(),
        json!({"limits": {"per_key_rpm": 0, "max_concurrent": 64}, "max_body_bytes": 4 << 20, "fetch": {"rpm": 0, "timeout_ms": 2000}}),
    );
    let mut gate = Gate::spawn(setup);
    let seed = 0x5eed_c1a0_d6a7_e001;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..1000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "bounded in time"
        );
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let b = body(&mut rng);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let resp = agent
            .post(&gate.url(route))
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .send(&b[..]);
        let mut resp =
            resp.unwrap_or_else(|e| panic!("request {i} (seed {seed:#x}) to {route} failed: {e}"));
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        assert_ne!(
            status, 500,
            "request {i} to {route} panicked the handler: {text}"
        );
        *statuses.entry(status).or_default() += 1;
        if status != 200 || ctype.starts_with("application/json") {
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "request {i} to {route}: {status} non-JSON body {text:?}"
            );
        }
    }
    // The run exercised both refusals and bodies that went all the way upstream.
    assert!(statuses.get(&400).is_some_and(|n| *n > 100), "{statuses:?}");
    assert!(statuses.contains_key(&200), "{statuses:?}");
    assert!(mock.count() > 0, "some bodies reached the upstream");
    gate.assert_healthy();
    let r = post(
        &gate.url("/v1/messages"),
        &[("x-api-key", &key)],
        r#"{"model":"claude-sonnet-4-6","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!gate.log().contains("panicked"), "{}", gate.log());
}

/// A corrupt login file at start is a clear error naming the file, and it is left untouched.
#[test]
fn corrupt_token_file_at_start_is_a_clear_error_and_left_alone() {
    let setup = Setup::new(json!({}));
    setup.store_login(json!({"kind": "oauth"})); // valid JSON, missing fields
    let path = setup.data_dir().join("token.json");
    std::fs::write(&path, "{\"kind\":\"oauth\",\"access_tok").unwrap();
    for args in [vec!["serve"], vec!["status"]] {
        let out = setup.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("token.json"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"kind\":\"oauth\",\"access_tok"
    );
}
