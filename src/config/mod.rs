//! Configuration: defaults, where the file is found, JSON loading and validation.
//!
//! Every key is documented here, where its default is defined; README's table and
//! `config.example.json` mirror this file (a test checks the example equals the defaults).
//! Unknown keys and bad values are refused at start with an error naming the key, because a
//! typo in a limit that silently falls back to a default is worse than not starting.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::base::log::Level;

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
    /// Most bytes of request bodies held in memory at once across all requests; a request that
    /// would exceed it gets 503 + Retry-After. Default 512 MiB. Must be ≥ `max_body_bytes`.
    pub max_inflight_body_bytes: u64,
    /// Socket read/write timeout for clients, in ms: bounds a stalled upload, a slow request
    /// head, an idle keep-alive connection and a client that stops reading. Default 30000.
    pub client_timeout_ms: u64,
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
    /// Failed authentications allowed per client IP per minute before that IP gets 429s for
    /// further failures (requests with a valid key are never throttled by IP). Default 10.
    pub auth_failures_per_minute: u32,
    /// Most client IPs tracked for the failure throttle; the table never grows past it. Default 4096.
    pub ip_table_size: usize,
}

/// `models.*`: the catalogue `/v1/models` lists and the short aliases clients may use.
#[derive(Clone, Debug, Serialize)]
pub struct ModelsConfig {
    /// Model ids listed by `/v1/models`. Unknown ids in requests are still passed through.
    pub catalogue: Vec<String>,
    /// Alias → model id, e.g. `"sonnet": "claude-sonnet-4-6"`. Aliases are listed too.
    pub aliases: BTreeMap<String, String>,
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

/// A configuration problem, naming the file and key so the user can fix it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Which file to read: `--config`, else `$CLAUDEGATE_CONFIG`, else `./config.json` if present,
/// else `~/.config/claudegate/config.json` (which may be absent: then defaults apply).
pub fn locate(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("CLAUDEGATE_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("config.json");
    if local.is_file() {
        return local;
    }
    crate::base::fsutil::expand_home("~/.config/claudegate/config.json")
}

impl Config {
    /// Loads `path`. A missing file means defaults, except when the user named the file
    /// explicitly (`--config` / `$CLAUDEGATE_CONFIG`): then it must exist.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default())
            }
            Err(e) => return Err(ConfigError(format!("cannot read config {shown}: {e}"))),
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ConfigError(format!("config {shown} is not valid JSON: {e}")))?;
        Config::from_value(&value).map_err(|e| ConfigError(format!("config {shown}: {e}")))
    }

    /// Builds a config from parsed JSON, over the defaults.
    pub fn from_value(value: &Value) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut top = Section::new("", value.clone())?;
        top.field("host", &mut c.host)?;
        top.field("port", &mut c.port)?;
        top.field("data_dir", &mut c.data_dir)?;
        top.field("workers", &mut c.workers)?;
        top.field("queue", &mut c.queue)?;
        top.field("max_body_bytes", &mut c.max_body_bytes)?;
        top.field("max_inflight_body_bytes", &mut c.max_inflight_body_bytes)?;
        top.field("client_timeout_ms", &mut c.client_timeout_ms)?;
        if let Some(v) = top.take("debug") {
            c.debug = match v.as_str() {
                Some("off") => DebugSetting::Off,
                Some("errors") => DebugSetting::Errors,
                Some("verbose") => DebugSetting::Verbose,
                _ => return Err(bad("debug", "must be \"off\", \"errors\" or \"verbose\"")),
            };
        }
        if let Some(v) = top.take("upstream") {
            let mut s = Section::new("upstream.", v)?;
            s.field("base_url", &mut c.upstream.base_url)?;
            s.field("max_retries", &mut c.upstream.max_retries)?;
            s.field("ca_file", &mut c.upstream.ca_file)?;
            s.finish()?;
        }
        if let Some(v) = top.take("timeouts") {
            let t = &mut c.timeouts;
            let mut s = Section::new("timeouts.", v)?;
            s.field("connect_ms", &mut t.connect_ms)?;
            s.field("response_ms", &mut t.response_ms)?;
            s.field("stream_idle_ms", &mut t.stream_idle_ms)?;
            s.field("count_tokens_ms", &mut t.count_tokens_ms)?;
            s.finish()?;
        }
        if let Some(v) = top.take("oauth") {
            let o = &mut c.oauth;
            let mut s = Section::new("oauth.", v)?;
            s.field("authorize_url", &mut o.authorize_url)?;
            s.field("token_url", &mut o.token_url)?;
            s.field("client_id", &mut o.client_id)?;
            s.field("scopes", &mut o.scopes)?;
            s.field("redirect_uri", &mut o.redirect_uri)?;
            s.field("refresh_before_expiry_s", &mut o.refresh_before_expiry_s)?;
            s.finish()?;
        }
        top.field("backend", &mut c.backend)?;
        if let Some(v) = top.take("cli") {
            let k = &mut c.cli;
            let mut s = Section::new("cli.", v)?;
            s.field("binary", &mut k.binary)?;
            s.field("home", &mut k.home)?;
            s.field("default_model", &mut k.default_model)?;
            s.field("allowed_models", &mut k.allowed_models)?;
            s.field("timeout_ms", &mut k.timeout_ms)?;
            s.field("max_concurrent", &mut k.max_concurrent)?;
            s.field("queue_wait_ms", &mut k.queue_wait_ms)?;
            s.field("env", &mut k.env)?;
            s.finish()?;
        }
        if let Some(v) = top.take("fetch") {
            let f = &mut c.fetch;
            let mut s = Section::new("fetch.", v)?;
            s.field("enabled", &mut f.enabled)?;
            s.field("rpm", &mut f.rpm)?;
            s.field("max_bytes", &mut f.max_bytes)?;
            s.field("timeout_ms", &mut f.timeout_ms)?;
            s.field("max_redirects", &mut f.max_redirects)?;
            s.finish()?;
        }
        if let Some(v) = top.take("cloaking") {
            let k = &mut c.cloaking;
            let mut s = Section::new("cloaking.", v)?;
            s.field("mode", &mut k.mode)?;
            s.field("strict", &mut k.strict)?;
            s.field("cache_user_id", &mut k.cache_user_id)?;
            s.field("sensitive_words", &mut k.sensitive_words)?;
            s.field("cli_version", &mut k.cli_version)?;
            s.finish()?;
        }
        if let Some(v) = top.take("limits") {
            let l = &mut c.limits;
            let mut s = Section::new("limits.", v)?;
            s.field("per_key_rpm", &mut l.per_key_rpm)?;
            s.field("per_key_daily", &mut l.per_key_daily)?;
            s.field("global_daily", &mut l.global_daily)?;
            s.field("max_concurrent", &mut l.max_concurrent)?;
            s.field("auth_failures_per_minute", &mut l.auth_failures_per_minute)?;
            s.field("ip_table_size", &mut l.ip_table_size)?;
            s.finish()?;
        }
        if let Some(v) = top.take("models") {
            let mut s = Section::new("models.", v)?;
            s.field("catalogue", &mut c.models.catalogue)?;
            s.field("aliases", &mut c.models.aliases)?;
            s.finish()?;
        }
        if let Some(v) = top.take("audit") {
            let a = &mut c.audit;
            let mut s = Section::new("audit.", v)?;
            s.field("enabled", &mut a.enabled)?;
            s.field("path", &mut a.path)?;
            s.field("max_bytes", &mut a.max_bytes)?;
            s.field("keep", &mut a.keep)?;
            s.finish()?;
        }
        if let Some(v) = top.take("metrics") {
            let mut s = Section::new("metrics.", v)?;
            s.field("public", &mut c.metrics.public)?;
            s.finish()?;
        }
        top.finish()?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(bad("host", "must not be empty"));
        }
        if self.data_dir.trim().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if !(1..=1024).contains(&self.workers) {
            return Err(bad("workers", "must be between 1 and 1024"));
        }
        if self.queue > 100_000 {
            return Err(bad("queue", "must be at most 100000"));
        }
        if self.max_body_bytes == 0 {
            return Err(bad("max_body_bytes", "must be greater than 0"));
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            return Err(bad(
                "max_inflight_body_bytes",
                "must be at least max_body_bytes (or no single body could ever be accepted)",
            ));
        }
        if !(100..=3_600_000).contains(&self.client_timeout_ms) {
            return Err(bad("client_timeout_ms", "must be between 100 and 3600000"));
        }
        let url = &self.upstream.base_url;
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.ends_with('/') {
            return Err(bad(
                "upstream.base_url",
                "must start with https:// or http:// and not end with /",
            ));
        }
        if self.upstream.max_retries > 10 {
            return Err(bad("upstream.max_retries", "must be at most 10"));
        }
        let t = &self.timeouts;
        for (key, ms) in [
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.response_ms", t.response_ms),
            ("timeouts.stream_idle_ms", t.stream_idle_ms),
            ("timeouts.count_tokens_ms", t.count_tokens_ms),
        ] {
            if !(100..=86_400_000).contains(&ms) {
                return Err(bad(key, "must be between 100 and 86400000 (ms)"));
            }
        }
        for (key, url) in [
            ("oauth.authorize_url", &self.oauth.authorize_url),
            ("oauth.token_url", &self.oauth.token_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(bad(key, "must start with https:// or http://"));
            }
        }
        if self.oauth.client_id.trim().is_empty() {
            return Err(bad("oauth.client_id", "must not be empty"));
        }
        if callback_port(&self.oauth.redirect_uri).is_none() {
            return Err(bad(
                "oauth.redirect_uri",
                "must be http://localhost:PORT/PATH or http://127.0.0.1:PORT/PATH",
            ));
        }
        let v = &self.cloaking.cli_version;
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(bad("cloaking.cli_version", "must look like 2.1.330"));
        }
        if self
            .cloaking
            .sensitive_words
            .iter()
            .any(|w| w.trim().is_empty())
        {
            return Err(bad(
                "cloaking.sensitive_words",
                "must not contain empty words",
            ));
        }
        if self.cli.binary.trim().is_empty() {
            return Err(bad("cli.binary", "must not be empty"));
        }
        if !(1000..=86_400_000).contains(&self.cli.timeout_ms) {
            return Err(bad("cli.timeout_ms", "must be between 1000 and 86400000"));
        }
        if !(1..=64).contains(&self.cli.max_concurrent) {
            return Err(bad("cli.max_concurrent", "must be between 1 and 64"));
        }
        if self.cli.allowed_models.is_empty() {
            return Err(bad("cli.allowed_models", "must list at least one model"));
        }
        if !self.cli.allowed_models.contains(&self.cli.default_model) {
            return Err(bad(
                "cli.default_model",
                "must be one of cli.allowed_models",
            ));
        }
        for name in self.cli.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(bad("cli.env", "has an invalid variable name"));
            }
        }
        if !(1..=2_000_000).contains(&self.fetch.max_bytes) {
            return Err(bad("fetch.max_bytes", "must be between 1 and 2000000"));
        }
        if !(100..=600_000).contains(&self.fetch.timeout_ms) {
            return Err(bad("fetch.timeout_ms", "must be between 100 and 600000"));
        }
        if self.fetch.max_redirects > 20 {
            return Err(bad("fetch.max_redirects", "must be at most 20"));
        }
        if self.limits.max_concurrent == 0 {
            return Err(bad("limits.max_concurrent", "must be at least 1"));
        }
        if self.limits.ip_table_size == 0 || self.limits.ip_table_size > 1_000_000 {
            return Err(bad("limits.ip_table_size", "must be between 1 and 1000000"));
        }
        if self.audit.max_bytes < 1024 {
            return Err(bad("audit.max_bytes", "must be at least 1024"));
        }
        if self.audit.keep > 100 {
            return Err(bad("audit.keep", "must be at most 100"));
        }
        if self
            .audit
            .path
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(bad(
                "audit.path",
                "must not be empty (leave it out for data_dir/audit.log)",
            ));
        }
        for id in self
            .models
            .catalogue
            .iter()
            .chain(self.models.aliases.keys())
        {
            if id.is_empty() || id.len() > 200 {
                return Err(bad("models", "model ids must be 1 to 200 characters"));
            }
        }
        Ok(())
    }

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

