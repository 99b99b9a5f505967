//! A page as a person would see it: Debian's headless Chromium loads a local HTML file,
//! driven over the DevTools protocol on a pipe, and reports what would look broken (an
//! image that did not load, a script error, a request that failed) and saves a screenshot.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long a page may take to load, and a command to answer.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the browser saw of a page.
#[derive(Debug, Default)]
pub struct PageCheck {
    pub title: String,
    /// The `src` of each image that loaded and decoded.
    pub images_loaded: Vec<String>,
    /// The `src` of each image that did not.
    pub broken_images: Vec<String>,
    /// Uncaught exceptions and console errors.
    pub script_errors: Vec<String>,
    /// Requests that failed (a missing file, a blocked address).
    pub failed_requests: Vec<String>,
}

impl PageCheck {
    /// Everything a person would see wrong.
    pub fn problems(&self) -> Vec<String> {
        let tag = |what: &str, v: &[String]| v.iter().map(|s| format!("{what}: {s}")).collect();
        let mut all: Vec<String> = tag("broken image", &self.broken_images);
        all.extend(tag("script error", &self.script_errors));
        all.extend(tag("failed request", &self.failed_requests));
        all
    }
}

/// A browser with one page, attached.
struct Browser {
    child: Child,
    input: ChildStdin,
    messages: Receiver<Value>,
    session: String,
    next_id: u64,
    /// Events seen while waiting for answers, in order.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// Loads `page` in a `width`×`height` window, checks it, and saves what it shows to
/// `screenshot` (PNG).
pub fn check_page(
    page: &Path,
    screenshot: &Path,
    (width, height): (u32, u32),
) -> Result<PageCheck, String> {
    let page = page
        .canonicalize()
        .map_err(|e| format!("{}: {e}", page.display()))?;
    let mut b = Browser::start()?;
    for domain in ["Page", "Runtime", "Network", "Log"] {
        b.call(&format!("{domain}.enable"), json!({}))?;
    }
    let metrics =
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
    b.call("Emulation.setDeviceMetricsOverride", metrics)?;
    b.call(
        "Page.navigate",
        json!({"url": format!("file://{}", page.display())}),
    )?;
    b.wait_until_loaded()?;
    let script = "JSON.stringify({title: document.title, images: Array.from(document.images)
        .map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])})";
    let found = b.call(
        "Runtime.evaluate",
        json!({"expression": script, "returnByValue": true}),
    )?;
    let found: Value = serde_json::from_str(found["result"]["value"].as_str().unwrap_or("{}"))
        .map_err(|e| format!("the page's images: {e}"))?;
    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}))?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .map_err(|e| format!("the screenshot: {e}"))?;
    std::fs::write(screenshot, png).map_err(|e| format!("{}: {e}", screenshot.display()))?;
    let mut check = PageCheck {
        title: found["title"].as_str().unwrap_or_default().to_owned(),
        ..PageCheck::default()
    };
    for image in found["images"].as_array().into_iter().flatten() {
        let src = image[0].as_str().unwrap_or_default().to_owned();
        if image[1].as_bool() == Some(true) {
            check.images_loaded.push(src);
        } else {
            check.broken_images.push(src);
        }
    }
    b.read_events(&mut check);
    b.close();
    Ok(check)
}

impl Browser {
    fn start() -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        // The DevTools pipe is file descriptors 3 (commands in) and 4 (answers out): the
        // shell puts the child's stdin and stdout there.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "exec \"$@\" 3<&0 4>&1 1>&2 0</dev/null",
                "sh",
                "chromium",
            ])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .args([
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("chromium (Debian's `chromium` package; scripts/setup.sh installs it): {e}")
            })?;
        let input = child.stdin.take().expect("piped stdin");
        let output = child.stdout.take().expect("piped stdout");
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(output);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            input,
            messages,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}))?;
        let attach = json!({"targetId": target["targetId"], "flatten": true});
        let attached = b.call("Target.attachToTarget", attach)?;
        b.session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(b)
    }

    /// Sends `method` (to the page once attached) and waits for its answer.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = self.session.clone().into();
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.input
            .write_all(&bytes)
            .map_err(|e| format!("chromium stopped listening ({method}): {e}"))?;
        let answer = self.next(method, |m| m["id"].as_u64() == Some(id))?;
        match answer.get("error") {
            Some(e) => Err(format!("{method}: {e}")),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Waits until the file navigated to has loaded, images included.
    fn wait_until_loaded(&mut self) -> Result<(), String> {
        let loaded = "location.protocol === 'file:' && document.readyState === 'complete'";
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            // While the page changes, an evaluation may fail: that is not loaded either.
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": loaded, "returnByValue": true}),
            );
            if r.is_ok_and(|r| r["result"]["value"] == true) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("the page did not load in {PATIENCE:?}"))
    }

    /// The first message that is `wanted`, keeping the events before it.
    fn next(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<Value, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if wanted(&m) => return Ok(m),
                Ok(m) => {
                    if m.get("method").is_some() {
                        self.events.push(m);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no answer to {what} in {PATIENCE:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("chromium exited before {what}"));
                }
            }
        }
    }

    /// Files the errors among the events seen into `check`.
    fn read_events(&mut self, check: &mut PageCheck) {
        while let Ok(m) = self.messages.try_recv() {
            self.events.push(m);
        }
        let mut urls = std::collections::HashMap::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Runtime.exceptionThrown" => {
                    let d = &p["exceptionDetails"];
                    let text = d["exception"]["description"]
                        .as_str()
                        .or(d["text"].as_str());
                    check
                        .script_errors
                        .push(text.unwrap_or("an exception").to_owned());
                }
                "Runtime.consoleAPICalled" if p["type"] == "error" => {
                    check
                        .script_errors
                        .push(format!("console.error: {}", p["args"]));
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => {
                    let entry = &p["entry"];
                    check
                        .failed_requests
                        .push(format!("{} {}", entry["text"], entry["url"]));
                }
                "Network.requestWillBeSent" => {
                    urls.insert(p["requestId"].to_string(), p["request"]["url"].to_string());
                }
                "Network.loadingFailed" => {
                    let url = urls
                        .get(&p["requestId"].to_string())
                        .cloned()
                        .unwrap_or_default();
                    check
                        .failed_requests
                        .push(format!("{url} ({})", p["errorText"]));
                }
                _ => {}
            }
        }
    }

    /// Asks the browser to quit, and waits a while for it to.
    fn close(mut self) {
        // Browser.close is the browser's, not the page's.
        self.session.clear();
        let _ = self.call("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A browser that did not quit (or that a failed check left behind) is killed.
impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
