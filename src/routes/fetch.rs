//! `POST /v1/fetch`: fetches one public web page through this host, for apps whose own address
//! gets bot-walled. The request is `{url, max_bytes?, strip?}`; the answer is
//! `{ok: true, status, final_url, content_type, truncated, html}` (HTTP 200 whatever the remote
//! status was: `status` is the remote's) or `{ok: false, error}` with a status saying why:
//!
//! | status | when |
//! |---|---|
//! | 400 | bad JSON or fields, a URL that is not http(s), carries a user name, or whose host is (or resolves to, or redirects to) a non-public address |
//! | 404 | `fetch.enabled` is false |
//! | 408, 413, 503 | the request body came too slowly, is over `max_body_bytes`, or the server holds too many bodies (as on every route) |
//! | 415 | the remote answered with a non-text content type (images, PDFs, archives…) |
//! | 429 | the key's fetch bucket (`fetch.rpm`) is empty; `Retry-After` says when to retry |
//! | 502 | the remote cannot be resolved or reached, TLS fails, the answer is malformed, or there are too many redirects |
//! | 504 | the whole fetch, redirects included, took longer than `fetch.timeout_ms` |
//!
//! **The address guard.** A server-side fetch is a classic SSRF door into the host's own network
//! (cloud metadata at 169.254.169.254, admin panels on 127.0.0.1, the LAN). So, on every hop:
//! 1. the URL is parsed here, not by a resolver: numeric host forms that `inet_aton` accepts
//!    (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) are turned into the address they mean;
//! 2. a name is resolved once with the system resolver, and **every** address it returns must be
//!    public ([`blocked_reason`] lists what is not);
//! 3. the connection is **pinned** to exactly those checked addresses by a ureq [`Resolver`]
//!    that never looks anything up, while the URL, `Host` header and TLS SNI keep the name. A
//!    DNS answer that changes after the check (rebinding) therefore cannot move the connection.
//!
//! ureq never follows redirects itself (`max_redirects(0)`): each `Location` is resolved against
//! the current URL and goes through steps 1–3 again, at most `fetch.max_redirects` times. No
//! proxy is ever used (a proxy would resolve the name itself and undo the pinning). No
//! configuration key can turn the guard off.
//!
//! **Content.** HTML (`text/html`, `application/xhtml+xml`, or no content type) is returned with
//! [`strip_html`] applied unless `strip` is false. Other textual types (`text/*`, JSON, XML,
//! JavaScript, `+json`, `+xml`) are returned as they are, never stripped: removing `<script>` from
//! a JSON document would corrupt it. Anything else is refused with 415 before its body is read,
//! as is a body holding NUL bytes. Text is decoded as UTF-8 (bad bytes become U+FFFD) unless the
//! `Content-Type` charset is Latin-1/Windows-1252; an HTML `<meta charset>` is not looked at. At
//! most `max_bytes` bytes of the remote body are read (one more tells whether there was more:
//! `truncated`); a cut in the middle of a UTF-8 character is trimmed.
//!
//! **Budget.** Each key has its own fetch bucket (`fetch.rpm` per minute, bursts up to one
//! minute's worth; 0 = no limit), apart from the model limits, so page fetches never spend the
//! model budget and vice versa.
//!
//! **Test seam (debug builds only).** Integration tests must reach a local test server, which the
//! guard rightly refuses. Rather than a switch that skips the guard, debug builds read two
//! environment variables that act *around* the real guard:
//! - `CLAUDEGATE_TEST_FETCH_DNS="a.test=1.2.3.4;b.test=1.2.3.4|127.0.0.1;c.test=1.2.3.4,10.0.0.1"`
//!   answers lookups for the listed names instead of the system resolver (`,` separates the
//!   addresses of one answer, `|` successive answers; the last one repeats). The answers go
//!   through the same check as real DNS answers, so tests can prove that a private answer is
//!   refused and that a second, different answer is never used for the connection.
//! - `CLAUDEGATE_TEST_FETCH_ROUTE="1.2.3.4=127.0.0.2"` makes a connection that the guard has
//!   **already approved** for the public address `1.2.3.4` land on the loopback address
//!   `127.0.0.2` instead (same port). Only public → loopback pairs are accepted.
//!
//! Neither can make the guard approve anything: it still sees and judges every address, and the
//! route only applies afterwards to an approved public address. Release builds
//! (`cfg(not(debug_assertions))`) contain neither the code nor the variable names.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::Request;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Connector, NextTimeout, RustlsConnector, TcpConnector};

use crate::base::error::ApiError;
use crate::config::FetchConfig;
use crate::guard::budget::BodyBudget;
use crate::guard::keys::KeyInfo;
use crate::http::{self, Reply};

/// The largest `max_bytes` a request may ask for (2 MB).
pub const MAX_BYTES_LIMIT: u64 = 2_000_000;

/// Longest URL accepted, in bytes; real pages stay far below.
const MAX_URL_LEN: usize = 8192;

/// Most keys with a fetch bucket kept in memory (keys come from the key file, so this is only
/// reached after many revocations; full buckets are forgotten first).
const MAX_BUCKETS: usize = 1024;

/// Sent as `User-Agent`: browser-compatible, so bot walls that only look for "Mozilla" let it
/// through, yet honest about what it is.
const USER_AGENT: &str = concat!(
    "Mozilla/5.0 (compatible; claudegate/",
    env!("CARGO_PKG_VERSION"),
    ")"
);

const ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,text/*;q=0.8,*/*;q=0.5";

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/// Serves `POST /v1/fetch`; one per server.
pub struct Fetcher {
    cfg: FetchConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
    #[cfg(debug_assertions)]
    seam: seam::Seam,
}

/// The request body, checked.
#[derive(Debug)]
struct FetchRequest {
    url: String,
    max_bytes: Option<u64>,
    strip: bool,
}

impl FetchRequest {
    /// Parses the body by hand so that every refusal names the field at fault.
    fn parse(bytes: &[u8]) -> Result<FetchRequest, Failure> {
        let bad = |m: String| Failure::new(400, m);
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("request body must be a JSON object".into()))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "url" | "max_bytes" | "strip"))
        {
            return Err(bad(format!(
                "unknown field {k:?}; /v1/fetch takes url, max_bytes and strip"
            )));
        }
        let url = match obj.get("url") {
            Some(serde_json::Value::String(u)) => u.clone(),
            None | Some(serde_json::Value::Null) => return Err(bad("url is required".into())),
            Some(_) => return Err(bad("url must be a string".into())),
        };
        let range = || format!("max_bytes must be an integer between 1 and {MAX_BYTES_LIMIT}");
        let max_bytes = match obj.get("max_bytes") {
            None | Some(serde_json::Value::Null) => None,
            Some(n) => match n.as_u64() {
                Some(n) if (1..=MAX_BYTES_LIMIT).contains(&n) => Some(n),
                _ => return Err(bad(range())),
            },
        };
        let strip = match obj.get("strip") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(bad("strip must be true or false".into())),
        };
        Ok(FetchRequest {
            url,
            max_bytes,
            strip,
        })
    }
}

