//! claudegate as a library: every module of the server, so that the binary (`src/main.rs`),
//! the benchmark (`tests/bench/`) and the fuzz targets (`tests/fuzz/`) share one build of the
//! same code. The binary's command line is the only public interface users rely on; nothing here
//! is a stable API.
//!
//! The modules are layers, listed here from the top down; a module may use only its own layer
//! and the ones below it (`ARCHITECTURE.md` says why, and `tests/it/architecture.rs` checks it).

pub mod anthropic;
pub mod backends;
pub mod base;
pub mod commands;
pub mod config;
pub mod guard;
pub mod http;
pub mod observe;
pub mod openai;
pub mod routes;
pub mod server;
