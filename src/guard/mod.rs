//! The guard rails between a client and the account: per-app keys, the rate, daily and
//! concurrency limits, and the budget of request bodies held in memory.

pub mod budget;
pub mod keys;
pub mod limits;
