//! The subscription's refusals that are not rate limits: what Anthropic answers, which class of
//! failure it is, and the one sentence that tells the user what to do.
//!
//! Some refusals of a subscription login look like a rate limit or a bad request but are
//! neither: waiting does not help, and the client's request was fine. They must never bench the
//! account (no cooldown: the next request may well succeed, e.g. one without the 1M-context
//! beta), and the person reading the error needs to know what to change. Each is recognised by
//! its status, its `error.type` and a phrase of its message, as quoted in public trackers:
//!
//! | class | status, `error.type` | message (sources) |
//! |---|---|---|
//! | `third_party_extra_usage` | 400 `invalid_request_error` | "Third-party apps now draw from your extra usage, not your plan limits. …" (anthropics/claude-code#45048, #45911; ianjwhite99/opencode-with-claude#91; earendil-works/pi#3012) |
//! | `long_context_extra_usage` | 429 `rate_limit_error` | "Extra usage is required for long context requests." (anthropics/claude-code#42616, #50784, #56392; Wei-Shaw/sub2api#572) |
//! | `oauth_not_allowed` | 403 `permission_error` | "OAuth authentication is currently not allowed for this organization." (anthropics/claude-code#53756, #63685, #65101, #65714; Wei-Shaw/claude-relay-service#991) |
//! | `organization_disabled` | 400 `invalid_request_error` | "This organization has been disabled." (router-for-me/CLIProxyAPI#2442, #3409; anthropics/claude-code#60648) |
//!
//! The last two say the login itself cannot be used: the account's state becomes `blocked`
//! (`account.rs`), which a success or a new login clears. A blocked account still sends
//! requests upstream, so it notices by itself when the organisation is allowed again (the
//! OAuth refusal has been reported to come and go within minutes: anthropics/claude-code#90875).
//!
//! Not classified here: the same OAuth wording under `401 authentication_error`, as reported
//! in 2025 (anthropics/claude-code#6312, #6590). A 401 means "refresh the token" to the OAuth
//! backend, which refreshes once and then answers 503 quoting Anthropic's text.
//!
//! [`peek`] reads such an answer's body (small; only for the statuses above) while the OAuth
//! backend sends, and puts the advice into `error.message` after Anthropic's own text, so every
//! door — the relayed Anthropic body, the OpenAI error, the relay's `{ok:false}` — shows it
//! without knowing about refusals. [`Refusal::explain`] does the same for an `error` event inside
//! a stream that is collected or translated, and [`explain_event`] for one relayed as it
//! arrives.

use std::io::{self, Cursor, Read};

use serde_json::Value;
use ureq::http::{header, Response};
use ureq::Body;

use crate::base::error::ErrorKind;

/// A refusal of the subscription that is not a rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A request Anthropic counts as a third-party app's, charged to extra usage.
    ThirdPartyExtraUsage,
    /// The 1M-token context window on a plan without extra usage.
    LongContextExtraUsage,
    /// The login's organisation does not allow OAuth (subscription) access.
    OauthNotAllowed,
    /// The login's organisation has been disabled.
    OrganizationDisabled,
}

/// How one refusal is recognised and explained.
struct Row {
    refusal: Refusal,
    status: u16,
    error_type: &'static str,
    /// Phrases the message must all contain (compared in lower case).
    phrases: &'static [&'static str],
    class: &'static str,
    advice: &'static str,
}