/// An `{ok: false}` answer.
#[derive(Debug)]
struct Failure {
    status: u16,
    message: String,
    headers: Vec<(&'static str, String)>,
}

impl Failure {
    fn new(status: u16, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            headers: vec![],
        }
    }

    fn reply(self) -> Reply {
        let body = serde_json::json!({"ok": false, "error": self.message});
        let mut reply = Reply::json(self.status, body.to_string().into_bytes());
        reply.headers.extend(self.headers);
        reply
    }
}

/// Body-reading errors (413, 408, 503) keep their status, message and headers.
impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        let mut headers = e.headers.clone();
        if let Some(secs) = e.retry_after {
            headers.push(("Retry-After", secs.to_string()));
        }
        Failure {
            status: e.status(),
            message: e.message,
            headers,
        }
    }
}

/// A fetched page, ready to be answered.
struct Page {
    status: u16,
    final_url: String,
    content_type: String,
    truncated: bool,
    text: String,
}

impl Fetcher {
    pub fn new(cfg: FetchConfig) -> Fetcher {
        Fetcher {
            cfg,
            buckets: Mutex::new(HashMap::new()),
            #[cfg(debug_assertions)]
            seam: seam::Seam::from_env(),
        }
    }

    /// Reads the body, applies the fetch bucket, fetches, and answers; returns the status sent.
    pub fn handle(
        &self,
        max_body_bytes: u64,
        bodies: &BodyBudget,
        mut rq: Request,
        key: &KeyInfo,
        cors: &[(&'static str, String)],
    ) -> u16 {
        let reply = match self.answer(max_body_bytes, bodies, &mut rq, key) {
            Ok(page) => {
                let body = serde_json::json!({
                    "ok": true,
                    "status": page.status,
                    "final_url": page.final_url,
                    "content_type": page.content_type,
                    "truncated": page.truncated,
                    "html": page.text,
                });
                Reply::json(200, body.to_string().into_bytes())
            }
            Err(failure) => failure.reply(),
        };
        let status = reply.status;
        http::send(rq, reply, cors);
        status
    }

    fn answer(
        &self,
        max_body_bytes: u64,
        bodies: &BodyBudget,
        rq: &mut Request,
        key: &KeyInfo,
    ) -> Result<Page, Failure> {
        if !self.cfg.enabled {
            // Not read: the server skips an unread body on its own.
            return Err(Failure::new(
                404,
                "/v1/fetch is disabled on this server (fetch.enabled is false)",
            ));
        }
        let body = http::body::read_body(rq, max_body_bytes, bodies)?;
        let req = FetchRequest::parse(&body.bytes)?;
        drop(body);
        // fetch.max_bytes is validated by the config (1..=2 MB).
        let max_bytes = req.max_bytes.unwrap_or(self.cfg.max_bytes);
        // Parsing (and refusing literal non-public addresses) costs nothing, so it comes before
        // the bucket; resolving and fetching come after.
        let target = parse_url(&req.url).map_err(|e| e.failure(false))?;
        self.take_token(key)?;
        self.fetch(target, max_bytes, req.strip)
    }

    /// Takes one token from `key`'s fetch bucket, or says when to retry.
    fn take_token(&self, key: &KeyInfo) -> Result<(), Failure> {
        let rpm = self.cfg.rpm;
        if rpm == 0 {
            return Ok(());
        }
        let (capacity, per_sec) = (f64::from(rpm), f64::from(rpm) / 60.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&key.label) && buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| {
                b.refill(capacity, per_sec, now);
                b.tokens < capacity
            });
            if buckets.len() >= MAX_BUCKETS {
                let oldest = buckets.iter().min_by_key(|(_, b)| b.updated);
                if let Some(label) = oldest.map(|(l, _)| l.clone()) {
                    buckets.remove(&label);
                }
            }
        }
        let bucket = buckets.entry(key.label.clone()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        bucket.refill(capacity, per_sec, now);
        if bucket.tokens < 1.0 {
            let wait = (((1.0 - bucket.tokens) / per_sec).ceil() as u64).max(1);
            let mut f = Failure::new(
                429,
                format!(
                    "key {:?} is over its {rpm} page fetches per minute (fetch.rpm)",
                    key.label
                ),
            );
            f.headers.push(("Retry-After", wait.to_string()));
            return Err(f);
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Follows redirects by hand, guarding and pinning every hop.
    fn fetch(&self, first: Target, max_bytes: u64, strip: bool) -> Result<Page, Failure> {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let deadline = Instant::now() + timeout;
        let mut target = first;
        let mut redirects = 0;
        loop {
            let addrs = self.resolve(&target, deadline).map_err(|mut f| {
                if redirects > 0 && f.status == 400 {
                    f.message = format!("redirect refused: {}", f.message);
                }
                f
            })?;
            let mut resp = self.send(&target, addrs, deadline)?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let is_redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
            if let Some(location) = location.filter(|_| is_redirect) {
                if redirects >= self.cfg.max_redirects {
                    return Err(Failure::new(
                        502,
                        format!(
                            "more than {} redirects (fetch.max_redirects)",
                            self.cfg.max_redirects
                        ),
                    ));
                }
                redirects += 1;
                let next = join_url(&target, &location).map_err(|e| e.failure(true))?;
                target = parse_url(&next).map_err(|e| e.failure(true))?;
                continue;
            }
            return read_page(&mut resp, &target, status, max_bytes, strip);
        }
    }

    /// The checked addresses for `target`: a literal is judged as it is, a name is resolved
    /// once and every address it yields must be public.
    fn resolve(&self, target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
        let ips = match &target.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self.lookup(name, target.port, deadline)?,
        };
        if ips.is_empty() {
            return Err(Failure::new(
                502,
                format!("cannot resolve {}: no addresses", target.host),
            ));
        }
        for ip in &ips {
            if let Some(reason) = blocked_reason(*ip) {
                let what = match &target.host {
                    Host::Ip(_) => format!("{ip} is {reason}"),
                    Host::Name(name) => format!("{name} resolves to {ip}, which is {reason}"),
                };
                return Err(Failure::new(
                    400,
                    format!("blocked address: {what}; /v1/fetch only reaches public addresses"),
                ));
            }
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }

    /// Resolves `name` with the system resolver, within the fetch's deadline.
    fn lookup(&self, name: &str, port: u16, deadline: Instant) -> Result<Vec<IpAddr>, Failure> {
        #[cfg(debug_assertions)]
        if let Some(ips) = self.seam.lookup(name) {
            return Ok(ips);
        }
        let wait = remaining(deadline)?;
        // getaddrinfo has no timeout of its own; a thread lets us stop waiting for it. A lookup
        // that hangs ends on the resolver's own timeout and its thread with it.
        let (tx, rx) = mpsc::sync_channel(1);
        let query = format!("{name}:{port}");
        let spawned = std::thread::Builder::new()
            .name("fetch-dns".into())
            .spawn(move || {
                let answer = query
                    .to_socket_addrs()
                    .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>());
                tx.send(answer).ok();
            });
        if spawned.is_err() {
            return Err(Failure::new(502, "cannot start a DNS lookup right now"));
        }
        let ips = match rx.recv_timeout(wait) {
            Ok(Ok(ips)) => ips,
            Ok(Err(e)) => return Err(Failure::new(502, format!("cannot resolve {name}: {e}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Failure::new(502, format!("cannot resolve {name}")))
            }
        };
        Ok(ips)
    }

    /// One GET, connected only to `addrs` (already checked).
    fn send(
        &self,
        target: &Target,
        addrs: Vec<SocketAddr>,
        deadline: Instant,
    ) -> Result<ureq::http::Response<ureq::Body>, Failure> {
        #[cfg(debug_assertions)]
        let addrs: Vec<SocketAddr> = addrs.into_iter().map(|a| self.seam.route(a)).collect();
        let pinned = Pinned {
            host: target.host.to_string(),
            addrs,
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(remaining(deadline)?))
            .user_agent(USER_AGENT)
            .accept(ACCEPT)
            .accept_encoding("identity")
            .tls_config(crate::backends::upstream::tls_config())
            .max_idle_connections(0)
            .build();
        // TCP then TLS, and nothing else: no proxy connectors, so the pinned address is the
        // one connected to. A fresh agent per hop keeps pins and pooled connections apart.
        let connector = ().chain(TcpConnector::default()).chain(RustlsConnector::default());
        let agent = ureq::Agent::with_parts(config, connector, pinned);
        agent
            .get(target.url())
            .header("Accept-Language", "en-US,en;q=0.8")
            .call()
            .map_err(|e| transport_failure(e, target))
    }
}

/// A token bucket: `tokens` refilled continuously up to the capacity.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, capacity: f64, per_sec: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + dt * per_sec).min(capacity);
        self.updated = now;
    }
}

fn timed_out() -> Failure {
    Failure::new(504, "the fetch took longer than fetch.timeout_ms")
}

/// Time left before `deadline`, or the timeout failure.
fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out())
    } else {
        Ok(left)
    }
}

