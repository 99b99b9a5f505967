//! Opens a local HTML page in a real browser (Debian's headless Chromium) and reports what a
//! person would see go wrong: images that did not load, script errors, other failed
//! requests; and saves a screenshot.
//!
//! ```no_run
//! use sd2_e2e::browser::{Options, check_page};
//! let check = check_page("report/index.html".as_ref(), "shot.png".as_ref(), &Options::default()).unwrap();
//! assert!(check.is_clean(), "{:?}", check.problems());
//! ```
//!
//! Chromium is driven over the DevTools protocol on a pipe rather than through ChromeDriver:
//! one process and no TCP port (tests and developers running at once cannot collide on one),
//! and the protocol reports exactly what is checked here (`Runtime.exceptionThrown`,
//! `Network.loadingFailed`) instead of log text to parse.

mod cdp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use cdp::Cdp;
pub use cdp::chromium_binary;

/// Why a page could not be checked (as opposed to what is wrong with it: [`PageCheck`]).
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "cannot start {binary}: {detail} (install Debian's `chromium` package: scripts/setup.sh does)"
    )]
    Start { binary: PathBuf, detail: String },
    #[error("{binary} exited unexpectedly; the end of its log:\n{log}")]
    Exited { binary: PathBuf, log: String },
    #[error("no answer from the browser in time while waiting for {waiting_for}")]
    Timeout { waiting_for: String },
    #[error("the browser refused {method}: {message}")]
    Protocol { method: String, message: String },
    #[error("cannot open {page}: {reason}")]
    Navigation { page: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// How the page is shown.
#[derive(Clone, Debug)]
pub struct Options {
    /// The viewport, in CSS pixels (one device pixel each).
    pub width: u32,
    pub height: u32,
    /// Screenshot the whole page rather than the viewport.
    pub full_page: bool,
    /// How long the page may take to load, and the browser to answer.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 1280,
            height: 800,
            full_page: false,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What the browser saw on a page.
#[derive(Clone, Debug, Default)]
pub struct PageCheck {
    /// `<img>` elements that loaded and decoded, by URL, in the page's order.
    pub images_loaded: Vec<String>,
    /// Images that failed to load or to decode, by URL.
    pub broken_images: Vec<String>,
    /// Uncaught exceptions and errors logged by scripts.
    pub script_errors: Vec<String>,
    /// Other requests that failed (stylesheets, scripts, frames), by URL and reason.
    pub failed_requests: Vec<String>,
    /// The title of the page.
    pub title: String,
    /// The screenshot written (PNG).
    pub screenshot: PathBuf,
}

impl PageCheck {
    /// Everything wrong with the page, one line each.
    pub fn problems(&self) -> Vec<String> {
        let images = self
            .broken_images
            .iter()
            .map(|u| format!("broken image: {u}"));
        let scripts = self
            .script_errors
            .iter()
            .map(|e| format!("script error: {e}"));
        let requests = self
            .failed_requests
            .iter()
            .map(|r| format!("failed request: {r}"));
        images.chain(scripts).chain(requests).collect()
    }

    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }
}

/// `file://` URL of an absolute path, with every byte outside the unreserved set and `/`
/// percent-encoded.
pub fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// In the page: each `<img>` with whether it loaded and decoded.
const IMAGES: &str = "Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0])";

/// Opens `page` in headless Chromium, waits for it to load, saves a PNG screenshot to
/// `screenshot` and reports what failed.
pub fn check_page(
    page: &Path,
    screenshot: &Path,
    options: &Options,
) -> Result<PageCheck, BrowserError> {
    let page = page.canonicalize().map_err(|e| BrowserError::Navigation {
        page: page.to_owned(),
        reason: e.to_string(),
    })?;
    let profile = tempfile::tempdir().map_err(|e| BrowserError::Io {
        what: "creating a browser profile folder".into(),
        source: e,
    })?;
    let mut cdp = Cdp::start(profile.path())?;
    let result = visit(&mut cdp, &page, screenshot, options);
    cdp.close();
    result
}

fn visit(
    cdp: &mut Cdp,
    page: &Path,
    screenshot: &Path,
    options: &Options,
) -> Result<PageCheck, BrowserError> {
    let deadline = Instant::now() + options.timeout;
    let target = cdp.call(
        "Target.createTarget",
        json!({ "url": "about:blank" }),
        None,
        deadline,
    )?;
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({ "targetId": target["targetId"], "flatten": true }),
        None,
        deadline,
    )?;
    let session = attached["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = Some(session.as_str());
    for domain in ["Page", "Runtime", "Network", "Log"] {
        cdp.call(&format!("{domain}.enable"), json!({}), s, deadline)?;
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": options.width, "height": options.height, "deviceScaleFactor": 1, "mobile": false }),
        s,
        deadline,
    )?;
    // Screenshots show the page, not the scroll bar beside it.
    cdp.call(
        "Emulation.setScrollbarsHidden",
        json!({ "hidden": true }),
        s,
        deadline,
    )?;
    let navigated = cdp.call(
        "Page.navigate",
        json!({ "url": file_url(page) }),
        s,
        deadline,
    )?;
    if let Some(reason) = navigated["errorText"].as_str() {
        return Err(BrowserError::Navigation {
            page: page.to_owned(),
            reason: reason.to_owned(),
        });
    }
    cdp.wait_for("Page.loadEventFired", &session, deadline)?;

    let mut check = PageCheck {
        screenshot: screenshot.to_owned(),
        ..PageCheck::default()
    };
    let images = evaluate(cdp, IMAGES, s, deadline)?;
    for image in images.as_array().into_iter().flatten() {
        let url = image[0].as_str().unwrap_or_default().to_owned();
        if image[1].as_bool() == Some(true) {
            check.images_loaded.push(url);
        } else if !check.broken_images.contains(&url) {
            check.broken_images.push(url);
        }
    }
    check.title = evaluate(cdp, "document.title", s, deadline)?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    read_events(&cdp.events, &session, &mut check);
    capture(cdp, screenshot, options, s, deadline)?;
    Ok(check)
}

/// The value of a JavaScript expression in the page.
fn evaluate(
    cdp: &mut Cdp,
    expression: &str,
    session: Option<&str>,
    deadline: Instant,
) -> Result<Value, BrowserError> {
    let r = cdp.call(
        "Runtime.evaluate",
        json!({ "expression": expression, "returnByValue": true }),
        session,
        deadline,
    )?;
    Ok(r["result"]["value"].clone())
}

/// Script errors and failed requests from the page's events.
fn read_events(events: &[Value], session: &str, check: &mut PageCheck) {
    let mut urls: HashMap<String, String> = HashMap::new();
    for e in events.iter().filter(|e| e["sessionId"] == session) {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or_default() {
            "Network.requestWillBeSent" => {
                let id = p["requestId"].as_str().unwrap_or_default().to_owned();
                urls.insert(
                    id,
                    p["request"]["url"].as_str().unwrap_or_default().to_owned(),
                );
            }
            "Network.loadingFailed" => {
                let url = urls
                    .get(p["requestId"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                let reason = p["errorText"].as_str().unwrap_or_default();
                if p["type"] == "Image" {
                    if !check.broken_images.contains(&url) {
                        check.broken_images.push(url);
                    }
                } else {
                    check.failed_requests.push(format!("{url} ({reason})"));
                }
            }
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("uncaught exception");
                check.script_errors.push(format!(
                    "{what} at {}:{}",
                    d["url"].as_str().unwrap_or("?"),
                    d["lineNumber"].as_u64().map_or(0, |l| l + 1)
                ));
            }
            "Log.entryAdded" => {
                let entry = &p["entry"];
                if entry["level"] == "error" && entry["source"] == "javascript" {
                    check
                        .script_errors
                        .push(entry["text"].as_str().unwrap_or_default().to_owned());
                }
            }
            _ => {}
        }
    }
}

/// Saves a PNG of the viewport, or of the whole page.
fn capture(
    cdp: &mut Cdp,
    path: &Path,
    options: &Options,
    session: Option<&str>,
    deadline: Instant,
) -> Result<(), BrowserError> {
    let mut params = json!({ "format": "png" });
    if options.full_page {
        let metrics = cdp.call("Page.getLayoutMetrics", json!({}), session, deadline)?;
        let size = &metrics["cssContentSize"];
        params["clip"] = json!({
            "x": 0, "y": 0,
            "width": size["width"].as_f64().unwrap_or(options.width as f64),
            "height": size["height"].as_f64().unwrap_or(options.height as f64),
            "scale": 1,
        });
        params["captureBeyondViewport"] = json!(true);
    }
    let shot = cdp.call("Page.captureScreenshot", params, session, deadline)?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .map_err(|e| BrowserError::Protocol {
            method: "Page.captureScreenshot".into(),
            message: format!("the image is not base64: {e}"),
        })?;
    std::fs::write(path, png).map_err(|e| BrowserError::Io {
        what: format!("writing {}", path.display()),
        source: e,
    })
}
