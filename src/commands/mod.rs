//! The command-line subcommands other than `serve`: what `src/main.rs` dispatches to.
