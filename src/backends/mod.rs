//! The backends: what turns an Anthropic request into an Anthropic answer. The OAuth backend
//! ([`oauth`]) calls the Messages API with the account's token; the CLI backend ([`cli`]) runs
//! a locked-down `claude -p`. [`upstream`] is the HTTP client both the OAuth backend and its
//! token endpoint use. The page fetcher ([`web`]) is a backend of its own kind: it fetches
//! public web pages for `/v1/fetch`, behind its address guard. [`abandon`] lets the server end
//! a call whose client has hung up.

pub mod abandon;
pub mod cli;
pub mod oauth;
pub mod upstream;
pub mod web;

use crate::anthropic::usage::Usage;

/// One prompt in, text (or events) out: a `/v1/complete` request on either backend (the CLI
/// backend runs it as a one-turn Anthropic request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The user's text (the CLI backend sends it on stdin).
    pub prompt: String,
    /// The system prompt. On the CLI backend `None` means its neutral system prompt, and an
    /// empty one is passed verbatim.
    pub system: Option<String>,
    /// The model the client named (an alias or id), if any; on the CLI backend one of
    /// `cli.allowed_models`, `None` (or empty) meaning `cli.default_model`.
    pub model: Option<String>,
}

/// What either backend produced for a [`Completion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The model id actually used upstream.
    pub model: String,
    pub text: String,
    pub usage: Usage,
}
