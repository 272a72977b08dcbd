//! The upstream side: one shared ureq agent, the headers we send and return, and the failure
//! classes that drive retries and the account's health.
//!
//! Timeouts follow the measured pattern for long streams (rust-stack-notes §3): a connect
//! timeout, a timeout until the response headers arrive, and a per-read timeout that catches a
//! stalled body — never a whole-request timeout on a stream, which would cut a healthy
//! ten-minute answer. `HTTPS_PROXY`/`NO_PROXY` are honoured (ureq reads them).
//!
//! Every connection's socket is registered on the worker's call ([`crate::backends::abandon`])
//! by [`Watched`], a thin wrap of ureq's own connector and transport, so a client that hangs
//! up while the upstream is silent gets its upstream call closed at once instead of after a
//! timeout. It uses ureq's `unversioned` transport API (not covered by semver; `Cargo.lock`
//! pins the version, and `backends::web::connect` uses the same API).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ureq::http::Response;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, ShutdownHandle, Transport,
};
use ureq::Body;

use crate::backends::abandon;
use crate::base::error::UpstreamError;
use crate::base::sync::lock;
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
        let agent_config = ureq::Agent::config_builder()
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
            .build();
        let agent = ureq::Agent::with_parts(
            agent_config,
            Watched(DefaultConnector::default()),
            DefaultResolver::default(),
        );
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

    /// Sends a GET for a small answer read whole (the model list), bounded by `whole_call`
    /// from connecting to the end of the body.
    pub fn get(
        &self,
        path: &str,
        headers: &[(String, String)],
        whole_call: Duration,
    ) -> Result<Response<Body>, UpstreamError> {
        self.get_staged(path, headers, whole_call)
            .map_err(|(_, e)| UpstreamError::from_ureq(e))
    }

    /// [`Upstream::get`], with a failure to get any answer told by where it happened
    /// ([`Stage`]), for `claudegate doctor`.
    pub fn get_staged(
        &self,
        path: &str,
        headers: &[(String, String)],
        whole_call: Duration,
    ) -> Result<Response<Body>, (Stage, ureq::Error)> {
        let url = format!("{}{path}", self.base_url);
        let mut rq = self.agent.get(&url);
        for (name, value) in headers {
            rq = rq.header(name.as_str(), value.as_str());
        }
        let rq = rq.config().timeout_global(Some(whole_call)).build();
        rq.call().map_err(|e| (Stage::of(&e), e))
    }
}

/// Where a call that got no answer at all failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable, reset).
    Tcp,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// A timeout fired: connecting (TCP and TLS), or waiting for the answer.
    Timeout,
    /// Anything else (a proxy, a malformed answer).
    Other,
}

impl Stage {
    /// ureq's error, by where it arises. A TLS failure comes back from the handshake as an
    /// `io::Error` of kind `InvalidData` wrapping rustls's error (ureq's rustls connector runs
    /// `complete_io` and converts with `?`); nothing else reads data while connecting.
    pub fn of(e: &ureq::Error) -> Stage {
        use std::io::ErrorKind as K;
        match e {
            ureq::Error::HostNotFound => Stage::Dns,
            e if crate::base::error::is_timeout(e) => Stage::Timeout,
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::TlsRequired => Stage::Tls,
            ureq::Error::Pem(_) => Stage::Tls,
            ureq::Error::ConnectionFailed => Stage::Tcp,
            ureq::Error::Io(io) => match io.kind() {
                K::InvalidData => Stage::Tls,
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::NetworkDown
                | K::AddrNotAvailable => Stage::Tcp,
                _ => Stage::Other,
            },
            _ => Stage::Other,
        }
    }

    /// `DNS`, `TCP`, `TLS`, `timeout`, `connection`: how a message names the stage.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dns => "DNS",
            Stage::Tcp => "TCP",
            Stage::Tls => "TLS",
            Stage::Timeout => "timeout",
            Stage::Other => "connection",
        }
    }
}

/// ureq's own connector (proxies, TCP, TLS), with the socket of each new connection noted: its
/// transport registers it on the worker's call for every read and write ([`abandon::use_socket`]).
#[derive(Debug)]
struct Watched(DefaultConnector);

