//! An Anthropic Messages request read for the CLI backend: what `claude -p` can honour is
//! taken apart into a model, a system prompt, the earlier turns and the new user turn; what it
//! cannot honour is refused by name before anything runs. Pure: no I/O.
//!
//! Every door arrives here in the same shape: `/v1/messages` as the client sent it, the
//! OpenAI doors as their translators wrote it, `/v1/complete` as one user turn. So the doors
//! differ only in the backend, and this is the one place the CLI's limits are applied to a
//! request. The reasons come from the chat door's capability table
//! ([`crate::openai::params::CLI`]), so both say the same thing.
//!
//! | field | on this backend |
//! |---|---|
//! | `model`, `messages`, `system`, `stream` | used (`system`: a string or text blocks, joined by a blank line; `system`-role messages inside `messages`, as Claude Code sends its environment, are appended to it in order) |
//! | `max_tokens` | checked, then ignored: Claude Code chooses its own output limit |
//! | `metadata`, `service_tier` | ignored (cloaking and the subscription's one tier) |
//! | `temperature`, `top_p`, `top_k` | refused: no sampling parameters |
//! | `stop_sequences` | `[]` only: no stop sequences |
//! | `tools` | client tools, served to the CLI through the bridge (`bridge.rs`); server tools refused |
//! | `tool_choice` | `auto` (`disable_parallel_tool_use` ignored) or `none` (the tools are not served); forcing a tool is refused |
//! | `thinking` | passed on as the CLI's own options ([`Thinking`]): `adaptive` → `--thinking adaptive`, `disabled` → `--thinking disabled`, `enabled` with `budget_tokens` → `MAX_THINKING_TOKENS`; `display` → `--thinking-display` |
//! | `output_config.effort` | `--effort` (`low`, `medium`, `high`, `xhigh`, `max`) |
//! | `output_config.format`, `output_format` | refused: no structured output |
//! | `context_management` | `clear_thinking_*` edits accepted and ignored (the CLI sends that very edit itself); any other edit refused |
//! | `mcp_servers`, `container` | refused: Claude Code runs with every MCP server off, and has no code execution container |
//! | anything else | refused as unknown |
//!
//! **Why thinking is honoured:** Claude Code itself, pointed at claudegate, sends `thinking`,
//! `output_config.effort` and `context_management` with every request, so refusing them would
//! shut out the one client this backend is most like. `claude -p` has options for the first
//! two (`--thinking`, `--effort`, and the `MAX_THINKING_TOKENS` variable for a budget; read
//! from the CLI's own code, version 2.1.330), so they are passed on rather than dropped. The
//! effort is honoured as asked; thinking the CLI decides per model (2.1.330 thinks adaptively
//! on its adaptive models whatever `--thinking` says; `tests/it/cli_real_doors.rs` pins what the
//! upstream sees). Only values from fixed lists and a number reach the CLI, never the client's
//! text. The context edit Claude Code
//! sends (`clear_thinking_20251015`) is the one the server-side CLI sends anyway.
//!
//! Content blocks: `text`, `image` and `document` in either role, `thinking` and
//! `redacted_thinking` in assistant turns are kept (`cache_control` removed: Claude Code
//! places its own cache breakpoints); `tool_use` in assistant turns (its name must be a declared
//! tool, and becomes the bridged name `mcp__cg__…` the upstream knows) and `tool_result` in user
//! turns are kept; server tool blocks are refused, and so is any other block type. The last
//! user turn's `tool_result` blocks are set apart ([`CliRequest::results`]): they answer a tool
//! call of a parked CLI process. Consecutive turns of one role are merged, as the Messages API
//! does. The last turn must be the user's (the CLI cannot continue an assistant turn).

use serde_json::{json, Map, Value};

use crate::backends::cli::bridge::{Catalogue, ToolNames};
use crate::backends::cli::interface::CliError;
use crate::openai::params::{empty_list, never, Ability, CLI};

