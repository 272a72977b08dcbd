//! What each Claude model family accepts: how it takes extended thinking and which
//! `output_config.effort` levels it knows. One parser reads a model id (as resolved through
//! the alias table) into a family and a version; one table turns that into [`Capabilities`].
//! Every door that plans thinking asks here, so no two of them can disagree about a model.
//!
//! # Where the facts come from
//!
//! - Effort levels, <https://platform.claude.com/docs/en/build-with-claude/effort>: `max` is
//!   available on Fable 5, Mythos 5, Opus 5, Opus 4.8, Mythos Preview, Opus 4.7, Opus 4.6,
//!   Sonnet 5 and Sonnet 4.6; `xhigh` on Fable 5, Mythos 5, Opus 5, Opus 4.8, Opus 4.7 and
//!   Sonnet 5 (not on Opus 4.6, Sonnet 4.6 or Mythos Preview). The effort parameter as a
//!   whole is supported by the 5.x families (5.1, 5.5 and Haiku 5.5 included), Opus 4.8, 4.7
//!   and 4.6, Sonnet 4.6, and Opus 4.5 (`low`, `medium`, `high` only); not by Sonnet 4.5,
//!   Haiku 4.5 or anything older.
//! - Adaptive thinking, <https://platform.claude.com/docs/en/build-with-claude/adaptive-thinking>
//!   and <https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-adaptive-thinking.html>:
//!   supported on Opus 4.6, Sonnet 4.6, Opus 4.7, Mythos Preview and the Claude 5 families.
//!   Opus 4.7, Mythos Preview and every Claude 5 family (Haiku 5.5 included) accept *only*
//!   adaptive thinking (`{"type":"enabled","budget_tokens":N}` is a 400); on Opus and Sonnet
//!   4.6 budgets are deprecated but still accepted. Sonnet 4.5, Opus 4.5, Haiku 4.5 and older
//!   take only `{"type":"enabled","budget_tokens":N}` (N ≥ 1024, N < `max_tokens`).
//!
//! Opus 4.8 is not named on the adaptive-thinking pages; it is read as its predecessor Opus 4.7
//! (adaptive only), which is also what it accepts in practice. A version the pages do not name
//! (a later 4.x Sonnet, say) gets the row of the newest version they do name below it, so a
//! model is never sent a level its family has not been documented to take; a later major
//! (`claude-sonnet-5-7`, `claude-opus-6`) is read as Claude 5, the newest the pages describe.
//!
//! New ids arrive without a code change: `/v1/models` lists whatever the upstream's models
//! endpoint reports (`anthropic::catalogue`), and a client may name any id. This table is read
//! for all of them by family and version alone. The models endpoint also reports each model's
//! `capabilities` (thinking types, effort levels); those are passed through to clients as they
//! are, but not read here, so a request is planned the same way whether the list was fetched
//! or not.
//!
//! # Reading an id
//!
//! Lower-cased; anything from `[` on (`claude-sonnet-4-6[1m]`) is dropped; split on `-`, `.`,
//! `@`, `:`, `/` and `_`, so Bedrock (`anthropic.claude-opus-4-6-v1:0`) and Vertex
//! (`claude-opus-4-6@20251101`) spellings read the same, and so do the ids the models endpoint
//! lists (<https://platform.claude.com/docs/en/api/models-list>: `claude-opus-4-1-20250805`,
//! `claude-3-5-haiku-20241022`, `claude-sonnet-4-6`). The family is the first of `opus`,
//! `sonnet`, `haiku`, `mythos`, `fable`; the version is the first two all-digit parts of fewer
//! than eight digits (eight is a snapshot date), in either order around the family
//! (`claude-3-7-sonnet-20250219` is Sonnet 3.7). An id without a family is [`Family::Unknown`]
//! and gets the budget style with no effort: every thinking model before 4.6 takes that.

/// A Claude model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Opus,
    Sonnet,
    Haiku,
    Mythos,
    Fable,
    /// Not a Claude family we can read (a custom or future name).
    Unknown,
}

/// A model id read into its family and `(major, minor)` version (`(0, 0)` when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub family: Family,
    pub version: (u32, u32),
}