impl Connector<()> for Watched {
    type Out = WatchedTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<WatchedTransport>, ureq::Error> {
        // The TCP connector hands its socket's shutdown handle to `register_shutdown` as soon as
        // it is connected, before TLS: wrapping that callback is how we get hold of it, and a
        // handshake that stalls is covered too.
        let noted: Arc<Mutex<Option<Weak<dyn ShutdownHandle>>>> = Arc::default();
        let (note, register) = (noted.clone(), details.register_shutdown.clone());
        let details = ConnectionDetails {
            addrs: details.addrs.clone(),
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: Arc::new(move |socket: Weak<dyn ShutdownHandle>| {
                abandon::use_socket(&socket);
                *lock(&note) = Some(socket.clone());
                register(socket)
            }),
            ..*details
        };
        let inner = self.0.connect(&details, chained)?;
        let socket = lock(&noted).take();
        Ok(inner.map(|inner| WatchedTransport { inner, socket }))
    }
}

/// A connection made by [`Watched`]: ureq's transport, and the handle that shuts its socket
/// down. Pooled with it, so a reused connection is registered on the call that reuses it.
struct WatchedTransport {
    inner: Box<dyn Transport>,
    socket: Option<Weak<dyn ShutdownHandle>>,
}

impl WatchedTransport {
    fn register(&self) {
        if let Some(socket) = &self.socket {
            abandon::use_socket(socket);
        }
    }
}

impl std::fmt::Debug for WatchedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Transport for WatchedTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.register();
        self.inner.transmit_output(amount, timeout)
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.register();
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.register();
        self.inner.await_input(timeout)
    }

    /// Asked when the connection goes back to the pool (the call on this thread is done with
    /// it, so an abandonment must no longer shut it) and when it is taken out again (the next
    /// read or write registers it on the call that took it).
    fn is_open(&mut self) -> bool {
        if let Some(socket) = &self.socket {
            abandon::release_socket(socket);
        }
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
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

/// What a non-2xx answer to our own housekeeping call says, for a log line (see [`said_in`]).
pub fn error_said(status: u16, resp: &mut Response<Body>) -> String {
    said_in(status, &read_error_body(resp))
}

/// The upstream's message in a non-2xx answer's `body`, at most 300 characters, secrets
/// redacted.
pub fn said_in(status: u16, body: &[u8]) -> String {
    let said: String = crate::base::error::ApiError::from_upstream(status, body)
        .message
        .chars()
        .take(300)
        .collect();
    crate::base::redact::redact(&said)
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

/// The wait `resp` asks for in its `retry-after`, in seconds (the HTTP-date form is not read);
/// unbounded: each caller caps it.
pub fn retry_after_s(resp: &Response<Body>) -> Option<u64> {
    header(resp, "retry-after").and_then(|v| v.trim().parse::<u64>().ok())
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

    /// A local upstream that answers its first request `200 ok` (keep-alive) and then stays
    /// silent; returns its URL and the number of connections it accepted.
    fn answers_once_then_silent() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut answered = false;
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    // A request head, then its (small) body.
                    let mut len = 0;
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        line.clear();
                    }
                    let mut body = vec![0u8; len];
                    if line.is_empty() || std::io::Read::read_exact(&mut r, &mut body).is_err() {
                        break;
                    }
                    if answered {
                        // Silent until the caller closes (or 10 s pass).
                        std::io::Read::read(&mut r, &mut [0u8; 1]).ok();
                        break;
                    }
                    answered = true;
                    w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .unwrap();
                }
            }
        });
        (url, accepted)
    }

    #[test]
    fn an_abandoned_call_is_cut_off_on_a_reused_connection_too() {
        let (url, accepted) = answers_once_then_silent();
        let mut config = Config::default();
        config.upstream.base_url = url;
        let upstream = Upstream::new(&config);
        let call = Call {
            path: "/v1/messages",
            headers: &[],
            body: b"{}",
            whole_call: false,
        };
        // The first call is answered and its connection goes back to the pool.
        let started = abandon::start();
        let mut resp = upstream.post(&call).unwrap();
        assert_eq!(resp.body_mut().read_to_string().unwrap(), "ok");
        drop(started);
        // The second reuses it and meets silence until its client is found gone.
        let started = abandon::start();
        let gone = started.call();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            gone.abandon();
        });
        let t = std::time::Instant::now();
        assert!(upstream.post(&call).is_err());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
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
