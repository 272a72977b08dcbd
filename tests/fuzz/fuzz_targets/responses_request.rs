//! `claudegate::openai::responses::translate_request`: a client's `/v1/responses` body
//! (arbitrary bytes, parsed as JSON as the server does) into an Anthropic Messages request.
//!
//! Bad input must give `Err(TranslateError)`, never a panic. On `Ok`, the body must hold the
//! invariants of [`claudegate_fuzz::check_translated`], `stream` echoes the request's, and
//! `max_tokens` is the client's `max_output_tokens` when one was given. A request that
//! translates also starts a `ResponsesStream` whose opening events round-trip as JSON.
#![no_main]

use claudegate::openai::responses::{translate_request, ResponsesStream};
use claudegate_fuzz::{assert_round_trips, check_translated, resolve};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(t) = translate_request(&req, &resolve) else {
        return;
    };
    check_translated(&req, &t);
    assert_eq!(t.stream, req["stream"] == true, "stream flag");
    if let Some(n) = req["max_output_tokens"].as_u64() {
        assert_eq!(t.body["max_tokens"], n, "max_output_tokens not honoured");
    }
    let mut s = ResponsesStream::new("resp_fuzz".into(), 1, &req);
    for (_, data) in s.start() {
        assert_round_trips(&data);
    }
});
