//! Starting the claudegate binary under test: a private config and data directory with a stored
//! login and one key, no request limits (the benchmark measures the proxy, not its guard rails,
//! which still run: every request is authenticated, counted and audited).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http1;
use crate::upstreams::free_port;

/// The binary under test: $CLAUDEGATE_BIN, else the static release build for this machine.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAUDEGATE_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let arch = std::env::consts::ARCH;
    root.join(format!(
        "target/{arch}-unknown-linux-musl/release/claudegate"
    ))
}

pub struct Gate {
    child: Child,
    pub addr: SocketAddr,
    pub key: String,
    pub startup: Duration,
}

/// A prepared data directory and config; `spawn` starts a server on it.
pub struct Setup {
    pub dir: PathBuf,
    config: PathBuf,
    port: u16,
    pub key: String,
}

impl Setup {
    pub fn new(dir: &Path, name: &str, upstream: SocketAddr, workers: u32) -> Setup {
        let dir = dir.join(name);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("bench data dir");
        let port = free_port();
        let config = serde_json::json!({
            "host": "127.0.0.1",
            "port": port,
            "data_dir": data,
            "workers": workers,
            "queue": 256,
            "upstream": {"base_url": format!("http://{upstream}"), "max_retries": 0},
            "limits": {"per_key_rpm": 0, "max_concurrent": 1024, "per_key_concurrent": 1024},
            // The bench upstreams serve one fixed answer: no model list, no usage endpoint to
            // read in the background while requests are timed.
            "models": {"refresh_s": 0},
            "oauth": {"usage_refresh_s": 0},
        });
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = serde_json::json!({
            "kind": "oauth",
            "access_token": "sk-ant-oat01-bench",
            "refresh_token": "sk-ant-ort01-bench",
            "expires_at": now + 8 * 3600,
            "email": "bench@example.com",
            "account_uuid": "00000000-0000-4000-8000-0000000000be",
            "source": "manual",
        });
        std::fs::write(data.join("token.json"), token.to_string()).expect("write token");
        let out = Command::new(binary())
            .arg("--config")
            .arg(&config_path)
            // Admin: the soak reads /metrics with it.
            .args(["keys", "add", "bench", "--admin"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", binary().display()));
        let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(key.starts_with("cgk_"), "keys add printed {key:?}");
        Setup {
            dir,
            config: config_path,
            port,
            key,
        }
    }

    /// Starts the server and measures the time from spawn to the first `/health` answer.
    pub fn spawn(&self) -> Gate {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let log_path = self.dir.join("gate.log");
        let log = std::fs::File::create(&log_path).expect("gate log");
        let started = Instant::now();
        let child = Command::new(binary())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start claudegate");
        let mut gate = Gate {
            child,
            addr,
            key: self.key.clone(),
            startup: Duration::ZERO,
        };
        loop {
            if let Ok(mut c) = http1::Conn::open(addr) {
                if let Ok((200, _)) = c.exchange(http1::HEALTH) {
                    gate.startup = started.elapsed();
                    return gate;
                }
            }
            if let Ok(Some(status)) = gate.child.try_wait() {
                let err = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("claudegate exited ({status}) before answering /health: {err}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "claudegate did not answer /health within 10 s"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Gate {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
