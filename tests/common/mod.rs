//! Shared helpers for integration tests (each test binary does `mod common;`).

pub mod gate;
pub mod mock_upstream;
pub mod run;
