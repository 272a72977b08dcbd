//! The Claude Code CLI backend (being written).