/// A request the CLI can run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CliRequest {
    /// As the client named it (checked against `cli.allowed_models` later); `None`: default.
    pub model: Option<String>,
    /// `None`: the neutral system prompt; an empty one is passed verbatim.
    pub system: Option<String>,
    /// The earlier turns, `{role, content: [blocks]}`, roles alternating.
    pub history: Vec<Value>,
    /// The blocks of the last (user) turn other than tool results: the new prompt.
    pub prompt: Vec<Value>,
    /// The last turn's `tool_result` blocks: answers to a parked process's tool calls.
    pub results: Vec<Value>,
    /// The tools the CLI gets through the bridge; `None`: none (none declared, or
    /// `tool_choice: none`).
    pub tools: Option<Catalogue>,
    /// The declared tools' names, both ways (for tool blocks in the history and the answer).
    pub names: ToolNames,
    /// How the client asked Claude to think.
    pub thinking: Thinking,
}

/// The client's `thinking` and `output_config.effort` as the CLI's options. Every value is
/// one of a fixed list (or a number), so nothing the client wrote reaches the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Thinking {
    /// `--thinking` (`adaptive` or `disabled`).
    pub mode: Option<&'static str>,
    /// `MAX_THINKING_TOKENS`: thinking enabled with this budget.
    pub budget: Option<u64>,
    /// `--effort`.
    pub effort: Option<&'static str>,
    /// `--thinking-display` (`summarized` or `omitted`).
    pub display: Option<&'static str>,
}

/// The effort levels `claude -p --effort` takes.
const EFFORTS: &[&str] = &["low", "medium", "high", "xhigh", "max"];

/// Reads `thinking` and `output_config.effort`.
fn read_thinking(obj: &Map<String, Value>) -> Result<Thinking, CliError> {
    let mut t = Thinking::default();
    let pick = |list: &[&'static str], v: &Value| list.iter().find(|l| v == **l).copied();
    if let Some(effort) = obj.get("output_config").and_then(|o| o.get("effort")) {
        if !effort.is_null() {
            t.effort = Some(pick(EFFORTS, effort).ok_or_else(|| {
                refused(
                    "output_config.effort",
                    format!(
                        "`output_config.effort` must be one of {}",
                        EFFORTS.join(", ")
                    ),
                )
            })?);
        }
    }
    let Some(thinking) = obj.get("thinking").filter(|v| !v.is_null()) else {
        return Ok(t);
    };
    let Some(th) = thinking.as_object() else {
        return Err(refused("thinking", "`thinking` must be an object"));
    };
    for key in th.keys() {
        if !["type", "budget_tokens", "display"].contains(&key.as_str()) {
            return Err(refused(
                format!("thinking.{key}"),
                format!("unrecognized field `thinking.{key}`"),
            ));
        }
    }
    match th.get("type").and_then(Value::as_str) {
        Some("adaptive") => t.mode = Some("adaptive"),
        Some("disabled") => t.mode = Some("disabled"),
        Some("enabled") => match th.get("budget_tokens").and_then(Value::as_u64) {
            Some(b) if (1024..=1_000_000).contains(&b) => t.budget = Some(b),
            _ => {
                return Err(refused(
                    "thinking.budget_tokens",
                    "`thinking.budget_tokens` must be an integer from 1024 to 1000000",
                ))
            }
        },
        _ => {
            return Err(refused(
                "thinking.type",
                "`thinking.type` must be `adaptive`, `enabled` or `disabled`",
            ))
        }
    }
    if let Some(display) = th.get("display").filter(|v| !v.is_null()) {
        t.display = Some(pick(&["summarized", "omitted"], display).ok_or_else(|| {
            refused(
                "thinking.display",
                "`thinking.display` must be `summarized` or `omitted`",
            )
        })?);
    }
    Ok(t)
}

/// `context_management`: only the edit that clears old thinking, which the CLI makes itself.
fn context_ok(value: &Value) -> Result<(), CliError> {
    let edits = match value.get("edits") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(e)) => e,
        Some(_) => return Err(refused("context_management.edits", "must be a list")),
    };
    for (i, e) in edits.iter().enumerate() {
        let kind = e["type"].as_str().unwrap_or("");
        if !kind.starts_with("clear_thinking_") {
            let shown: String = kind.chars().take(60).collect();
            return Err(refused(
                format!("context_management.edits[{i}]"),
                format!(
                    "context edit `{shown}` is not supported by the claude-cli backend: Claude \
                     Code manages the conversation's context itself (only clear_thinking edits, \
                     which it makes anyway, are accepted)"
                ),
            ));
        }
    }
    Ok(())
}

