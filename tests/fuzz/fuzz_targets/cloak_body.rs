//! `claudegate::backends::oauth::cloak::Cloak::body`: the in-place edit of a client's Messages
//! body (through `claudegate::base::jsonspan`) that adds Claude Code's identity line and
//! `metadata.user_id`, and breaks up sensitive words.
//!
//! Input: one flags byte (bit 0: `cloaking.strict`, bit 1: sensitive words configured, bit 2:
//! a `count_tokens` body), then the body text (UTF-8 only, as the server requires).
//!
//! Checks, beyond no panic:
//! - `body` refuses JSON that is not an object; for a JSON object it succeeds, and its output
//!   is valid JSON, an object again;
//! - the output's `system` opens with the identity line (as a first text block, or as the
//!   caller's own string that already starts with it);
//! - `metadata.user_id` is a string unless `count_tokens` (then `metadata` is untouched);
//! - every other top-level member is unchanged, and so are `messages` without sensitive
//!   words.
#![no_main]

use std::sync::OnceLock;

use claudegate::backends::oauth::cloak::{Cloak, IDENTITY};
use claudegate::config::Config;
use claudegate_fuzz::split_flags;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// One Cloak per (strict, words) combination, sharing a device id in a temporary directory.
fn cloaks() -> &'static [Cloak; 4] {
    static CLOAKS: OnceLock<[Cloak; 4]> = OnceLock::new();
    CLOAKS.get_or_init(|| {
        let dir = std::env::temp_dir().join("claudegate-fuzz-cloak");
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let make = |i: usize| {
            let mut cfg = Config::default().cloaking;
            cfg.strict = i & 1 != 0;
            if i & 2 != 0 {
                cfg.sensitive_words = ["openai", "codex", "größe", "a"]
                    .iter()
                    .map(|w| w.to_string())
                    .collect();
                cfg.sensitive_words
                    .sort_by_key(|w| std::cmp::Reverse(w.len()));
            }
            Cloak::new(cfg, &dir).expect("a cloak")
        };
        [make(0), make(1), make(2), make(3)]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, body)) = split_flags(data) else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(body) else {
        return;
    };
    let (strict, words, count_tokens) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let cloak = &cloaks()[usize::from(flags & 3)];
    let input = serde_json::from_str::<Value>(raw).ok();
    let result = cloak.body(raw, "acct-uuid-1", "sess-1", count_tokens);
    let input = match input {
        Some(Value::Object(input)) => input,
        Some(_) => {
            assert!(result.is_err(), "a JSON non-object was cloaked");
            return;
        }
        // Not JSON to serde_json's `Value`; `jsonspan` may still take it (its raw values accept
        // a lone surrogate escape such as `"\ud800"`, which `Value` refuses), and the body then
        // goes upstream as the client wrote it. Nothing to compare against.
        None => return,
    };
    let out = result.expect("a JSON object must cloak");
    let parsed: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("cloaked body is not JSON ({e}): {out}"));
    let output = parsed.as_object().expect("cloaked body is an object");

    match &output["system"] {
        Value::String(s) => {
            assert!(!strict, "strict mode leaves a string system");
            assert!(
                s.starts_with(IDENTITY),
                "string system without the identity"
            );
        }
        Value::Array(blocks) => {
            assert_eq!(blocks[0]["type"], "text");
            assert!(
                blocks[0]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(IDENTITY)),
                "system does not open with the identity"
            );
            if strict {
                assert_eq!(blocks.len(), 1, "strict keeps only the identity");
            }
        }
        other => panic!("system is {other}"),
    }
    if count_tokens {
        assert_eq!(
            output.get("metadata"),
            input.get("metadata"),
            "metadata changed"
        );
    } else {
        assert!(output["metadata"]["user_id"].is_string(), "no user_id");
    }
    for (k, v) in &input {
        let ours = ["system", "metadata"].contains(&k.as_str()) || (words && k == "messages");
        if !ours {
            assert_eq!(output.get(k), Some(v), "member `{k}` changed");
        }
    }
    assert_eq!(
        output.len(),
        input.len()
            + usize::from(!input.contains_key("system"))
            + usize::from(!count_tokens && !input.contains_key("metadata")),
        "members added or lost"
    );
});
