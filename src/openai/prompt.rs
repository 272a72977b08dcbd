//! An OpenAI chat request flattened into one prompt and a system prompt, for a backend that
//! takes text rather than a conversation (the CLI backend runs one `claude -p` per request).

use serde_json::{json, Map, Value};

use super::TranslateError;

/// A chat request as one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flattened {
    /// The conversation as text (a lone user message verbatim).
    pub prompt: String,
    /// The `system` and `developer` messages, joined; `None` when there were none.
    pub system: Option<String>,
    /// The model as the client named it.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
}

/// Parameters accepted without effect on this backend (as on the OAuth backend).
const IGNORED_PARAMS: &[&str] = &[
    "user",
    "safety_identifier",
    "seed",
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    // Without tools there is nothing to run in parallel.
    "parallel_tool_calls",
];

/// Flattens an OpenAI chat request into one prompt plus system, for the CLI backend.
///
/// - `system` and `developer` messages become the system prompt (joined by a blank line, in
///   order). A lone user message is the prompt verbatim; a conversation is written out as
///   `User: …` / `Assistant: …` paragraphs in order (`User (name): …` when a message has a
///   `name`), so nothing the client sent is dropped.
/// - The last message must be the user's: the CLI cannot continue an assistant turn.
/// - Refused with a [`TranslateError`] naming the parameter: tools, tool and function
///   messages, assistant `tool_calls`, non-text content parts (images, files, audio),
///   `n` ≠ 1, `response_format` other than `text`, `reasoning_effort`, `stop`, sampling
///   parameters (`temperature`, `top_p`, `top_k`: the CLI has no way to set them),
///   log probabilities, penalties, audio, predictions, web search and unknown parameters.
/// - Accepted without effect: `max_tokens` / `max_completion_tokens` (checked; the CLI uses its
///   own output limit), `stream_options`, and [`IGNORED_PARAMS`].
///
/// The model stays the client's (the CLI backend checks it against `cli.allowed_models`).
pub fn flatten_chat(req: &Value) -> Result<Flattened, TranslateError> {
    fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError::new(param, message)
    }
    let req = req
        .as_object()
        .ok_or_else(|| bad("body", "the request body must be a JSON object"))?;
    // `null` means absent, as on the OAuth backend.
    let p: Map<String, Value> = req
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    refuse_chat_params(&p)?;
    let model = match p.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => return Err(bad("model", "`model` is required (a model id or alias)")),
    };
    let stream = match p.get("stream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("stream", "`stream` must be a boolean"))?,
    };
    let msgs = match p.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => return Err(bad("messages", "`messages` must be a non-empty array")),
    };

    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&str, Option<&str>, String)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let at = |k: &str| format!("messages[{i}].{k}");
        let role = m["role"]
            .as_str()
            .ok_or_else(|| bad(at("role"), "each message needs a `role`"))?;
        match role {
            "system" | "developer" | "user" | "assistant" => {}
            "tool" | "function" => {
                return Err(bad(
                    at("role"),
                    format!(
                        "`{role}` messages are not supported: the claude-cli backend has no tools"
                    ),
                ))
            }
            other => return Err(bad(at("role"), format!("unknown role `{other}`"))),
        }
        for key in ["tool_calls", "function_call", "audio"] {
            if m.get(key).is_some_and(|v| !v.is_null()) {
                return Err(bad(
                    at(key),
                    format!(
                        "`{key}` is not supported: the claude-cli backend has no tools or audio"
                    ),
                ));
            }
        }
        let text = content_text(&m["content"], i)?;
        match role {
            "system" | "developer" => system.push(text),
            _ => turns.push((role, m["name"].as_str(), text)),
        }
    }
    let last = msgs.len() - 1;
    match turns.last() {
        None => return Err(bad("messages", "at least one user message is needed")),
        Some((role, _, _)) if *role != "user" || msgs[last]["role"] != "user" => {
            return Err(bad(
                format!("messages[{last}].role"),
                "the last message must be the user's: the claude-cli backend cannot continue an \
                 assistant turn",
            ))
        }
        _ => {}
    }
    let prompt = match turns.as_slice() {
        [(_, None, text)] => text.clone(),
        _ => turns
            .iter()
            .map(|(role, name, text)| {
                let label = if *role == "user" { "User" } else { "Assistant" };
                match name {
                    Some(n) if !n.is_empty() => format!("{label} ({n}): {text}"),
                    _ => format!("{label}: {text}"),
                }
            })
            .collect::<Vec<_>>()
            .join("\n\n"),
    };
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok(Flattened {
        prompt,
        system,
        model,
        stream,
    })
}

/// A message's text: a string, or an array of `text` parts (joined by newlines).
fn content_text(content: &Value, i: usize) -> Result<String, TranslateError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part["type"].as_str().unwrap_or("");
                if kind != "text" {
                    return Err(TranslateError::new(
                        format!("messages[{i}].content[{j}].type"),
                        format!(
                            "content part `{kind}` is not supported by the claude-cli backend: \
                             text only (no images, files or audio)"
                        ),
                    ));
                }
                let text = part["text"].as_str().ok_or_else(|| {
                    TranslateError::new(
                        format!("messages[{i}].content[{j}].text"),
                        "a text part needs a string `text`",
                    )
                })?;
                texts.push(text);
            }
            Ok(texts.join("\n"))
        }
        _ => Err(TranslateError::new(
            format!("messages[{i}].content"),
            "`content` must be a string or an array of parts",
        )),
    }
}

