//! The integration tests, compiled as one crate so the shared harness ([`common`]: the real
//! binary started on a free port, the mock Anthropic upstream, the e2e client runner) builds
//! once. Each module holds the tests of one area; `cargo test --test it <module>::` runs one.

mod common;

mod abandoned;
mod architecture;
mod arm;
mod availability;
mod caddy;
mod catalogue;
mod chat_policy;
mod cli;
mod cli_backend;
mod cli_bridge;
mod cli_clients;
mod cli_doors;
mod cli_fake;
mod cli_real_doors;
mod cli_tools;
mod clients;
mod complete;
mod connections;
mod container;
mod cooldown_cap;
mod dist;
mod doctor;
mod doors_agree;
mod e2e_ai_sdk;
mod e2e_clients;
mod e2e_openai;
mod e2e_opencode;
mod faults;
mod fetch;
mod file_modes;
mod framing;
mod install;
mod keys;
mod large_bodies;
mod log_escaping;
mod login;
mod mock_upstream_selftest;
mod openai;
mod ops;
mod passthrough;
mod refusals;
mod robustness;
mod server;
mod shutdown;
mod sse_limits;
mod status_browser;
mod status_page;
mod thinking;
mod tiny_http_defects;
mod tls;
mod usage_windows;
