//! Configuration: every key, documented where its default is defined. README's table and
//! `config.example.json` mirror this file (a test checks the example equals the defaults).
//! Reading and checking a file is [`load`]'s job.

pub mod load;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::base::cidr::Cidr;
use crate::base::log::Level;

/// The largest page `/v1/fetch` reads (2 MB): the ceiling of both `fetch.max_bytes` and a
/// request's own `max_bytes`.
pub const FETCH_MAX_BYTES_LIMIT: u64 = 2_000_000;

/// The whole configuration. Field docs give each key's meaning and default.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Address to bind. Default `127.0.0.1`: only this machine can connect.
    pub host: String,
    /// TCP port. Default `8317`.
    pub port: u16,
    /// Directory for keys, token, usage counters and audit files; created mode 0700.
    /// Default `~/.local/share/claudegate`.
    pub data_dir: String,
    /// Worker threads handling requests; each open stream holds one. Default 16.
    pub workers: usize,
    /// Requests that may wait for a free worker; beyond that the answer is 503. Default 64.
    pub queue: usize,
    /// Largest request body accepted, in bytes. Default 200 MiB (Claude Code sends big contexts).
    pub max_body_bytes: u64,
    /// Most bytes of request bodies held in memory at once across all requests, counted as
    /// they arrive (a declared `Content-Length` reserves nothing); a request whose bytes would
    /// exceed it gets 503 + Retry-After. Default 512 MiB. Must be ≥ `max_body_bytes`.
    pub max_inflight_body_bytes: u64,
    /// Socket read/write timeout for clients, in ms: bounds a stalled upload, a slow request
    /// head, an idle keep-alive connection and a client that stops reading. Default 30000.
    pub client_timeout_ms: u64,
    /// How long a request body may take before `body_min_bytes_per_s` applies, in ms. Default
    /// 10000. With it, a body must arrive at an average of at least that rate counted from the
    /// end of the grace: a body trickled in just inside `client_timeout_ms` per read would
    /// otherwise hold a worker (and its slot) without bound. Past it: 408, connection closed.
    pub body_grace_ms: u64,
    /// The slowest average a request body may arrive at once `body_grace_ms` has passed, in
    /// bytes per second. Default 16384 (128 kbit/s, slower than any link that can usefully
    /// drive the API): a big body on a slow link is still accepted, while a trickled one is cut
    /// off soon after the grace.
    pub body_min_bytes_per_s: u64,
    /// Client connections open at once; one more is refused at once (503 + `Retry-After`, then
    /// closed). Each costs a thread and two file descriptors (tiny_http duplicates the socket
    /// into a read half and a write half). Default 400: 800 descriptors, which leaves over 200
    /// of the usual `ulimit -n` of 1024 for everything else (the listener, one upstream socket
    /// per busy worker and ureq's idle pool, the CLI backend's pipes, the data files) even
    /// where the limit cannot be raised; at start the soft limit is raised to the hard one.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv4-mapped IPv6 address counts as
    /// its IPv4 one); one more is refused like above. Default 300: one address (one app with a
    /// large pool, or one misbehaving client) cannot take every slot. Behind a reverse proxy
    /// every connection comes from the proxy's address: set it to `max_connections`. At most
    /// `max_connections`.
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed: addresses (`127.0.0.1`, `::1`) or
    /// CIDR ranges (`10.0.0.0/8`, `fd00::/8`). Default none: the client address is always the
    /// connection's peer and the header is ignored. For a request whose peer is in the list,
    /// the client address (for the auth-failure throttle and the audit log) is the right-most
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (see
    /// `http::client_ip`); from any other peer the header is ignored, so a client cannot
    /// choose its own address. List only proxies you run: anything that can connect from a
    /// listed address can claim to be any client.
    pub trusted_proxies: Vec<Cidr>,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish, in ms, while no
    /// new ones are taken in; what still runs then is ended with an error in its caller's
    /// protocol, and the process exits. Default 10000: most answers finish, and it stays
    /// inside the stop timeouts of service managers (systemd's 90 s; set a container's stop
    /// timeout above it). 0 ends everything in flight at once.
    pub shutdown_grace_ms: u64,
    /// Logging: `off`, `errors` or `verbose`. Default `off`.
    pub debug: DebugSetting,
    pub upstream: UpstreamConfig,
    pub timeouts: TimeoutsConfig,
    pub oauth: OauthConfig,
    pub cloaking: CloakingConfig,
    /// Which backend answers model requests: `oauth` (default: the stored Claude login calls
    /// Anthropic directly) or `claude-cli` (a logged-in Claude Code on this host, run locked down).
    pub backend: Backend,
    pub cli: CliConfig,
    pub fetch: FetchConfig,
    pub limits: LimitsConfig,
    pub models: ModelsConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
}