/// What happens to one top-level field.
#[derive(Clone, Copy)]
enum Rule {
    Used,
    Ignored,
    /// Needs the ability; without it, accepted only at a value that asks for nothing.
    Needs(Ability, fn(&Value) -> bool),
    Refused(&'static str),
}

fn auto_or_none(v: &Value) -> bool {
    v["type"] == "auto" || v["type"] == "none"
}

/// Every top-level field and its rule (the table of the module doc).
const FIELDS: &[(&str, Rule)] = &[
    ("model", Rule::Used),
    ("messages", Rule::Used),
    ("system", Rule::Used),
    ("stream", Rule::Used),
    ("max_tokens", Rule::Used),
    ("output_config", Rule::Used),
    ("metadata", Rule::Ignored),
    ("service_tier", Rule::Ignored),
    ("temperature", Rule::Needs(Ability::Sampling, never)),
    ("top_p", Rule::Needs(Ability::Sampling, never)),
    ("top_k", Rule::Needs(Ability::Sampling, never)),
    (
        "stop_sequences",
        Rule::Needs(Ability::StopSequences, empty_list),
    ),
    ("tools", Rule::Used),
    (
        "tool_choice",
        Rule::Needs(Ability::ToolChoice, auto_or_none),
    ),
    ("thinking", Rule::Used),
    (
        "output_format",
        Rule::Needs(Ability::StructuredOutput, never),
    ),
    ("context_management", Rule::Used),
    (
        "mcp_servers",
        Rule::Refused("MCP servers are not available: Claude Code runs with every MCP server off"),
    ),
    (
        "container",
        Rule::Refused("code execution containers are not available on the claude-cli backend"),
    ),
];

fn refused(param: impl Into<String>, why: impl Into<String>) -> CliError {
    CliError::Refused {
        param: param.into(),
        message: why.into(),
    }
}

/// The refusal for `param` when the CLI lacks `ability`.
fn lacking(param: &str, ability: Ability) -> CliError {
    let why = CLI
        .why_not(ability)
        .unwrap_or("Claude Code has no option for it");
    refused(
        param,
        format!("`{param}` is not supported by the claude-cli backend: {why}"),
    )
}

/// Reads an Anthropic Messages request body.
pub(super) fn read(body: &Value) -> Result<CliRequest, CliError> {
    let Some(obj) = body.as_object() else {
        return Err(refused("body", "the request body must be a JSON object"));
    };
    for (key, value) in obj.iter().filter(|(_, v)| !v.is_null()) {
        check_field(key, value)?;
    }
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(refused("model", "`model` must be a string")),
    };
    // `stream` is the route's business (whole or streamed answer); here only its type.
    if obj
        .get("stream")
        .is_some_and(|s| !s.is_null() && !s.is_boolean())
    {
        return Err(refused("stream", "`stream` must be a boolean"));
    }
    if let Some(v) = obj.get("max_tokens").filter(|v| !v.is_null()) {
        if v.as_u64().is_none_or(|n| n == 0) {
            return Err(refused(
                "max_tokens",
                "`max_tokens` must be a positive integer",
            ));
        }
    }
    let system = read_system(obj.get("system"))?;
    let thinking = read_thinking(obj)?;
    let declared: &[Value] = match obj.get("tools") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(t)) => t.as_slice(),
        Some(_) => return Err(refused("tools", "`tools` must be a list")),
    };
    let catalogue = Catalogue::new(declared)?;
    let names = catalogue.names.clone();
    let none = obj.get("tool_choice").is_some_and(|c| c["type"] == "none");
    let tools = (!catalogue.is_empty() && !none).then_some(catalogue);
    let (mut turns, mid_system) = read_messages(obj.get("messages"), &names)?;
    // `system` turns inside `messages` (Claude Code sends its environment that way) join the
    // system prompt, in order: the CLI takes one system prompt, not mid-conversation ones.
    let system = match (system, mid_system.is_empty()) {
        (system, true) => system,
        (None, false) => Some(mid_system.join("\n\n")),
        (Some(s), false) => Some(format!("{s}\n\n{}", mid_system.join("\n\n"))),
    };
    let last = turns.len() - 1;
    if turns[last]["role"] != "user" {
        return Err(refused(
            "messages",
            "the last message must be the user's: the claude-cli backend cannot continue an \
             assistant turn",
        ));
    }
    let last_blocks = match turns.pop().map(|mut t| t["content"].take()) {
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    };
    let (results, prompt): (Vec<Value>, Vec<Value>) = last_blocks
        .into_iter()
        .partition(|b| b["type"] == "tool_result");
    let blank =
        |b: &Value| b["type"] == "text" && b["text"].as_str().is_some_and(|t| t.trim().is_empty());
    if results.is_empty() && prompt.iter().all(blank) {
        return Err(refused(
            format!("messages[{last}].content"),
            "the last user message must not be empty",
        ));
    }
    Ok(CliRequest {
        model,
        system,
        history: turns,
        prompt,
        results,
        tools,
        names,
        thinking,
    })
}

