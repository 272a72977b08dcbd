//! claudegate as a library: every module of the server, so that the binary (`src/main.rs`),
//! the benchmark (`tests/bench/`) and the fuzz targets (`tests/fuzz/`) share one build of the
//! same code. The binary's command line is the only public interface users rely on; nothing here
//! is a stable API.

pub mod account;
pub mod alloc;
pub mod audit;
pub mod cli_backend;
pub mod cli_routes;
pub mod cloak;
pub mod clock;
pub mod complete;
pub mod config;
pub mod fetch;
pub mod fsutil;
pub mod http;
pub mod ids;
pub mod jsonspan;
pub mod keys;
pub mod limits;
pub mod log;
pub mod messages;
pub mod metrics;
pub mod models;
pub mod oauth;
pub mod openai;
pub mod server;
pub mod sse;
pub mod upstream;
