//! The routes (front doors): one module per family of endpoints. Each reads its request,
//! translates it when its protocol is not Anthropic's, hands it to a backend, and writes the
//! answer (or an error) in the caller's protocol.

use std::collections::HashMap;

use serde::de::IgnoredAny;

use crate::base::error::{ApiError, ErrorKind};
use crate::base::jsonspan::Grammar;

pub mod complete;
pub mod fetch;
pub mod messages;
pub mod openai;
pub mod pages;
pub mod relay;
pub mod state;
pub mod status;

/// Why a body is not a JSON object, in serde_json's words: the doors' one wording. Asked only
/// once a body is known to be wrong (the scan refused it, or it parsed to something else), of
/// the parser that accepts what the scan's `grammar` accepts: `Value` for the bodies read as
/// values (the OpenAI doors, the CLI backend); for the Messages pass-through
/// ([`Grammar::Raw`]) any value, the outermost object's keys read as strings.
fn not_json(bytes: &[u8], grammar: Grammar) -> ApiError {
    let object = bytes.trim_ascii_start().first() == Some(&b'{');
    let parsed = match grammar {
        Grammar::Value => serde_json::from_slice::<serde_json::Value>(bytes).map(drop),
        Grammar::Raw if object => {
            serde_json::from_slice::<HashMap<String, IgnoredAny>>(bytes).map(drop)
        }
        Grammar::Raw => serde_json::from_slice::<IgnoredAny>(bytes).map(drop),
    };
    let why = match parsed {
        Err(e) => format!("the request body is not valid JSON: {e}"),
        // Only a text over 4 GiB, which the scan does not take.
        Ok(()) if object => "the request body is too large to read (4 GiB at most)".into(),
        Ok(()) => "the request body must be a JSON object".into(),
    };
    ApiError::new(ErrorKind::InvalidRequest, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(body: &str, grammar: Grammar) -> String {
        not_json(body.as_bytes(), grammar).message
    }

    #[test]
    fn not_json_speaks_for_the_scan_that_refused() {
        for grammar in [Grammar::Value, Grammar::Raw] {
            assert_eq!(
                why("[1, 2]", grammar),
                "the request body must be a JSON object"
            );
            assert!(
                why("{\"a\": ", grammar)
                    .starts_with("the request body is not valid JSON: EOF while parsing"),
                "{grammar:?}"
            );
        }
        // `Value` refuses a number beyond an f64; the pass-through takes it, so there the
        // body's fault is only that it is no object.
        assert!(why("[1e400]", Grammar::Value).contains("not valid JSON: number out of range"));
        assert_eq!(
            why("[1e400]", Grammar::Raw),
            "the request body must be a JSON object"
        );
        // The pass-through reads the outermost keys as strings: a lone surrogate there makes
        // an object it refuses, which is told as such (it used to be "must be a JSON object").
        let key = why(r#"{"\ud800": 1}"#, Grammar::Raw);
        assert!(
            key.starts_with("the request body is not valid JSON: unexpected end of hex escape"),
            "{key}"
        );
        assert!(crate::base::jsonspan::object_members(r#"{"\ud800": 1}"#).is_none());
        // An object either parser takes is refused by the scan only for its size.
        assert_eq!(
            why(" {\"a\": 1}", Grammar::Value),
            "the request body is too large to read (4 GiB at most)"
        );
    }
}
