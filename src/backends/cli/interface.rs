//! What a caller sees of one CLI call (besides the request, a [`crate::backends::Completion`]):
//! the answer, and the error with the HTTP
//! status it answers with (and its conversion into the one error type, [`ApiError`]).

use crate::anthropic::usage::Usage;
use crate::backends::abandon::Reason;
use crate::base::error::{ApiError, ErrorKind};

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CliAnswer {
    /// The model id the CLI actually used (e.g. `claude-sonnet-5-5` for `sonnet`), without a
    /// `[1m]` suffix.
    pub model: String,
    pub text: String,
    pub usage: Usage,
    /// Wall time of the whole call, CLI start-up included.
    pub duration_ms: u64,
}

/// Why a call failed; [`CliError::status`] is the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// 400: model not allowed or looks like a flag, empty prompt.
    BadRequest(String),
    /// 400: the request asks for something the CLI cannot honour; `param` names it.
    Refused { param: String, message: String },
    /// 429: every CLI slot stayed busy for `cli.queue_wait_ms`; retry after this many seconds.
    Busy { retry_after: u64 },
    /// 429: the upstream rate-limited the account.
    RateLimited(String),
    /// 503: Claude Code on this host is not logged in (the message says how to log in).
    NotLoggedIn(String),
    /// 504: the wall-clock limit `cli.timeout_ms` passed; the CLI was killed and reaped.
    Timeout,
    /// 502: anything else. Never carries a token or key from the CLI's output.
    Failed(String),
    /// 503: the server is stopping and cut the call off at the end of its shutdown grace
    /// (`backends::abandon::Reason::Stopping`); the CLI was killed and reaped.
    Stopping,
}

impl CliError {
    pub fn status(&self) -> u16 {
        match self {
            CliError::BadRequest(_) | CliError::Refused { .. } => 400,
            CliError::Busy { .. } | CliError::RateLimited(_) => 429,
            CliError::NotLoggedIn(_) | CliError::Stopping => 503,
            CliError::Timeout => 504,
            CliError::Failed(_) => 502,
        }
    }

    pub fn message(&self) -> String {
        match self {
            CliError::BadRequest(m)
            | CliError::RateLimited(m)
            | CliError::NotLoggedIn(m)
            | CliError::Failed(m)
            | CliError::Refused { message: m, .. } => m.clone(),
            CliError::Busy { retry_after } => format!(
                "all Claude Code CLI slots are busy (cli.max_concurrent); retry in {retry_after} s"
            ),
            CliError::Timeout => {
                "the Claude Code CLI did not finish within cli.timeout_ms and was stopped".into()
            }
            CliError::Stopping => ApiError::from(Reason::Stopping).message,
        }
    }
}

/// A CLI failure as the caller's error (its protocol picks the body's shape).
impl From<CliError> for ApiError {
    fn from(e: CliError) -> ApiError {
        if e == CliError::Stopping {
            return Reason::Stopping.into();
        }
        let kind = match e.status() {
            400 => ErrorKind::InvalidRequest,
            429 => ErrorKind::RateLimited,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::GatewayTimeout,
            _ => ErrorKind::BadGateway,
        };
        let err = ApiError::new(kind, e.message());
        match e {
            CliError::Refused { param, .. } => err.param(Some(param)),
            CliError::Busy { retry_after } => err.retry_after(retry_after),
            CliError::RateLimited(_) => err.retry_after(60),
            _ => err,
        }
    }
}