/// `audit.*`: the audit log, one JSON line per authenticated request (see README).
#[derive(Clone, Debug, Serialize)]
pub struct AuditConfig {
    /// Write the audit log. Default true.
    pub enabled: bool,
    /// Where; default none = `data_dir/audit.log`.
    pub path: Option<String>,
    /// Size at which the log rotates (`audit.log` → `audit.log.1`). Default 10 MiB.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` … `audit.log.N`). Default 5.
    pub keep: u32,
}

/// `metrics.*`: `GET /metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsConfig {
    /// Serve `/metrics` without a key (for a scraper on a trusted network). Default false.
    pub public: bool,
}

/// `upstream.*`: where the Anthropic API is.
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamConfig {
    /// Base URL of the Messages API. Default `https://api.anthropic.com`; tests point it at a mock.
    pub base_url: String,
    /// PEM file of root certificates that replace the built-in ones (for users behind a
    /// TLS-intercepting proxy). Default none: Mozilla's roots compiled into the binary.
    pub ca_file: Option<String>,
    /// Extra attempts for transient upstream failures (529, 5xx, connection errors) before the
    /// first byte reaches the client, with jittered backoff. Default 2.
    pub max_retries: u32,
}

/// `timeouts.*`: how long to wait on the upstream, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct TimeoutsConfig {
    /// Connecting (TCP + TLS). Default 10000.
    pub connect_ms: u64,
    /// From sending the request until the response headers arrive. Default 120000.
    pub response_ms: u64,
    /// Longest silence between two reads of a response body. A stream that keeps flowing is
    /// never cut, however long it runs; a stalled one ends with an error event. Default 120000.
    pub stream_idle_ms: u64,
    /// The whole of a `count_tokens` call. Default 30000.
    pub count_tokens_ms: u64,
}

/// `oauth.*`: the Claude OAuth endpoints (the public values Claude Code uses by default).
#[derive(Clone, Debug, Serialize)]
pub struct OauthConfig {
    /// Where the browser signs in.
    pub authorize_url: String,
    /// Token exchange and refresh endpoint.
    pub token_url: String,
    /// OAuth client id (Claude Code's public client).
    pub client_id: String,
    /// Space-separated scopes requested at login.
    pub scopes: String,
    /// Redirect URI registered for the client; `claudegate login` listens on its port on
    /// 127.0.0.1 for the one redirect.
    pub redirect_uri: String,
    /// Refresh the access token this many seconds before it expires. Default 3600.
    pub refresh_before_expiry_s: u64,
    /// How often the subscription's usage windows are read from the usage endpoint
    /// (`GET /api/oauth/usage`), in seconds: at start, then this often, on a thread of its
    /// own (never on a request's path). Default 60: at most once a minute, so a cooldown
    /// whose window shows room again there ends within a minute or so. 0 = never: the
    /// windows come only from the answers' headers. A failed read falls back to the headers
    /// and is tried again after 10 minutes. At most 86400.
    pub usage_refresh_s: u64,
}

