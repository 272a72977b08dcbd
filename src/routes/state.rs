//! What every route shares: the services built once at start (`server::run`) and handed to
//! each worker.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Instant;

use crate::anthropic::catalogue::Catalogue;
use crate::backends::cli::CliBackend;
use crate::backends::oauth::OauthBackend;
use crate::backends::web::Fetcher;
use crate::base::bucket::Table;
use crate::config::Config;
use crate::guard::budget::BodyBudget;
use crate::guard::keys::KeyStore;
use crate::guard::limits::Limits;

/// Everything the workers share, built once at start.
pub struct State {
    pub config: Config,
    pub keys: KeyStore,
    pub limits: Limits,
    pub bodies: BodyBudget,
    pub models: Catalogue,
    pub oauth: OauthBackend,
    pub cli: CliBackend,
    pub fetcher: Fetcher,
    /// Each key's `/v1/fetch` bucket (`fetch.rpm`), apart from the model limits.
    pub fetch_buckets: Mutex<Table<String>>,
    pub audit: crate::observe::audit::AuditLog,
    /// Requests handed to the worker pool and not finished yet (queued or running). Counting
    /// them makes "busy" exact: a request is refused only when every worker is occupied and
    /// `queue` more are already waiting.
    pub jobs: AtomicUsize,
    /// When the server started (the status page's uptime).
    pub started: Instant,
}
