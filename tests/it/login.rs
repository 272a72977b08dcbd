//! `claudegate login`, `logout` and `status`, by running the real binary against the mock
//! OAuth token endpoint: the browser flow (with a real redirect to the local listener), the
//! manual paste, the Claude Code import, long-lived tokens, the one-account rule, and the
//! token file. Every spawned process has its stdin provided or closed and a deadline.

use crate::common::gate::{free_port, Setup, TempDir, BIN};
use crate::common::mock_upstream::{MockUpstream, Reply};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "/v1/oauth/token";
const AUTHORIZE: &str = "https://auth.example/oauth/authorize";
const DEADLINE: Duration = Duration::from_secs(30);
const LONG_LIVED: &str = "sk-ant-oat01-long-lived-0123456789abcdefghij";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Base64url without padding, written independently of the one under test.
fn b64url(bytes: &[u8]) -> String {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(6) {
        bits.push('0');
    }
    bits.as_bytes()
        .chunks(6)
        .map(|c| table[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char)
        .collect()
}

/// Decodes a query string, enough for what the tests send and read.
fn query_map(query: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// A finished process.
#[derive(Debug)]
struct Done {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Done {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    fn failed(&self) -> &Self {
        assert_eq!(self.code, Some(1), "expected exit 1: {self:#?}");
        self
    }

    /// Neither output names any token (the mock's, or the ones the tests planted).
    fn no_secrets(&self) -> &Self {
        for text in [&self.stdout, &self.stderr] {
            assert!(!text.contains("sk-ant-"), "a token was printed: {self:#?}");
        }
        self
    }
}

/// A running `claudegate` whose output is collected as it arrives; killed on drop.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Running {
    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The authorize URL the login printed.
    fn wait_for_url(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found = self
                .stdout
                .lock()
                .unwrap()
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(AUTHORIZE))
                .map(String::from);
            if let Some(url) = found {
                return url;
            }
            if Instant::now() > deadline || !self.alive() {
                let out = self.output();
                self.child.kill().ok();
                panic!("no authorize URL was printed; {out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes one line to stdin and closes it.
    fn send_line(&mut self, line: &str) {
        let mut stdin = self.stdin.take().expect("stdin is piped");
        writeln!(stdin, "{line}").unwrap();
    }

    /// Waits for the exit (closing stdin first); kills the process and fails past `timeout`.
    fn finish(&mut self, timeout: Duration) -> Done {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                self.child.wait().ok();
                panic!("claudegate did not exit in time; {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().ok();
        }
        Done {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A mock token endpoint and a config pointing claudegate's OAuth at it, with the redirect on
/// a free local port.
struct Env {
    mock: MockUpstream,
    setup: Setup,
    port: u16,
}

fn env() -> Env {
    let mock = MockUpstream::start();
    let port = free_port();
    let setup = Setup::new(json!({"oauth": {
        "token_url": format!("{}{TOKEN}", mock.url()),
        "authorize_url": AUTHORIZE,
        "redirect_uri": format!("http://localhost:{port}/callback"),
    }}));
    Env { mock, setup, port }
}

impl Env {
    fn token_path(&self) -> PathBuf {
        self.setup.data_dir().join("token.json")
    }

    fn token(&self) -> Value {
        let text = std::fs::read_to_string(self.token_path()).expect("token.json exists");
        serde_json::from_str(&text).unwrap()
    }

    fn write_token(&self, token: Value) {
        std::fs::create_dir_all(self.setup.data_dir()).unwrap();
        std::fs::write(self.token_path(), token.to_string()).unwrap();
    }

    /// The access token the mock issues as its `n`th token.
    fn mock_access(&self, n: u64) -> String {
        format!("sk-ant-oat01-mock-{}-{n}", self.mock.addr().port())
    }

    fn spawn_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.setup.config_path)
            .args(args)
            .env_remove("CLAUDEGATE_CONFIG")
            // No browser may open during tests.
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("CLAUDEGATE_LOGIN_TIMEOUT_MS", "20000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn claudegate");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Running {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, &[])
    }

    /// Runs to completion with `input` on stdin.
    fn run(&self, args: &[&str], input: &str) -> Done {
        self.run_with(args, input, &[])
    }

    fn run_with(&self, args: &[&str], input: &str, envs: &[(&str, &str)]) -> Done {
        let mut p = self.spawn_with(args, envs);
        if let Some(mut stdin) = p.stdin.take() {
            stdin.write_all(input.as_bytes()).ok();
        }
        p.finish(DEADLINE)
    }

    /// `login --manual`, answering with `answer(state)`.
    fn manual_login(&self, answer: impl Fn(&str) -> String) -> Done {
        let mut p = self.spawn(&["login", "--manual"]);
        let url = p.wait_for_url();
        let q = query_map(url.split_once('?').unwrap().1);
        p.send_line(&answer(&q["state"]));
        p.finish(DEADLINE)
    }
}

/// A GET to the login listener on `port`, the way a browser follows the redirect; retries the
/// connection for up to 3 s while the listener starts. Returns the status and the body.
fn callback_get(port: u16, target: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("login listener not reachable: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).ok();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

#[test]
fn browser_login_catches_the_redirect() {
    let e = env();
    let mut p = e.spawn(&["login"]);
    let url = p.wait_for_url();
    let (base, query) = url.split_once('?').unwrap();
    assert_eq!(base, AUTHORIZE);
    let q = query_map(query);
    assert_eq!(q["code"], "true");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(
        q["redirect_uri"],
        format!("http://localhost:{}/callback", e.port)
    );
    assert!(
        query.contains("redirect_uri=http%3A%2F%2Flocalhost%3A"),
        "{query}"
    );
    assert!(q["scope"].contains("user:inference"), "{q:?}");
    assert!(!query.contains(' '), "{query}");
    let (state, challenge) = (q["state"].clone(), q["code_challenge"].clone());
    assert!(state.len() >= 32, "16+ random bytes in hex: {state}");

    // Anything but the redirect for this attempt is answered and ignored.
    assert_eq!(callback_get(e.port, "/favicon.ico").0, 404);
    let (status, body) = callback_get(e.port, "/callback?code=good-code&state=not-this-one");
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        callback_get(e.port, &format!("/callback?state={state}")).0,
        400
    );
    assert_eq!(callback_get(e.port, "/callback?code=good-code").0, 400);
    assert!(
        p.alive(),
        "a wrong state must not end the login; {}",
        p.output()
    );
    assert!(!e.token_path().exists());
    assert!(
        e.mock.requests_to(TOKEN).is_empty(),
        "no code was exchanged"
    );

    let (status, body) = callback_get(e.port, &format!("/callback?code=good-code&state={state}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Login complete"), "{body}");
    let done = p.finish(DEADLINE);
    done.ok().no_secrets();
    assert!(done.stdout.contains("user@example.com"), "{done:#?}");
    assert!(done.stdout.contains("oauth"), "{done:#?}");
    assert!(
        done.stderr.contains("state does not match"),
        "the wrong state was reported: {done:#?}"
    );

    let mode = std::fs::metadata(e.token_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let t = e.token();
    assert_eq!(t["kind"], "oauth");
    assert_eq!(t["source"], "browser");
    assert_eq!(t["access_token"], e.mock_access(1));
    assert_eq!(
        t["refresh_token"],
        format!("sk-ant-ort01-mock-{}-1", e.mock.addr().port())
    );
    assert_eq!(t["email"], "user@example.com");
    assert_eq!(t["account_uuid"], "00000000-0000-4000-8000-00000000a001");
    assert_eq!(t["organization_name"], "Mock Org");
    let expires = t["expires_at"].as_u64().unwrap();
    assert!(expires.abs_diff(now() + 28_800) < 60, "{t}");
    assert!(t["needs_login"].is_null());

    let reqs = e.mock.requests_to(TOKEN);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    let body = reqs[0].json();
    assert_eq!(body["grant_type"], "authorization_code");
    assert_eq!(body["code"], "good-code");
    assert_eq!(body["redirect_uri"], q["redirect_uri"]);
    assert_eq!(body["client_id"], q["client_id"]);
    assert_eq!(body["state"], state);
    let verifier = body["code_verifier"].as_str().unwrap();
    assert!((43..=128).contains(&verifier.len()), "{verifier}");
    assert_eq!(b64url(&Sha256::digest(verifier.as_bytes())), challenge);
}

#[test]
fn browser_login_failures() {
    // The sign-in page reports an error: the login fails at once.
    let e = env();
    let mut p = e.spawn(&["login"]);
    p.wait_for_url();
    let (status, _) = callback_get(
        e.port,
        "/callback?error=access_denied&error_description=The+user+said+no",
    );
    assert_eq!(status, 400);
    let done = p.finish(DEADLINE);
    done.failed().no_secrets();
    assert!(done.stderr.contains("access_denied"), "{done:#?}");
    assert!(!e.token_path().exists());
    assert!(e.mock.requests_to(TOKEN).is_empty());

    // The token endpoint refuses the code: the browser and the terminal both hear of it.
    let mut p = e.spawn(&["login"]);
    let url = p.wait_for_url();
    let state = query_map(url.split_once('?').unwrap().1)["state"].clone();
    let (status, body) = callback_get(
        e.port,
        &format!("/callback?code=invalid-code&state={state}"),
    );
    assert_eq!(status, 400);
    assert!(body.contains("Login failed"), "{body}");
    let done = p.finish(DEADLINE);
    done.failed().no_secrets();
    assert!(done.stderr.contains("invalid_grant"), "{done:#?}");
    assert!(done.stderr.contains("HTTP 400"), "{done:#?}");
    assert!(!e.token_path().exists());

    // Nobody comes back: the login times out.
    let mut p = e.spawn_with(&["login"], &[("CLAUDEGATE_LOGIN_TIMEOUT_MS", "300")]);
    let done = p.finish(DEADLINE);
    done.failed();
    assert!(done.stderr.contains("timed out"), "{done:#?}");
    assert!(!e.token_path().exists());

    // The redirect port is taken.
    let _busy = TcpListener::bind(("127.0.0.1", e.port)).unwrap();
    let done = e.run(&["login"], "");
    done.failed();
    assert!(
        done.stderr.contains(&format!("127.0.0.1:{}", e.port)) && done.stderr.contains("--manual"),
        "{done:#?}"
    );
}

#[test]
fn manual_login_takes_the_url_or_code_and_state() {
    let e = env();
    let port = e.port;
    let done = e.manual_login(|state| {
        format!("http://localhost:{port}/callback?code=pasted-url-code&state={state}")
    });
    done.ok().no_secrets();
    let t = e.token();
    assert_eq!(t["source"], "manual");
    assert_eq!(t["access_token"], e.mock_access(1));
    assert_eq!(
        e.mock.requests_to(TOKEN)[0].json()["code"],
        "pasted-url-code"
    );

    e.run(&["logout"], "").ok();
    let done = e.manual_login(|state| format!("  hash-form-code#{state}  "));
    done.ok().no_secrets();
    assert_eq!(e.token()["access_token"], e.mock_access(2));
    let reqs = e.mock.requests_to(TOKEN);
    assert_eq!(reqs[1].json()["code"], "hash-form-code");
    assert_eq!(
        reqs[1].json()["redirect_uri"],
        format!("http://localhost:{port}/callback")
    );

    // A state from another attempt is refused before any exchange.
    e.run(&["logout"], "").ok();
    let done = e.manual_login(|_| "some-code#a-state-from-another-login".into());
    done.failed().no_secrets();
    assert!(
        done.stderr.contains("state does not match") && done.stderr.contains("CSRF"),
        "{done:#?}"
    );
    assert!(!e.token_path().exists());
    assert_eq!(e.mock.requests_to(TOKEN).len(), 2);

    // A bare code, and nothing at all.
    let done = e.manual_login(|_| "just-a-code".into());
    done.failed();
    assert!(done.stderr.contains("code#state"), "{done:#?}");
    let done = e.run(&["login", "--manual"], "");
    done.failed();
    assert!(done.stderr.contains("no input"), "{done:#?}");
    assert!(!e.token_path().exists());
}

#[test]
fn import_from_claude_code() {
    let e = env();
    let home = TempDir::new();
    let claude = home.path().join(".claude");
    std::fs::create_dir_all(&claude).unwrap();
    let creds = claude.join(".credentials.json");
    let access = "sk-ant-oat01-imported-access-0123456789";
    let refresh = "sk-ant-ort01-imported-refresh-0123456789";
    let expires_ms = (now() + 3600) * 1000 + 123;
    std::fs::write(
        &creds,
        json!({"claudeAiOauth": {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": expires_ms,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        home.path().join(".claude.json"),
        json!({"numStartups": 3, "oauthAccount": {
            "emailAddress": "cc@example.com",
            "accountUuid": "acc-cc",
            "organizationUuid": "org-cc",
            "organizationName": "CC Org",
        }})
        .to_string(),
    )
    .unwrap();

    let done = e.run(
        &["login", "--import-claude-code", creds.to_str().unwrap()],
        "",
    );
    done.ok().no_secrets();
    assert!(done.stdout.contains("cc@example.com"), "{done:#?}");
    assert!(
        done.stderr.contains("setup-token") && done.stderr.contains("rotate"),
        "the shared-login warning: {done:#?}"
    );
    let t = e.token();
    assert_eq!(t["kind"], "oauth");
    assert_eq!(t["source"], "claude-code");
    assert_eq!(t["access_token"], access);
    assert_eq!(t["refresh_token"], refresh);
    assert_eq!(t["expires_at"], expires_ms / 1000);
    assert_eq!(t["scopes"], "user:inference user:profile");
    assert_eq!(t["email"], "cc@example.com");
    assert_eq!(t["account_uuid"], "acc-cc");
    assert_eq!(t["organization_uuid"], "org-cc");
    assert_eq!(t["organization_name"], "CC Org");
    assert!(e.mock.requests().is_empty(), "an import talks to no server");

    // The default path is ~/.claude/.credentials.json.
    e.run(&["logout"], "").ok();
    let home_str = home.path().to_str().unwrap();
    let done = e.run_with(
        &["login", "--import-claude-code"],
        "",
        &[("HOME", home_str)],
    );
    done.ok().no_secrets();
    assert_eq!(e.token()["access_token"], access);

    // A missing or broken file is a clear error.
    e.run(&["logout"], "").ok();
    let missing = home.path().join("nowhere/.credentials.json");
    let done = e.run(
        &["login", "--import-claude-code", missing.to_str().unwrap()],
        "",
    );
    done.failed();
    assert!(
        done.stderr.contains("no Claude Code login") && done.stderr.contains("nowhere"),
        "{done:#?}"
    );
    std::fs::write(
        &creds,
        format!("{{\"claudeAiOauth\": {{\"accessToken\": \"{access}\""),
    )
    .unwrap();
    let done = e.run(
        &["login", "--import-claude-code", creds.to_str().unwrap()],
        "",
    );
    done.failed().no_secrets();
    assert!(done.stderr.contains("not valid JSON"), "{done:#?}");
    std::fs::write(&creds, r#"{"other": {}}"#).unwrap();
    let done = e.run(
        &["login", "--import-claude-code", creds.to_str().unwrap()],
        "",
    );
    done.failed();
    assert!(done.stderr.contains("claudeAiOauth"), "{done:#?}");
    assert!(!e.token_path().exists());
}

#[test]
fn long_lived_token() {
    let e = env();
    for junk in ["", "   ", "short", "two words that are long enough"] {
        let done = e.run(&["login", "--token", junk], "");
        done.failed();
        assert!(done.stderr.contains("setup-token"), "{junk:?}: {done:#?}");
    }
    let done = e.run(
        &[
            "login",
            "--token",
            "sk-ant-ort01-a-refresh-token-0123456789",
        ],
        "",
    );
    done.failed().no_secrets();
    assert!(done.stderr.contains("refresh token"), "{done:#?}");
    assert!(!e.token_path().exists());

    let done = e.run(&["login", "--token", LONG_LIVED], "");
    done.ok().no_secrets();
    assert!(done.stdout.contains("long_lived"), "{done:#?}");
    assert!(done.stdout.contains("unknown account"), "{done:#?}");
    let t = e.token();
    assert_eq!(t["kind"], "long_lived");
    assert_eq!(t["access_token"], LONG_LIVED);
    assert!(
        t["refresh_token"].is_null() && t["expires_at"].is_null(),
        "{t}"
    );
    assert_eq!(t["source"], "token");

    let done = e.run(&["status"], "");
    done.ok().no_secrets();
    assert!(done.stdout.contains("long_lived"), "{done:#?}");
    assert!(
        done.stdout.contains("state:") && done.stdout.contains(" ok"),
        "{done:#?}"
    );
    assert!(done.stdout.contains("long-lived token"), "{done:#?}");

    // Another long-lived token replaces it; `-` reads the token from stdin.
    let other = "sk-ant-oat01-another-long-lived-token-987654321";
    e.run(&["login", "--token", "-"], &format!("{other}\n"))
        .ok()
        .no_secrets();
    assert_eq!(e.token()["access_token"], other);
    assert!(e.mock.requests().is_empty());
}

#[test]
fn one_account_at_a_time() {
    let e = env();
    e.manual_login(|state| format!("code-a#{state}")).ok();
    let first = std::fs::read(e.token_path()).unwrap();
    assert_eq!(e.token()["access_token"], e.mock_access(1));

    // Another account is refused and nothing changes.
    e.mock.enqueue(
        TOKEN,
        Reply::json(
            200,
            json!({
                "access_token": "sk-ant-oat01-other-account-0123456789",
                "refresh_token": "sk-ant-ort01-other-account-0123456789",
                "expires_in": 3600,
                "account": {"uuid": "00000000-0000-4000-8000-00000000a002", "email_address": "other@example.com"},
                "organization": {"uuid": "org-2", "name": "Other Org"},
            }),
        ),
    );
    let done = e.manual_login(|state| format!("code-b#{state}"));
    done.failed().no_secrets();
    assert!(
        done.stderr.contains("user@example.com")
            && done.stderr.contains("other@example.com")
            && done.stderr.contains("claudegate logout"),
        "{done:#?}"
    );
    assert_eq!(
        std::fs::read(e.token_path()).unwrap(),
        first,
        "file unchanged"
    );

    // A long-lived token cannot be told apart from another account either.
    let done = e.run(&["login", "--token", LONG_LIVED], "");
    done.failed().no_secrets();
    assert!(done.stderr.contains("claudegate logout"), "{done:#?}");
    assert_eq!(
        std::fs::read(e.token_path()).unwrap(),
        first,
        "file unchanged"
    );

    // The same account again: replaced, with fresh tokens, and needs_login cleared.
    let mut t = e.token();
    t["needs_login"] = json!("refresh token rejected");
    e.write_token(t);
    let done = e.manual_login(|state| format!("code-a-again#{state}"));
    done.ok().no_secrets();
    assert!(done.stdout.contains("replaced"), "{done:#?}");
    let t = e.token();
    assert_eq!(t["access_token"], e.mock_access(2));
    assert!(t["needs_login"].is_null(), "{t}");

    // A stored long-lived token (account unknown) blocks an OAuth login before the browser.
    e.run(&["logout"], "").ok();
    e.run(&["login", "--token", LONG_LIVED], "").ok();
    let before = e.mock.requests_to(TOKEN).len();
    let done = e.run(&["login", "--manual"], "");
    done.failed().no_secrets();
    assert!(done.stderr.contains("claudegate logout"), "{done:#?}");
    assert!(
        !done.stdout.contains(AUTHORIZE),
        "refused before the URL: {done:#?}"
    );
    assert_eq!(e.mock.requests_to(TOKEN).len(), before);
    assert_eq!(e.token()["access_token"], LONG_LIVED);
}

/// The `value` column of aligned `key: value` lines starts at the same place on every line.
fn assert_aligned(out: &str) {
    let columns: Vec<usize> = out
        .lines()
        .map(|l| {
            let colon = l
                .find(':')
                .unwrap_or_else(|| panic!("not key: value: {l:?}"));
            colon + 1 + l[colon + 1..].len() - l[colon + 1..].trim_start().len()
        })
        .collect();
    assert!(
        columns.windows(2).all(|w| w[0] == w[1]),
        "not aligned:\n{out}"
    );
}

#[test]
fn logout_and_status() {
    let e = env();
    let done = e.run(&["status"], "");
    done.ok();
    assert!(done.stdout.contains("not logged in"), "{done:#?}");
    let done = e.run(&["logout"], "");
    done.ok();
    assert!(done.stdout.contains("not logged in"), "{done:#?}");

    let access = "sk-ant-oat01-hand-written-access-0123456789";
    let refresh = "sk-ant-ort01-hand-written-refresh-0123456789";
    let token = |expires_at: u64, needs_login: Value| {
        json!({
            "kind": "oauth",
            "access_token": access,
            "refresh_token": refresh,
            "expires_at": expires_at,
            "scopes": "user:inference user:profile",
            "email": "user@example.com",
            "account_uuid": "acc-1",
            "organization_uuid": "org-1",
            "organization_name": "Mock Org",
            "source": "browser",
            "last_refresh": now() - 120,
            "needs_login": needs_login,
        })
    };

    e.write_token(token(now() + 5 * 3600 + 12 * 60 + 30, Value::Null));
    let done = e.run(&["status"], "");
    done.ok().no_secrets();
    let out = &done.stdout;
    assert_aligned(out);
    for want in [
        "state:        ok",
        "user@example.com",
        "acc-1",
        "Mock Org (org-1)",
        "oauth",
        "browser",
        "(in 5h 12m)",
        "(2m ago)",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }

    e.write_token(token(now() - 200, Value::Null));
    let done = e.run(&["status"], "");
    done.ok().no_secrets();
    assert_aligned(&done.stdout);
    assert!(
        done.stdout
            .contains("expired (the server refreshes it on next use)"),
        "{done:#?}"
    );
    assert!(done.stdout.contains("(expired 3m ago)"), "{done:#?}");

    let reason = "refresh token rejected: HTTP 400: invalid_grant";
    e.write_token(token(now() - 200, json!(reason)));
    let done = e.run(&["status"], "");
    done.ok().no_secrets();
    assert!(
        done.stdout.contains(&format!("needs_login: {reason}")),
        "{done:#?}"
    );

    let done = e.run(&["logout"], "");
    done.ok().no_secrets();
    assert!(
        done.stdout
            .contains("logged out (account user@example.com)"),
        "{done:#?}"
    );
    assert!(!e.token_path().exists());
    assert!(e.run(&["status"], "").ok().stdout.contains("not logged in"));

    // A corrupt file: status and login say so (and name the file); logout clears it.
    e.write_token(json!({"kind": "oauth"}));
    let corrupt = std::fs::read(e.token_path()).unwrap();
    let path = e.token_path().display().to_string();
    let done = e.run(&["status"], "");
    done.failed();
    assert!(
        done.stderr.contains(&path) && done.stderr.contains("claudegate logout"),
        "{done:#?}"
    );
    let done = e.run(&["login", "--token", LONG_LIVED], "");
    done.failed().no_secrets();
    assert!(done.stderr.contains(&path), "{done:#?}");
    assert_eq!(
        std::fs::read(e.token_path()).unwrap(),
        corrupt,
        "never overwritten"
    );
    e.run(&["logout"], "").ok();
    assert!(!e.token_path().exists());
}