/// One row per [`Refusal`], in the order of its variants.
static TABLE: [Row; 4] = [
    Row {
        refusal: Refusal::ThirdPartyExtraUsage,
        status: 400,
        error_type: "invalid_request_error",
        phrases: &["third-party apps", "extra usage"],
        class: "third_party_extra_usage",
        advice: "claudegate: Anthropic counted this as a third-party app's request, which this \
                 plan pays for from extra usage; allow extra usage at claude.ai/settings/usage, \
                 or make requests look less like another app's (keep `cloaking.mode` at `auto` \
                 or `always`, and try `cloaking.strict`, which drops the app's own system \
                 prompt).",
    },
    Row {
        refusal: Refusal::LongContextExtraUsage,
        status: 429,
        error_type: "rate_limit_error",
        phrases: &["extra usage is required for long context"],
        class: "long_context_extra_usage",
        advice: "claudegate: this plan serves the 1M-token context window (the \
                 `context-1m-2025-08-07` beta) only from extra usage, and the account's own \
                 limits are not the cause; allow extra usage at claude.ai/settings/usage, or \
                 send the request without that beta and within the standard context window.",
    },
    Row {
        refusal: Refusal::OauthNotAllowed,
        status: 403,
        error_type: "permission_error",
        phrases: &["oauth authentication is currently not allowed"],
        class: "oauth_not_allowed",
        advice: "claudegate: the organisation of this server's Claude login does not allow \
                 subscription (OAuth) access; ask its admin to allow Claude subscription access \
                 for Claude Code, or run `claudegate login` on the server with an account whose \
                 organisation allows it.",
    },
    Row {
        refusal: Refusal::OrganizationDisabled,
        status: 400,
        error_type: "invalid_request_error",
        phrases: &["organization has been disabled"],
        class: "organization_disabled",
        advice: "claudegate: Anthropic has disabled the organisation of this server's Claude \
                 login, so no request on it can succeed; see the account's email or claude.ai \
                 for why, or run `claudegate login` on the server with another account.",
    },
];

/// Most of an error body read to recognise a refusal; theirs are a few hundred bytes.
const PEEK_BYTES: u64 = 64 * 1024;

impl Refusal {
    /// Every refusal, in the order `/admin/accounts` and `/metrics` list them.
    pub const ALL: [Refusal; 4] = [
        Refusal::ThirdPartyExtraUsage,
        Refusal::LongContextExtraUsage,
        Refusal::OauthNotAllowed,
        Refusal::OrganizationDisabled,
    ];

    fn row(self) -> &'static Row {
        &TABLE[self as usize] // the rows follow the variants (checked by a test)
    }

    /// The refusal an upstream error is, if any: `status` as answered (`None` for an `error`
    /// event inside a stream, which has none), its `error.type` and its message.
    pub fn classify(status: Option<u16>, error_type: &str, message: &str) -> Option<Refusal> {
        let message = message.to_ascii_lowercase();
        TABLE
            .iter()
            .find(|r| {
                status.is_none_or(|s| s == r.status)
                    && r.error_type == error_type
                    && r.phrases.iter().all(|p| message.contains(p))
            })
            .map(|r| r.refusal)
    }

    /// Its failure class, as `/admin/accounts` and `/metrics` name it.
    pub fn class(self) -> &'static str {
        self.row().class
    }

    /// Whether the login itself cannot be used (the account's state becomes `blocked`).
    pub fn blocks(self) -> bool {
        matches!(
            self,
            Refusal::OauthNotAllowed | Refusal::OrganizationDisabled
        )
    }

    /// The kind the relay protocol (a fixed set of statuses) shows it as: the one of the
    /// upstream's own status. A 403 here is Anthropic refusing the account, not the caller's
    /// key, but with the advice beside it a 403 says more than the 503 an unexplained upstream
    /// 403 becomes.
    pub fn kind(self) -> ErrorKind {
        match self.row().status {
            403 => ErrorKind::Forbidden,
            429 => ErrorKind::RateLimited,
            _ => ErrorKind::InvalidRequest,
        }
    }

    /// The sentence that tells the user what to do.
    pub fn advice(self) -> &'static str {
        self.row().advice
    }

    /// Anthropic's message with the advice after it.
    pub fn explain(self, message: &str) -> String {
        format!("{} {}", message.trim_end(), self.advice())
    }
}

/// What the account keeps of the refusals: a count per class, and the refusal that blocks the
/// login (state `blocked`) until a success or a new login.
#[derive(Debug, Default)]
pub struct Tally {
    counts: [u64; Refusal::ALL.len()],
    blocked: Option<Refusal>,
}

