//! The routes (front doors): one module per family of endpoints. Each reads its request,
//! translates it when its protocol is not Anthropic's, hands it to a backend, and writes the
//! answer (or an error) in the caller's protocol.

pub mod complete;
pub mod fetch;
pub mod messages;
pub mod openai;
pub mod pages;
pub mod relay;
pub mod state;
pub mod status;