/// Applies the field's rule.
fn check_field(key: &str, value: &Value) -> Result<(), CliError> {
    let Some((_, rule)) = FIELDS.iter().find(|(k, _)| *k == key) else {
        return Err(refused(
            key,
            format!(
                "unrecognized field `{key}` (the claude-cli backend refuses what it does not know)"
            ),
        ));
    };
    match *rule {
        Rule::Used | Rule::Ignored => {}
        Rule::Needs(ability, neutral) if !neutral(value) => return Err(lacking(key, ability)),
        Rule::Needs(..) => {}
        Rule::Refused(why) => {
            return Err(refused(
                key,
                format!("`{key}` is not supported by the claude-cli backend: {why}"),
            ))
        }
    }
    if key == "context_management" {
        return context_ok(value);
    }
    if key == "output_config" {
        let Some(o) = value.as_object() else {
            return Err(refused(key, "`output_config` must be an object"));
        };
        // `effort` is read with `thinking`; every other member asks for something the CLI
        // cannot do: the first one is named.
        if let Some((k, _)) = o.iter().find(|(k, v)| !v.is_null() && *k != "effort") {
            let param = format!("output_config.{k}");
            return Err(match k.as_str() {
                "format" => lacking(&param, Ability::StructuredOutput),
                _ => refused(&param, format!("unrecognized field `{param}`")),
            });
        }
    }
    Ok(())
}

/// `system`: a string, or text blocks joined by a blank line.
fn read_system(system: Option<&Value>) -> Result<Option<String>, CliError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => texts.push(t),
                    _ => {
                        return Err(refused(
                            format!("system[{i}]"),
                            "system blocks must be text blocks",
                        ))
                    }
                }
            }
            Ok(Some(texts.join("\n\n")))
        }
        Some(_) => Err(refused(
            "system",
            "`system` must be a string or a list of text blocks",
        )),
    }
}

/// The turns, each `{role, content: [blocks]}`, consecutive turns of one role merged; and the
/// texts of `system` turns among them.
fn read_messages(
    messages: Option<&Value>,
    names: &ToolNames,
) -> Result<(Vec<Value>, Vec<String>), CliError> {
    let msgs = match messages.and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => return Err(refused("messages", "`messages` must be a non-empty array")),
    };
    let mut turns: Vec<Value> = Vec::new();
    let mut system = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some(r @ ("user" | "assistant")) => r,
            Some("system") => {
                system.push(read_system(Some(&m["content"])).map_err(|_| {
                    refused(
                        format!("messages[{i}].content"),
                        "a `system` message must be a string or text blocks",
                    )
                })?);
                continue;
            }
            _ => {
                return Err(refused(
                    format!("messages[{i}].role"),
                    "each message's `role` must be `user`, `assistant` or `system`",
                ))
            }
        };
        let blocks = read_content(&m["content"], role, i, names)?;
        match turns.last_mut() {
            Some(t) if t["role"] == role => {
                if let Some(c) = t["content"].as_array_mut() {
                    c.extend(blocks);
                }
            }
            _ => turns.push(json!({"role": role, "content": blocks})),
        }
    }
    if turns.is_empty() {
        return Err(refused("messages", "`messages` needs a user message"));
    }
    Ok((turns, system.into_iter().flatten().collect()))
}

