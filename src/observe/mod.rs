//! Seeing what the server does, without ever recording what was said: the per-request record,
//! process metrics, and the audit log.

pub mod audit;
pub mod metrics;
pub mod record;
