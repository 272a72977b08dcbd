//! The floor: small utilities that know nothing about Claude, OpenAI or HTTP routes. Everything
//! else may use them; they use nothing above them.

pub mod alloc;
pub mod base64;
pub mod bucket;
pub mod cidr;
pub mod clock;
pub mod error;
pub mod fsutil;
pub mod ids;
pub mod jsonout;
pub mod jsonspan;
pub mod log;
pub mod redact;
pub mod sync;
pub mod sys;
