//! `claudegate health [--url URL]`: asks a running server's `GET /health` and exits 0 when it
//! answers 200, 1 otherwise. It is the container image's health check (`HEALTHCHECK` in
//! `contrib/Containerfile`): the image is `FROM scratch`, so it has no curl or shell, only this
//! binary. Without `--url` it asks the address the configuration says `serve` listens on.
//!
//! The whole check is bounded by [`TIMEOUT`], so a hung server makes the check fail rather than
//! pile up health-check processes; no proxy from the environment is used, since the server is
//! local (a proxy would answer for it, or not at all).

use crate::backends::upstream;
use crate::config::Config;
use std::time::Duration;

/// The longest the whole check may take (connect, request, answer). `/health` is answered by
/// the accept loop itself, never queued behind a worker, so a healthy server answers in
/// milliseconds; the container's health-check timeout (10 s) stays above this.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The URL of `/health` on the address `serve` binds for `config`: a wildcard bind address
/// (`0.0.0.0`, `::`) is asked on loopback, the only address sure to reach it from inside.
pub fn local_url(config: &Config) -> String {
    let host = config.host.trim();
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    format!("http://{host}:{}/health", config.port)
}

/// `claudegate health`: `Ok` when `url` answers 200 within [`TIMEOUT`], else what went wrong.
pub fn check(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "health --url wants an http:// or https:// URL, not {url:?}"
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(TIMEOUT))
        .tls_config(upstream::tls_config())
        .user_agent(format!("claudegate-health/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let resp = agent.get(url).call().map_err(|e| {
        format!("GET {url} failed: {e} (is `claudegate serve` running on that address?)")
    })?;
    match resp.status().as_u16() {
        200 => {
            println!("ok: GET {url} answered 200");
            Ok(())
        }
        s => Err(format!("GET {url} answered {s}, not 200")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_asked_on_loopback() {
        let mut c = Config::default();
        assert_eq!(local_url(&c), "http://127.0.0.1:8317/health");
        c.host = "0.0.0.0".into();
        c.port = 9000;
        assert_eq!(local_url(&c), "http://127.0.0.1:9000/health");
        c.host = "::".into();
        assert_eq!(local_url(&c), "http://[::1]:9000/health");
        c.host = "fd00::1".into();
        assert_eq!(local_url(&c), "http://[fd00::1]:9000/health");
        c.host = "localhost".into();
        assert_eq!(local_url(&c), "http://localhost:9000/health");
    }
}
