//! One parameter policy for `/v1/chat/completions`, whichever backend answers it: which
//! top-level parameters are used, accepted and ignored, accepted only at a neutral value, or
//! refused, each refusal with its reason. The OAuth backend's translation
//! ([`super::chat::translate_request`]) and the CLI backend's check (the route reads the request
//! with [`CLI`] before translating it) both consult one table (`PARAMS`); what differs between
//! the backends is data ([`Backend::lacks`]), not a second table. The CLI backend's own check
//! of an Anthropic request (`backends::cli`) takes its reasons from [`CLI`] too.
//!
//! Principle: a parameter we cannot honour is refused with a 400 naming it, never silently
//! dropped. A few are accepted and ignored because ignoring them cannot change the answer the
//! client relies on. `null` always means "absent". Unknown parameters are refused, as OpenAI
//! itself does, so a typo is reported instead of quietly changing nothing.
//!
//! | parameter | policy |
//! |---|---|
//! | `model`, `messages`, `stream`, `stream_options`, `max_tokens`, `max_completion_tokens` | used (the CLI backend checks the limit but uses its own) |
//! | `tools`, `tool_choice`, `parallel_tool_calls` | used; a backend that cannot force a tool (the CLI's) takes `tool_choice` `none`/`auto` only |
//! | `temperature`, `top_p`, `top_k` | used; refused by a backend without sampling parameters |
//! | `stop` | used; a backend without stop sequences takes only `[]` |
//! | `response_format` | used; a backend without structured output takes `text` and `json_object` (an instruction), not `json_schema` |
//! | `reasoning_effort` | used; refused by a backend without reasoning control |
//! | `n` | 1 only: one Anthropic call gives one choice |
//! | `logprobs`, `top_logprobs` | `false` / 0 only: Anthropic has no log probabilities |
//! | `logit_bias` | `{}` only |
//! | `frequency_penalty`, `presence_penalty` | 0 only: no equivalent |
//! | `modalities` | `["text"]` only |
//! | `verbosity` | `medium` (the default) only: no equivalent for `low`/`high` |
//! | `audio`, `prediction`, `web_search_options`, `functions`, `function_call` | refused |
//! | `user`, `safety_identifier` | ignored: `metadata.user_id` belongs to cloaking |
//! | `seed` | ignored: OpenAI gives no determinism guarantee either |
//! | `store`, `metadata` | ignored: they only concern OpenAI's dashboard storage |
//! | `service_tier` | ignored: the subscription has one tier |
//! | `prompt_cache_key` | ignored: a routing hint; Anthropic caches by prefix |

use serde_json::{json, Map, Value};

use super::TranslateError;
use crate::base::jsonspan::Item;

/// A capability some backend behind the chat door may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ability {
    Tools,
    /// Forcing a tool call (`tool_choice` `required`/`any` or a named tool).
    ToolChoice,
    Sampling,
    StopSequences,
    StructuredOutput,
    Reasoning,
}

/// A backend, as the chat door's policy sees it.
#[derive(Debug)]
pub struct Backend {
    /// Its name in a refusal.
    pub name: &'static str,
    /// What it cannot do, and why.
    pub lacks: &'static [(Ability, &'static str)],
}

impl Backend {
    /// Why this backend cannot do `ability`; `None` when it can.
    pub fn why_not(&self, ability: Ability) -> Option<&'static str> {
        self.lacks
            .iter()
            .find(|(a, _)| *a == ability)
            .map(|(_, why)| *why)
    }
}

/// The OAuth backend: the Messages API, which can do everything the table uses.
pub const OAUTH: Backend = Backend {
    name: "oauth",
    lacks: &[],
};

/// The CLI backend: one locked-down `claude -p` run per request.
pub const CLI: Backend = Backend {
    name: "claude-cli",
    lacks: &[
        (
            Ability::ToolChoice,
            "it cannot force a tool call: Claude Code has no option for it (`auto` and `none` work)",
        ),
        (
            Ability::Sampling,
            "it cannot set sampling parameters: Claude Code has no option for them",
        ),
        (
            Ability::StopSequences,
            "it cannot set stop sequences: Claude Code has no option for them",
        ),
        (
            Ability::StructuredOutput,
            "it has no structured output or JSON mode: Claude Code answers in text",
        ),
    ],
};

/// The value a parameter must have to ask for nothing.
type Neutral = fn(&Value) -> bool;