/// `cloaking.*`: how requests from clients other than Claude Code are shaped (see README).
#[derive(Clone, Debug, Serialize)]
pub struct CloakingConfig {
    /// `auto` (cloak every client except Claude Code itself), `always` or `never`.
    pub mode: CloakMode,
    /// Drop the caller's own system prompt from cloaked requests. Default false.
    pub strict: bool,
    /// Keep one session id per API key instead of a fresh one per request. Default false.
    pub cache_user_id: bool,
    /// Words to break up with a zero-width space in cloaked prompt text. Default none.
    pub sensitive_words: Vec<String>,
    /// Claude Code version named in cloaked requests' User-Agent.
    pub cli_version: String,
}

/// The `backend` key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Backend {
    #[serde(rename = "oauth")]
    Oauth,
    #[serde(rename = "claude-cli")]
    ClaudeCli,
}

/// `cli.*`: the Claude Code CLI backend (`backend: "claude-cli"`).
#[derive(Clone, Debug, Serialize)]
pub struct CliConfig {
    /// The `claude` executable: a name looked up on PATH, or a path. Default `claude`.
    pub binary: String,
    /// The home directory whose Claude Code login the CLI uses (its `HOME`). Default `~`.
    pub home: String,
    /// Model used when a request names none. Default `sonnet`.
    pub default_model: String,
    /// Models a request may ask for (aliases or full ids); anything else is refused.
    pub allowed_models: Vec<String>,
    /// Wall-clock limit per call; the CLI is killed and the caller gets 504. Default 300000.
    pub timeout_ms: u64,
    /// CLI processes running at once. Default 2.
    pub max_concurrent: u32,
    /// How long a request may wait for a free CLI slot before 429 + Retry-After. Default 30000.
    pub queue_wait_ms: u64,
    /// How long a CLI process that called a client tool waits (parked, holding its slot) for
    /// the request carrying the tool's result before it is ended. Default 300000.
    pub park_timeout_ms: u64,
    /// Parked CLI processes per key; parking one more ends that key's oldest. Default 2.
    pub max_parked_per_key: u32,
    /// Extra environment for the CLI (e.g. `ANTHROPIC_BASE_URL`, `HTTPS_PROXY`): the only way
    /// anything from claudegate's own environment reaches it. Default none.
    pub env: BTreeMap<String, String>,
}

/// `fetch.*`: `POST /v1/fetch`, a guarded page fetch through this host.
#[derive(Clone, Debug, Serialize)]
pub struct FetchConfig {
    /// Whether `/v1/fetch` is served. Default true.
    pub enabled: bool,
    /// Fetches per minute per key (its own bucket, apart from the model limits). Default 30.
    pub rpm: u32,
    /// Default response size cap in bytes (a request may ask for up to 2 MB). Default 500000.
    pub max_bytes: u64,
    /// Whole-fetch time limit. Default 15000.
    pub timeout_ms: u64,
    /// Redirects followed (each hop checked). Default 5.
    pub max_redirects: u32,
}

/// The `cloaking.mode` key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloakMode {
    Auto,
    Always,
    Never,
}

/// `limits.*`: local guard rails. 0 means "no limit" for the rate and daily caps.
#[derive(Clone, Debug, Serialize)]
pub struct LimitsConfig {
    /// Requests per minute per key (token bucket, bursts up to one minute's worth), unless the
    /// key has its own `--rpm`. Default 60.
    pub per_key_rpm: u32,
    /// Requests per UTC day per key, unless the key has its own `--daily`. Default 0 (none).
    pub per_key_daily: u32,
    /// Requests per UTC day for all keys together. Default 0 (none).
    pub global_daily: u32,
    /// Requests in flight at once across all keys (an account-level cap). Default 8.
    pub max_concurrent: u32,
    /// Requests in flight at once for one key, page fetches included, so one key can never
    /// hold every worker or every `max_concurrent` slot. Default 0 = auto: three quarters of
    /// the smaller of `workers` and `max_concurrent`, rounded down (at least 1), which leaves at
    /// least a quarter of both to the other keys ([`LimitsConfig::per_key_cap`]).
    pub per_key_concurrent: u32,
    /// Failed authentications allowed per client IP per minute before that IP gets 429s for
    /// further failures (requests with a valid key are never throttled by IP). Default 10.
    pub auth_failures_per_minute: u32,
    /// Most client IPs tracked for the failure throttle; the table never grows past it. Default 4096.
    pub ip_table_size: usize,
}

