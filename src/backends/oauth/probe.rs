//! The free call of `claudegate doctor`: proves that the upstream is reachable (over TLS, for
//! the real `https://api.anthropic.com`) and that the stored token is accepted, without
//! spending a message. It reads the usage endpoint ([`super::usage`], `GET /api/oauth/usage`,
//! as Claude Code's `/usage` does), whose answer is the usage windows too. That endpoint refuses
//! a login without the `user:profile` scope (a `claude setup-token` token), so any answer there
//! other than a success or a 401 is followed by the model list (`GET /v1/models?limit=1`,
//! <https://platform.claude.com/docs/en/api/models-list>), which any valid login may read; its
//! windows then come from the answer's `anthropic-ratelimit-unified-*` headers, if it has them.
//!
//! Every answer's `Date` header (RFC 9110 §6.6.1: servers with a clock send it) is kept with
//! our own clock at its arrival, so the caller can tell how far apart the two clocks are.
//!
//! Like [`super::models`] and [`super::usage`], the call leaves the account's health, the
//! token file and the metrics alone: a 401 refreshes nothing, the doctor only looks.

use std::time::Duration;

use ureq::http::Response;
use ureq::Body;

use super::refusals::{self, Refusal};
use super::usage;
use crate::anthropic::ratelimit::{self, Snapshot};
use crate::backends::upstream::{self, Stage, Upstream};
use crate::base::clock;
use crate::base::redact::redact;

/// The model list, one model: the cheapest answer that proves a login works.
pub const MODELS_PATH: &str = "/v1/models?limit=1";

/// What the free call found.
#[derive(Debug)]
pub struct Probe {
    pub outcome: Outcome,
    /// The last answer's `Date`, as a Unix time, and our clock when it arrived.
    pub upstream_date: Option<u64>,
    pub local_at: u64,
}

/// How the call ended.
#[derive(Debug)]
pub enum Outcome {
    /// No answer at all: where it failed, and ureq's words (redacted).
    Unreached { stage: Stage, message: String },
    /// An answer that is not a success (401 or 403: the token or the account is refused):
    /// the endpoint, its status, its message (redacted, at most 300 characters) and the
    /// refusal it is, if [`refusals`] knows it.
    Refused {
        path: &'static str,
        status: u16,
        said: String,
        refusal: Option<Refusal>,
    },
    /// The token was accepted by `path`; the windows it showed, or why there are none.
    Accepted {
        path: &'static str,
        status: u16,
        usage: Result<Snapshot, String>,
    },
}

/// Makes the free call with `access_token`, each request bounded by `whole_call`.
pub fn probe(upstream: &Upstream, access_token: &str, whole_call: Duration) -> Probe {
    let mut probe = Probe {
        outcome: Outcome::Unreached {
            stage: Stage::Other,
            message: String::new(),
        },
        upstream_date: None,
        local_at: clock::unix_now(),
    };
    let headers = usage::headers(access_token);
    let first = match ask(&mut probe, upstream, usage::PATH, &headers, whole_call) {
        Some(resp) => resp,
        None => return probe,
    };
    let mut resp = first;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        probe.outcome = Outcome::Accepted {
            path: usage::PATH,
            status,
            usage: usage::read_answer(&mut resp),
        };
        return probe;
    }
    let (said, refusal) = refusal_of(status, &mut resp);
    if status == 401 {
        probe.outcome = Outcome::Refused {
            path: usage::PATH,
            status,
            said,
            refusal,
        };
        return probe;
    }
    // The usage endpoint said no (the scope, or it is down): does the login work at all?
    let why_no_usage = format!("the usage endpoint answered {status}: {said}");
    let Some(mut resp) = ask(&mut probe, upstream, MODELS_PATH, &headers, whole_call) else {
        return probe;
    };
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        let seen = upstream::returned_headers(&resp);
        probe.outcome = Outcome::Accepted {
            path: "/v1/models",
            status,
            usage: ratelimit::from_headers(&seen).ok_or(why_no_usage),
        };
    } else {
        let (said, refusal) = refusal_of(status, &mut resp);
        probe.outcome = Outcome::Refused {
            path: "/v1/models",
            status,
            said,
            refusal,
        };
    }
    probe
}

/// One GET; notes the answer's `Date`, or the failure in `probe.outcome` (then `None`).
fn ask(
    probe: &mut Probe,
    upstream: &Upstream,
    path: &str,
    headers: &[(String, String)],
    whole_call: Duration,
) -> Option<Response<Body>> {
    match upstream.get_staged(path, headers, whole_call) {
        Ok(resp) => {
            probe.local_at = clock::unix_now();
            probe.upstream_date = upstream::header(&resp, "date").and_then(clock::parse_http_date);
            Some(resp)
        }
        Err((stage, e)) => {
            probe.outcome = Outcome::Unreached {
                stage,
                message: redact(&e.to_string()),
            };
            None
        }
    }
}

/// A refusal's message (redacted, at most 300 characters) and the refusal it is, if known.
fn refusal_of(status: u16, resp: &mut Response<Body>) -> (String, Option<Refusal>) {
    let body = upstream::read_error_body(resp);
    (
        upstream::said_in(status, &body),
        refusals::of_body(status, &body),
    )
}