/// Maps a ureq failure to 504 (timeouts) or 502 (everything the remote side got wrong).
fn transport_failure(e: ureq::Error, target: &Target) -> Failure {
    let host = target.host.to_string();
    match e {
        ureq::Error::Timeout(_) => timed_out(),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            timed_out()
        }
        ureq::Error::Io(io) => Failure::new(502, format!("cannot reach {host}: {io}")),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            Failure::new(502, format!("cannot reach {host}"))
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            Failure::new(502, format!("TLS with {host} failed: {e}"))
        }
        other => Failure::new(502, format!("bad answer from {host}: {other}")),
    }
}

/// How a content type is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Text,
    Binary,
}

/// Classifies a `Content-Type` value (parameters ignored, case-insensitive).
fn kind_of(content_type: &str) -> Kind {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "text/html" | "application/xhtml+xml" => Kind::Html,
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/ecmascript"
        | "application/x-javascript"
        | "application/yaml"
        | "application/x-yaml"
        | "application/toml"
        | "application/csv"
        | "application/x-ndjson" => Kind::Text,
        e if e.starts_with("text/") || e.ends_with("+json") || e.ends_with("+xml") => Kind::Text,
        _ => Kind::Binary,
    }
}

/// Reads the final answer's body under the cap and decodes it.
fn read_page(
    resp: &mut ureq::http::Response<ureq::Body>,
    target: &Target,
    status: u16,
    max_bytes: u64,
    strip: bool,
) -> Result<Page, Failure> {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let content_type = header("content-type");
    let encoding = header("content-encoding");
    let kind = kind_of(&content_type);
    if kind == Kind::Binary {
        return Err(Failure::new(
            415,
            format!("the page's content type {content_type:?} is not text; /v1/fetch returns only HTML and other text"),
        ));
    }
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return Err(Failure::new(
            502,
            format!("the remote sent a {encoding:?}-encoded body although none was asked for"),
        ));
    }
    let mut bytes = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| transport_failure(ureq::Error::from(e), target))?;
    let truncated = bytes.len() as u64 > max_bytes;
    if truncated {
        bytes.truncate(max_bytes as usize);
    }
    if bytes.contains(&0) {
        return Err(Failure::new(
            415,
            "the page holds binary data (NUL bytes); /v1/fetch returns only text",
        ));
    }
    let mut text = decode(bytes, &content_type, truncated);
    if strip && kind == Kind::Html {
        text = strip_html(&text);
    }
    Ok(Page {
        status,
        final_url: target.url(),
        content_type,
        truncated,
        text,
    })
}

