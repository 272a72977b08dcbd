//! An OpenAI chat request flattened into one prompt and a system prompt, for a backend that
//! takes text rather than a conversation (the CLI backend runs one `claude -p` per request).

use serde_json::Value;

use super::params::{ChatRequest, CLI};
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
    /// `stream_options.include_usage`: a final usage chunk before `[DONE]`.
    pub include_usage: bool,
}

/// Flattens an OpenAI chat request into one prompt plus system, for the CLI backend.
///
/// - The top-level parameters go through the chat door's one policy ([`super::params`]) for
///   the CLI backend ([`CLI`]): what it lacks (tools, sampling parameters, stop sequences,
///   structured output, reasoning control) is refused by name unless the value asks for
///   nothing; `max_tokens` / `max_completion_tokens` are checked (the CLI uses its own
///   output limit).
/// - `system` and `developer` messages become the system prompt (joined by a blank line, in
///   order). A lone user message is the prompt verbatim; a conversation is written out as
///   `User: …` / `Assistant: …` paragraphs in order (`User (name): …` when a message has a
///   `name`), so nothing the client sent is dropped.
/// - The last message must be the user's: the CLI cannot continue an assistant turn.
/// - Refused with a [`TranslateError`] naming the parameter: tool and function messages,
///   assistant `tool_calls`, and non-text content parts (images, files, audio).
///
/// The model stays the client's (the CLI backend checks it against `cli.allowed_models`).
pub fn flatten_chat(req: &Value) -> Result<Flattened, TranslateError> {
    fn bad(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError::new(param, message)
    }
    let r = ChatRequest::read(req, &CLI)?;
    // `read` checked that `messages` is a non-empty array.
    let msgs = req["messages"].as_array().map_or(&[][..], Vec::as_slice);

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
        model: r.model,
        stream: r.stream,
        include_usage: r.include_usage,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                include_usage: false,
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
