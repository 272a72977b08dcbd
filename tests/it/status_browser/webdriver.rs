//! A small WebDriver client for the status page tests: starts Debian's `chromedriver` on a free
//! loopback port, opens one headless Chromium session, and speaks the W3C WebDriver HTTP API
//! (<https://www.w3.org/TR/webdriver2/>) with `ureq`. Every wait is bounded; dropping the
//! [`Browser`] ends the session and kills the driver it started.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::gate::TempDir;

/// Where Debian's `chromium` and `chromium-driver` packages put them (`make test` installs both).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The element reference key of W3C WebDriver.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags that work headless on these machines: without the background-networking ones
/// Chromium tries to reach Google, and its connections are refused.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

/// `None` (and why) when Chromium or chromedriver is not installed.
pub fn missing() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| {
            format!(
                "{p} is missing; install Debian's chromium and chromium-driver (`make test` does)"
            )
        })
}

/// A chromedriver process and one browser session in it.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub fn start() -> Browser {
        let profile = TempDir::new();
        // Chromium's own scratch directories (`org.chromium.Chromium.scoped_dir.*`, now and
        // then left behind when the browser is ended) and what it writes under the home
        // (`~/.cache/dconf`) go inside the test's temp dir too.
        let tmp = profile.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("create the browser's TMPDIR");
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .env("TMPDIR", &tmp)
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let port = driver_port(&mut driver);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ));
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`. Panics with the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let resp = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b.to_string()),
            None if method == "DELETE" => self.agent.delete(&url).call(),
            None => self.agent.get(&url).call(),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status < 400, "{method} {path}: {status} {text}");
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({"url": url})));
    }

    /// The address bar's URL.
    pub fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its result.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The first element matching `css`, as a WebDriver reference.
    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap_or_default().to_string()
    }

    /// Types `text` into the element matching `css` (as a person would, key by key).
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/clear")),
            Some(json!({})),
        );
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/value")),
            Some(json!({"text": text})),
        );
    }

    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/click")),
            Some(json!({})),
        );
    }

    /// Waits up to `within` for `script` to return something truthy; that value, or a panic
    /// naming `what` with the page's text.
    pub fn wait_for(&self, what: &str, script: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.js(script, json!([]));
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                let text = self.js("return document.body.innerText", json!([]));
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Emulates a viewport of `width`×`height` CSS pixels (a phone, a desktop) through the
    /// DevTools protocol, which chromedriver relays.
    pub fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "POST",
            &self.s("/goog/cdp/execute"),
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
                }}),
            ),
        );
    }

    /// A PNG of the viewport, written to `path` (directories created).
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.call("GET", &self.s("/screenshot"), None);
        let png = claudegate::base::base64::decode(b64.as_str().unwrap_or_default())
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The page's console messages so far (chromedriver's `browser` log).
    pub fn console(&self) -> Vec<String> {
        let v = self.call("POST", &self.s("/se/log"), Some(json!({"type": "browser"})));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The browser's cookies for the current page.
    pub fn cookies(&self) -> Value {
        self.call("GET", &self.s("/cookie"), None)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}{}", self.base, self.s(""));
            self.agent.delete(&url).call().ok();
        }
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}

/// Reads chromedriver's "started successfully on port N" line (10 s at most).
fn driver_port(driver: &mut Child) -> u16 {
    let stdout = driver
        .stdout
        .take()
        .expect("chromedriver's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        // Keep reading to the end so the driver never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let (Some(tx), Ok(p)) = (tx.take(), port.parse::<u16>()) {
                    tx.send(p).ok();
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(p) => p,
        Err(_) => {
            driver.kill().ok();
            panic!("chromedriver did not say which port it listens on");
        }
    }
}

/// `target/status-page/NAME`: where the tests leave their screenshots.
pub fn artifact(name: &str) -> PathBuf {
    crate::common::run::repo()
        .join("target/status-page")
        .join(name)
}
