//! The command-line subcommands other than `serve`: what `src/main.rs` dispatches to once it has
//! parsed the command line and loaded the configuration. Each runs to completion without a
//! server, prints its result, and returns an error message for `main` to print.
//!
//! [`login`] is `login`, `logout` and `status`; [`keys`] is `keys add`, `keys list` and
//! `keys revoke`; [`usage`] is `usage`; [`health`] is `health` (the container's health check);
//! [`doctor`] is `doctor`, which loads the configuration itself (a configuration that does not
//! load is its first finding); [`mcp_bridge`] is the hidden `mcp-bridge`, the CLI backend's
//! stdio MCP server (a relay to the server, see `backends::cli::bridge`).

pub mod doctor;
pub mod health;
pub mod keys;
pub mod login;
pub mod mcp_bridge;
pub mod usage;