/// Decodes a body: Latin-1 / Windows-1252 when the header says so, otherwise UTF-8 with bad
/// bytes replaced. A truncated body loses a trailing partial UTF-8 character rather than
/// ending in a replacement character.
fn decode(mut bytes: Vec<u8>, content_type: &str, truncated: bool) -> String {
    let charset = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
        .unwrap_or_default();
    if matches!(
        charset.as_str(),
        "iso-8859-1" | "latin1" | "l1" | "iso8859-1" | "windows-1252" | "cp1252" | "us-ascii"
    ) {
        return bytes.iter().map(|&b| cp1252(b)).collect();
    }
    if truncated {
        trim_partial_utf8(&mut bytes);
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// One Windows-1252 byte as a char (a superset of Latin-1, which is what browsers do for both).
fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// Drops an incomplete UTF-8 sequence at the end of `b` (left by cutting at the byte cap).
fn trim_partial_utf8(b: &mut Vec<u8>) {
    let n = b.len();
    let mut start = n;
    while start > 0 && n - start < 3 && b[start - 1] & 0xC0 == 0x80 {
        start -= 1;
    }
    if start == 0 {
        return;
    }
    let need = match b[start - 1] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    };
    if n - (start - 1) < need {
        b.truncate(start - 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Pinning
// ---------------------------------------------------------------------------------------------

/// A ureq resolver that never resolves: it hands back the addresses the guard checked, and
/// only for the host they were checked for.
#[derive(Debug)]
struct Pinned {
    /// The host as in the URL (IPv6 without brackets).
    host: String,
    addrs: Vec<SocketAddr>,
}

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let asked = uri.host().unwrap_or("");
        let asked = asked.trim_start_matches('[').trim_end_matches(']');
        if !asked.eq_ignore_ascii_case(&self.host) {
            return Err(ureq::Error::HostNotFound);
        }
        let mut out = self.empty();
        // ureq keeps at most 16 addresses; more would panic its push.
        for addr in self.addrs.iter().take(16) {
            out.push(*addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// The address guard
// ---------------------------------------------------------------------------------------------

/// IPv4 ranges that are not public, first match wins: (network, prefix length, description).
const V4_BLOCKED: &[(u32, u32, &str)] = &[
    (0x0000_0000, 8, "a \"this network\" address (0.0.0.0/8)"),
    (0x0a00_0000, 8, "a private address (10.0.0.0/8)"),
    (0x6440_0000, 10, "a shared/CGNAT address (100.64.0.0/10)"),
    (0x7f00_0000, 8, "a loopback address (127.0.0.0/8)"),
    (0xa9fe_0000, 16, "a link-local address (169.254.0.0/16)"),
    (0xac10_0000, 12, "a private address (172.16.0.0/12)"),
    (
        0xc000_0000,
        24,
        "an IETF protocol assignment (192.0.0.0/24)",
    ),
    (0xc000_0200, 24, "a documentation address (192.0.2.0/24)"),
    (
        0xc058_6300,
        24,
        "a 6to4 relay anycast address (192.88.99.0/24)",
    ),
    (0xc0a8_0000, 16, "a private address (192.168.0.0/16)"),
    (0xc612_0000, 15, "a benchmarking address (198.18.0.0/15)"),
    (0xc633_6400, 24, "a documentation address (198.51.100.0/24)"),
    (0xcb00_7100, 24, "a documentation address (203.0.113.0/24)"),
    (0xe000_0000, 4, "a multicast address (224.0.0.0/4)"),
    (0xffff_ffff, 32, "the broadcast address"),
    (0xf000_0000, 4, "a reserved address (240.0.0.0/4)"),
];

/// Why `ip` must not be fetched from, or `None` when it is a public address.
///
/// IPv6 is allow-listed: only global unicast (2000::/3) passes, minus its special ranges, plus
/// the forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4), which are judged by that
/// IPv4 address.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_blocked(v4),
        IpAddr::V6(v6) => v6_blocked(v6),
    }
}

fn v4_blocked(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    V4_BLOCKED
        .iter()
        .find(|(net, len, _)| {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            n & mask == *net
        })
        .map(|(_, _, why)| *why)
}

fn v6_blocked(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let n = u128::from(ip);
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if n == 0 {
        return Some("the unspecified address (::)");
    }
    if n == 1 {
        return Some("the loopback address (::1)");
    }
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return v4_blocked(embedded(s[6], s[7]))
            .map(|_| "an IPv4-mapped address (::ffff:0:0/96) of a non-public IPv4 address");
    }
    if s[..6] == [0; 6] {
        return Some("an IPv4-compatible address (::/96, deprecated)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_blocked(embedded(s[6], s[7]))
            .map(|_| "a NAT64 address (64:ff9b::/96) of a non-public IPv4 address");
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("a local-use NAT64 address (64:ff9b:1::/48)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("a unique local address (fc00::/7)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("a link-local address (fe80::/10)");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("a site-local address (fec0::/10)");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("a multicast address (ff00::/8)");
    }
    if s[0] & 0xe000 != 0x2000 {
        return Some("not a global unicast address (outside 2000::/3)");
    }
    if s[0] == 0x2001 && s[1] & 0xfe00 == 0 {
        return Some("an IETF protocol assignment (2001::/23: Teredo, benchmarking, ORCHID)");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("a documentation address (2001:db8::/32)");
    }
    if s[0] == 0x3fff && s[1] & 0xf000 == 0 {
        return Some("a documentation address (3fff::/20)");
    }
    if s[0] == 0x2002 {
        return v4_blocked(embedded(s[1], s[2]))
            .map(|_| "a 6to4 address (2002::/16) of a non-public IPv4 address");
    }
    None
}

// ---------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------

/// A URL's host, after numeric forms have been decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A lowercase DNS name (ASCII; IDNs must come as punycode).
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A parsed http(s) URL, in the canonical form sent to ureq and reported as `final_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: Host,
    port: u16,
    /// Path and query, starting with `/`; the fragment is dropped (it is never sent).
    path: String,
}

impl Target {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = match &self.host {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.to_string(),
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            format!("{scheme}://{host}{}", self.path)
        } else {
            format!("{scheme}://{host}:{}{}", self.port, self.path)
        }
    }
}

/// Why a URL cannot be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlError {
    /// Not a usable http(s) URL.
    Invalid(String),
    /// A literal address that is not public.
    Blocked(String),
}

impl UrlError {
    /// 400 for the caller's URL. In a redirect, a blocked address is still 400 (the page asked
    /// for something it may not have), while an unusable `Location` is the remote's fault: 502.
    fn failure(self, redirect: bool) -> Failure {
        match self {
            UrlError::Blocked(m) => {
                let m = if redirect {
                    format!("redirect refused: {m}")
                } else {
                    m
                };
                Failure::new(400, m)
            }
            UrlError::Invalid(m) if redirect => Failure::new(
                502,
                format!("the remote redirected to an unusable URL: {m}"),
            ),
            UrlError::Invalid(m) => Failure::new(400, m),
        }
    }
}

fn invalid(m: impl Into<String>) -> UrlError {
    UrlError::Invalid(m.into())
}

/// Parses an absolute http(s) URL, decoding the host the way a resolver would and refusing
/// literal non-public addresses at once.
fn parse_url(raw: &str) -> Result<Target, UrlError> {
    let url = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if url.len() > MAX_URL_LEN {
        return Err(invalid(format!("url is longer than {MAX_URL_LEN} bytes")));
    }
    if url.chars().any(|c| c.is_control()) {
        return Err(invalid("url contains control characters"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("url must be an absolute http:// or https:// URL"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(invalid("only http and https URLs can be fetched")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(invalid(
            "URLs with a user name or password (user@host) are refused",
        ));
    }
    let (host_part, port_part) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("unclosed [ in the url's host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("junk after the IPv6 address in the url"))?,
            ),
        };
        (HostPart::V6(inside), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (HostPart::Other(h), Some(p)),
            None => (HostPart::Other(authority), None),
        }
    };
    let port = match port_part {
        None | Some("") => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse() {
            Ok(port) if port > 0 => port,
            _ => return Err(invalid(format!("bad port {p:?} in the url"))),
        },
        Some(p) => return Err(invalid(format!("bad port {p:?} in the url"))),
    };
    let host = match host_part {
        HostPart::V6(inside) => {
            if inside.contains('%') {
                return Err(invalid("IPv6 zone ids (%…) are not accepted"));
            }
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| invalid(format!("bad IPv6 address [{inside}] in the url")))?;
            Host::Ip(IpAddr::V6(ip))
        }
        HostPart::Other(h) => parse_host(h)?,
    };
    if let Host::Ip(ip) = &host {
        if let Some(reason) = blocked_reason(*ip) {
            return Err(UrlError::Blocked(format!(
                "blocked address: {ip} is {reason}; /v1/fetch only reaches public addresses"
            )));
        }
    }
    let without_fragment = tail.split('#').next().unwrap_or("");
    let path = if without_fragment.starts_with('/') {
        encode_path(without_fragment)
    } else {
        format!("/{}", encode_path(without_fragment))
    };
    Ok(Target {
        https,
        host,
        port,
        path,
    })
}

enum HostPart<'a> {
    V6(&'a str),
    Other(&'a str),
}

/// A host that is not in brackets: an IPv4 number form, or a DNS name.
fn parse_host(raw: &str) -> Result<Host, UrlError> {
    if raw.is_empty() {
        return Err(invalid("the url has no host"));
    }
    if !raw.is_ascii() {
        return Err(invalid(
            "internationalised host names must be given in punycode (xn--…)",
        ));
    }
    let host = raw.to_ascii_lowercase();
    if let Some(v4) = parse_ipv4_forms(&host) {
        return v4.map(|ip| Host::Ip(IpAddr::V4(ip)));
    }
    // One trailing dot (fully qualified) means the same name.
    let name = host.strip_suffix('.').unwrap_or(&host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(invalid(format!("bad host name {raw:?} in the url")));
    }
    Ok(Host::Name(name.to_string()))
}

/// IPv4 in any form `inet_aton` and browsers accept: 1 to 4 parts, each decimal, octal
/// (leading 0) or hex (0x); the last part fills the remaining bytes (`127.1`, `2130706433`).
/// `None` when the host is a name (its last label is not a number); `Some(Err)` when it ends in
/// a number but is no valid address (browsers refuse those too).
fn parse_ipv4_forms(host: &str) -> Option<Result<Ipv4Addr, UrlError>> {
    let h = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = h.split('.').collect();
    let last = parts.last()?;
    if !looks_numeric(last) {
        return None;
    }
    let bad = || {
        Some(Err(invalid(format!(
            "bad IPv4 address {host:?} in the url"
        ))))
    };
    if parts.len() > 4 {
        return bad();
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for p in &parts {
        match ipv4_number(p) {
            Some(n) => numbers.push(n),
            None => return bad(),
        }
    }
    let (last, init) = match numbers.split_last() {
        Some(split) => split,
        None => return bad(),
    };
    if init.iter().any(|&n| n > 255) {
        return bad();
    }
    let room = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << room {
        return bad();
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    u32::try_from(value)
        .ok()
        .map(|v| Ok(Ipv4Addr::from(v)))
        .or_else(bad)
}

/// True for a label that a resolver would read as a number (decimal digits, or 0x + hex).
fn looks_numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .map(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
    !label.is_empty() && (label.bytes().all(|b| b.is_ascii_digit()) || hex == Some(true))
}

/// One part of a numeric IPv4 form; `None` if it is not a valid number.
fn ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if part.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    // Anything past 2^32 is invalid anyway; parsing as u64 from at most 20 digits is exact.
    u64::from_str_radix(digits, radix).ok()
}

/// Percent-encodes the bytes of a path or query that may not appear raw in a request line.
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves a `Location` value against the URL it came from (RFC 3986 §5.2).
fn join_url(base: &Target, location: &str) -> Result<String, UrlError> {
    let loc = location.trim();
    if loc.len() > MAX_URL_LEN {
        return Err(invalid("Location is too long"));
    }
    let has_scheme = loc
        .find(':')
        .map(|i| {
            let scheme = &loc[..i];
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or(false);
    let base_url = base.url();
    let origin = &base_url[..base_url.len() - base.path.len()];
    let scheme = if base.https { "https" } else { "http" };
    let base_path = base.path.split('?').next().unwrap_or("/");
    if has_scheme {
        return Ok(loc.to_string());
    }
    let joined = if let Some(rest) = loc.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    } else if loc.starts_with('/') {
        loc.to_string()
    } else if loc.starts_with('?') {
        format!("{base_path}{loc}")
    } else if loc.is_empty() || loc.starts_with('#') {
        base.path.clone()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{loc}")
    };
    let (path, query) = match joined.split_once('?') {
        Some((p, q)) => (p.to_string(), format!("?{q}")),
        None => (joined.clone(), String::new()),
    };
    Ok(format!("{origin}{}{query}", remove_dot_segments(&path)))
}

/// RFC 3986 §5.2.4, on a path starting with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

// ---------------------------------------------------------------------------------------------
// Stripping
// ---------------------------------------------------------------------------------------------

/// Elements dropped whole by [`strip_html`] (`<script type="application/ld+json">` excepted).
const DROPPED: &[&str] = &["script", "style", "svg", "noscript"];

/// Removes what a reader (or a model) of a page has no use for: `<script>` elements (but keeps
/// `<script type="application/ld+json">`, which holds the page's structured data), `<style>`,
/// `<svg>` (nesting-aware), `<noscript>` and comments. Tag names are matched case-insensitively;
/// quoted attribute values are skipped properly, so a `>` or `<script` inside one does not
/// confuse it. Malformed input never panics: an element or comment left open runs to the end
/// and is dropped.
///
/// This is a cleaner for reading, not a sanitizer: the result is not safe to render in a browser.
pub fn strip_html(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0; // html[..copied] is already in `out` or deliberately dropped
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        let lt = i + off;
        if b[lt..].starts_with(b"<!--") {
            out.push_str(&html[copied..lt]);
            let end = comment_end(b, lt);
            copied = end;
            i = end;
            continue;
        }
        if lt + 1 < b.len() && b[lt + 1].is_ascii_alphabetic() {
            let name_end = lt
                + 1
                + b[lt + 1..]
                    .iter()
                    .position(|&c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
                    .unwrap_or(b.len() - lt - 1);
            let name = &html[lt + 1..name_end];
            let tag = scan_tag(b, name_end);
            let dropped = DROPPED.iter().find(|d| d.eq_ignore_ascii_case(name));
            match dropped {
                Some(&"script") if is_json_ld(&tag.attrs) => {
                    // Kept verbatim, through its end tag.
                    let end = raw_text_end(b, tag.end, "script");
                    i = end;
                }
                Some(&d) => {
                    out.push_str(&html[copied..lt]);
                    let end = if d == "svg" {
                        if tag.self_closing {
                            tag.end
                        } else {
                            svg_end(b, tag.end)
                        }
                    } else {
                        raw_text_end(b, tag.end, d)
                    };
                    copied = end;
                    i = end;
                }
                None => i = tag.end,
            }
            continue;
        }
        i = lt + 1;
    }
    out.push_str(&html[copied..]);
    out
}

/// A start tag as scanned: where it ends (after `>`), its attributes, whether it ends in `/>`.
struct Tag<'a> {
    end: usize,
    attrs: Vec<(&'a [u8], &'a [u8])>,
    self_closing: bool,
}

/// Scans the attributes of a start tag from `i` (just after its name) to its `>`, honouring
/// quoted values. An unterminated tag ends at the end of input.
fn scan_tag(b: &[u8], mut i: usize) -> Tag<'_> {
    let mut attrs = Vec::new();
    let mut self_closing = false;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Tag {
                end: b.len(),
                attrs,
                self_closing,
            };
        }
        match b[i] {
            b'>' => {
                return Tag {
                    end: i + 1,
                    attrs,
                    self_closing,
                }
            }
            b'/' => {
                self_closing = b.get(i + 1) == Some(&b'>');
                i += 1;
                continue;
            }
            _ => {}
        }
        self_closing = false;
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !b"/>=".contains(&b[i]) {
            i += 1;
        }
        // A name can start with `=` (HTML allows it); take at least one byte so we advance.
        if i == name_start {
            i += 1;
        }
        let name = &b[name_start..i];
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && i > name_start && b[name_start] != b'=' {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let value = match b.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    let start = j + 1;
                    let close = b[start..]
                        .iter()
                        .position(|&c| c == q)
                        .map_or(b.len(), |p| start + p);
                    j = (close + 1).min(b.len());
                    &b[start..close]
                }
                _ => {
                    let start = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    &b[start..j]
                }
            };
            attrs.push((name, value));
            i = j;
        } else {
            attrs.push((name, &b[0..0]));
        }
    }
}

fn is_json_ld(attrs: &[(&[u8], &[u8])]) -> bool {
    attrs.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case(b"type")
            && value
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/ld+json")
    })
}

/// Where a comment starting at `lt` ends (after `-->`, `--!>`, or the short forms `<!-->` and
/// `<!--->`); the end of input if it never closes.
fn comment_end(b: &[u8], lt: usize) -> usize {
    let body = lt + 4;
    if b[body..].starts_with(b">") {
        return body + 1;
    }
    if b[body..].starts_with(b"->") {
        return body + 2;
    }
    let mut k = body;
    while k < b.len() {
        if b[k..].starts_with(b"-->") {
            return k + 3;
        }
        if b[k..].starts_with(b"--!>") {
            return k + 4;
        }
        k += 1;
    }
    b.len()
}

/// True if `b[i..]` is `</name` followed by a tag-name terminator (or the end).
fn is_end_tag(b: &[u8], i: usize, name: &str) -> bool {
    let n = name.len();
    b.len() >= i + 2 + n
        && b[i] == b'<'
        && b[i + 1] == b'/'
        && b[i + 2..i + 2 + n].eq_ignore_ascii_case(name.as_bytes())
        && b.get(i + 2 + n)
            .is_none_or(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>')
}

/// Past the `>` of the end tag at `i` (or the end of input).
fn past_end_tag(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'>')
        .map_or(b.len(), |p| i + p + 1)
}

/// Where a raw-text element (script, style, noscript) whose content starts at `i` ends: past
/// the first `</name…>`, as in a browser; the end of input if it is never closed.
fn raw_text_end(b: &[u8], mut i: usize, name: &str) -> usize {
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off;
        if is_end_tag(b, i, name) {
            return past_end_tag(b, i);
        }
        i += 1;
    }
    b.len()
}

/// Where an `<svg>` element whose content starts at `i` ends, counting nested `<svg>`s.
fn svg_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1usize;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off;
        if is_end_tag(b, i, "svg") {
            i = past_end_tag(b, i);
            depth -= 1;
            if depth == 0 {
                return i;
            }
            continue;
        }
        if b[i..].starts_with(b"<!--") {
            i = comment_end(b, i);
            continue;
        }
        let is_svg_start = b.len() >= i + 4
            && b[i + 1..i + 4].eq_ignore_ascii_case(b"svg")
            && b.get(i + 4)
                .is_none_or(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>');
        if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
            let name_len = b[i + 1..]
                .iter()
                .position(|&c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
                .unwrap_or(b.len() - i - 1);
            let tag = scan_tag(b, i + 1 + name_len);
            if is_svg_start && !tag.self_closing {
                depth += 1;
            }
            i = tag.end;
            continue;
        }
        i += 1;
    }
    b.len()
}

// ---------------------------------------------------------------------------------------------
// Debug-build test seam (see the module doc)
// ---------------------------------------------------------------------------------------------

#[cfg(debug_assertions)]
mod seam {
    use super::blocked_reason;
    use std::collections::HashMap;
    use std::net::{IpAddr, SocketAddr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub const DNS_VAR: &str = "CLAUDEGATE_TEST_FETCH_DNS";
    pub const ROUTE_VAR: &str = "CLAUDEGATE_TEST_FETCH_ROUTE";

    /// Fake DNS answers and approved-address routes, from the environment.
    #[derive(Default)]
    pub struct Seam {
        /// name → (successive answers, lookups so far)
        dns: HashMap<String, (Vec<Vec<IpAddr>>, AtomicUsize)>,
        /// approved public address → loopback address to connect to instead
        routes: Vec<(IpAddr, IpAddr)>,
    }

    impl Seam {
        pub fn from_env() -> Seam {
            let dns = std::env::var(DNS_VAR).unwrap_or_default();
            let routes = std::env::var(ROUTE_VAR).unwrap_or_default();
            let seam = Seam::parse(&dns, &routes);
            if !seam.dns.is_empty() || !seam.routes.is_empty() {
                crate::base::log::info(&format!(
                    "fetch test seam active (debug build): {} fake DNS names, {} routes",
                    seam.dns.len(),
                    seam.routes.len()
                ));
            }
            seam
        }

        pub fn parse(dns: &str, routes: &str) -> Seam {
            let mut seam = Seam::default();
            for entry in dns.split(';').filter(|e| !e.trim().is_empty()) {
                let Some((name, answers)) = entry.split_once('=') else {
                    continue;
                };
                let answers: Vec<Vec<IpAddr>> = answers
                    .split('|')
                    .map(|a| {
                        a.split(',')
                            .filter_map(|ip| ip.trim().parse().ok())
                            .collect()
                    })
                    .collect();
                seam.dns.insert(
                    name.trim().to_ascii_lowercase(),
                    (answers, AtomicUsize::new(0)),
                );
            }
            for entry in routes.split(',').filter(|e| !e.trim().is_empty()) {
                let parsed = entry.split_once('=').and_then(|(a, b)| {
                    Some((a.trim().parse().ok()?, b.trim().parse::<IpAddr>().ok()?))
                });
                match parsed {
                    // Only an address the guard would approve may be re-routed, and only to
                    // this machine's loopback.
                    Some((from, to)) if blocked_reason(from).is_none() && to.is_loopback() => {
                        seam.routes.push((from, to))
                    }
                    _ => crate::base::log::info(&format!("{ROUTE_VAR}: ignoring {entry:?}")),
                }
            }
            seam
        }

        /// The next fake answer for `name`, if it is listed (the last answer repeats).
        pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
            let (answers, count) = self.dns.get(name)?;
            let n = count.fetch_add(1, Ordering::SeqCst);
            let answer = answers
                .get(n)
                .or(answers.last())
                .cloned()
                .unwrap_or_default();
            crate::base::log::info(&format!(
                "fetch test seam: DNS lookup #{} of {name} -> {answer:?}",
                n + 1
            ));
            Some(answer)
        }

        /// Where to connect for an address the guard has approved.
        pub fn route(&self, addr: SocketAddr) -> SocketAddr {
            match self.routes.iter().find(|(from, _)| *from == addr.ip()) {
                Some((_, to)) if blocked_reason(addr.ip()).is_none() => {
                    SocketAddr::new(*to, addr.port())
                }
                _ => addr,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        blocked_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn blocked_ipv4_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.55",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "203.0.114.1",
            "223.255.255.255",
        ] {
            assert!(!blocked(ip), "{ip} should be public");
        }
        assert_eq!(
            blocked_reason("255.255.255.255".parse().unwrap()),
            Some("the broadcast address")
        );
    }

    #[test]
    fn blocked_ipv6_ranges() {
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "5f00::1",
            "1::1",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
        for ip in [
            "2606:4700::1",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "3fff:1000::1",
        ] {
            assert!(!blocked(ip), "{ip} should be public");
        }
    }

    fn host_of(url: &str) -> Result<Host, UrlError> {
        parse_url(url).map(|t| t.host)
    }

    #[test]
    fn numeric_host_forms_are_decoded_and_refused() {
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://0x7F000001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://017700000001/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0x/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]:8080/",
            "HTTP://127.000.000.001:80/",
        ] {
            assert!(
                matches!(parse_url(url), Err(UrlError::Blocked(_))),
                "{url}: {:?}",
                parse_url(url)
            );
        }
        assert_eq!(
            host_of("http://0x08.0x08.010.8/"),
            Ok(Host::Ip("8.8.8.8".parse().unwrap()))
        );
        assert_eq!(
            host_of("http://134744072/"),
            Ok(Host::Ip("8.8.8.8".parse().unwrap()))
        );
        for bad in [
            "http://256.0.0.1/",
            "http://1.2.3.4.5/",
            "http://08.1.1.1/",
            "http://4294967296/",
            "http://1..2/",
            "http://foo.0x1/",
            "http://1.2.65536/",
            "http://99999999999999999999999/",
        ] {
            assert!(
                matches!(parse_url(bad), Err(UrlError::Invalid(_))),
                "{bad}: {:?}",
                parse_url(bad)
            );
        }
    }

    #[test]
    fn url_parsing() {
        let t = parse_url("https://Example.COM:8443/a b?q=ü#frag").unwrap();
        assert_eq!(t.host, Host::Name("example.com".into()));
        assert_eq!(t.port, 8443);
        assert_eq!(t.url(), "https://example.com:8443/a%20b?q=%C3%BC");
        let t = parse_url("http://[2606:4700::1]:8443").unwrap();
        assert_eq!(t.url(), "http://[2606:4700::1]:8443/");
        assert_eq!(t.host.to_string(), "2606:4700::1");
        assert_eq!(
            parse_url("http://example.com:80?x").unwrap().url(),
            "http://example.com/?x"
        );
        assert_eq!(
            parse_url("https://example.com.").unwrap().url(),
            "https://example.com/"
        );
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com",
            "http://user:pw@example.com/",
            "http://user@example.com/",
            "http:///path",
            "http://exa mple.com/",
            "http://example.com:0/",
            "http://example.com:65536/",
            "http://example.com:8x/",
            "http://[fe80::1%eth0]/",
            "http://[::1/",
            "http://bücher.de/",
            "http://a\\b.com/",
            "http://ex%61mple.com/",
            "http://example.com/a\nb",
            "gopher://example.com/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be refused");
        }
        // Every accepted URL must be one ureq accepts too.
        for ok in [
            "http://example.com/a%zz[]{}|?q=<>\"",
            "http://a_b.example/~x",
        ] {
            let url = parse_url(ok).unwrap().url();
            assert!(url.parse::<Uri>().is_ok(), "{url}");
        }
    }

    #[test]
    fn joining_redirects() {
        let base = parse_url("https://example.com/a/b/c?q=1").unwrap();
        let j = |loc: &str| join_url(&base, loc).unwrap();
        assert_eq!(j("http://other.org/x"), "http://other.org/x");
        assert_eq!(j("//cdn.example.net/y"), "https://cdn.example.net/y");
        assert_eq!(j("/root"), "https://example.com/root");
        assert_eq!(j("d"), "https://example.com/a/b/d");
        assert_eq!(j("../d?z=2"), "https://example.com/a/d?z=2");
        assert_eq!(j("./"), "https://example.com/a/b/");
        assert_eq!(j("../../../../e"), "https://example.com/e");
        assert_eq!(j("?n=3"), "https://example.com/a/b/c?n=3");
        assert_eq!(j(""), "https://example.com/a/b/c?q=1");
        let odd = parse_url("http://example.com:8080/").unwrap();
        assert_eq!(join_url(&odd, "x").unwrap(), "http://example.com:8080/x");
        let v6 = parse_url("http://[2606:4700::1]:81/p/q").unwrap();
        assert_eq!(join_url(&v6, "r").unwrap(), "http://[2606:4700::1]:81/p/r");
        // The joined URL is parsed (and guarded) again.
        let to_private = join_url(&base, "http://10.0.0.1/").unwrap();
        assert!(matches!(parse_url(&to_private), Err(UrlError::Blocked(_))));
        assert!(parse_url(&j("ftp://x/")).is_err());
    }

    #[test]
    fn strip_drops_scripts_styles_svg_comments() {
        let html = r#"<html><head><SCRIPT src="a.js"></SCRIPT><script>if (a<b) alert("</scrip")</script>
<script type="application/ld+json">{"@type":"Product"}</script>
<script type = 'Application/LD+JSON ' >{"b":1}</script>
<style media="x>y">p{}</style><NoScript><img src=x></NoScript></head>
<body><!-- hidden --><p title="<script>">Hi</p><svg><svg><g/></svg><text>inner</text></svg>
<Svg/><p>after</p><!--><p>short</p><!---><b>x</b></body></html>"#;
        let out = strip_html(html);
        assert!(
            out.contains(r#"<script type="application/ld+json">{"@type":"Product"}</script>"#),
            "{out}"
        );
        assert!(out.contains(r#"{"b":1}</script>"#), "{out}");
        for gone in [
            "a.js", "alert", "p{}", "<img", "hidden", "inner", "<g/>", "<svg", "<Svg", "<style",
            "NoScript",
        ] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        for kept in [
            r#"<p title="<script>">Hi</p>"#,
            "<p>after</p>",
            "<p>short</p>",
            "<b>x</b>",
            "</body></html>",
        ] {
            assert!(out.contains(kept), "{kept} missing from {out}");
        }
    }

    #[test]
    fn strip_survives_malformed_html() {
        assert_eq!(strip_html("a<script>never closed"), "a");
        assert_eq!(strip_html("a<!-- never closed"), "a");
        assert_eq!(strip_html("a<svg><svg></svg>"), "a");
        assert_eq!(strip_html("a<style"), "a");
        assert_eq!(
            strip_html("<p class=\"unterminated>x"),
            "<p class=\"unterminated>x"
        );
        assert_eq!(strip_html("x < y <"), "x < y <");
        assert_eq!(strip_html("<script/>x</script>y"), "y");
        assert_eq!(strip_html("<scripts>k</scripts>"), "<scripts>k</scripts>");
        assert_eq!(strip_html("é<style>ü</style>ö"), "éö");
        assert_eq!(strip_html("<script>a</script >b"), "b");
        // Whatever the input, no panic and valid UTF-8 out.
        let samples = [
            "<",
            "<!",
            "<!-",
            "<!--",
            "<a",
            "<a b",
            "<a b=",
            "<a b='",
            "</",
            "<svg",
            "<script type=",
            "<svg/",
            "ü<",
            "<ü",
        ];
        for a in samples {
            for b in samples {
                let _ = strip_html(&format!("{a}{b}"));
                let _ = strip_html(&format!("{a}x{b}y"));
            }
        }
    }

    #[test]
    fn strip_fuzz_never_panics() {
        // A deterministic pseudo-random mix of the tokens the stripper reacts to.
        let tokens = [
            "<",
            ">",
            "/",
            "\"",
            "'",
            "=",
            " ",
            "<!--",
            "-->",
            "--!>",
            "<script",
            "</script",
            "<SVG",
            "</svg",
            "<style",
            "</STYLE",
            "<noscript",
            "type=application/ld+json",
            "a",
            "é",
            "<p",
            "</p>",
            "/>",
            "\u{1F600}",
            "-",
            "!",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let mut doc = String::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                doc.push_str(tokens[(seed >> 33) as usize % tokens.len()]);
            }
            let out = strip_html(&doc);
            assert!(out.len() <= doc.len(), "{doc:?} grew");
        }
    }

    #[test]
    fn content_kinds_and_decoding() {
        assert_eq!(kind_of("text/html; charset=utf-8"), Kind::Html);
        assert_eq!(kind_of(""), Kind::Html);
        assert_eq!(kind_of("Application/XHTML+XML"), Kind::Html);
        assert_eq!(kind_of("text/plain"), Kind::Text);
        assert_eq!(kind_of("application/ld+json"), Kind::Text);
        assert_eq!(kind_of("application/rss+xml"), Kind::Text);
        assert_eq!(kind_of("image/png"), Kind::Binary);
        assert_eq!(kind_of("application/pdf"), Kind::Binary);
        assert_eq!(kind_of("application/octet-stream"), Kind::Binary);
        assert_eq!(
            decode(
                b"caf\xe9 \x80".to_vec(),
                "text/html; charset=ISO-8859-1",
                false
            ),
            "café €"
        );
        let mut cut = "aé".as_bytes().to_vec();
        cut.pop();
        assert_eq!(decode(cut.clone(), "text/html", true), "a");
        assert_eq!(decode(cut, "text/html", false), "a\u{FFFD}");
        let mut euro = "x€".as_bytes().to_vec();
        euro.truncate(3);
        assert_eq!(decode(euro, "", true), "x");
        assert_eq!(decode("x€".as_bytes().to_vec(), "", true), "x€");
    }

    #[test]
    fn buckets_refuse_after_rpm() {
        let f = Fetcher::new(FetchConfig {
            enabled: true,
            rpm: 2,
            max_bytes: 1000,
            timeout_ms: 1000,
            max_redirects: 1,
        });
        let key = |l: &str| KeyInfo {
            label: l.into(),
            rpm: None,
            daily: None,
        };
        assert!(f.take_token(&key("a")).is_ok());
        assert!(f.take_token(&key("a")).is_ok());
        let refused = f.take_token(&key("a")).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused
            .headers
            .iter()
            .any(|(n, v)| *n == "Retry-After" && v.parse::<u64>().unwrap() >= 1));
        assert!(f.take_token(&key("b")).is_ok());
    }

    #[test]
    fn pinned_resolver_only_answers_for_its_host() {
        let p = Pinned {
            host: "example.com".into(),
            addrs: vec!["93.184.215.14:443".parse().unwrap()],
        };
        let cfg = ureq::config::Config::default();
        let t = NextTimeout::default();
        let ok = p
            .resolve(&"https://example.com/x".parse().unwrap(), &cfg, t)
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert!(p
            .resolve(&"https://evil.com/".parse().unwrap(), &cfg, t)
            .is_err());
        let v6 = Pinned {
            host: "2606:4700::1".into(),
            addrs: vec!["[2606:4700::1]:8443".parse().unwrap()],
        };
        assert!(v6
            .resolve(&"http://[2606:4700::1]:8443/".parse().unwrap(), &cfg, t)
            .is_ok());
    }

    #[cfg(debug_assertions)]
    #[test]
    fn seam_only_routes_public_to_loopback() {
        let s = seam::Seam::parse(
            "a.test=1.2.3.4;b.test=1.2.3.4|127.0.0.1",
            "1.2.3.4=127.0.0.2,10.0.0.1=127.0.0.1,8.8.8.8=1.1.1.1",
        );
        let to = |a: &str| s.route(a.parse().unwrap()).to_string();
        assert_eq!(to("1.2.3.4:81"), "127.0.0.2:81");
        assert_eq!(to("10.0.0.1:81"), "10.0.0.1:81");
        assert_eq!(to("8.8.8.8:81"), "8.8.8.8:81");
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(s.lookup("b.test"), Some(vec![ip("1.2.3.4")]));
        assert_eq!(s.lookup("b.test"), Some(vec![ip("127.0.0.1")]));
        assert_eq!(s.lookup("b.test"), Some(vec![ip("127.0.0.1")]));
        assert_eq!(s.lookup("c.test"), None);
    }
}
