//! A long coding-agent conversation, the kind Claude Code or Codex resends whole on every turn:
//! a long system prompt, a couple of dozen tools with JSON schemas, and hundreds of turns of
//! thinking, text, tool calls and tool results holding source files (newlines, quotes, tabs,
//! the odd non-ASCII character: the escapes that make JSON slow to parse). One conversation,
//! written in each front door's own shape, grown to a given size, so every route is measured
//! with the same history.

use serde_json::{json, Value};

/// A made-up source file of about `len` bytes, varied by `seed`.
fn source_file(seed: usize, len: usize) -> String {
    let lines = [
        "fn handle(state: &State, rq: Request) -> Result<u16, ApiError> {",
        "    let body = read_body(&mut rq, state.config.max_body_bytes)?;",
        "\tif body.is_empty() { return Err(\"empty body\".into()); }",
        "    // Größe: the size in bytes, checked before \"parse\" — never after.",
        "    let text = std::str::from_utf8(&body).map_err(|_| bad(\"utf-8\"))?;",
        "    match serde_json::from_str::<Value>(text) {",
        "        Ok(v) => Ok(answer(v, &state.models, r#\"{\"ok\":true}\"#)),",
        "        Err(e) => Err(ApiError::new(ErrorKind::InvalidRequest, e.to_string())),",
        "    }",
        "}",
        "",
        "/// Returns the answer's status; `200` when the upstream said yes.",
    ];
    let mut out = String::with_capacity(len + 80);
    let mut i = seed;
    while out.len() < len {
        out.push_str(lines[i % lines.len()]);
        out.push('\n');
        i += 7;
    }
    out
}

/// A fake thinking signature (base64, the length of a real one).
fn signature(seed: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..344)
        .map(|i| alphabet[(seed * 31 + i * 17) % 64] as char)
        .collect()
}

const SYSTEM: &str = "You are an interactive coding agent. Use the tools available to you to \
    help the user with software engineering tasks. Read files before editing them; keep \
    changes minimal; run the tests after each change and report what you saw.\n";

fn system_prompt() -> String {
    SYSTEM.repeat(60)
}

/// (name, description, JSON schema) of the tools.
fn tools() -> Vec<(String, String, Value)> {
    (0..24)
        .map(|i| {
            let name = format!("tool_{i:02}");
            let description = format!(
                "Tool number {i}. {}",
                "Reads, writes or searches files in the workspace and returns what it found. "
                    .repeat(6)
            );
            let schema = json!({
                "type": "object",
                "properties": {
                    "file_path": {"type": "string", "description": "The absolute path of the file"},
                    "pattern": {"type": "string", "description": "A regular expression"},
                    "limit": {"type": "integer", "minimum": 1, "description": "At most this many lines"},
                    "flags": {"type": "array", "items": {"type": "string", "enum": ["-i", "-n", "-w"]}}
                },
                "required": ["file_path"],
                "additionalProperties": false
            });
            (name, description, schema)
        })
        .collect()
}

/// One turn of the conversation, in neutral terms.
struct Turn {
    ask: String,
    thinking: String,
    signature: String,
    said: String,
    call_id: String,
    tool: String,
    arguments: Value,
    result: String,
}

fn turn(i: usize) -> Turn {
    Turn {
        ask: format!("Step {i}: look at src/module_{i}.rs and fix the \"{i}\" case — carefully."),
        thinking: format!(
            "The user wants step {i}. I should read the file first, then decide. {}",
            "Considering the options and their trade-offs. ".repeat(8)
        ),
        signature: signature(i),
        said: format!("I'll read `src/module_{i}.rs` first.\n"),
        call_id: format!("toolu_01{i:022}"),
        tool: format!("tool_{:02}", i % 24),
        arguments: json!({"file_path": format!("/work/project/src/module_{i}.rs"), "limit": 400}),
        result: source_file(i, 4500 + (i * 977) % 3000),
    }
}

/// Turns until the body is at least `size` bytes: returns the turns.
fn turns_for(size: usize, per_turn: impl Fn(&Turn) -> usize) -> Vec<Turn> {
    let mut turns = Vec::new();
    let mut total = 0;
    while total < size {
        let t = turn(turns.len());
        total += per_turn(&t);
        turns.push(t);
    }
    turns
}

