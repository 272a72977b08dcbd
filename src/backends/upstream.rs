//! The upstream side: one shared ureq agent, the headers we send and return, and the failure
//! classes that drive retries and the account's health.
//!
//! Timeouts follow the measured pattern for long streams (rust-stack-notes §3): a connect
//! timeout, a timeout until the response headers arrive, and a per-read timeout that catches a
//! stalled body — never a whole-request timeout on a stream, which would cut a healthy
//! ten-minute answer. `HTTPS_PROXY`/`NO_PROXY` are honoured (ureq reads them).

use std::time::Duration;

use ureq::http::Response;
use ureq::Body;

use crate::base::error::UpstreamError;
use crate::config::Config;

/// Request headers never forwarded upstream: our client's credentials, hop-by-hop headers, and
/// encodings we would have to decode.
const DROP_REQUEST_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "x-api-key",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "accept-encoding",
    "cookie",
    "origin",
    "referer",
];

/// Whether a client request header may be forwarded upstream.
pub fn forwardable(name: &str) -> bool {
    !DROP_REQUEST_HEADERS
        .iter()
        .any(|d| d.eq_ignore_ascii_case(name))
}

/// Upstream response headers that matter to clients and are passed back.
pub fn returnable(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "content-type" | "request-id" | "retry-after" | "x-should-retry"
    ) || n.starts_with("anthropic-ratelimit-")
}

/// `anthropic-beta` for the upstream: the client's betas (order kept, duplicates dropped) with
/// the ones we require merged in — never replacing the client's.
pub fn merge_betas(client: &[&str], required: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for beta in required
        .iter()
        .copied()
        .chain(client.iter().flat_map(|v| v.split(',')))
    {
        let beta = beta.trim();
        if !beta.is_empty() && !out.contains(&beta) {
            out.push(beta);
        }
    }
    out.join(",")
}

static ROOTS: std::sync::OnceLock<ureq::tls::TlsConfig> = std::sync::OnceLock::new();

/// Loads `upstream.ca_file` once at start: its certificates replace the built-in Mozilla
/// roots for every outgoing TLS connection (Anthropic and the token endpoint), for users
/// behind a TLS-intercepting proxy. Without it the compiled-in roots are used, so a bare host
/// needs no system CA bundle.
pub fn init_tls(ca_file: Option<&str>) -> Result<(), String> {
    let config = match ca_file {
        None => ureq::tls::TlsConfig::default(),
        Some(path) => {
            let path = crate::base::fsutil::expand_home(path);
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read upstream.ca_file {}: {e}", path.display()))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "upstream.ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build()
        }
    };
    ROOTS.set(config).ok();
    Ok(())
}

/// The TLS settings for outgoing connections (see [`init_tls`]).
pub fn tls_config() -> ureq::tls::TlsConfig {
    ROOTS.get().cloned().unwrap_or_default()
}

/// Statuses worth another attempt before anything reached the client.
pub fn transient_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504 | 529)
}

/// The shared client for the Messages API.
pub struct Upstream {
    agent: ureq::Agent,
    base_url: String,
    count_tokens_timeout: Duration,
}

/// One request to send.
pub struct Call<'a> {
    /// Path plus the client's query string, e.g. `/v1/messages?beta=true`.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// A whole-call budget, for calls that are never streams (count_tokens).
    pub whole_call: bool,
}

impl Upstream {
    pub fn new(config: &Config) -> Upstream {
        let t = &config.timeouts;
        let ms = Duration::from_millis;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("claudegate/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(ms(t.connect_ms)))
            .timeout_recv_response(Some(ms(t.response_ms)))
            .timeout_per_read(Some(ms(t.stream_idle_ms)))
            .timeout_per_write(Some(ms(t.response_ms)))
            .tls_config(tls_config())
            // One pooled connection per worker: every worker can reuse a warm (TLS)
            // connection, so no request pays a handshake once the pool is warm.
            .max_idle_connections(config.workers.max(1))
            .max_idle_connections_per_host(config.workers.max(1))
            // 16 KiB each way is ample for heads (Anthropic's are about 2 KiB; bodies stream
            // through) and keeps 64 streams under `make bench`'s memory target (64 + 32 KiB
            // per connection measured 18.8 MB peak at 64 streams, 16 + 16 KiB 14.5 MB).
            .input_buffer_size(16 * 1024)
            .output_buffer_size(16 * 1024)
            .build()
            .into();
        Upstream {
            agent,
            base_url: config.upstream.base_url.clone(),
            count_tokens_timeout: ms(t.count_tokens_ms),
        }
    }

    /// Sends a POST and returns the response, whatever its status.
    pub fn post(&self, call: &Call) -> Result<Response<Body>, UpstreamError> {
        let url = format!("{}{}", self.base_url, call.path);
        let mut rq = self.agent.post(&url);
        for (name, value) in call.headers {
            rq = rq.header(name.as_str(), value.as_str());
        }
        if call.whole_call {
            rq = rq
                .config()
                .timeout_global(Some(self.count_tokens_timeout))
                .build();
        }
        rq.send(call.body).map_err(UpstreamError::from_ureq)
    }
}

/// Reads a non-2xx response's body (capped, as a client-facing error needs no more).
pub fn read_error_body(resp: &mut Response<Body>) -> Vec<u8> {
    let mut out = Vec::new();
    let reader = resp.body_mut().with_config().limit(1 << 20).reader();
    use std::io::Read;
    reader.take(1 << 20).read_to_end(&mut out).ok();
    out
}

/// The headers of `resp` a client should see.
pub fn returned_headers(resp: &Response<Body>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .filter(|(n, _)| returnable(n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// A header of `resp` as text.
pub fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn betas_merge_without_replacing() {
        assert_eq!(merge_betas(&[], &["oauth-2025-04-20"]), "oauth-2025-04-20");
        assert_eq!(
            merge_betas(
                &["custom-1, oauth-2025-04-20,custom-1", "x"],
                &["oauth-2025-04-20"]
            ),
            "oauth-2025-04-20,custom-1,x"
        );
    }

    #[test]
    fn header_filters() {
        assert!(
            !forwardable("Authorization")
                && !forwardable("x-api-key")
                && !forwardable("Accept-Encoding")
        );
        assert!(forwardable("anthropic-beta") && forwardable("x-stainless-lang"));
        assert!(
            returnable("anthropic-ratelimit-unified-5h-utilization") && returnable("Request-Id")
        );
        assert!(!returnable("set-cookie") && !returnable("server"));
    }
}