/// How a model takes extended thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingStyle {
    /// Only `{"type":"enabled","budget_tokens":N}`.
    Budget,
    /// `{"type":"adaptive"}` (+ `output_config.effort`); budgets are deprecated but accepted.
    Adaptive,
    /// Only `{"type":"adaptive"}`: a budget is refused with a 400.
    AdaptiveOnly,
}

impl ThinkingStyle {
    /// Whether thinking is asked for with `{"type":"adaptive"}`.
    pub fn adaptive(self) -> bool {
        self != ThinkingStyle::Budget
    }
}

/// An `output_config.effort` level, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effort {
    Low,
    Medium,
    High,
    XHigh,
    Max,
}

impl Effort {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
            Effort::Max => "max",
        }
    }
}

/// What a model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub thinking: ThinkingStyle,
    /// The effort levels it accepts, lowest first; empty: no `output_config.effort` at all.
    pub efforts: &'static [Effort],
}

const NO_EFFORT: &[Effort] = &[];
const UP_TO_HIGH: &[Effort] = &[Effort::Low, Effort::Medium, Effort::High];
const UP_TO_MAX: &[Effort] = &[Effort::Low, Effort::Medium, Effort::High, Effort::Max];
const ALL_EFFORTS: &[Effort] = &[
    Effort::Low,
    Effort::Medium,
    Effort::High,
    Effort::XHigh,
    Effort::Max,
];

impl Capabilities {
    /// The highest level it accepts that is not above `asked` (never more than the client
    /// asked for); `None` when it takes no effort at all.
    pub fn effort_up_to(&self, asked: Effort) -> Option<Effort> {
        self.efforts.iter().copied().filter(|e| *e <= asked).max()
    }
}

/// Reads a model id (see the module docs).
pub fn parse(id: &str) -> Model {
    let id = id.split('[').next().unwrap_or("").to_ascii_lowercase();
    let mut family = Family::Unknown;
    let mut version = Vec::new();
    for part in id.split(['-', '.', '@', ':', '/', '_']) {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            if part.len() < 8 && version.len() < 2 {
                version.push(part.parse::<u32>().unwrap_or(0));
            }
        } else if family == Family::Unknown {
            family = match part {
                "opus" => Family::Opus,
                "sonnet" => Family::Sonnet,
                "haiku" => Family::Haiku,
                "mythos" => Family::Mythos,
                "fable" => Family::Fable,
                _ => Family::Unknown,
            };
        }
    }
    Model {
        family,
        version: (
            version.first().copied().unwrap_or(0),
            version.get(1).copied().unwrap_or(0),
        ),
    }
}

