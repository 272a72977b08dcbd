//! Cloaking: giving requests from clients other than Claude Code the shape of Claude Code's own.
//!
//! A Claude subscription login is meant for Claude Code, so Anthropic expects its requests to
//! carry Claude Code's identity line and headers. With `cloaking.mode = auto`, requests from
//! Claude Code itself (`claude-cli/…` User-Agent plus `x-app: cli`) pass untouched, and every
//! other client's request gets:
//! - Claude Code's headers (User-Agent, `x-app`, the Stainless SDK headers, a session id);
//! - the identity line as the first system block (`cloaking.strict` drops the caller's own
//!   system prompt instead of keeping it after the line);
//! - a `metadata.user_id` in Claude Code's JSON-string form, with a device id stable per
//!   installation (`data_dir/device_id`);
//! - optionally, the `cloaking.sensitive_words` broken up with a zero-width space.
//!
//! The body is edited in place ([`crate::base::jsonspan`]): only `system` and `metadata` (and, with
//! sensitive words, the affected text strings) change; every other byte — thinking blocks and
//! signatures, `cache_control` markers, unknown fields — reaches the upstream as sent. No
//! `cache_control` is ever added, so a body never gains a fifth cache breakpoint. Nothing more is
//! imitated: no client attestation, no TLS fingerprint, no tool renaming.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::base::jsonspan::{self, Edits, Member};
use crate::config::{CloakMode, CloakingConfig};

/// The identity line Claude Code's system prompt starts with.
pub const IDENTITY: &str = "You are Claude Code, Anthropic's official CLI for Claude.";

/// Betas Claude Code sends with a subscription login; cloaked requests carry them too.
pub const CLAUDE_CODE_BETAS: &[&str] = &[
    "claude-code-20250219",
    crate::anthropic::betas::OAUTH,
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
];

const ZWSP: char = '\u{200B}';

/// Cloaking settings plus the installation's device id and per-key session ids.
pub struct Cloak {
    cfg: CloakingConfig,
    device_id: String,
    /// Key label → session id, when `cloaking.cache_user_id` is on. Bounded by the key file.
    sessions: Mutex<HashMap<String, String>>,
}

/// True for a request that comes from Claude Code itself.
pub fn is_claude_code(user_agent: Option<&str>, x_app: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| ua.starts_with("claude-cli/")) && x_app == Some("cli")
}

/// The device id's path inside the data directory.
pub fn device_id_path(data_dir: &Path) -> PathBuf {
    data_dir.join("device_id")
}