impl LimitsConfig {
    /// The per-key cap on requests in flight with `workers` workers: `per_key_concurrent`, or
    /// for 0 (auto) the largest number that leaves at least a quarter of the workers and of
    /// `max_concurrent` to other keys (`n - ceil(n/4)` of each), but at least 1.
    pub fn per_key_cap(&self, workers: usize) -> u32 {
        if self.per_key_concurrent > 0 {
            return self.per_key_concurrent;
        }
        let three_quarters = |n: u64| n - n.div_ceil(4);
        let workers = three_quarters(workers as u64);
        let slots = three_quarters(u64::from(self.max_concurrent));
        workers.min(slots).max(1) as u32
    }
}

/// `models.*`: the catalogue `/v1/models` lists and the short aliases clients may use.
#[derive(Clone, Debug, Serialize)]
pub struct ModelsConfig {
    /// Model ids listed by `/v1/models`. Unknown ids in requests are still passed through.
    pub catalogue: Vec<String>,
    /// Alias → model id, e.g. `"sonnet": "claude-sonnet-4-6"`. Aliases are listed too.
    pub aliases: BTreeMap<String, String>,
    /// How often the upstream's own model list (`GET /v1/models` with the account's token) is
    /// fetched and merged into what `/v1/models` lists, in seconds: at start, then this often,
    /// on a thread of its own (never on a request's path). Default 86400 (daily; new models
    /// ship every few weeks). 0 = never: only `catalogue` and `aliases` are listed. A failed
    /// fetch keeps the last good list and is tried again after at most 10 minutes. Only the
    /// `oauth` backend fetches it.
    pub refresh_s: u64,
}

/// The `debug` key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DebugSetting {
    Off,
    Errors,
    Verbose,
}

impl DebugSetting {
    pub fn level(self) -> Level {
        match self {
            DebugSetting::Off => Level::Off,
            DebugSetting::Errors => Level::Errors,
            DebugSetting::Verbose => Level::Verbose,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8317,
            data_dir: "~/.local/share/claudegate".into(),
            workers: 16,
            queue: 64,
            max_body_bytes: 200 << 20,
            max_inflight_body_bytes: 512 << 20,
            client_timeout_ms: 30_000,
            body_grace_ms: 10_000,
            body_min_bytes_per_s: 16 << 10,
            max_connections: 400,
            max_connections_per_ip: 300,
            trusted_proxies: vec![],
            shutdown_grace_ms: 10_000,
            debug: DebugSetting::Off,
            upstream: UpstreamConfig {
                base_url: "https://api.anthropic.com".into(),
                ca_file: None,
                max_retries: 2,
            },
            timeouts: TimeoutsConfig {
                connect_ms: 10_000,
                response_ms: 120_000,
                stream_idle_ms: 120_000,
                count_tokens_ms: 30_000,
            },
            oauth: OauthConfig {
                authorize_url: "https://claude.ai/oauth/authorize".into(),
                token_url: "https://platform.claude.com/v1/oauth/token".into(),
                client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".into(),
                scopes: "user:profile user:inference user:sessions:claude_code".into(),
                redirect_uri: "http://localhost:54545/callback".into(),
                refresh_before_expiry_s: 3600,
                usage_refresh_s: 60,
            },
            backend: Backend::Oauth,
            cli: CliConfig {
                binary: "claude".into(),
                home: "~".into(),
                default_model: "sonnet".into(),
                allowed_models: ["opus", "sonnet", "haiku"].map(String::from).to_vec(),
                timeout_ms: 300_000,
                max_concurrent: 2,
                queue_wait_ms: 30_000,
                park_timeout_ms: 300_000,
                max_parked_per_key: 2,
                env: BTreeMap::new(),
            },
            fetch: FetchConfig {
                enabled: true,
                rpm: 30,
                max_bytes: 500_000,
                timeout_ms: 15_000,
                max_redirects: 5,
            },
            cloaking: CloakingConfig {
                mode: CloakMode::Auto,
                strict: false,
                cache_user_id: false,
                sensitive_words: vec![],
                cli_version: "2.1.330".into(),
            },
            limits: LimitsConfig {
                per_key_rpm: 60,
                per_key_daily: 0,
                global_daily: 0,
                max_concurrent: 8,
                per_key_concurrent: 0,
                auth_failures_per_minute: 10,
                ip_table_size: 4096,
            },
            models: ModelsConfig {
                catalogue: [
                    "claude-opus-4-8",
                    "claude-opus-4-7",
                    "claude-opus-4-6",
                    "claude-sonnet-5",
                    "claude-sonnet-4-6",
                    "claude-sonnet-4-5-20250929",
                    "claude-haiku-4-5-20251001",
                    "claude-haiku-4-5",
                ]
                .map(String::from)
                .to_vec(),
                aliases: [
                    ("opus", "claude-opus-4-8"),
                    ("sonnet", "claude-sonnet-4-6"),
                    ("haiku", "claude-haiku-4-5-20251001"),
                ]
                .into_iter()
                .map(|(a, m)| (a.to_string(), m.to_string()))
                .collect(),
                refresh_s: 86_400,
            },
            audit: AuditConfig {
                enabled: true,
                path: None,
                max_bytes: 10 << 20,
                keep: 5,
            },
            metrics: MetricsConfig { public: false },
        }
    }
}

