//! The `anthropic-beta` values claudegate itself asks for. Betas a client sends are merged
//! with these, never replaced ([`crate::backends::upstream::merge_betas`]).

/// Required on every request made with a subscription's OAuth token.
pub const OAUTH: &str = "oauth-2025-04-20";
/// `output_config.effort` (adaptive thinking's effort levels).
pub const EFFORT: &str = "effort-2025-11-24";
/// `output_config.format` (structured outputs) and strict tool use.
pub const STRUCTURED_OUTPUTS: &str = "structured-outputs-2025-12-15";
