//! The static aarch64 release binary (what a Raspberry Pi runs), under qemu-user, against the
//! mock upstream: `--version`, `keys add`, `serve`, and one streamed `/v1/messages`.
//!
//! `make test-arm` (and `make test` wherever qemu is installed, which CI ensures) builds
//! `target/aarch64-unknown-linux-musl/release/claudegate` and sets:
//! - `CLAUDEGATE_ARM_BIN`: that binary;
//! - `CLAUDEGATE_QEMU`: the qemu-user that runs it (`qemu-aarch64-static` or `qemu-aarch64`);
//!   empty on an aarch64 host, where the binary runs directly.
//!
//! Without `CLAUDEGATE_ARM_BIN` each test prints a loud SKIPPED banner and passes, so a plain
//! `cargo test` works anywhere. With it, anything missing is a failure.

use crate::common::gate::{listening, merge, unix_now, upstream_config, TempDir};
use crate::common::mock_upstream::{parse_sse, MockUpstream, DEFAULT_TEXT_CHUNKS};
use serde_json::{json, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Under qemu everything is slower; generous, but bounded.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run the aarch64 binary: `qemu BIN …`, or `BIN …` on an aarch64 host.
struct Arm {
    bin: PathBuf,
    qemu: Option<PathBuf>,
}

/// The aarch64 binary and its runner from the environment, or a SKIPPED banner and `None`.
fn arm(test: &str) -> Option<Arm> {
    let bin = match std::env::var_os("CLAUDEGATE_ARM_BIN") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => {
            crate::common::run::skip(
                test,
                "CLAUDEGATE_ARM_BIN is not set; `make test-arm` builds the aarch64 binary and \
                 runs it under qemu (`make test` does when qemu-user is installed)",
                false,
            );
            return None;
        }
    };
    assert!(
        bin.is_file(),
        "{test}: CLAUDEGATE_ARM_BIN={} does not exist; run `make test-arm`",
        bin.display()
    );
    assert_aarch64_elf(&bin);
    let qemu = std::env::var_os("CLAUDEGATE_QEMU")
        .filter(|q| !q.is_empty())
        .map(PathBuf::from);
    assert!(
        qemu.is_some() || std::env::consts::ARCH == "aarch64",
        "{test}: CLAUDEGATE_QEMU must name qemu-aarch64(-static) on a {} host \
         (Debian: apt-get install qemu-user-static)",
        std::env::consts::ARCH
    );
    Some(Arm { bin, qemu })
}