/// Refuses what the CLI cannot honour, and anything unknown.
fn refuse_chat_params(p: &Map<String, Value>) -> Result<(), TranslateError> {
    const NO_TOOLS: &str = "the claude-cli backend runs Claude Code with every tool turned off";
    for (k, v) in p {
        let refused: Option<String> = match k.as_str() {
            "model" | "messages" | "stream" | "stream_options" => None,
            "max_tokens" | "max_completion_tokens" => v
                .as_u64()
                .is_none_or(|n| n < 1)
                .then(|| format!("`{k}` must be a positive integer")),
            k if IGNORED_PARAMS.contains(&k) => None,
            "tools" => (!v.as_array().is_some_and(Vec::is_empty))
                .then(|| format!("`tools` are not supported: {NO_TOOLS}")),
            "tool_choice" => (v.as_str() != Some("none") && v.as_str() != Some("auto"))
                .then(|| format!("`tool_choice` is not supported: {NO_TOOLS}")),
            "functions" | "function_call" => Some(format!(
                "legacy function calling is not supported: {NO_TOOLS}"
            )),
            "n" => (v.as_u64() != Some(1))
                .then(|| "only `n: 1` is supported: each request yields one choice".into()),
            "response_format" => (v["type"] != "text").then(|| {
                "only `response_format: {\"type\": \"text\"}` is supported by the claude-cli \
                 backend"
                    .into()
            }),
            "temperature" | "top_p" | "top_k" => Some(format!(
                "`{k}` is not supported by the claude-cli backend: Claude Code has no way to set \
                 sampling parameters"
            )),
            "stop" => (!v.as_array().is_some_and(Vec::is_empty))
                .then(|| "`stop` is not supported by the claude-cli backend".into()),
            "reasoning_effort" => {
                Some("`reasoning_effort` is not supported by the claude-cli backend".into())
            }
            "logprobs" => (v.as_bool() != Some(false))
                .then(|| "log probabilities are not available from Anthropic models".into()),
            "top_logprobs" => (v.as_u64() != Some(0))
                .then(|| "log probabilities are not available from Anthropic models".into()),
            "logit_bias" => (!v.as_object().is_some_and(Map::is_empty))
                .then(|| "`logit_bias` is not supported by Anthropic models".into()),
            "frequency_penalty" | "presence_penalty" => (v.as_f64() != Some(0.0)).then(|| {
                "frequency and presence penalties are not supported by Anthropic models".into()
            }),
            "modalities" => (v != &json!(["text"]))
                .then(|| "only text output is supported (`modalities: [\"text\"]`)".into()),
            "audio" => Some("audio output is not supported".into()),
            "prediction" => Some("predicted outputs are not supported".into()),
            "web_search_options" => Some("web search is not supported on this backend".into()),
            _ => Some(format!("unrecognized request argument `{k}`")),
        };
        if let Some(why) = refused {
            return Err(TranslateError::new(k.as_str(), why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_requests_flatten_faithfully() {
        let r = flatten_chat(&json!({
            "model": "sonnet", "stream": true, "max_tokens": 100, "user": "u",
            "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
        }))
        .unwrap();
        assert_eq!(
            r,
            Flattened {
                prompt: "Hi".into(),
                system: Some("Be terse.".into()),
                model: "sonnet".into(),
                stream: true,
            }
        );

        let r = flatten_chat(&json!({
            "model": "opus",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "A"}]},
                {"role": "user", "content": "one", "name": "ann"},
                {"role": "assistant", "content": "two"},
                {"role": "system", "content": "B"},
                {"role": "user", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]}
            ]
        }))
        .unwrap();
        assert!(!r.stream);
        assert_eq!(r.system.as_deref(), Some("A\n\nB"));
        assert_eq!(
            r.prompt,
            "User (ann): one\n\nAssistant: two\n\nUser: three\nfour"
        );
    }

    #[test]
    fn chat_requests_the_cli_cannot_honour_are_refused_by_name() {
        let base = json!({"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for (body, param) in [
            (
                with(
                    "tools",
                    json!([{"type": "function", "function": {"name": "f"}}]),
                ),
                "tools",
            ),
            (with("tool_choice", json!("required")), "tool_choice"),
            (with("n", json!(2)), "n"),
            (
                with("response_format", json!({"type": "json_object"})),
                "response_format",
            ),
            (with("temperature", json!(0.2)), "temperature"),
            (with("stop", json!(["x"])), "stop"),
            (with("reasoning_effort", json!("high")), "reasoning_effort"),
            (with("logprobs", json!(true)), "logprobs"),
            (with("max_tokens", json!(0)), "max_tokens"),
            (with("frobnicate", json!(1)), "frobnicate"),
            (with("model", json!("")), "model"),
            (
                json!({"model": "sonnet", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "sonnet", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c"}]}, {"role": "tool", "tool_call_id": "c", "content": "r"}]}),
                "messages[1].tool_calls",
            ),
            (
                json!({"model": "sonnet", "messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "r"}]}),
                "messages[1].role",
            ),
            (
                json!({"model": "sonnet", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "prefill"}]}),
                "messages[1].role",
            ),
            (
                json!({"model": "sonnet", "messages": [{"role": "system", "content": "s"}]}),
                "messages",
            ),
            (json!({"model": "sonnet", "messages": []}), "messages"),
        ] {
            let err = flatten_chat(&body).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body} → {err:?}");
        }
        // Neutral values are fine.
        for (k, v) in [
            ("tool_choice", json!("none")),
            ("tools", json!([])),
            ("n", json!(1)),
            ("response_format", json!({"type": "text"})),
            ("stream_options", json!({"include_usage": true})),
            ("parallel_tool_calls", json!(false)),
            ("temperature", Value::Null),
        ] {
            flatten_chat(&with(k, v)).unwrap();
        }
    }
}