impl Tally {
    /// Counts one; true when it newly blocks the login (worth a log line).
    pub fn book(&mut self, refusal: Refusal) -> bool {
        self.counts[refusal as usize] += 1;
        let newly = refusal.blocks() && self.blocked.is_none();
        if refusal.blocks() {
            self.blocked = Some(refusal);
        }
        newly
    }

    pub fn blocked(&self) -> Option<Refusal> {
        self.blocked
    }

    pub fn unblock(&mut self) {
        self.blocked = None;
    }

    /// Each class with its count, in the order of [`Refusal::ALL`].
    pub fn counts(&self) -> [(&'static str, u64); Refusal::ALL.len()] {
        Refusal::ALL.map(|r| (r.class(), self.counts[r as usize]))
    }
}

/// The refusal an Anthropic error body answered with `status` is, if any.
pub fn of_body(status: u16, body: &[u8]) -> Option<Refusal> {
    of_json(Some(status), body)
}

/// The refusal an error body (`status` as answered) or an `error` event's data (`None`: it has
/// the same `{"type":"error","error":{…}}` shape, and no status) is, if any.
fn of_json(status: Option<u16>, json: &[u8]) -> Option<Refusal> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let error = v.get("error")?;
    let field = |name: &str| error.get(name).and_then(Value::as_str);
    Refusal::classify(status, field("type")?, field("message")?)
}

/// An `error` event's data relayed to a client as it arrives (`/v1/messages` streams): the
/// refusal it is, if any, and the data with the advice added to `error.message`.
pub fn explain_event(data: &[u8]) -> Option<(Refusal, Vec<u8>)> {
    let refusal = of_json(None, data)?;
    Some((refusal, with_advice(data, refusal)?))
}

/// The body with the advice added to `error.message`; every other field (`request_id`) kept.
fn with_advice(body: &[u8], refusal: Refusal) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let message = v.pointer_mut("/error/message")?;
    let explained = refusal.explain(message.as_str()?);
    *message = Value::String(explained);
    Some(v.to_string().into_bytes())
}

/// Reads the error body of an upstream answer whose status a refusal can have, and returns
/// the answer to pass on (its body explained when it is a refusal, else the same bytes) with
/// the refusal. Any other answer passes untouched and unread. A body that breaks while read
/// here breaks the same way for whoever reads the answer next.
pub fn peek(resp: Response<Body>) -> (Response<Body>, Option<Refusal>) {
    let status = resp.status().as_u16();
    if !TABLE.iter().any(|r| r.status == status) {
        return (resp, None);
    }
    let (mut parts, body) = resp.into_parts();
    let mut rest = body.into_reader();
    let mut head = Vec::new();
    let failed = (&mut rest).take(PEEK_BYTES).read_to_end(&mut head).err();
    if failed.is_none() {
        if let Some(refusal) = of_body(status, &head) {
            if let Some(explained) = with_advice(&head, refusal) {
                parts.headers.remove(header::CONTENT_LENGTH);
                let body = Body::builder().data(explained);
                return (Response::from_parts(parts, body), Some(refusal));
            }
        }
    }
    let body = Body::builder().reader(Replay {
        head: Cursor::new(head),
        failed,
        rest,
    });
    (Response::from_parts(parts, body), None)
}

/// A body read in part: the bytes read, then the read's error if it failed, then the rest.
struct Replay<R> {
    head: Cursor<Vec<u8>>,
    failed: Option<io::Error>,
    rest: R,
}

