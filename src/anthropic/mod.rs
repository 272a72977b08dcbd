//! Anthropic Messages, the lingua franca: everything inside claudegate speaks it. A request is
//! an Anthropic request body; an answer is a sequence of Anthropic stream events. This layer
//! holds the wire model every door and backend shares: the events and their SSE framing, the
//! collector that turns events into one message, token usage, the one loop that drains a stream,
//! the model catalogue, and what each model family accepts.

pub mod betas;
pub mod catalogue;
pub mod collector;
pub mod drain;
pub mod event;
pub mod models;
pub mod ratelimit;
pub mod sse;
pub mod usage;

/// The `anthropic-version` claudegate speaks (and sends when a client names none).
pub const API_VERSION: &str = "2023-06-01";