/// The history as an Anthropic Messages request (`/v1/messages`, as Claude Code sends it:
/// thinking blocks with signatures, cache breakpoints), streamed.
pub fn anthropic(size: usize) -> String {
    let block_size =
        |t: &Turn| t.thinking.len() + t.said.len() + t.result.len() + t.ask.len() + 700;
    let turns = turns_for(size, block_size);
    let mut messages = Vec::new();
    for t in &turns {
        messages.push(json!({"role": "user", "content": [{"type": "text", "text": t.ask}]}));
        messages.push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": t.thinking, "signature": t.signature},
            {"type": "text", "text": t.said},
            {"type": "tool_use", "id": t.call_id, "name": t.tool, "input": t.arguments},
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": t.call_id, "content": t.result},
        ]}));
    }
    if let Some(last) = messages.last_mut() {
        last["content"][0]["cache_control"] = json!({"type": "ephemeral"});
    }
    let tools: Vec<Value> = tools()
        .into_iter()
        .map(|(n, d, s)| json!({"name": n, "description": d, "input_schema": s}))
        .collect();
    json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "stream": true,
        "system": [{"type": "text", "text": system_prompt(), "cache_control": {"type": "ephemeral"}}],
        "tools": tools,
        "thinking": {"type": "enabled", "budget_tokens": 16000},
        "messages": messages,
    })
    .to_string()
}

/// The history as an OpenAI Chat Completions request (no thinking: chat cannot replay it).
pub fn chat(size: usize) -> String {
    let turns = turns_for(size, |t| t.said.len() + t.result.len() + t.ask.len() + 500);
    let mut messages = vec![json!({"role": "system", "content": system_prompt()})];
    for t in &turns {
        messages.push(json!({"role": "user", "content": t.ask}));
        messages.push(
            json!({"role": "assistant", "content": t.said, "tool_calls": [
                {"id": t.call_id, "type": "function",
                 "function": {"name": t.tool, "arguments": t.arguments.to_string()}},
            ]}),
        );
        messages.push(json!({"role": "tool", "tool_call_id": t.call_id, "content": t.result}));
    }
    let tools: Vec<Value> = tools()
        .into_iter()
        .map(|(n, d, s)| json!({"type": "function", "function": {"name": n, "description": d, "parameters": s}}))
        .collect();
    json!({
        "model": "claude-sonnet-4-6",
        "max_completion_tokens": 32000,
        "stream": true,
        "tools": tools,
        "messages": messages,
    })
    .to_string()
}

/// The history as an OpenAI Responses request (as Codex sends it through claudegate: the
/// reasoning items carry the thinking blocks claudegate encoded in `encrypted_content`).
pub fn responses(size: usize) -> String {
    let per =
        |t: &Turn| t.said.len() + t.result.len() + t.ask.len() + t.thinking.len() * 4 / 3 + 900;
    let turns = turns_for(size, per);
    let mut input = Vec::new();
    for t in &turns {
        input.push(json!({"role": "user", "content": [{"type": "input_text", "text": t.ask}]}));
        let block = json!({"type": "thinking", "thinking": t.thinking, "signature": t.signature});
        let encrypted = format!("claudegate:v1:{}", base64(block.to_string().as_bytes()));
        input.push(json!({"type": "reasoning", "summary": [], "encrypted_content": encrypted}));
        input.push(json!({"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": t.said}]}));
        input.push(
            json!({"type": "function_call", "call_id": t.call_id, "name": t.tool,
            "arguments": t.arguments.to_string()}),
        );
        input.push(
            json!({"type": "function_call_output", "call_id": t.call_id, "output": t.result}),
        );
    }
    let tools: Vec<Value> = tools()
        .into_iter()
        .map(|(n, d, s)| json!({"type": "function", "name": n, "description": d, "parameters": s}))
        .collect();
    json!({
        "model": "claude-sonnet-4-6",
        "instructions": system_prompt(),
        "stream": true,
        "store": false,
        "reasoning": {"effort": "medium"},
        "tools": tools,
        "input": input,
    })
    .to_string()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}
