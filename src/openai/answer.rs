//! What both OpenAI doors report about an Anthropic answer: why it ended, and its token
//! counts. Chat Completions and Responses name these differently, but read them the same way.

use serde_json::Value;

use crate::anthropic::usage::Usage;

/// Why an answer ended, in the terms the OpenAI APIs distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `end_turn`, `stop_sequence`, `pause_turn`, or a stream that never said.
    Stop,
    /// `max_tokens`, or the context window was full (`model_context_window_exceeded`).
    Length,
    /// `tool_use`: the answer is a set of tool calls.
    ToolCalls,
    /// `refusal`: the model declined.
    ContentFilter,
}

/// Anthropic `stop_reason` → [`Ending`].
pub fn ending(stop_reason: Option<&str>) -> Ending {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => Ending::Length,
        Some("tool_use") => Ending::ToolCalls,
        Some("refusal") => Ending::ContentFilter,
        _ => Ending::Stop,
    }
}

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Every input token: fresh input plus cache reads plus cache writes (Anthropic counts the
    /// three apart; OpenAI's prompt count includes cached tokens).
    pub input: u64,
    /// Input tokens read from the cache.
    pub cached: u64,
    /// Output tokens, thinking included (Anthropic does not report thinking apart).
    pub output: u64,
}

/// An Anthropic `usage` object (absent fields count 0) → [`Counts`].
pub fn counts(usage: &Value) -> Counts {
    let mut u = Usage::default();
    u.merge(usage);
    Counts {
        input: u.input + u.cache_read + u.cache_creation,
        cached: u.cache_read,
        output: u.output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_reasons_and_usage() {
        for (reason, want) in [
            (Some("end_turn"), Ending::Stop),
            (Some("stop_sequence"), Ending::Stop),
            (Some("pause_turn"), Ending::Stop),
            (None, Ending::Stop),
            (Some("max_tokens"), Ending::Length),
            (Some("model_context_window_exceeded"), Ending::Length),
            (Some("tool_use"), Ending::ToolCalls),
            (Some("refusal"), Ending::ContentFilter),
        ] {
            assert_eq!(ending(reason), want, "{reason:?}");
        }
        let c = counts(&json!({"input_tokens": 10, "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 5, "output_tokens": 7}));
        assert_eq!(
            c,
            Counts {
                input: 45,
                cached: 30,
                output: 7
            }
        );
        assert_eq!(counts(&Value::Null).input, 0);
    }
}
