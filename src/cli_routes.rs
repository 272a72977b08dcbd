//! The routes served by the claude-cli backend (`backend: "claude-cli"`): `/v1/complete` and
//! `/v1/chat/completions` through a locked-down `claude -p` ([`crate::cli_backend`]).

use tiny_http::Request;

use crate::complete::{Answer, CompleteRequest};
use crate::http::{self, ApiError, ErrorKind, Protocol};
use crate::server::State;

/// `/v1/complete` on the CLI backend.
pub fn complete(state: &State, req: &CompleteRequest) -> Result<Answer, ApiError> {
    let _ = (state, req);
    Err(ApiError::new(
        ErrorKind::NotImplemented,
        "the claude-cli backend is being built",
    ))
}

/// `/v1/chat/completions` on the CLI backend.
pub fn chat(state: &State, rq: Request, cors: &[(&'static str, String)]) -> u16 {
    let _ = state;
    let err = ApiError::new(
        ErrorKind::NotImplemented,
        "the claude-cli backend is being built",
    );
    http::send(rq, err.reply(Protocol::OpenAi), cors);
    501
}
