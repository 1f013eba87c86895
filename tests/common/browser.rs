//! A real headless browser for GUI tests: Debian's Chromium driven over WebDriver by
//! Debian's chromedriver (`scripts/setup.sh` installs both), with the flags that work on a
//! machine without outside network and a fresh profile per browser.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{free_port, Proc};

/// Where Debian puts them; `CHROMIUM_BIN` / `CHROMEDRIVER_BIN` override.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Without the background-networking flags Chromium keeps trying to reach Google's hosts,
/// which a closed network refuses.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1000",
];

pub struct Browser {
    session: String,
    base: String,
    agent: ureq::Agent,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

fn bin(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.is_file(),
        "{} not found: install Debian's chromium and chromium-driver (./scripts/test.sh does), or set {var}",
        path.display()
    );
    path
}

impl Browser {
    pub fn start(log_dir: &Path) -> Browser {
        let chromium = bin("CHROMIUM_BIN", CHROMIUM);
        let driver = bin("CHROMEDRIVER_BIN", CHROMEDRIVER);
        let port = free_port();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}"));
        let driver = Proc::spawn(cmd, log_dir.join("chromedriver.log"));
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        super::wait_until("chromedriver", Duration::from_secs(20), || {
            agent.get(&format!("{base}/status")).call().is_ok()
        });
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut b = Browser { session: String::new(), base, agent, _driver: driver, _profile: profile };
        let created = b.post("/session", &caps);
        b.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}; chromedriver log:\n{}", b._driver.log_text()))
            .to_string();
        b
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let mut r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.post(&self.session_path("/url"), &json!({"url": url}));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.post(&self.session_path("/execute/sync"), &json!({"script": script, "args": []}))
    }

    /// Waits until the GUI says it finished rendering `page` (`<body data-ready>`).
    pub fn wait_ready(&self, page: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self.eval("return document.body.dataset.ready || ''");
            if ready == page {
                return;
            }
            if Instant::now() >= deadline {
                let error = self.eval("return document.getElementById('error').textContent");
                panic!("page {page:?} not ready (ready={ready}, error={error})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The text of the first element matching `css` ("" when none).
    pub fn text(&self, css: &str) -> String {
        let script = format!("const e = document.querySelector({}); return e ? e.textContent : ''", json!(css));
        self.eval(&script).as_str().unwrap_or("").to_string()
    }

    /// Console errors and failed loads since the last call (WebDriver's browser log).
    pub fn console_errors(&self) -> Vec<String> {
        let entries = self.post(&self.session_path("/se/log"), &json!({"type": "browser"}));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let r = self.agent.get(&format!("{}{}", self.base, self.session_path("/screenshot"))).call();
        let text = r.unwrap().body_mut().read_to_string().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD.decode(v["value"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(&format!("{}{}", self.base, self.session_path(""))).call();
        }
    }
}
