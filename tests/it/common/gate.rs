//! Starts the real `claudegate` binary for integration tests and talks HTTP to it.
//!
//! [`Gate::start`] writes a temp config (data dir inside a fresh temp dir, port 0 so the OS
//! picks a free port), runs `claudegate serve`, and waits for the "listening on" log line to
//! learn the address. Everything the server writes to stderr is collected, so tests can assert
//! on logs (and that no secret ever appears in them). Dropping a `Gate` kills the process.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test (built by cargo for integration tests).
pub const BIN: &str = env!("CARGO_BIN_EXE_claudegate");

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("cg-test-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Merges `overrides` into `base` (objects recursively).
pub fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// A temp dir holding `config.json` and `data/`.
pub struct Setup {
    pub dir: TempDir,
    pub config_path: PathBuf,
}

impl Setup {
    /// Writes a config with a private data dir and port 0, plus `overrides`.
    pub fn new(overrides: Value) -> Setup {
        let dir = TempDir::new();
        // The upstream's model list and the usage endpoint are read only where a test asks
        // (`models.refresh_s`, `oauth.usage_refresh_s`): a read at start would be one more
        // upstream request for every test that counts them.
        let mut config = json!({
            "port": 0,
            "data_dir": dir.path().join("data").to_string_lossy(),
            "upstream": {"base_url": "http://127.0.0.1:9"},
            "models": {"refresh_s": 0},
            "oauth": {"usage_refresh_s": 0},
        });
        merge(&mut config, &overrides);
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Setup { dir, config_path }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stores a login as `data_dir/token.json` (what `claudegate login` would write, mode
    /// 0600 included).
    pub fn store_login(&self, token: Value) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data_dir();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = data.join("token.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&token).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The stored login, as JSON.
    pub fn stored_login(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.data_dir().join("token.json")).unwrap()).unwrap()
    }

    /// `claudegate --config <this config> ARGS…`, stdin closed, not started yet.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("CLAUDEGATE_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `claudegate --config <this config> ARGS…` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run claudegate")
    }

    /// Mints a key through the CLI and returns the secret.
    pub fn add_key(&self, label: &str, extra: &[&str]) -> String {
        let mut args = vec!["keys", "add", label];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "keys add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "keys add prints exactly one line: {stdout:?}"
        );
        lines[0].to_string()
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A stored OAuth login valid for `secs` more seconds (negative = already expired).
pub fn oauth_login(access: &str, refresh: &str, secs: i64) -> Value {
    json!({
        "kind": "oauth",
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": (unix_now() as i64 + secs).max(0),
        "email": "user@example.com",
        "account_uuid": "00000000-0000-4000-8000-000000000001",
        "source": "manual",
    })
}

/// Config pointing claudegate's upstream and token endpoint at `mock_url` (the model list
/// fetch and the usage reads off, as in [`Setup::new`]).
pub fn upstream_config(mock_url: &str) -> Value {
    json!({
        "upstream": {"base_url": mock_url},
        "oauth": {"token_url": format!("{mock_url}/v1/oauth/token"), "usage_refresh_s": 0},
        "models": {"refresh_s": 0},
    })
}

/// The access token of the login [`logged_in`] stores (valid for 8 h).
pub const STORED_ACCESS_TOKEN: &str = "sk-ant-oat01-stored";
/// … and its refresh token.
pub const STORED_REFRESH_TOKEN: &str = "sk-ant-ort01-stored";

/// What [`logged_in`] starts, not started yet (for a test that starts it its own way, e.g.
/// with extra environment): a config for the upstream at `mock_url` with `extra` merged in,
/// a stored login ([`STORED_ACCESS_TOKEN`]) and one key labelled `app`, returned too. The key
/// has the admin scope, so a test may read `/admin/accounts` and `/metrics` with it; tests of
/// scopes mint their own app keys.
pub fn logged_in_setup(mock_url: &str, extra: Value) -> (Setup, String) {
    let mut config = upstream_config(mock_url);
    merge(&mut config, &extra);
    let setup = Setup::new(config);
    setup.store_login(oauth_login(
        STORED_ACCESS_TOKEN,
        STORED_REFRESH_TOKEN,
        8 * 3600,
    ));
    let key = setup.add_key("app", &["--admin"]);
    (setup, key)
}

/// A running claudegate in front of the upstream at `mock_url`, with a stored login (access
/// token [`STORED_ACCESS_TOKEN`], valid for 8 h) and one key labelled `app`; `extra` is merged
/// into the config. Returns the gate and the key.
pub fn logged_in(mock_url: &str, extra: Value) -> (Gate, String) {
    let (setup, key) = logged_in_setup(mock_url, extra);
    (Gate::spawn(setup), key)
}

/// A loopback port free at the moment: the OS picks it and the listener is dropped at once.
/// Nothing listens on it now (a test may use it as a closed port), but another process may take
/// it before the caller binds it, so a caller that binds it retries or tolerates that.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The first account in `/admin/accounts`, read with the admin `key` (the one the tests' single
/// stored login makes).
pub fn accounts(gate: &Gate, key: &str) -> Value {
    let r = get(&gate.url("/admin/accounts"), &[("x-api-key", key)]);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["accounts"][0].clone()
}

/// A running claudegate.
pub struct Gate {
    pub setup: Setup,
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Gate {
    /// Starts `serve` on a config with `overrides`, with one key labelled `app` (admin scope,
    /// as in [`logged_in_setup`]) minted first; returns the gate and that key.
    pub fn start_with_key(overrides: Value) -> (Gate, String) {
        let setup = Setup::new(overrides);
        let key = setup.add_key("app", &["--admin"]);
        (Gate::spawn(setup), key)
    }

    /// Starts `serve` for an existing setup and waits until it listens.
    pub fn spawn(setup: Setup) -> Gate {
        Gate::spawn_with_env(setup, &[("NO_PROXY", "127.0.0.1,localhost")])
    }

    /// Like [`Gate::spawn`], with exactly these extra environment variables (no `NO_PROXY`
    /// unless given), for proxy tests.
    pub fn spawn_with_env(setup: Setup, env: &[(&str, &str)]) -> Gate {
        let (child, addr, log) = launch(&setup.config_path, env);
        Gate {
            setup,
            child,
            addr,
            log,
        }
    }

    /// Kills the server and starts it again on the same config and data (new port).
    pub fn restart(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        let (child, addr, log) = launch(
            &self.setup.config_path,
            &[("NO_PROXY", "127.0.0.1,localhost")],
        );
        (self.child, self.addr, self.log) = (child, addr, log);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/PID/status` field in kB (e.g. `VmHWM`, peak resident memory).
    pub fn proc_kb(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends the signal `name` (`TERM`, `INT`, …) to the server, as `kill -NAME PID` does.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits up to `within` for the server to exit: its exit status, or `None` while it runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A GET of /health must answer 200 `{"status":"ok"}`.
    pub fn assert_healthy(&mut self) {
        assert!(self.alive(), "claudegate died; log:\n{}", self.log());
        let r = get(&self.url("/health"), &[]);
        assert_eq!(r.status, 200, "health: {r:?}");
        assert_eq!(r.json()["status"], "ok");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn launch(config_path: &Path, env: &[(&str, &str)]) -> (Child, SocketAddr, Arc<Mutex<String>>) {
    // The server's temp files (the CLI backend's call directories) go inside the test's own
    // temp dir, so they go with it even when the test kills the server mid-call.
    let tmp = config_path.parent().map(|dir| dir.join("tmp"));
    if let Some(tmp) = &tmp {
        std::fs::create_dir_all(tmp).expect("create the server's TMPDIR");
    }
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config_path)
        .arg("serve")
        .env_remove("CLAUDEGATE_CONFIG")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .envs(tmp.iter().map(|t| ("TMPDIR", t.as_os_str())))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn claudegate serve");
    match listening(&mut child, Duration::from_secs(15)) {
        Ok((addr, log)) => (child, addr, log),
        Err(log) => {
            child.kill().ok();
            let log = log.lock().unwrap().clone();
            panic!("claudegate did not start; log:\n{log}");
        }
    }
}

/// A server's stderr, collected as it runs.
pub type Log = Arc<Mutex<String>>;

/// Collects a starting `serve`'s stderr (it must be piped) into a shared log and waits up to
/// `timeout` for its "listening on http://ADDR" line. Returns the address and the log, or
/// the log so far if the line never came.
pub fn listening(child: &mut Child, timeout: Duration) -> Result<(SocketAddr, Log), Log> {
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("serve's stderr is piped");
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                if let Some(tx) = tx.take() {
                    tx.send(addr).ok();
                }
            }
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(a) => Ok((a.parse().expect("listening address"), log)),
        Err(_) => Err(log),
    }
}

/// A response as the tests see it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts an OpenAI-shaped error `{"error":{"message","type","code"}}`.
    pub fn assert_openai_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(v["error"]["type"].is_string(), "{v}");
        assert!(v["error"].get("code").is_some(), "{v}");
        assert!(
            v.get("type").is_none(),
            "OpenAI errors have no top-level type: {v}"
        );
        v
    }

    /// Asserts a relay-shaped error `{"ok":false,"error":"…"}` (`/v1/complete`, `/v1/fetch`).
    pub fn assert_relay_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        assert_eq!(v["ok"], false, "{v}");
        assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    /// Asserts an Anthropic-shaped error `{"type":"error","error":{"type","message"}}`.
    pub fn assert_anthropic_error(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        v
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn to_resp(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    let mut r = r.expect("request failed");
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rq = agent().get(url);
    for (n, v) in headers {
        rq = rq.header(*n, *v);
    }
    to_resp(rq.call())
}

pub fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut rq = agent().post(url).header("content-type", "application/json");
    for (n, v) in headers {
        rq = rq.header(*n, *v);
    }
    to_resp(rq.send(body))
}

/// A response read line by line to its end, for streams and for bodies that may break.
#[derive(Debug, Clone)]
pub struct Lines {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body lines without their line ends.
    pub lines: Vec<String>,
    /// `Ok` when the body ended cleanly (its framing was complete), `Err(why)` when it broke.
    pub end: Result<(), String>,
}

impl Lines {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body lines joined back with `\n`.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// POSTs JSON and reads the answer line by line until it ends or breaks (20 s at most).
pub fn post_lines(url: &str, headers: &[(&str, &str)], body: &str) -> Lines {
    let mut rq = agent().post(url).header("content-type", "application/json");
    for (n, v) in headers {
        rq = rq.header(*n, *v);
    }
    let resp = rq.send(body).expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let (mut lines, mut line) = (Vec::new(), String::new());
    let end = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => lines.push(line.trim_end_matches(['\r', '\n']).to_string()),
            Err(e) => break Err(e.to_string()),
        }
    };
    Lines {
        status,
        headers,
        lines,
        end,
    }
}

/// Any method, for 405 tests.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut rq = ureq::http::Request::builder().method(method).uri(url);
    for (n, v) in headers {
        rq = rq.header(*n, *v);
    }
    let rq = rq.body(()).unwrap();
    to_resp(agent().run(rq))
}

/// Sends raw bytes on a fresh connection and reads until the server closes or `timeout`
/// passes; returns what arrived.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(bytes).ok();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response head from `s` (up to the blank line) and returns the status.
pub fn read_status(s: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace().nth(1)?.parse().ok()
}
