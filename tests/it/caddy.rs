//! The TLS front door: claudegate behind a real Caddy (Debian's `caddy`, installed by
//! `make test`), set up the way README's "Expose it" says, and `trusted_proxies`.
//!
//! Caddy runs with the recipe measured on these machines: `tls internal` with `local_certs`
//! (its own throwaway CA, trusted by the test's client only, never by the system),
//! `skip_install_trust`, `admin off`, `auto_https disable_redirects`, `default_bind 127.0.0.1`,
//! a private `HOME`/`XDG_DATA_HOME`/`XDG_CONFIG_HOME` per test, so nothing reaches the internet
//! or outlives the test (Caddy is killed on drop, its directory removed).
//!
//! What Caddy does with a client's own `X-Forwarded-For` (2.6, no `trusted_proxies` of its
//! own): it drops it and sends the address it accepted the connection from. So a "client" is
//! made distinct the only way that counts, by its real source address: the loopback net is
//! all of 127.0.0.0/8, and a client bound to 127.0.0.2 and one bound to 127.0.0.3 are two
//! peers to Caddy (Python's `socket.create_connection(source_address=…)`; std cannot bind
//! before connecting). Without Caddy, a client that sends `X-Forwarded-For` straight to
//! claudegate must not be able to pick its own address.

use crate::common::gate::*;
use crate::common::mock_upstream::*;
use crate::common::run::{run_with_deadline, skip_unless_required};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Caddy serving `https://localhost:PORT` in front of one backend, killed on drop.
struct Caddy {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Caddy {
    /// Starts Caddy in front of `backend`; `None` (after the skip-or-fail rule) when `caddy`
    /// is not installed. Three tries: another process may take a [`free_port`] before Caddy
    /// binds it.
    fn start(backend: SocketAddr, test: &str) -> Option<Caddy> {
        let mut why = String::new();
        for _ in 0..3 {
            match Caddy::try_start(backend) {
                Ok(c) => return Some(c),
                Err(None) => {
                    let why = "caddy is not installed (`make test` installs Debian's caddy)";
                    skip_unless_required(test, why);
                    return None;
                }
                Err(Some(e)) => why = e,
            }
        }
        panic!("{test}: Caddy did not start: {why}");
    }