impl<R: Read> Read for Replay<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.rest.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::json!({"type": "error", "error": {"type": kind, "message": message},
                           "request_id": "req_011X"})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn every_refusal_has_one_row_and_its_own_class() {
        for r in Refusal::ALL {
            assert_eq!(
                TABLE.iter().filter(|row| row.refusal == r).count(),
                1,
                "{r:?}"
            );
            assert_eq!(r.row().refusal, r);
            assert!(r.row().advice.ends_with('.'), "{r:?}");
        }
        let classes: std::collections::BTreeSet<_> = Refusal::ALL.map(Refusal::class).into();
        assert_eq!(classes.len(), Refusal::ALL.len());
        // The account's own classes are other words (`account.rs`).
        for own in ["request", "rate_limit", "forbidden", "auth", "transient"] {
            assert!(!classes.contains(own), "{own}");
        }
    }

    #[test]
    fn the_wordings_of_the_trackers_are_recognised() {
        let cases = [
            (400, "invalid_request_error", "Third-party apps now draw from your extra usage, not your plan limits. We've added a $100 credit to get you started. Claim it at claude.ai/settings/usage and keep going.", Refusal::ThirdPartyExtraUsage),
            (400, "invalid_request_error", "Third-party apps now draw from your extra usage, not your plan limits. Add more at claude.ai/settings/usage and keep going.", Refusal::ThirdPartyExtraUsage),
            (400, "invalid_request_error", "Third-party apps now draw from extra usage, not plan limits. We've added a credit to your organization to get you started. Ask your workspace admin to claim it and keep going.", Refusal::ThirdPartyExtraUsage),
            (429, "rate_limit_error", "Extra usage is required for long context requests.", Refusal::LongContextExtraUsage),
            (403, "permission_error", "OAuth authentication is currently not allowed for this organization.", Refusal::OauthNotAllowed),
            (400, "invalid_request_error", "This organization has been disabled.", Refusal::OrganizationDisabled),
        ];
        for (status, kind, message, want) in cases {
            assert_eq!(
                of_body(status, &body(kind, message)),
                Some(want),
                "{message}"
            );
            assert_eq!(
                Refusal::classify(None, kind, message),
                Some(want),
                "{message}"
            );
        }
    }

    #[test]
    fn rate_limits_and_other_refusals_are_not_refusals() {
        let cases = [
            (
                429,
                "rate_limit_error",
                "This request would exceed your account's rate limit. Please try again later.",
            ),
            (403, "permission_error", "Request not allowed"),
            (400, "invalid_request_error", "max_tokens: Field required"),
            // The right words under another status or type are something else.
            (
                401,
                "authentication_error",
                "OAuth authentication is currently not allowed for this organization.",
            ),
            (
                429,
                "invalid_request_error",
                "Extra usage is required for long context requests.",
            ),
        ];
        for (status, kind, message) in cases {
            assert_eq!(of_body(status, &body(kind, message)), None, "{message}");
        }
        assert_eq!(of_body(400, b"<html>Bad Request</html>"), None);
        assert_eq!(of_body(403, b""), None);
    }

    #[test]
    fn the_advice_follows_anthropics_text_and_the_rest_of_the_body_is_kept() {
        let text = "Extra usage is required for long context requests.";
        let out = with_advice(
            &body("rate_limit_error", text),
            Refusal::LongContextExtraUsage,
        )
        .expect("rewritten");
        let v: Value = serde_json::from_slice(&out).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{text} claudegate: ")),
            "{message}"
        );
        assert_eq!(v["request_id"], "req_011X");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["type"], "error");
    }

    #[test]
    fn an_error_event_relayed_as_it_arrives_gets_the_advice() {
        let data = body(
            "invalid_request_error",
            "This organization has been disabled.",
        );
        let (refusal, out) = explain_event(&data).expect("a refusal");
        assert_eq!(refusal, Refusal::OrganizationDisabled);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["error"]["message"],
            Refusal::OrganizationDisabled.explain("This organization has been disabled.")
        );
        assert_eq!(explain_event(&body("overloaded_error", "Overloaded")), None);
        assert_eq!(explain_event(b"not json"), None);
    }

    #[test]
    fn a_replayed_body_gives_back_every_byte_then_the_error() {
        let mut r = Replay {
            head: Cursor::new(b"abc".to_vec()),
            failed: None,
            rest: &b"def"[..],
        };
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcdef");
        let mut r = Replay {
            head: Cursor::new(b"ab".to_vec()),
            failed: Some(io::Error::other("reset")),
            rest: &b"never"[..],
        };
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(
            (out.as_slice(), e.to_string().as_str()),
            (&b"ab"[..], "reset")
        );
    }
}
