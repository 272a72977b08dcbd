//! The backends: what turns an Anthropic request into an Anthropic answer. The OAuth backend
//! ([`oauth`]) calls the Messages API with the account's token; the CLI backend ([`cli`]) runs
//! a locked-down `claude -p`. [`upstream`] is the HTTP client both the OAuth backend and its
//! token endpoint use. The page fetcher ([`web`]) is a backend of its own kind: it fetches
//! public web pages for `/v1/fetch`, behind its address guard.

pub mod cli;
pub mod oauth;
pub mod upstream;
pub mod web;

use crate::anthropic::usage::Usage;

/// A one-shot completion (`/v1/complete`): a prompt in, text out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub prompt: String,
    pub system: Option<String>,
    /// The model the client named (an alias or id), if any.
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
