//! Reading the configuration: where the file is found, parsing its JSON section by section,
//! and validation. Unknown keys and bad values are refused at start with an error naming the
//! key, because a typo in a limit that silently falls back to a default is worse than not
//! starting.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

use super::*;

/// A configuration problem, naming the file and key so the user can fix it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Environment variables that override one key of the file each (empty = unset): what a
/// container image sets, since there the listening address and the data volume are the
/// image's, whatever config file is mounted (see `contrib/Containerfile`).
pub const ENV_OVERRIDES: &[(&str, KeyOf)] = &[
    ("CLAUDEGATE_HOST", |c| &mut c.host),
    ("CLAUDEGATE_DATA_DIR", |c| &mut c.data_dir),
];

/// Where a key lives in a [`Config`].
pub type KeyOf = fn(&mut Config) -> &mut String;

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
    /// explicitly (`--config` / `$CLAUDEGATE_CONFIG`): then it must exist. The environment's
    /// overrides ([`ENV_OVERRIDES`]) apply over the file.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let mut c = Config::load_file(path, must_exist)?;
        c.apply_env(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError(format!(
                "${name} is not valid UTF-8; unset it or fix its value"
            ))),
        })?;
        Ok(c)
    }

    /// Sets each key of [`ENV_OVERRIDES`] whose variable `lookup` finds non-empty, then checks
    /// the result as a file's values are checked.
    fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    ) -> Result<(), ConfigError> {
        for (var, key) in ENV_OVERRIDES {
            if let Some(value) = lookup(var)?.filter(|v| !v.is_empty()) {
                *key(self) = value;
            }
        }
        self.validate()
            .map_err(|e| ConfigError(format!("{e} (after the environment's overrides)")))
    }

    fn load_file(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
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
        top.field("body_grace_ms", &mut c.body_grace_ms)?;
        top.field("body_min_bytes_per_s", &mut c.body_min_bytes_per_s)?;
        top.field("max_connections", &mut c.max_connections)?;
        top.field("max_connections_per_ip", &mut c.max_connections_per_ip)?;
        if let Some(v) = top.take("trusted_proxies") {
            c.trusted_proxies = trusted_proxies(v)?;
        }
        top.field("shutdown_grace_ms", &mut c.shutdown_grace_ms)?;
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
            s.field("usage_refresh_s", &mut o.usage_refresh_s)?;
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
            s.field("park_timeout_ms", &mut k.park_timeout_ms)?;
            s.field("max_parked_per_key", &mut k.max_parked_per_key)?;
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
            s.field("per_key_concurrent", &mut l.per_key_concurrent)?;
            s.field("auth_failures_per_minute", &mut l.auth_failures_per_minute)?;
            s.field("ip_table_size", &mut l.ip_table_size)?;
            s.finish()?;
        }
        if let Some(v) = top.take("models") {
            let mut s = Section::new("models.", v)?;
            s.field("catalogue", &mut c.models.catalogue)?;
            s.field("aliases", &mut c.models.aliases)?;
            s.field("refresh_s", &mut c.models.refresh_s)?;
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
        if !(100..=3_600_000).contains(&self.body_grace_ms) {
            return Err(bad("body_grace_ms", "must be between 100 and 3600000"));
        }
        if !(1..=1 << 30).contains(&self.body_min_bytes_per_s) {
            return Err(bad(
                "body_min_bytes_per_s",
                "must be between 1 and 1073741824 (bytes per second)",
            ));
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return Err(bad("max_connections", "must be between 1 and 100000"));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_ip) {
            return Err(bad(
                "max_connections_per_ip",
                "must be between 1 and max_connections",
            ));
        }
        if self.shutdown_grace_ms > 3_600_000 {
            return Err(bad(
                "shutdown_grace_ms",
                "must be between 0 and 3600000 (0 ends requests in flight at once)",
            ));
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
        if !(1000..=3_600_000).contains(&self.cli.park_timeout_ms) {
            return Err(bad(
                "cli.park_timeout_ms",
                "must be between 1000 and 3600000",
            ));
        }
        if !(1..=64).contains(&self.cli.max_parked_per_key) {
            return Err(bad("cli.max_parked_per_key", "must be between 1 and 64"));
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
        if !(1..=FETCH_MAX_BYTES_LIMIT).contains(&self.fetch.max_bytes) {
            let why = format!("must be between 1 and {FETCH_MAX_BYTES_LIMIT}");
            return Err(bad("fetch.max_bytes", &why));
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
        if self.limits.per_key_concurrent > 1024 {
            return Err(bad(
                "limits.per_key_concurrent",
                "must be at most 1024 (0 = auto: three quarters of workers and max_concurrent)",
            ));
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
        if self.oauth.usage_refresh_s > 86_400 {
            return Err(bad(
                "oauth.usage_refresh_s",
                "must be at most 86400 (a day); 0 turns the usage reads off",
            ));
        }
        if self.models.refresh_s > 30 * 86_400 {
            return Err(bad(
                "models.refresh_s",
                "must be at most 2592000 (30 days); 0 turns the fetch off",
            ));
        }
        Ok(())
    }
}

/// `trusted_proxies`: a list of addresses or CIDRs. A bad entry stops the start, named: a
/// proxy silently left out would throttle every client behind it as one.
fn trusted_proxies(v: Value) -> Result<Vec<Cidr>, ConfigError> {
    let entries: Vec<String> = serde_json::from_value(v).map_err(|_| {
        bad(
            "trusted_proxies",
            "must be a list of strings, each an address or a CIDR (\"127.0.0.1\", \"10.0.0.0/8\")",
        )
    })?;
    entries
        .iter()
        .map(|e| {
            e.parse().map_err(|why| {
                bad(
                    "trusted_proxies",
                    &format!("has a bad entry {e:?}: {why} (write an address or a CIDR)"),
                )
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_environment_overrides_host_and_data_dir_and_is_checked() {
        let env = |host: &'static str| {
            move |name: &str| -> Result<Option<String>, ConfigError> {
                Ok(match name {
                    "CLAUDEGATE_HOST" => Some(host.to_string()),
                    "CLAUDEGATE_DATA_DIR" => Some("/data".to_string()),
                    _ => None,
                })
            }
        };
        let mut c = Config::default();
        c.apply_env(env("0.0.0.0")).unwrap();
        assert_eq!((c.host.as_str(), c.data_dir.as_str()), ("0.0.0.0", "/data"));
        // Empty means unset: the file's (here the default) value stays.
        let mut c = Config::default();
        c.apply_env(env("")).unwrap();
        assert_eq!(c.host, "127.0.0.1");
        let mut c = Config::default();
        c.apply_env(env(" ")).unwrap_err();
    }

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
        assert!(err(json!({"max_connections_per_ip": 401})).contains("`max_connections_per_ip`"));
        assert!(err(json!({"max_connections": 0})).contains("`max_connections`"));
    }

    #[test]
    fn body_pace_and_per_key_concurrency_are_checked() {
        assert!(err(json!({"body_grace_ms": 50})).contains("`body_grace_ms`"));
        let e = err(json!({"shutdown_grace_ms": 3_600_001}));
        assert!(e.contains("`shutdown_grace_ms`"), "{e}");
        assert!(Config::from_value(&json!({"shutdown_grace_ms": 0})).is_ok());
        assert!(err(json!({"body_min_bytes_per_s": 0})).contains("`body_min_bytes_per_s`"));
        let e = err(json!({"limits": {"per_key_concurrent": 5000}}));
        assert!(e.contains("`limits.per_key_concurrent`"), "{e}");
        let c = Config::from_value(&json!({"limits": {"per_key_concurrent": 2}})).unwrap();
        assert_eq!(c.limits.per_key_cap(c.workers), 2);
    }

    #[test]
    fn trusted_proxies_are_parsed_and_a_bad_entry_is_named() {
        let c = Config::from_value(&json!({"trusted_proxies": ["127.0.0.1", "fd00::/8"]})).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains("fd00::1".parse().unwrap()));
        let e = err(json!({"trusted_proxies": ["10.0.0.0/8", "10.0.0.1/33"]}));
        assert!(
            e.contains("`trusted_proxies`") && e.contains("\"10.0.0.1/33\""),
            "{e}"
        );
        let e = err(json!({"trusted_proxies": ["proxy.example"]}));
        assert!(e.contains("\"proxy.example\""), "{e}");
        let e = err(json!({"trusted_proxies": "127.0.0.1"}));
        assert!(e.contains("`trusted_proxies` must be a list"), "{e}");
        assert!(err(json!({"trusted_proxies": [1]})).contains("`trusted_proxies`"));
    }

    #[test]
    fn the_model_list_interval_is_checked() {
        let e = err(json!({"oauth": {"usage_refresh_s": 86_401}}));
        assert!(e.contains("`oauth.usage_refresh_s`"), "{e}");
        let c = Config::from_value(&json!({"oauth": {"usage_refresh_s": 0}})).unwrap();
        assert_eq!(c.oauth.usage_refresh_s, 0);
        let e = err(json!({"models": {"refresh_s": 31 * 86_400}}));
        assert!(e.contains("`models.refresh_s`"), "{e}");
        assert!(err(json!({"models": {"refresh_s": -1}})).contains("`models.refresh_s`"));
        for ok in [0, 1, 86_400] {
            let c = Config::from_value(&json!({"models": {"refresh_s": ok}})).unwrap();
            assert_eq!(c.models.refresh_s, ok);
        }
    }
}
