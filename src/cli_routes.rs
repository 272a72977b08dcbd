//! The routes served by the claude-cli backend (`backend: "claude-cli"`): `/v1/complete` and
//! `/v1/chat/completions` through a locked-down `claude -p` ([`crate::cli_backend`]).

use crate::complete::{Answer, CompleteRequest};
use crate::http::{ApiError, ErrorKind};
use crate::server::State;

/// `/v1/complete` on the CLI backend.
pub fn complete(state: &State, req: &CompleteRequest) -> Result<Answer, ApiError> {
    let _ = (state, req);
    Err(ApiError::new(
        ErrorKind::NotImplemented,
        "the claude-cli backend is being built",
    ))
}