/// The file must be a 64-bit little-endian ELF for AArch64 (e_machine 183), so these tests can
/// never pass by running the native binary.
fn assert_aarch64_elf(bin: &Path) {
    let mut head = [0u8; 20];
    std::fs::File::open(bin)
        .and_then(|mut f| f.read_exact(&mut head))
        .unwrap_or_else(|e| panic!("read {}: {e}", bin.display()));
    assert_eq!(
        &head[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        bin.display()
    );
    assert_eq!(head[4], 2, "{} is not a 64-bit ELF", bin.display());
    assert_eq!(head[5], 1, "{} is not little-endian", bin.display());
    let machine = u16::from_le_bytes([head[18], head[19]]);
    assert_eq!(machine, 183, "{} is not an AArch64 binary", bin.display());
}

impl Arm {
    /// `[qemu] BIN`, with a clean environment for claudegate's config lookup.
    fn command(&self) -> Command {
        let mut c = match &self.qemu {
            Some(q) => {
                let mut c = Command::new(q);
                c.arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        c.env_remove("CLAUDEGATE_CONFIG")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null());
        c
    }

    /// Runs `BIN --config CONFIG ARGS…` to completion.
    fn cli(&self, config: &Path, args: &[&str]) -> Output {
        self.command()
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .expect("run the aarch64 claudegate")
    }

    /// Starts `BIN --config CONFIG serve` and waits for its `listening on` line.
    fn serve(&self, config: &Path) -> Server {
        let mut child = self
            .command()
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the aarch64 claudegate serve");
        match listening(&mut child, START_TIMEOUT) {
            Ok((addr, log)) => Server { child, addr, log },
            Err(log) => {
                child.kill().ok();
                panic!(
                    "the aarch64 claudegate did not start within {START_TIMEOUT:?}; log:\n{}",
                    log.lock().unwrap()
                )
            }
        }
    }
}

/// A running aarch64 `serve`; killed on drop (killing qemu-user ends the emulated program).
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A temp dir with `config.json` (port 0, private data dir, upstream and token endpoint on the
/// mock) and a stored OAuth login valid for 8 hours, the data dir at mode 0700.
fn setup(dir: &TempDir, mock: &MockUpstream) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.path().join("data");
    let mut config = json!({"port": 0, "data_dir": data.to_string_lossy()});
    merge(&mut config, &upstream_config(&mock.url()));
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let login = json!({
        "kind": "oauth",
        "access_token": "sk-ant-oat01-arm",
        "refresh_token": "sk-ant-ort01-arm",
        "expires_at": unix_now() + 8 * 3600,
        "email": "user@example.com",
        "source": "manual",
    });
    std::fs::write(
        data.join("token.json"),
        serde_json::to_vec_pretty(&login).unwrap(),
    )
    .unwrap();
    config_path
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

#[test]
fn arm_version() {
    let Some(arm) = arm("arm_version") else {
        return;
    };
    let out = arm
        .command()
        .arg("--version")
        .output()
        .expect("run --version");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "--version failed: {out:?}; is {:?} a working qemu-aarch64?",
        arm.qemu
    );
    assert_eq!(
        stdout.trim(),
        crate::dist::expected_version(),
        "--version output"
    );
}

#[test]
fn arm_keys_add_serve_and_stream() {
    let Some(arm) = arm("arm_keys_add_serve_and_stream") else {
        return;
    };
    let started = Instant::now();
    let mock = MockUpstream::start();
    let dir = TempDir::new();
    let config = setup(&dir, &mock);

    // keys add: the secret alone on stdout (SHA-256 and getrandom on aarch64).
    let out = arm.cli(&config, &["keys", "add", "arm"]);
    assert!(
        out.status.success(),
        "keys add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.trim().to_string();
    assert_eq!(
        stdout.lines().count(),
        1,
        "keys add prints one line: {stdout:?}"
    );
    assert!(
        key.starts_with("cgk_") && key.len() == 4 + 64,
        "unexpected key shape: {key:?}"
    );

    let mut server = arm.serve(&config);

    let health = agent()
        .get(&server.url("/health"))
        .call()
        .expect("GET /health");
    assert_eq!(health.status().as_u16(), 200);

    // A wrong key is refused and nothing goes upstream (the key check runs on aarch64 too).
    let wrong = format!("cgk_{}", "0".repeat(64));
    let r = agent()
        .post(&server.url("/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", &wrong)
        .header("anthropic-version", "2023-06-01")
        .send(r#"{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[]}"#)
        .expect("POST with a wrong key");
    assert_eq!(r.status().as_u16(), 401, "a wrong key must get 401");
    assert_eq!(
        mock.count(),
        0,
        "nothing may reach the upstream without a key"
    );

    // One streamed /v1/messages, the way Claude Code sends it.
    let body = r#"{"model":"claude-sonnet-4-6","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut r = agent()
        .post(&server.url("/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("user-agent", "claude-cli/2.1.330 (external, cli)")
        .header("x-app", "cli")
        .send(body)
        .expect("POST /v1/messages");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.body_mut().read_to_string().expect("read the stream");
    assert_eq!(status, 200, "stream: {text}\nlog:\n{}", server.log());
    assert!(
        content_type.starts_with("text/event-stream"),
        "content-type {content_type:?}"
    );

    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "events: {names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "events: {names:?}");
    for needed in [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(names.contains(&needed), "no {needed} in {names:?}");
    }
    let reply: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .filter_map(|e| e.data_json()["delta"]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(reply, DEFAULT_TEXT_CHUNKS.concat());

    // The upstream saw the stored login, never the client's key.
    let seen = mock.requests_to("/v1/messages");
    assert_eq!(seen.len(), 1, "upstream requests: {seen:?}");
    let upstream = &seen[0];
    assert_eq!(
        upstream.header("authorization"),
        Some("Bearer sk-ant-oat01-arm")
    );
    assert_eq!(upstream.header("x-api-key"), None, "the client key leaked");
    let sent: Value = upstream.json();
    assert_eq!(sent["model"], "claude-sonnet-4-6");
    assert_eq!(sent["stream"], true);

    assert!(server.alive(), "server died; log:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains(&key), "the key appeared in the log");
    assert!(
        !log.contains("sk-ant-oat01-arm"),
        "the token appeared in the log"
    );
    // Straight to fd 2 so `make test-arm` shows how long qemu took.
    let note = format!(
        "arm: keys add + serve + streamed /v1/messages under {} took {:.1}s\n",
        arm.qemu
            .as_deref()
            .map_or("no emulator".into(), |q| q.display().to_string()),
        started.elapsed().as_secs_f64()
    );
    std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes()).ok();
}
