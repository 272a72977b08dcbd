//! The backends: what turns an Anthropic request into an Anthropic answer. The OAuth backend
//! calls the Messages API with the account's token (account, oauth, upstream, cloak); the
//! CLI backend runs a locked-down `claude -p` (cli).

pub mod account;
pub mod cli;
pub mod cloak;
pub mod oauth;
pub mod upstream;