impl Cloak {
    /// Loads the device id from `data_dir/device_id`, creating it (64 hex, mode 0600) once.
    pub fn new(cfg: CloakingConfig, data_dir: &Path) -> Result<Cloak, String> {
        let path = device_id_path(data_dir);
        let existing = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string());
        let device_id = match existing {
            Some(id) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => id,
            _ => {
                let id = crate::base::ids::hex(&crate::base::ids::random::<32>()?);
                crate::base::fsutil::write_private(&path, id.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                id
            }
        };
        Ok(Cloak {
            cfg,
            device_id,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a request with these headers is cloaked.
    pub fn applies(&self, user_agent: Option<&str>, x_app: Option<&str>) -> bool {
        match self.cfg.mode {
            CloakMode::Always => true,
            CloakMode::Never => false,
            CloakMode::Auto => !is_claude_code(user_agent, x_app),
        }
    }

    /// The session id for a cloaked request: one per key with `cloaking.cache_user_id`, else a
    /// fresh one.
    pub fn session_id(&self, key_label: &str) -> String {
        if !self.cfg.cache_user_id {
            return crate::base::ids::uuid_v4();
        }
        let mut sessions = crate::base::sync::lock(&self.sessions);
        if sessions.len() > 10_000 {
            sessions.clear(); // labels come from the key file; this only guards against churn
        }
        sessions
            .entry(key_label.to_string())
            .or_insert_with(crate::base::ids::uuid_v4)
            .clone()
    }

    /// The headers a Claude Code request carries (replacing the client's own versions).
    pub fn headers(&self, session_id: &str) -> Vec<(String, String)> {
        let os = match std::env::consts::OS {
            "macos" => "MacOS",
            "windows" => "Windows",
            "freebsd" => "FreeBSD",
            _ => "Linux",
        };
        let arch = match std::env::consts::ARCH {
            "aarch64" => "arm64",
            "x86_64" => "x64",
            other => other,
        };
        [
            (
                "User-Agent",
                format!("claude-cli/{} (external, cli)", self.cfg.cli_version),
            ),
            ("x-app", "cli".into()),
            ("anthropic-dangerous-direct-browser-access", "true".into()),
            ("X-Stainless-Lang", "js".into()),
            ("X-Stainless-Package-Version", "0.128.0".into()),
            ("X-Stainless-OS", os.into()),
            ("X-Stainless-Arch", arch.into()),
            ("X-Stainless-Runtime", "node".into()),
            ("X-Stainless-Runtime-Version", "v26.12.1".into()),
            ("X-Stainless-Retry-Count", "0".into()),
            ("X-Stainless-Timeout", "600".into()),
            ("X-Claude-Code-Session-Id", session_id.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Whether a client header is one [`Cloak::headers`] replaces (so the client's copy is dropped).
    pub fn replaces_header(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        n.starts_with("x-stainless-")
            || matches!(
                n.as_str(),
                "user-agent"
                    | "x-app"
                    | "anthropic-dangerous-direct-browser-access"
                    | "x-claude-code-session-id"
                    | "x-client-request-id"
            )
    }

    /// The cloaked body. `count_tokens` bodies get the system line but no metadata (the count
    /// endpoint rejects it), so a count matches the real request's input. (For small bodies
    /// whose members nobody has found yet: `/v1/complete`, tests.)
    pub fn body(
        &self,
        raw: &str,
        account_uuid: &str,
        session_id: &str,
        count_tokens: bool,
    ) -> Result<String, String> {
        let members =
            jsonspan::object_members(raw).ok_or("the request body must be a JSON object")?;
        let edits = self.edits(
            raw.as_bytes(),
            &members,
            account_uuid,
            session_id,
            count_tokens,
        )?;
        String::from_utf8(edits.apply(raw.as_bytes())).map_err(|_| NOT_UTF8.to_string())
    }

    /// [`Cloak::body`] of a body whose top-level `members` its caller already found (the
    /// route's check that the body is an object, the translator's writing of it): a 5 MB
    /// history is then not scanned a second time, and is edited in its own buffer
    /// ([`Edits::apply_in_place`]). The body is bytes the caller knows to be UTF-8 JSON (the
    /// route checked the client's; a translator writes only UTF-8): only the small parts read
    /// here (`system`, `metadata`) are checked again, not the history.
    pub fn body_with(
        &self,
        body: &mut Vec<u8>,
        members: &[Member],
        account_uuid: &str,
        session_id: &str,
        count_tokens: bool,
    ) -> Result<(), String> {
        self.edits(body, members, account_uuid, session_id, count_tokens)?
            .apply_in_place(body);
        Ok(())
    }

    /// The edits that cloak the body `raw` with these top-level `members`.
    fn edits(
        &self,
        raw: &[u8],
        members: &[Member],
        account_uuid: &str,
        session_id: &str,
        count_tokens: bool,
    ) -> Result<Edits, String> {
        let words = self.words();
        let mut edits = Edits::default();
        let mut prepend = Vec::new(); // new members, inserted right after the opening brace
        let identity = text_block(IDENTITY);

        match jsonspan::member(members, "system") {
            None => prepend.push(format!("\"system\":[{identity}]")),
            Some(span) => {
                let text = text_at(raw, span)?;
                if let Some(new) = self.system(text, span.start, &identity, &words, &mut edits) {
                    edits.replace(span.clone(), new);
                }
            }
        }
        if !count_tokens {
            let user_id = format!(
                r#"{{"device_id":"{}","account_uuid":"{}","session_id":"{}"}}"#,
                self.device_id,
                json_safe(account_uuid),
                json_safe(session_id)
            );
            let user_id = serde_json::to_string(&user_id).unwrap_or_default();
            match jsonspan::member(members, "metadata") {
                None => prepend.push(format!("\"metadata\":{{\"user_id\":{user_id}}}")),
                Some(span) => {
                    let text = text_at(raw, span)?;
                    match jsonspan::object_members(text) {
                        Some(meta) => match jsonspan::member(&meta, "user_id") {
                            Some(u) => {
                                edits.replace(span.start + u.start..span.start + u.end, user_id)
                            }
                            None => {
                                let brace = span.start + text.find('{').unwrap_or(0) + 1;
                                let sep = if meta.is_empty() { "" } else { "," };
                                edits.replace(brace..brace, format!("\"user_id\":{user_id}{sep}"));
                            }
                        },
                        None => edits.replace(span.clone(), format!("{{\"user_id\":{user_id}}}")),
                    }
                }
            }
        }
        if !words.is_empty() {
            if let Some(span) = jsonspan::member(members, "messages") {
                message_text_edits(text_at(raw, span)?, span.start, &words, &mut edits);
            }
        }
        if !prepend.is_empty() {
            let brace = raw.iter().position(|&c| c == b'{').map_or(0, |i| i + 1);
            let sep = if members.is_empty() { "" } else { "," };
            edits.replace(brace..brace, format!("{}{sep}", prepend.join(",")));
        }
        Ok(edits)
    }

    /// The new `system` value, or `None` when only in-place edits (added to `edits`) are needed.
    fn system(
        &self,
        text: &str,
        at: usize,
        identity: &str,
        words: &[String],
        edits: &mut Edits,
    ) -> Option<String> {
        if self.cfg.strict {
            return Some(format!("[{identity}]"));
        }
        if text.starts_with('"') {
            let caller: String = serde_json::from_str(text).ok()?;
            if caller.starts_with(IDENTITY) && words.is_empty() {
                return None;
            }
            let caller = break_words(&caller, words).unwrap_or(caller);
            if caller.starts_with(IDENTITY) {
                return Some(serde_json::to_string(&caller).unwrap_or_default());
            }
            return Some(format!("[{identity},{}]", text_block(&caller)));
        }
        let Some(items) = jsonspan::array_items(text) else {
            return Some(format!("[{identity}]")); // null or a wrong type: ours replaces it
        };
        for item in &items {
            text_block_edits(text, item.clone(), at, words, edits);
        }
        let first_is_identity = items.first().is_some_and(|first| {
            serde_json::from_str::<serde_json::Value>(&text[first.clone()])
                .ok()
                .and_then(|v| {
                    v.get("text").and_then(|t| t.as_str()).map(|t| {
                        // A sensitive word inside the identity line breaks it too (found by
                        // fuzzing): then it no longer counts, and ours goes first, as for a
                        // string system.
                        t.starts_with(IDENTITY)
                            && break_words(t, words).is_none_or(|b| b.starts_with(IDENTITY))
                    })
                })
                .unwrap_or(false)
        });
        if !first_is_identity {
            let bracket = at + text.find('[').unwrap_or(0) + 1;
            let sep = if items.is_empty() { "" } else { "," };
            edits.replace(bracket..bracket, format!("{identity}{sep}"));
        }
        None
    }

    fn words(&self) -> Vec<String> {
        let mut words = self.cfg.sensitive_words.clone();
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        words
    }
}

/// Why a body cannot be cloaked: a part of it that must be read is not UTF-8 (the callers
/// checked the whole body, so only a bug gets here).
const NOT_UTF8: &str = "the request body is not valid UTF-8 JSON";

/// The text of the member at `span` of the body `raw`.
fn text_at<'r>(raw: &'r [u8], span: &std::ops::Range<usize>) -> Result<&'r str, String> {
    raw.get(span.clone())
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| NOT_UTF8.to_string())
}

/// A text block with Anthropic's key order (`type` first), as Claude Code sends it.
fn text_block(text: &str) -> String {
    let text = serde_json::to_string(text).unwrap_or_default();
    format!(r#"{{"type":"text","text":{text}}}"#)
}

/// Characters that cannot appear unescaped inside our hand-built JSON string are dropped;
/// ids here are UUIDs, so this only matters for a corrupt token file.
fn json_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// In a text block (`{"type":"text","text":…}`) at `item` within `text` (itself at `at` in the
/// body), break up sensitive words in place.
fn text_block_edits(
    text: &str,
    item: std::ops::Range<usize>,
    at: usize,
    words: &[String],
    edits: &mut Edits,
) {
    if words.is_empty() {
        return;
    }
    let block = &text[item.clone()];
    let Some(members) = jsonspan::object_members(block) else {
        return;
    };
    let is_text =
        jsonspan::member(&members, "type").is_some_and(|t| &block[t.clone()] == "\"text\"");
    if let (true, Some(t)) = (is_text, jsonspan::member(&members, "text")) {
        string_edit(block, t.clone(), at + item.start, words, edits);
    }
}

fn string_edit(
    container: &str,
    span: std::ops::Range<usize>,
    at: usize,
    words: &[String],
    edits: &mut Edits,
) {
    let Ok(s) = serde_json::from_str::<String>(&container[span.clone()]) else {
        return;
    };
    if let Some(new) = break_words(&s, words) {
        edits.replace(
            at + span.start..at + span.end,
            serde_json::to_string(&new).unwrap_or_default(),
        );
    }
}

/// Message text the caller wrote: string contents and `text` blocks; never tool inputs, tool
/// results or thinking blocks. `messages` is the array's text, at `at` in the body.
fn message_text_edits(messages: &str, at: usize, words: &[String], edits: &mut Edits) {
    let Some(items) = jsonspan::array_items(messages) else {
        return;
    };
    for item in items {
        let msg = &messages[item.clone()];
        let Some(members) = jsonspan::object_members(msg) else {
            continue;
        };
        let Some(content) = jsonspan::member(&members, "content") else {
            continue;
        };
        let base = at + item.start;
        let c = &msg[content.clone()];
        if c.starts_with('"') {
            string_edit(msg, content.clone(), base, words, edits);
        } else if let Some(blocks) = jsonspan::array_items(c) {
            for b in blocks {
                text_block_edits(c, b, base + content.start, words, edits);
            }
        }
    }
}

/// Inserts a zero-width space after the first character of every (ASCII case-insensitive)
/// occurrence of a word; `None` when nothing matched. `words` must be longest first.
pub fn break_words(text: &str, words: &[String]) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        let hit = words.iter().find(|w| {
            let w = w.as_bytes();
            bytes.len() - i >= w.len() && bytes[i..i + w.len()].eq_ignore_ascii_case(w)
        });
        match hit {
            Some(w) if text.is_char_boundary(i + w.len()) => {
                let m = &text[i..i + w.len()];
                let first = m.chars().next().map_or(0, char::len_utf8);
                out.push_str(&m[..first]);
                out.push(ZWSP);
                out.push_str(&m[first..]);
                i += w.len();
                changed = true;
            }
            _ => {
                let ch = text[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&text[i..i + ch]);
                i += ch;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn cloak(strict: bool, words: &[&str]) -> Cloak {
        Cloak {
            cfg: CloakingConfig {
                mode: CloakMode::Auto,
                strict,
                cache_user_id: false,
                sensitive_words: words.iter().map(|w| w.to_string()).collect(),
                cli_version: "2.1.330".into(),
            },
            device_id: "d".repeat(64),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn cloaked(c: &Cloak, body: &str) -> String {
        c.body(body, "acct-1", "sess-1", false).unwrap()
    }

    #[test]
    fn claude_code_detection() {
        assert!(is_claude_code(
            Some("claude-cli/2.1.330 (external, cli)"),
            Some("cli")
        ));
        assert!(!is_claude_code(
            Some("claude-cli/2.1.330 (external, cli)"),
            None
        ));
        assert!(!is_claude_code(Some("Anthropic/Python 0.40"), Some("cli")));
        let c = cloak(false, &[]);
        assert!(c.applies(Some("curl/8"), None));
        assert!(!c.applies(Some("claude-cli/2.1.330 (external, cli)"), Some("cli")));
    }

    #[test]
    fn adds_identity_and_metadata_and_keeps_everything_else_byte_identical() {
        let body = r#"{"model":"claude-sonnet-4-6","max_tokens":1.0e3,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"hm \u00e9","signature":"Eq0BCkYIBxgC+/=="},{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}],"zzz_unknown":{"b":1,"a":2}}"#;
        let out = cloaked(&cloak(false, &[]), body);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["system"][0]["text"], IDENTITY);
        assert_eq!(v["system"].as_array().unwrap().len(), 1);
        let uid: Value = serde_json::from_str(v["metadata"]["user_id"].as_str().unwrap()).unwrap();
        assert_eq!(
            uid,
            json!({"device_id": "d".repeat(64), "account_uuid": "acct-1", "session_id": "sess-1"})
        );
        // Everything the client sent is still there, byte for byte.
        assert!(out.ends_with(&body[1..]), "{out}");
        assert!(out.contains(r#""signature":"Eq0BCkYIBxgC+/==""#) && out.contains("1.0e3"));
    }

    #[test]
    fn string_and_array_systems() {
        let out = cloaked(
            &cloak(false, &[]),
            r#"{"system":"Be terse.","messages":[]}"#,
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["system"],
            json!([{"type":"text","text":IDENTITY},{"type":"text","text":"Be terse."}])
        );

        let body = r#"{"system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[]}"#;
        let out = cloaked(&cloak(false, &[]), body);
        assert!(out.contains(r#"[{"type":"text","text":"You are Claude Code, Anthropic's official CLI for Claude."},{"type":"text","text":"A","cache_control":{"type":"ephemeral","ttl":"1h"}}]"#), "{out}");

        // Already first: untouched.
        let body = format!(
            r#"{{"system":[{{"type":"text","text":"{IDENTITY}"}}],"metadata":{{"user_id":"x","k":1}}}}"#
        );
        let out = cloaked(&cloak(false, &[]), &body);
        assert_eq!(out.matches(IDENTITY).count(), 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["metadata"]["k"], 1);
        assert_ne!(v["metadata"]["user_id"], "x");

        let out = cloaked(
            &cloak(true, &[]),
            r#"{"system":"secret rules","messages":[]}"#,
        );
        assert!(!out.contains("secret rules"));
        assert!(out.contains(IDENTITY));
    }

    #[test]
    fn count_tokens_bodies_get_no_metadata() {
        let out = cloak(false, &[])
            .body(r#"{"messages":[]}"#, "a", "s", true)
            .unwrap();
        assert!(!out.contains("metadata") && out.contains(IDENTITY));
    }

    #[test]
    fn cache_control_count_never_grows() {
        let body = r#"{"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"b","cache_control":{"type":"ephemeral"}}],"tools":[{"name":"t","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"c","cache_control":{"type":"ephemeral"}}]}]}"#;
        let out = cloaked(&cloak(false, &[]), body);
        assert_eq!(out.matches("cache_control").count(), 4);
    }

    #[test]
    fn sensitive_words_in_prompt_text_only() {
        let c = cloak(false, &["acme", "AcmeBot"]);
        let body = r#"{"system":"I am AcmeBot","messages":[{"role":"user","content":"ask acme"},{"role":"assistant","content":[{"type":"text","text":"ACME!"},{"type":"tool_use","id":"t","name":"acme","input":{"q":"acme"}}]}]}"#;
        let out = cloaked(&c, body);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["system"][1]["text"], "I am A\u{200B}cmeBot");
        assert_eq!(v["messages"][0]["content"], "ask a\u{200B}cme");
        assert_eq!(v["messages"][1]["content"][0]["text"], "A\u{200B}CME!");
        assert_eq!(
            v["messages"][1]["content"][1]["input"]["q"], "acme",
            "tool input untouched"
        );
        assert_eq!(v["messages"][1]["content"][1]["name"], "acme");
    }

    /// Found by fuzzing (`tests/fuzz`, target `cloak_body`): a caller's system array that
    /// already opened with the identity line kept it as the identity even after a sensitive
    /// word ("a") was broken up inside it, so the body went out without an intact identity.
    #[test]
    fn a_sensitive_word_inside_the_callers_identity_line_adds_ours() {
        let c = cloak(false, &["a"]);
        let body = format!(r#"{{"system":[{{"type":"text","text":"{IDENTITY} Be brief."}}]}}"#);
        let v: Value = serde_json::from_str(&cloaked(&c, &body)).unwrap();
        assert_eq!(v["system"][0]["text"], IDENTITY);
        assert_eq!(v["system"].as_array().unwrap().len(), 2);
        // Without sensitive words in it, the caller's identity line still counts.
        let v: Value = serde_json::from_str(&cloaked(&cloak(false, &["zzz"]), &body)).unwrap();
        assert_eq!(v["system"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn empty_object_and_bad_bodies() {
        let out = cloaked(&cloak(false, &[]), "{}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["system"].is_array() && v["metadata"].is_object());
        assert!(cloak(false, &[]).body("[1]", "", "", false).is_err());
        assert!(cloak(false, &[]).body("{", "", "", false).is_err());
    }
}