/// What the model `id` accepts (the table of the module docs).
pub fn capabilities(id: &str) -> Capabilities {
    let Model { family, version } = parse(id);
    let (thinking, efforts) = match family {
        Family::Unknown => (ThinkingStyle::Budget, NO_EFFORT),
        // Every Claude 5 family, and Fable, which began at 5.
        _ if version.0 >= 5 || family == Family::Fable => {
            (ThinkingStyle::AdaptiveOnly, ALL_EFFORTS)
        }
        // Mythos began with Mythos Preview (no version number before 5).
        Family::Mythos => (ThinkingStyle::AdaptiveOnly, UP_TO_MAX),
        Family::Opus if version >= (4, 7) => (ThinkingStyle::AdaptiveOnly, ALL_EFFORTS),
        Family::Opus | Family::Sonnet if version >= (4, 6) => (ThinkingStyle::Adaptive, UP_TO_MAX),
        Family::Opus if version == (4, 5) => (ThinkingStyle::Budget, UP_TO_HIGH),
        _ => (ThinkingStyle::Budget, NO_EFFORT),
    };
    Capabilities { thinking, efforts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effort::*;
    use ThinkingStyle::*;

    #[test]
    fn ids_read_into_family_and_version() {
        for (id, family, version) in [
            ("claude-sonnet-4-6", Family::Sonnet, (4, 6)),
            ("claude-haiku-4-5-20251001", Family::Haiku, (4, 5)),
            ("claude-3-7-sonnet-20250219", Family::Sonnet, (3, 7)),
            ("claude-opus-4-6-v1", Family::Opus, (4, 6)),
            ("anthropic.claude-opus-4-6-v1:0", Family::Opus, (4, 6)),
            ("claude-opus-4-6@20251101", Family::Opus, (4, 6)),
            ("claude-opus-4-20250514", Family::Opus, (4, 0)),
            ("claude-mythos-preview", Family::Mythos, (0, 0)),
            ("claude-fable-5-1", Family::Fable, (5, 1)),
            ("claude-sonnet-4-6[1m]", Family::Sonnet, (4, 6)),
            ("CLAUDE-OPUS-5", Family::Opus, (5, 0)),
            // Ids as the models endpoint lists them, and ones it may list next.
            ("claude-opus-4-1-20250805", Family::Opus, (4, 1)),
            ("claude-3-5-haiku-20241022", Family::Haiku, (3, 5)),
            ("claude-3-haiku-20240307", Family::Haiku, (3, 0)),
            ("claude-sonnet-5-7", Family::Sonnet, (5, 7)),
            ("claude-sonnet-5-7-20270115", Family::Sonnet, (5, 7)),
            ("claude-opus-6", Family::Opus, (6, 0)),
            ("claude-haiku-5-7", Family::Haiku, (5, 7)),
            ("claude-mythos-5-7", Family::Mythos, (5, 7)),
            ("my-model", Family::Unknown, (0, 0)),
            ("", Family::Unknown, (0, 0)),
        ] {
            assert_eq!(parse(id), Model { family, version }, "{id}");
        }
    }

    #[test]
    fn each_family_gets_its_documented_capabilities() {
        let all = [Low, Medium, High, XHigh, Max];
        let no_xhigh = [Low, Medium, High, Max];
        for (id, thinking, efforts) in [
            ("claude-3-7-sonnet-20250219", Budget, &[][..]),
            ("claude-sonnet-4-5-20250929", Budget, &[]),
            ("claude-haiku-4-5", Budget, &[]),
            ("claude-opus-4-1", Budget, &[]),
            ("claude-opus-4-5", Budget, &[Low, Medium, High]),
            ("claude-opus-4-6", Adaptive, &no_xhigh),
            ("claude-sonnet-4-6", Adaptive, &no_xhigh),
            ("claude-sonnet-4-6[1m]", Adaptive, &no_xhigh),
            ("claude-opus-4-7", AdaptiveOnly, &all),
            ("claude-opus-4-8", AdaptiveOnly, &all),
            ("claude-mythos-preview", AdaptiveOnly, &no_xhigh),
            ("claude-mythos-1", AdaptiveOnly, &no_xhigh),
            ("claude-mythos-5", AdaptiveOnly, &all),
            ("claude-sonnet-5", AdaptiveOnly, &all),
            ("claude-opus-5-20260101", AdaptiveOnly, &all),
            ("claude-fable-5-1", AdaptiveOnly, &all),
            ("claude-fable", AdaptiveOnly, &all),
            ("claude-haiku-5-5", AdaptiveOnly, &all),
            // Never seen: read by family and version (the newest documented row below).
            ("claude-sonnet-5-7", AdaptiveOnly, &all),
            ("claude-sonnet-5-7-20270115", AdaptiveOnly, &all),
            ("claude-haiku-5-7", AdaptiveOnly, &all),
            ("claude-opus-6", AdaptiveOnly, &all),
            ("claude-opus-4-9", AdaptiveOnly, &all),
            ("claude-sonnet-4-7", Adaptive, &no_xhigh),
            ("claude-haiku-4-6", Budget, &[]),
            ("claude-mythos-5-7", AdaptiveOnly, &all),
            ("claude-opus-4-1-20250805", Budget, &[]),
            ("claude-3-5-haiku-20241022", Budget, &[]),
            ("my-model", Budget, &[]),
        ] {
            let c = capabilities(id);
            assert_eq!((c.thinking, c.efforts), (thinking, efforts), "{id}");
        }
    }

    #[test]
    fn effort_never_exceeds_what_was_asked() {
        let opus_4_6 = capabilities("claude-opus-4-6");
        assert_eq!(opus_4_6.effort_up_to(XHigh), Some(High));
        assert_eq!(opus_4_6.effort_up_to(Max), Some(Max));
        assert_eq!(opus_4_6.effort_up_to(Low), Some(Low));
        assert_eq!(
            capabilities("claude-opus-4-7").effort_up_to(XHigh),
            Some(XHigh)
        );
        assert_eq!(capabilities("claude-haiku-4-5").effort_up_to(High), None);
    }
}
