//! The earlier turns of a conversation as a Claude Code session file, so `claude -p --resume`
//! sends them upstream as real turns (pure: the lines only; `calldir` writes the file).
//!
//! # Why a session file (measured on Claude Code 2.1.330 against a mock upstream)
//! - **Flattening** the conversation into one prompt (`User: … / Assistant: …`) loses the
//!   turn structure, images and thinking, and Anthropic's prompt cache: the whole conversation
//!   is one block that changes every turn, so no earlier turn is ever read from the cache.
//! - **`--input-format stream-json`** with the earlier turns as `user`/`assistant` lines is
//!   not faithful: each `user` line starts a turn of its own (an upstream call each), and with
//!   `shouldQuery: false` the CLI appends every `assistant` line at once but merges the user
//!   lines into the next prompt, so the upstream saw both answers first, then all questions
//!   in one turn.
//! - **A session file + `--resume <id>`**: the upstream receives the turns in order, as real
//!   `user`/`assistant` messages with their text, images, documents and (see below) thinking,
//!   then the new prompt, in one call. It costs one small file write; no extra upstream call,
//!   and the wall time stayed within the run-to-run noise (≈0.5–0.7 s either way).
//!
//! The file lives in the CLI's project folder for the call's own random working directory
//! (`<cli.home>/.claude/projects/<slug of the call dir>/<session id>.jsonl`), which
//! `calldir` removes with the call. `--no-session-persistence` stays on: the CLI reads the
//! file but writes nothing back (measured: the file is unchanged after the run).
//!
//! **Thinking**: the CLI keeps a `thinking` block of an earlier assistant turn only when that
//! turn's `model` is the model it runs now (a signature belongs to its model); otherwise it
//! drops the block. The backend learns the real model id behind each alias from the CLI's own
//! answers, so thinking survives from the second call for a model on; before that, and for a
//! conversation that came from another model, it is dropped.

use serde_json::{json, Value};

/// The session file's lines for `history` (turns `{role, content}`), as Claude Code writes
/// them: each line a message linked to the one before, in session `session_id` whose working
/// directory was `cwd`. Assistant turns carry `model` (see the module doc on thinking).
pub(super) fn session_lines(session_id: &str, cwd: &str, model: &str, history: &[Value]) -> String {
    let mut out = String::new();
    let mut parent = Value::Null;
    // Claude Code writes milliseconds; the turns' real times are not known, now will do.
    let now = crate::base::clock::rfc3339(crate::base::clock::unix_now()).replace('Z', ".000Z");
    for (i, turn) in history.iter().enumerate() {
        let uuid = crate::base::ids::uuid_v4();
        let role = turn["role"].as_str().unwrap_or("user");
        let mut message = json!({"role": role, "content": turn["content"]});
        if role == "assistant" {
            message["id"] = json!(format!("msg_claudegate_{i}"));
            message["type"] = json!("message");
            message["model"] = json!(model);
            message["stop_reason"] = json!("end_turn");
            message["stop_sequence"] = Value::Null;
            message["usage"] = json!({"input_tokens": 0, "output_tokens": 0});
        }
        let line = json!({
            "parentUuid": parent, "isSidechain": false, "type": role, "message": message,
            "uuid": uuid, "sessionId": session_id, "cwd": cwd, "userType": "external",
            "timestamp": now,
        });
        out.push_str(&line.to_string());
        out.push('\n');
        parent = json!(uuid);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_become_linked_session_lines() {
        let history = vec![
            json!({"role": "user", "content": [{"type": "text", "text": "q\n\"x\""}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "a"}]}),
        ];
        let text = session_lines("sid", "/w", "claude-x", &history);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["parentUuid"], Value::Null);
        assert_eq!(lines[1]["parentUuid"], lines[0]["uuid"]);
        assert_eq!(lines[0]["message"]["content"], history[0]["content"]);
        assert_eq!(lines[1]["message"]["model"], "claude-x");
        assert_eq!(lines[0]["type"], "user");
        assert!(lines
            .iter()
            .all(|l| l["sessionId"] == "sid" && l["cwd"] == "/w"));
    }
}
