//! One reasoning plan for both OpenAI doors: a client's reasoning effort (`reasoning_effort` on
//! `/v1/chat/completions`, `reasoning.effort` on `/v1/responses`) plus what the model accepts
//! ([`crate::anthropic::models`]) → the `thinking`, `output_config.effort` and `max_tokens` sent
//! upstream. Both doors call [`plan`]; this table is the only statement of it.
//!
//! # The table
//!
//! Efforts: `none`, `minimal`, `low`, `medium`, `high`, `xhigh`, `max` (`max` is an extension on
//! both doors); `none` or absent: no thinking.
//!
//! | effort | budget models: `thinking: {type: enabled, budget_tokens}` | adaptive models: `thinking: {type: adaptive}` + `output_config.effort` | default `max_tokens` |
//! |---|---|---|---|
//! | `none` | no thinking | no thinking | 8192 |
//! | `minimal` | 1024 | `low` | 9216 |
//! | `low` | 2048 | `low` | 10240 |
//! | `medium` | 8192 | `medium` | 16384 |
//! | `high` | 16384 | `high` | 24576 |
//! | `xhigh` | 24576 | `xhigh` where the model accepts it, else `high` | 32768 |
//! | `max` | 32000 | `max` | 40192 |
//!
//! - Adaptive models are those [`crate::anthropic::models`] gives an adaptive thinking style
//!   (Opus/Sonnet 4.6, Opus ≥ 4.7, Mythos, every Claude 5 family); the rest, unknown ids
//!   included, are budget models. An adaptive model gets the highest effort level it accepts
//!   that is not above the one asked for (never more: `max` means "no limit on spending"),
//!   and the `effort-2025-11-24` beta. Budget models get no effort.
//! - The budget column is each effort's *nominal budget*. `max_tokens` is the client's value
//!   when given (`max_completion_tokens`/`max_tokens` on chat, `max_output_tokens` on
//!   Responses), else the nominal budget + 8192 when an effort other than `none` was asked
//!   for, else 8192.
//! - Budget clamping: budget = min(nominal, `max_tokens` − 1024), so the client's cap is
//!   never exceeded and the answer keeps at least 1024 tokens; below Anthropic's minimum of
//!   1024 there is no thinking.
//! - A forced tool choice (`required` or a named tool) drops `thinking` on every model: an
//!   adaptive model keeps its `output_config.effort`, which does not need thinking.
//! - On budget models thinking is also dropped when the last assistant turn calls a tool
//!   without a leading (signed) thinking block, which Anthropic refuses. Adaptive models keep
//!   it (they may skip thinking, so such a turn is valid). Chat clients never send signed
//!   thinking, so on chat this means: budget model + last assistant turn with tool calls.
//! - Responses' `reasoning.summary` (`auto`, `concise`, `detailed`) adds
//!   `thinking.display: "summarized"` on adaptive models (newer models omit the thinking text
//!   unless asked for it).
//! - `temperature`, `top_p` and `top_k` are dropped whenever thinking is on (Anthropic accepts
//!   only their defaults with thinking): see [`super::draft`].

use serde_json::{json, Value};

use super::body::{Block, Message};
use super::TranslateError;
use crate::anthropic::models::{self, Effort};

/// `max_tokens` when the client gives none and asks for no reasoning; also the room for the
/// answer on top of a nominal budget.
pub const DEFAULT_MAX_TOKENS: u64 = 8192;
/// Anthropic's smallest `budget_tokens`; also the least room kept for the answer.
const MIN_BUDGET: u64 = 1024;

/// A client's reasoning effort above `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningEffort {
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

impl ReasoningEffort {
    /// Reads an effort (`param` names it in the 400); `None` for absent, `null` or `none`.
    pub fn parse(
        v: Option<&Value>,
        param: &str,
    ) -> Result<Option<ReasoningEffort>, TranslateError> {
        if v.is_none_or(Value::is_null) {
            return Ok(None);
        }
        let effort = match v.and_then(Value::as_str) {
            Some("none") => return Ok(None),
            Some("minimal") => ReasoningEffort::Minimal,
            Some("low") => ReasoningEffort::Low,
            Some("medium") => ReasoningEffort::Medium,
            Some("high") => ReasoningEffort::High,
            Some("xhigh") => ReasoningEffort::XHigh,
            Some("max") => ReasoningEffort::Max,
            _ => {
                return Err(TranslateError::new(
                    param,
                    format!("`{param}` must be none, minimal, low, medium, high, xhigh or max"),
                ))
            }
        };
        Ok(Some(effort))
    }

    /// The budget on budget models, and what sizes a default `max_tokens` on every model.
    fn nominal_budget(self) -> u64 {
        match self {
            ReasoningEffort::Minimal => 1024,
            ReasoningEffort::Low => 2048,
            ReasoningEffort::Medium => 8192,
            ReasoningEffort::High => 16384,
            ReasoningEffort::XHigh => 24576,
            ReasoningEffort::Max => 32000,
        }
    }

    /// The Anthropic effort level asked for (Anthropic has nothing below `low`).
    fn level(self) -> Effort {
        match self {
            ReasoningEffort::Minimal | ReasoningEffort::Low => Effort::Low,
            ReasoningEffort::Medium => Effort::Medium,
            ReasoningEffort::High => Effort::High,
            ReasoningEffort::XHigh => Effort::XHigh,
            ReasoningEffort::Max => Effort::Max,
        }
    }
}

/// What a request asks for that the plan depends on.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub effort: Option<ReasoningEffort>,
    /// Responses' `reasoning.summary` asked for thinking text.
    pub summary: bool,
    /// The client's own output limit.
    pub client_max: Option<u64>,
    /// The tool choice forces a call (`required` or a named tool).
    pub forced_tool: bool,
    /// The Anthropic messages already translated.
    pub messages: &'a [Message<'a>],
}