/// What happens to one top-level parameter.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// Translated by the door.
    Used,
    /// Translated when the backend has the ability; otherwise accepted only at `Neutral`.
    Needs(Ability, Neutral),
    /// Accepted at the neutral value only; otherwise refused with the reason.
    OnlyNeutral(Neutral, &'static str),
    /// Accepted and ignored (the table of the module docs says why that is harmless).
    Ignored,
    /// Always refused, with the reason.
    Refused(&'static str),
}

/// Neutral for a parameter no value of which asks for nothing (shared with the CLI
/// backend's check of an Anthropic request).
pub fn never(_: &Value) -> bool {
    false
}

/// Neutral when the list is empty.
pub fn empty_list(v: &Value) -> bool {
    v.as_array().is_some_and(Vec::is_empty)
}

const NO_LOGPROBS: &str = "log probabilities are not available from Anthropic models";
const NO_PENALTIES: &str = "frequency and presence penalties are not supported by Anthropic models";

/// Every top-level chat parameter and its policy (the table of the module docs).
const PARAMS: &[(&str, Policy)] = &[
    ("model", Policy::Used),
    ("messages", Policy::Used),
    ("stream", Policy::Used),
    ("stream_options", Policy::Used),
    ("max_tokens", Policy::Used),
    ("max_completion_tokens", Policy::Used),
    ("tools", Policy::Needs(Ability::Tools, empty_list)),
    (
        "tool_choice",
        Policy::Needs(Ability::ToolChoice, |v| v == "none" || v == "auto"),
    ),
    (
        "parallel_tool_calls",
        Policy::Needs(Ability::Tools, Value::is_boolean),
    ),
    ("temperature", Policy::Needs(Ability::Sampling, never)),
    ("top_p", Policy::Needs(Ability::Sampling, never)),
    ("top_k", Policy::Needs(Ability::Sampling, never)),
    ("stop", Policy::Needs(Ability::StopSequences, empty_list)),
    (
        "response_format",
        // JSON mode is an instruction in the system prompt (`draft`), which every backend
        // takes; only a schema needs the backend's structured output.
        Policy::Needs(Ability::StructuredOutput, |v| {
            v["type"] == "text" || v["type"] == "json_object"
        }),
    ),
    ("reasoning_effort", Policy::Needs(Ability::Reasoning, never)),
    (
        "n",
        Policy::OnlyNeutral(
            |v| v.as_u64() == Some(1),
            "only `n: 1` is supported: each request yields one choice",
        ),
    ),
    (
        "logprobs",
        Policy::OnlyNeutral(|v| v.as_bool() == Some(false), NO_LOGPROBS),
    ),
    (
        "top_logprobs",
        Policy::OnlyNeutral(|v| v.as_u64() == Some(0), NO_LOGPROBS),
    ),
    (
        "logit_bias",
        Policy::OnlyNeutral(
            |v| v.as_object().is_some_and(Map::is_empty),
            "`logit_bias` is not supported by Anthropic models",
        ),
    ),
    (
        "frequency_penalty",
        Policy::OnlyNeutral(|v| v.as_f64() == Some(0.0), NO_PENALTIES),
    ),
    (
        "presence_penalty",
        Policy::OnlyNeutral(|v| v.as_f64() == Some(0.0), NO_PENALTIES),
    ),
    (
        "modalities",
        Policy::OnlyNeutral(
            |v| v == &json!(["text"]),
            "only text output is supported (`modalities: [\"text\"]`)",
        ),
    ),
    (
        "verbosity",
        Policy::OnlyNeutral(
            |v| v == "medium",
            "only the default `verbosity: \"medium\"` is supported: Anthropic models have no \
             equivalent",
        ),
    ),
    ("audio", Policy::Refused("audio output is not supported")),
    (
        "prediction",
        Policy::Refused("predicted outputs are not supported"),
    ),
    (
        "web_search_options",
        Policy::Refused("web search is not supported on /v1/chat/completions"),
    ),
    (
        "functions",
        Policy::Refused("legacy function calling is not supported: send `tools` and `tool_choice`"),
    ),
    (
        "function_call",
        Policy::Refused("legacy function calling is not supported: send `tools` and `tool_choice`"),
    ),
    ("user", Policy::Ignored),
    ("safety_identifier", Policy::Ignored),
    ("seed", Policy::Ignored),
    ("store", Policy::Ignored),
    ("metadata", Policy::Ignored),
    ("service_tier", Policy::Ignored),
    ("prompt_cache_key", Policy::Ignored),
];

/// The top of a chat request, read the same way for every backend.
#[derive(Debug, Clone)]
pub struct ChatRequest<'r> {
    /// The request's parameters (`null` means absent): the whole request on the CLI
    /// backend, every member but `messages` on the OAuth backend ([`super::Request`]).
    params: &'r Map<String, Value>,
    /// The model as the client named it.
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The client's output limit (`max_completion_tokens`, OpenAI's current name, else
    /// `max_tokens`).
    pub max_tokens: Option<u64>,
}

fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::new(param, message)
}

impl<'r> ChatRequest<'r> {
    /// Reads and checks a whole chat request for `backend`: every parameter against the table
    /// (`PARAMS`), then the ones every backend uses.
    pub fn read(req: &'r Value, backend: &Backend) -> Result<ChatRequest<'r>, TranslateError> {
        let params = req
            .as_object()
            .ok_or_else(|| bad("body", "the request body must be a JSON object"))?;
        let messages = params
            .get("messages")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty());
        ChatRequest::check(params, messages, backend)
    }