/// One message's content as blocks the CLI can carry.
fn read_content(
    content: &Value,
    role: &str,
    i: usize,
    names: &ToolNames,
) -> Result<Vec<Value>, CliError> {
    let parts = match content {
        Value::String(s) => return Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts,
        _ => {
            return Err(refused(
                format!("messages[{i}].content"),
                "`content` must be a string or a list of content blocks",
            ))
        }
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        let Some(obj) = part.as_object() else {
            return Err(refused(at, "a content block must be an object"));
        };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let fits = match kind {
            "text" => obj.get("text").is_some_and(Value::is_string),
            "image" | "document" => obj.get("source").is_some_and(Value::is_object),
            "thinking" | "redacted_thinking" => role == "assistant",
            "tool_use" => {
                role == "assistant"
                    && obj.get("id").is_some_and(Value::is_string)
                    && obj.get("input").is_some_and(Value::is_object)
            }
            "tool_result" => role == "user" && obj.get("tool_use_id").is_some_and(Value::is_string),
            _ => false,
        };
        if !fits {
            let at = format!("{at}.type");
            if kind.ends_with("tool_use") || kind.ends_with("tool_result") {
                return Err(refused(
                    at,
                    format!(
                        "content block `{kind}` is not supported here by the claude-cli backend \
                         (`tool_use` with an id and an input object in assistant turns, \
                         `tool_result` with a `tool_use_id` in user turns; no server tools)"
                    ),
                ));
            }
            return Err(refused(
                at,
                format!(
                    "content block `{kind}` is not supported here by the claude-cli backend \
                     (text, image and document blocks; thinking in assistant turns)"
                ),
            ));
        }
        let mut block: Map<String, Value> = obj.clone();
        block.remove("cache_control");
        if kind == "tool_use" {
            // The upstream knows the tool by its bridged name only.
            let name = obj.get("name").and_then(Value::as_str).unwrap_or("");
            let Some(upstream) = names.upstream(name) else {
                return Err(refused(
                    format!("{at}.name"),
                    "a `tool_use` block names a tool the request does not declare in `tools`",
                ));
            };
            block.insert("name".into(), upstream.into());
        }
        blocks.push(Value::Object(block));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Value) -> Value {
        let mut b = json!({"model": "sonnet", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    #[test]
    fn a_conversation_is_taken_apart_faithfully() {
        let img = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}});
        let r = read(&body(json!({
            "stream": true,
            "system": [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "B"}],
            "metadata": {"user_id": "u"}, "tools": [], "tool_choice": {"type": "auto"}, "temperature": null,
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "S"}, {"type": "text", "text": "two"}]},
                {"role": "user", "content": [{"type": "text", "text": "three", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": [img.clone()]}
            ]
        })))
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("sonnet"));
        assert_eq!(r.system.as_deref(), Some("A\n\nB"));
        assert_eq!(
            r.history,
            vec![
                json!({"role": "user", "content": [{"type": "text", "text": "one"}]}),
                json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "S"}, {"type": "text", "text": "two"}]}),
            ]
        );
        assert_eq!(
            r.prompt,
            vec![json!({"type": "text", "text": "three"}), img]
        );
    }

    #[test]
    fn tools_and_tool_blocks_are_read_with_their_bridged_names() {
        let r = read(&body(json!({
            "tools": [{"name": "get weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get weather", "input": {"c": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}, {"type": "text", "text": "and?"}]}
            ]
        })))
        .unwrap();
        assert_eq!(r.history[1]["content"][0]["name"], "mcp__cg__get_weather");
        assert_eq!(
            r.results,
            vec![json!({"type": "tool_result", "tool_use_id": "t1", "content": "r"})]
        );
        assert_eq!(r.prompt, vec![json!({"type": "text", "text": "and?"})]);
        assert!(r.tools.is_some());
        // `none`: the tools are not served, but the history's tool blocks still read.
        let r = read(&body(json!({
            "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "none"}})))
        .unwrap();
        assert!(r.tools.is_none());
        assert_eq!(r.names.upstream("f").as_deref(), Some("mcp__cg__f"));
    }

    #[test]
    fn claude_code_s_thinking_and_context_edit_become_the_cli_s_own_options() {
        // What Claude Code sends with every request (sonnet, haiku).
        let r = read(&body(json!({"thinking": {"type": "adaptive"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "output_config": {"effort": "high"}})))
        .unwrap();
        assert_eq!(
            r.thinking,
            Thinking {
                mode: Some("adaptive"),
                effort: Some("high"),
                ..Thinking::default()
            }
        );
        let r = read(&body(
            json!({"thinking": {"type": "enabled", "budget_tokens": 31999, "display": "omitted"}}),
        ))
        .unwrap();
        assert_eq!(r.thinking.budget, Some(31999));
        assert_eq!(r.thinking.display, Some("omitted"));
        let r = read(&body(json!({"thinking": {"type": "disabled"}}))).unwrap();
        assert_eq!(r.thinking.mode, Some("disabled"));
        assert_eq!(
            read(&body(json!({}))).unwrap().thinking,
            Thinking::default()
        );
    }

    #[test]
    fn what_the_cli_cannot_honour_is_refused_by_name() {
        let tool_turn = json!([{"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]);
        for (extra, param, words) in [
            (json!({"temperature": 0.5}), "temperature", "sampling"),
            (json!({"top_k": 5}), "top_k", "sampling"),
            (
                json!({"stop_sequences": ["x"]}),
                "stop_sequences",
                "stop sequences",
            ),
            (
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0]",
                "server tools",
            ),
            (
                json!({"tool_choice": {"type": "any"}}),
                "tool_choice",
                "force a tool",
            ),
            (
                json!({"thinking": {"type": "enabled"}}),
                "thinking.budget_tokens",
                "1024",
            ),
            (
                json!({"thinking": {"type": "adaptive", "display": "loud"}}),
                "thinking.display",
                "summarized",
            ),
            (
                json!({"output_config": {"effort": "extreme"}}),
                "output_config.effort",
                "xhigh",
            ),
            (
                json!({"output_config": {"format": {"type": "json_schema"}}}),
                "output_config.format",
                "structured",
            ),
            (json!({"mcp_servers": [{}]}), "mcp_servers", "MCP"),
            (
                json!({"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}),
                "context_management.edits[0]",
                "clear_tool_uses_20250919",
            ),
            (json!({"frobnicate": 1}), "frobnicate", "unrecognized"),
            (json!({"max_tokens": 0}), "max_tokens", "positive"),
            (json!({"stream": "yes"}), "stream", "boolean"),
            (
                json!({"messages": tool_turn}),
                "messages[1].content[0].name",
                "does not declare",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]}),
                "messages[0].content[0].type",
                "no server tools",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}),
                "messages[0].content[0].type",
                "search_result",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}]}),
                "messages[0].content[0].type",
                "thinking",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].role",
                "role",
            ),
            (
                json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "pre"}]}),
                "messages",
                "assistant turn",
            ),
            (
                json!({"messages": [{"role": "user", "content": "  "}]}),
                "messages[0].content",
                "empty",
            ),
            (json!({"messages": []}), "messages", "non-empty"),
            (json!({"system": [{"type": "image"}]}), "system[0]", "text"),
        ] {
            let err = read(&body(extra.clone())).unwrap_err();
            let CliError::Refused { param: p, message } = &err else {
                panic!("{extra}: {err:?}");
            };
            assert_eq!(p, param, "{extra}: {message}");
            assert!(message.contains(words), "{extra}: {message}");
            assert_eq!(err.status(), 400);
        }
    }
}