fn bad(key: &str, why: &str) -> ConfigError {
    ConfigError(format!("key `{key}` {why}"))
}

/// One JSON object of the config being read: fields are taken out one by one, and whatever is
/// left at the end is an unknown key.
struct Section {
    prefix: &'static str,
    map: Map<String, Value>,
}

impl Section {
    fn new(prefix: &'static str, value: Value) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Section { prefix, map }),
            _ if prefix.is_empty() => Err(ConfigError("must be a JSON object".into())),
            _ => Err(bad(prefix.trim_end_matches('.'), "must be a JSON object")),
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    fn field<T: DeserializeOwned>(&mut self, key: &str, out: &mut T) -> Result<(), ConfigError> {
        if let Some(v) = self.map.remove(key) {
            *out = serde_json::from_value(v).map_err(|e| {
                ConfigError(format!("key `{}{key}` has a bad value: {e}", self.prefix))
            })?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.map.keys().next() {
            Some(k) => Err(ConfigError(format!(
                "unknown key `{}{k}` (see config.example.json for every key)",
                self.prefix
            ))),
            None => Ok(()),
        }
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
    use serde_json::json;

    fn err(v: Value) -> String {
        Config::from_value(&v).unwrap_err().0
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_value(&json!({"port": 9000, "limits": {"per_key_rpm": 5}})).unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.limits.per_key_rpm, 5);
        assert_eq!(c.limits.max_concurrent, 8);
        assert_eq!(c.host, "127.0.0.1");
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err(json!({"prot": 1})).contains("`prot`"));
        assert!(err(json!({"limits": {"rpm": 1}})).contains("`limits.rpm`"));
        assert!(err(json!({"port": "x"})).contains("`port`"));
        assert!(err(json!({"port": 70000})).contains("`port`"));
        assert!(err(json!({"limits": {"max_concurrent": -1}})).contains("limits.max_concurrent"));
        assert!(err(json!({"debug": "loud"})).contains("`debug`"));
        assert!(err(json!({"upstream": {"base_url": "ftp://x"}})).contains("upstream.base_url"));
        assert!(err(json!({"limits": 3})).contains("`limits`"));
        assert!(err(json!([])).contains("object"));
    }

    /// `config.example.json` must show every key with its default; regenerate it with
    /// `UPDATE_EXAMPLE=1 cargo test example_file` after changing a default.
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
    fn example_round_trips_to_defaults() {
        let v: Value = serde_json::from_str(&Config::example_json()).unwrap();
        let c = Config::from_value(&v).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
    }
}