    /// The same for a request read as a [`super::Request`]: its parameters, and its
    /// `messages` left in the client's text.
    pub fn read_split(
        params: &'r Map<String, Value>,
        messages: Option<Item>,
        backend: &Backend,
    ) -> Result<ChatRequest<'r>, TranslateError> {
        let messages = messages.is_some_and(|m| m.is_array() && m.items().next().is_some());
        ChatRequest::check(params, messages, backend)
    }

    /// `messages_given`: `messages` is a non-empty array.
    fn check(
        params: &'r Map<String, Value>,
        messages_given: bool,
        backend: &Backend,
    ) -> Result<ChatRequest<'r>, TranslateError> {
        for (k, v) in params.iter().filter(|(_, v)| !v.is_null()) {
            if let Some(why) = refusal(k, v, backend) {
                return Err(bad(k.as_str(), why));
            }
        }
        let present = |key: &str| params.get(key).filter(|v| !v.is_null());
        let model = match present("model").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => return Err(bad("model", "`model` is required (a model id or alias)")),
        };
        if !messages_given {
            return Err(bad("messages", "`messages` must be a non-empty array"));
        }
        let stream = match present("stream") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad("stream", "`stream` must be a boolean"))?,
        };
        let include_usage = match present("stream_options") {
            None => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| bad("stream_options.include_usage", "must be a boolean"))?,
            },
            Some(_) => return Err(bad("stream_options", "must be an object")),
        };
        let mut max_tokens = None;
        for key in ["max_tokens", "max_completion_tokens"] {
            if let Some(v) = present(key) {
                match v.as_u64() {
                    Some(n) if n >= 1 => max_tokens = Some(n),
                    _ => return Err(bad(key, format!("`{key}` must be a positive integer"))),
                }
            }
        }
        Ok(ChatRequest {
            params,
            model,
            stream,
            include_usage,
            max_tokens,
        })
    }

    /// The parameters (`null`s included: the readers treat them as absent).
    pub fn params(&self) -> &'r Map<String, Value> {
        self.params
    }

    /// A parameter, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'r Value> {
        self.params.get(key).filter(|v| !v.is_null())
    }
}

/// Why `backend` refuses `key: value`; `None` when it accepts it.
fn refusal(key: &str, value: &Value, backend: &Backend) -> Option<String> {
    let Some((_, policy)) = PARAMS.iter().find(|(k, _)| *k == key) else {
        return Some(format!("unrecognized request argument `{key}`"));
    };
    match *policy {
        Policy::Used | Policy::Ignored => None,
        Policy::Needs(ability, neutral) => {
            let why = backend.why_not(ability)?;
            (!neutral(value)).then(|| {
                format!(
                    "`{key}` is not supported by the {} backend: {why}",
                    backend.name
                )
            })
        }
        Policy::OnlyNeutral(neutral, why) => (!neutral(value)).then(|| format!("`{key}`: {why}")),
        Policy::Refused(why) => Some(format!("`{key}`: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(extra: Value, backend: &Backend) -> Result<ChatRequest<'static>, TranslateError> {
        let mut req = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        ChatRequest::read(Box::leak(Box::new(req)), backend)
    }

    #[test]
    fn every_parameter_is_listed_once() {
        for (i, (k, _)) in PARAMS.iter().enumerate() {
            assert!(
                !PARAMS[i + 1..].iter().any(|(other, _)| other == k),
                "{k} twice"
            );
        }
    }

    #[test]
    fn a_missing_ability_is_named_and_neutral_values_pass() {
        let e = read(json!({"temperature": 0.2}), &CLI).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("claude-cli") && e.message.contains("sampling"));
        read(json!({"temperature": 0.2}), &OAUTH).unwrap();
        for (k, v) in [
            ("tools", json!([])),
            ("tool_choice", json!("none")),
            ("stop", json!([])),
            ("response_format", json!({"type": "text"})),
            ("parallel_tool_calls", json!(false)),
            ("verbosity", json!("medium")),
            ("temperature", Value::Null),
        ] {
            read(json!({ k: v }), &CLI).unwrap();
        }
    }

    #[test]
    fn the_top_of_the_request_is_read_once() {
        let r = read(
            json!({"stream": true, "stream_options": {"include_usage": true}, "max_tokens": 10,
                "max_completion_tokens": 20, "seed": null}),
            &OAUTH,
        )
        .unwrap();
        assert_eq!(
            (r.stream, r.include_usage, r.max_tokens),
            (true, true, Some(20))
        );
        assert!(r.get("seed").is_none(), "nulls are absent");
        for (extra, param) in [
            (json!({"model": ""}), "model"),
            (json!({"messages": []}), "messages"),
            (json!({"stream": "yes"}), "stream"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"stream_options": 1}), "stream_options"),
            (json!({"frobnicate": 1}), "frobnicate"),
        ] {
            let e = read(extra.clone(), &OAUTH).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
        }
    }
}