impl Config {
    /// The data directory with `~` expanded.
    pub fn data_dir(&self) -> PathBuf {
        crate::base::fsutil::expand_home(&self.data_dir)
    }

    /// The example config: every key with its default, pretty-printed.
    #[cfg(test)]
    pub fn example_json() -> String {
        let mut s = serde_json::to_string_pretty(&Config::default()).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// The port of a `http://localhost:PORT/…` or `http://127.0.0.1:PORT/…` redirect URI.
pub fn callback_port(redirect_uri: &str) -> Option<u16> {
    let rest = redirect_uri.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    let (host, port) = hostport.rsplit_once(':')?;
    if host != "localhost" && host != "127.0.0.1" {
        return None;
    }
    port.parse().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn example_file_matches_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.json");
        if std::env::var_os("UPDATE_EXAMPLE").is_some() {
            std::fs::write(path, Config::example_json()).unwrap();
        }
        let file = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(file, Config::example_json(), "config.example.json is stale");
    }

    #[test]
    fn per_key_cap_leaves_a_quarter_to_other_keys() {
        let cap = |workers: usize, max_concurrent: u32, per_key_concurrent: u32| {
            let limits = LimitsConfig {
                max_concurrent,
                per_key_concurrent,
                ..Config::default().limits
            };
            limits.per_key_cap(workers)
        };
        assert_eq!(cap(16, 8, 0), 6, "the defaults");
        assert_eq!(cap(4, 100, 0), 3);
        assert_eq!(cap(16, 3, 0), 2);
        assert_eq!(cap(2, 10, 0), 1);
        assert_eq!(
            cap(1, 1, 0),
            1,
            "one worker: the one key must still be served"
        );
        assert_eq!(cap(16, 8, 10), 10, "a set value is taken as it is");
        for workers in 2..=64usize {
            for slots in 2..=64u32 {
                let c = cap(workers, slots, 0);
                assert!(c >= 1);
                assert!(
                    workers - c as usize >= workers.div_ceil(4),
                    "{workers} {slots}"
                );
                assert!(slots - c >= slots.div_ceil(4), "{workers} {slots}");
            }
        }
    }

    #[test]
    fn example_round_trips_to_defaults() {
        let v: Value = serde_json::from_str(&Config::example_json()).unwrap();
        let c = Config::from_value(&v).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
    }
}
