//! `claudegate::openai::chat::translate_request`: a client's `/v1/chat/completions` body
//! (arbitrary bytes, parsed as JSON as the server does) into an Anthropic Messages request.
//!
//! Bad input must give `Err(TranslateError)`, never a panic. On `Ok`, the body must hold the
//! invariants of [`claudegate_fuzz::check_translated`], and `stream` echoes the request's.
//! On `Err`, the error names a parameter (the 400 says which one).
#![no_main]

use claudegate::openai::chat::translate_request;
use claudegate_fuzz::{check_translated, resolve};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match translate_request(&req, &resolve) {
        Ok(t) => {
            check_translated(&req, &t);
            assert_eq!(t.stream, req["stream"] == true, "stream flag");
            assert!(!t.include_usage || req["stream_options"]["include_usage"] == true);
        }
        Err(e) => assert!(e.param.is_some(), "a chat error names its parameter"),
    }
});