/// What goes upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The `thinking` object; `None`: thinking off.
    pub thinking: Option<Value>,
    /// `output_config.effort`; `None`: not sent.
    pub effort: Option<Effort>,
    pub max_tokens: u64,
}

/// Applies the table of the module docs to `model` (a resolved id).
pub fn plan(ask: &Ask, model: &str) -> Plan {
    let max_tokens = ask.client_max.unwrap_or(match ask.effort {
        Some(e) => e.nominal_budget() + DEFAULT_MAX_TOKENS,
        None => DEFAULT_MAX_TOKENS,
    });
    let off = Plan {
        thinking: None,
        effort: None,
        max_tokens,
    };
    let Some(effort) = ask.effort else {
        return off;
    };
    let caps = models::capabilities(model);
    if caps.thinking.adaptive() {
        let thinking = (!ask.forced_tool).then(|| {
            let mut t = json!({"type": "adaptive"});
            if ask.summary {
                t["display"] = json!("summarized");
            }
            t
        });
        return Plan {
            thinking,
            effort: caps.effort_up_to(effort.level()),
            max_tokens,
        };
    }
    if ask.forced_tool || unsigned_tool_turn(ask.messages) {
        return off;
    }
    let budget = effort
        .nominal_budget()
        .min(max_tokens.saturating_sub(MIN_BUDGET));
    Plan {
        thinking: (budget >= MIN_BUDGET)
            .then(|| json!({"type": "enabled", "budget_tokens": budget})),
        ..off
    }
}

/// Whether the last assistant turn calls a tool without opening with a thinking block: with
/// budget thinking on, Anthropic then refuses the request ("a final `assistant` message must
/// start with a thinking block").
pub fn unsigned_tool_turn(messages: &[Message]) -> bool {
    let Some(last) = messages.iter().rev().find(|m| m.role == "assistant") else {
        return false;
    };
    let blocks = &last.content;
    blocks.iter().any(|b| b.kind() == "tool_use") && !blocks.first().is_some_and(is_thinking)
}

/// A `thinking` or `redacted_thinking` block.
pub fn is_thinking(block: &Block) -> bool {
    matches!(block.kind(), "thinking" | "redacted_thinking")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(effort: ReasoningEffort, client_max: Option<u64>) -> Ask<'static> {
        Ask {
            effort: Some(effort),
            summary: false,
            client_max,
            forced_tool: false,
            messages: &[],
        }
    }

    fn budget(n: u64, max_tokens: u64) -> Plan {
        Plan {
            thinking: Some(json!({"type": "enabled", "budget_tokens": n})),
            effort: None,
            max_tokens,
        }
    }

    #[test]
    fn budgets_are_clamped_below_the_client_limit() {
        let haiku = "claude-haiku-4-5";
        use ReasoningEffort::*;
        assert_eq!(plan(&ask(High, None), haiku), budget(16384, 24576));
        assert_eq!(plan(&ask(High, Some(4000)), haiku), budget(2976, 4000));
        assert_eq!(plan(&ask(Low, Some(4000)), haiku), budget(2048, 4000));
        assert_eq!(plan(&ask(Minimal, Some(2048)), haiku), budget(1024, 2048));
        let too_small = plan(&ask(Medium, Some(2047)), haiku);
        assert_eq!((too_small.thinking, too_small.max_tokens), (None, 2047));
    }

    #[test]
    fn adaptive_models_get_effort_and_keep_it_under_a_forced_tool() {
        let mut a = ask(ReasoningEffort::XHigh, None);
        a.summary = true;
        let p = plan(&a, "claude-sonnet-4-6");
        assert_eq!(
            p,
            Plan {
                thinking: Some(json!({"type": "adaptive", "display": "summarized"})),
                effort: Some(Effort::High),
                max_tokens: 32768
            }
        );
        a.forced_tool = true;
        let p = plan(&a, "claude-opus-4-7");
        assert_eq!((p.thinking, p.effort), (None, Some(Effort::XHigh)));
    }

    #[test]
    fn a_tool_turn_without_thinking_drops_budget_thinking_only() {
        let turn = |types: &[&str]| Message {
            role: "assistant",
            content: types
                .iter()
                .map(|t| Block::Json(json!({"type": t})))
                .collect(),
        };
        let turn = [turn(&["tool_use"])];
        let mut a = ask(ReasoningEffort::Low, None);
        a.messages = &turn;
        assert_eq!(plan(&a, "claude-sonnet-4-5").thinking, None);
        assert!(plan(&a, "claude-sonnet-4-6").thinking.is_some());
        let signed = [Message {
            role: "assistant",
            content: vec![
                Block::Json(json!({"type": "thinking"})),
                Block::Json(json!({"type": "tool_use"})),
            ],
        }];
        a.messages = &signed;
        assert!(plan(&a, "claude-sonnet-4-5").thinking.is_some());
    }

    #[test]
    fn efforts_parse_by_name() {
        let p = |v: Value| ReasoningEffort::parse(Some(&v), "reasoning_effort");
        assert_eq!(p(json!("none")), Ok(None));
        assert_eq!(p(Value::Null), Ok(None));
        assert_eq!(p(json!("max")), Ok(Some(ReasoningEffort::Max)));
        assert_eq!(
            p(json!("extreme")).unwrap_err().param.as_deref(),
            Some("reasoning_effort")
        );
        assert_eq!(ReasoningEffort::parse(None, "x"), Ok(None));
    }
}
