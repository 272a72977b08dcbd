//! Shared helpers for the integration tests: the gate (the real binary on a free port), the
//! mock Anthropic upstream, and running the real e2e clients with a deadline.

pub mod e2e;
pub mod gate;
pub mod mock_upstream;
pub mod run;