    /// One attempt: `Err(None)` if there is no `caddy`, `Err(Some(log))` if it did not come up.
    fn try_start(backend: SocketAddr) -> Result<Caddy, Option<String>> {
        let dir = TempDir::new();
        let (http_port, port) = (free_port(), free_port());
        let caddyfile = format!(
            "{{\n\tadmin off\n\tauto_https disable_redirects\n\tskip_install_trust\n\
             \tlocal_certs\n\thttp_port {http_port}\n\thttps_port {port}\n\
             \tdefault_bind 127.0.0.1\n}}\n\
             https://localhost:{port} {{\n\ttls internal\n\treverse_proxy {backend}\n}}\n"
        );
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, caddyfile).unwrap();
        let log = std::fs::File::create(dir.path().join("caddy.log")).unwrap();
        let spawned = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
            Err(e) => return Err(Some(format!("cannot run caddy: {e}"))),
        };
        let mut caddy = Caddy { child, dir, port };
        // Ready when /health answers through it over TLS (the certificate is issued at start).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if caddy.root().is_file() {
                if let Ok(r) = caddy.agent().get(&caddy.url("/health")).call() {
                    if r.status() == 200 {
                        return Ok(caddy);
                    }
                }
            }
            if let Ok(Some(status)) = caddy.child.try_wait() {
                return Err(Some(format!("caddy exited ({status}):\n{}", caddy.log())));
            }
            if Instant::now() > deadline {
                return Err(Some(format!("not ready in 15 s:\n{}", caddy.log())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The root of Caddy's own CA: the only certificate the test's clients trust.
    fn root(&self) -> PathBuf {
        self.dir
            .path()
            .join("data/caddy/pki/authorities/local/root.crt")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// An HTTPS client that trusts Caddy's root and nothing else.
    fn agent(&self) -> ureq::Agent {
        let pem = std::fs::read(self.root()).unwrap_or_default();
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into()
    }

    /// `POST /v1/messages` through Caddy with `key` (streamed when `stream`).
    fn messages(&self, key: &str, stream: bool) -> ureq::http::Response<ureq::Body> {
        let body = json!({
            "model": "claude-sonnet-4-6", "max_tokens": 32, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        });
        self.agent()
            .post(&self.url("/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("HTTPS request through Caddy")
    }

    /// `GET /v1/models` through Caddy `n` times, each on a new connection from `source` (a
    /// loopback address), sending `x-api-key: key` and, if given, the client's own
    /// `X-Forwarded-For`; returns the statuses.
    fn get_models_from(&self, source: &str, key: &str, xff: Option<&str>, n: u32) -> Vec<u16> {
        const CLIENT: &str = r#"
import json, socket, ssl, sys
port, root, source, key, xff, n = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=root)
extra = f"X-Forwarded-For: {xff}\r\n" if xff else ""
statuses = []
for _ in range(int(n)):
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10, source_address=(source, 0))
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall((f"GET /v1/models HTTP/1.1\r\nHost: localhost:{port}\r\nx-api-key: {key}\r\n"
                   f"{extra}Connection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    statuses.append(int(data.split(b" ", 2)[1]))
print(json.dumps(statuses))
"#;
        let run = run_with_deadline(
            Command::new("python3")
                .args(["-c", CLIENT, &self.port.to_string()])
                .arg(self.root())
                .args([source, key, xff.unwrap_or(""), &n.to_string()]),
            Duration::from_secs(30),
        );
        run.assert_success("the python3 HTTPS client");
        serde_json::from_str(run.stdout.trim()).expect("statuses as JSON")
    }
}

/// The gate behind Caddy: Caddy (on this host) is its one trusted proxy, and three failed
/// authentications a minute are allowed per client address.
fn gate_behind_caddy(mock: &MockUpstream) -> (Gate, String) {
    logged_in(
        &mock.url(),
        json!({
            "trusted_proxies": ["127.0.0.1"],
            "limits": {"auth_failures_per_minute": 3},
        }),
    )
}

#[test]
fn https_through_caddy_reaches_the_server() {
    let mock = MockUpstream::start();
    let (gate, key) = gate_behind_caddy(&mock);
    let Some(caddy) = Caddy::start(gate.addr, "caddy::https_through_caddy_reaches_the_server")
    else {
        return;
    };
    mock.enqueue(
        "/v1/messages",
        Reply::message("claude-sonnet-4-6", "over caddy"),
    );
    let mut r = caddy.messages(&key, false);
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["content"][0]["text"], "over caddy", "{v}");
    assert_eq!(mock.requests_to("/v1/messages").len(), 1);
    // Without the key, through Caddy: the server's own JSON error, unchanged.
    let mut r = caddy
        .agent()
        .get(&caddy.url("/v1/models"))
        .call()
        .expect("HTTPS request through Caddy");
    assert_eq!(r.status(), 401);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert!(v["error"]["message"].as_str().is_some(), "{v}");
}

#[test]
fn a_stream_through_caddy_arrives_event_by_event() {
    let mock = MockUpstream::start();
    let (gate, key) = gate_behind_caddy(&mock);
    let Some(caddy) = Caddy::start(
        gate.addr,
        "caddy::a_stream_through_caddy_arrives_event_by_event",
    ) else {
        return;
    };
    // Ten events (with a ping), 150 ms apart, each stamped with the moment the mock wrote it.
    mock.enqueue(
        "/v1/messages",
        Reply::sse_text("claude-sonnet-4-6", &["a", "b", "c", "d"])
            .delay_ms(150)
            .stamp_emitted_at(),
    );
    let r = caddy.messages(&key, true);
    assert_eq!(r.status(), 200);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    assert!(
        content_type.is_some_and(|c| c.starts_with("text/event-stream")),
        "{content_type:?}"
    );
    // (data line, unix micros when it arrived here)
    let mut arrived: Vec<(Value, u64)> = Vec::new();
    let mut reader = BufReader::new(r.into_body().into_reader());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).expect("JSON event data");
            arrived.push((v, unix_micros()));
        }
        line.clear();
    }
    assert_eq!(arrived.len(), 10, "{arrived:?}");
    let stamp = |v: &Value| v["emitted_at_us"].as_u64().expect("stamped by the mock");
    let (first, first_arrived) = &arrived[0];
    let (last, _) = &arrived[9];
    assert_eq!(first["type"], "message_start");
    assert_eq!(last["type"], "message_stop");
    // The first event was here before the mock had even written the last one: nothing on
    // the way (claudegate, Caddy) held the stream back.
    assert!(
        *first_arrived < stamp(last),
        "the first event arrived {} µs after the last was sent",
        first_arrived - stamp(last)
    );
    let text: String = arrived
        .iter()
        .filter_map(|(v, _)| v.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "abcd");
}

#[test]
fn behind_caddy_the_throttle_counts_each_real_client() {
    let mock = MockUpstream::start();
    let (gate, key) = gate_behind_caddy(&mock);
    let test = "caddy::behind_caddy_the_throttle_counts_each_real_client";
    let Some(caddy) = Caddy::start(gate.addr, test) else {
        return;
    };
    // The clients bound to their own source addresses are python3's (`make test` has it: the
    // e2e clients' install needs it too).
    if Command::new("python3").arg("--version").output().is_err() {
        skip_unless_required(test, "python3 is not installed");
        return;
    }
    // Client A (127.0.0.2) guesses keys, claiming a new address each time: Caddy drops its
    // header and says 127.0.0.2, so A is still refused after three failures.
    let a = (1..=4)
        .flat_map(|i| {
            caddy.get_models_from("127.0.0.2", "guess", Some(&format!("198.51.100.{i}")), 1)
        })
        .collect::<Vec<_>>();
    assert_eq!(a, [401, 401, 401, 429], "client A through Caddy");
    // Client B (127.0.0.3) is another peer of Caddy: its own count, not A's, although both
    // reach claudegate from Caddy's one address.
    assert_eq!(
        caddy.get_models_from("127.0.0.3", "guess", None, 1),
        [401],
        "client B is not throttled for A's failures"
    );
    // With its key, B is served, and the audit line names B, not Caddy.
    assert_eq!(caddy.get_models_from("127.0.0.3", &key, None, 1), [200]);
    mock.enqueue("/v1/messages", Reply::message("claude-sonnet-4-6", "hi"));
    let r = caddy.messages(&key, false);
    assert_eq!(r.status(), 200);
    let audit = gate.setup.data_dir().join("audit.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let ips = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let ips: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["ip"].as_str().map(str::to_string))
            .collect();
        if ips.len() >= 2 || Instant::now() > deadline {
            break ips;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // B's /v1/models, then this test's own request (from 127.0.0.1, which Caddy passes on
    // as the client's address: every hop is trusted, so the furthest one is the client).
    assert_eq!(ips, ["127.0.0.3", "127.0.0.1"], "audit log ips");
}

/// The same four guesses straight to the gate from 127.0.0.1, each claiming another address
/// in `X-Forwarded-For`.
fn guesses_claiming_other_addresses(gate: &Gate) -> Vec<u16> {
    (1..=4)
        .map(|i| {
            let xff = format!("198.51.100.{i}");
            get(
                &gate.url("/v1/models"),
                &[("x-api-key", "guess"), ("X-Forwarded-For", &xff)],
            )
            .status
        })
        .collect()
}

#[test]
fn a_client_cannot_pick_its_address_with_x_forwarded_for() {
    // Proxies are trusted, but not this client (127.0.0.1): its header is ignored, so its four
    // guesses all count against 127.0.0.1, whatever address each one claims.
    let (gate, _) = Gate::start_with_key(json!({
        "trusted_proxies": ["10.0.0.0/8", "127.0.0.2", "::1"],
        "limits": {"auth_failures_per_minute": 3},
    }));
    assert_eq!(
        guesses_claiming_other_addresses(&gate),
        [401, 401, 401, 429]
    );
    // And with the default (no trusted proxies) just the same.
    let (gate, _) = Gate::start_with_key(json!({"limits": {"auth_failures_per_minute": 3}}));
    assert_eq!(
        guesses_claiming_other_addresses(&gate),
        [401, 401, 401, 429]
    );
}

#[test]
fn from_a_trusted_proxy_the_forwarded_address_is_the_client() {
    // The same guesses from a peer that is a trusted proxy: each claimed address is a
    // different client, counted on its own.
    let (gate, _) = Gate::start_with_key(json!({
        "trusted_proxies": ["127.0.0.0/8"],
        "limits": {"auth_failures_per_minute": 3},
    }));
    assert_eq!(
        guesses_claiming_other_addresses(&gate),
        [401, 401, 401, 401]
    );
    // One forwarded client guessing again and again is throttled; the right-most address
    // that is not a proxy is the client (here a proxy chain: client, then 127.0.0.9).
    let guess = |xff: &str| {
        get(
            &gate.url("/v1/models"),
            &[("x-api-key", "guess"), ("X-Forwarded-For", xff)],
        )
        .status
    };
    assert_eq!(guess("203.0.113.7"), 401);
    assert_eq!(guess("203.0.113.7, 127.0.0.9"), 401);
    assert_eq!(
        guess("1.2.3.4, 203.0.113.7"),
        401,
        "the left-most is the client's own say"
    );
    assert_eq!(guess("203.0.113.7"), 429);
    // A malformed header counts against the peer itself.
    assert_eq!(guess("not-an-address"), 401);
}
