//! A small W3C WebDriver client for the console's browser tests: Debian's
//! `chromedriver` driving a headless `chromium`, over plain HTTP/JSON
//! (the protocol is a dozen endpoints; a client crate would bring its own
//! HTTP and TLS stack for them).
//!
//! Chromium runs with the flags `../shared/notes/peers.md` found needed
//! here (no sandbox as root, no GPU, no network beyond loopback) and a
//! fresh profile directory that goes with the [`Browser`].

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The key W3C WebDriver names an element reference with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Start chromedriver on a free loopback port and open a headless
    /// Chromium session with a window of `width`×`height`.
    pub fn start(width: u32, height: u32) -> Browser {
        Self::launch(width, height, false)
    }

    /// [`Browser::start`] for a site whose certificate no CA vouches for
    /// (a test's self-signed one): W3C WebDriver's `acceptInsecureCerts`.
    pub fn start_accepting_any_certificate(width: u32, height: u32) -> Browser {
        Self::launch(width, height, true)
    }

    fn launch(width: u32, height: u32, accept_insecure_certs: bool) -> Browser {
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian's chromium-driver)");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let root = format!("http://127.0.0.1:{port}");
        crate::wait_until("chromedriver answers", Duration::from_secs(30), || {
            agent
                .get(&format!("{root}/status"))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": accept_insecure_certs,
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let mut browser = Browser {
            driver,
            base: String::new(),
            agent,
            _profile: profile,
        };
        let v = browser.call("POST", &format!("{root}/session"), Some(caps));
        let id = v["sessionId"].as_str().expect("a session id").to_owned();
        browser.base = format!("{root}/session/{id}");
        browser
    }

    /// One WebDriver command: its `value`. Panics on a WebDriver error.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        self.try_call(method, url, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"))
    }

    fn try_call(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
        let req = self.agent.request(method, url);
        let resp = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let ok = resp.status() < 400;
        let text = resp.into_string().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].to_string())
        }
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("{}{path}", self.base), body)
    }

    /// Open `url` and wait for it to load.
    pub fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.session("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn title(&self) -> String {
        self.session("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.session("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching the CSS `selector`; panics when none.
    pub fn find(&self, selector: &str) -> Element {
        self.try_find(selector)
            .unwrap_or_else(|| panic!("no {selector:?} on {}:\n{}", self.url(), self.source()))
    }

    pub fn try_find(&self, selector: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": selector});
        let v = self
            .try_call("POST", &format!("{}/element", self.base), Some(body))
            .ok()?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    pub fn find_all(&self, selector: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": selector});
        let v = self.session("POST", "/elements", Some(body));
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn click(&self, e: &Element) {
        self.session("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Click an element that leads to another page (a link, a form's
    /// button) and wait until that page has loaded: the old document is
    /// marked first, so a page that has not changed yet is not taken for
    /// the new one.
    pub fn click_through(&self, e: &Element) {
        self.execute("document.documentElement.dataset.leaving = '1'", json!([]));
        self.click(e);
        crate::wait_until("the next page", Duration::from_secs(30), || {
            let v = self.try_call(
                "POST",
                &format!("{}/execute/sync", self.base),
                Some(json!({
                    "script": "return document.readyState === 'complete' && !document.documentElement.dataset.leaving",
                    "args": [],
                })),
            );
            v.is_ok_and(|v| v == true)
        });
    }

    /// Press `keys` on the keyboard, one after the other, wherever the
    /// focus is (WebDriver's key actions: `\u{E004}` is Tab, `\u{E007}`
    /// Enter).
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                let k = k.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.session(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// The focused element: its text, or its id when it has none.
    pub fn focused(&self) -> String {
        self.execute(
            "const e = document.activeElement; return (e.innerText || '').trim() || e.id",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Type `text` into the element (after what it holds).
    pub fn type_into(&self, e: &Element, text: &str) {
        self.session(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    /// The element's rendered text.
    pub fn text(&self, e: &Element) -> String {
        self.session("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Run `script` in the page (the WebDriver's own context, which the
    /// page's CSP does not govern) with `args`: its result.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Make the window `width`×`height` (a phone's width, a laptop's).
    pub fn resize(&self, width: u32, height: u32) {
        self.session(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Accept the open `confirm()` dialog.
    pub fn accept_alert(&self) {
        self.session("POST", "/alert/accept", Some(json!({})));
    }

    /// The browser's cookies for the current page, HttpOnly ones too.
    pub fn cookies(&self) -> Vec<Value> {
        self.session("GET", "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Save a PNG of the viewport at `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.session("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.base.is_empty() {
            let _ = self.try_call("DELETE", &self.base, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
