//! A headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`): Chromium reads commands from its file descriptor 3 and
//! writes replies and events to its descriptor 4, one JSON message per NUL-terminated
//! chunk. No port is opened, so tests running at once cannot collide.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::BrowserError;

/// The flags that run Debian's Chromium headless on a machine without a display or GPU
/// and keep it from reaching the network on its own.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
];

/// The Chromium to run: `$SD2_CHROMIUM`, else `chromium` on the `PATH`.
pub fn chromium_binary() -> PathBuf {
    std::env::var_os("SD2_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

/// A running browser and its message pipe.
pub struct Cdp {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    /// Events received while waiting for replies, in order.
    pub events: Vec<Value>,
    log: PathBuf,
}

impl Cdp {
    /// Starts Chromium with a fresh profile in `profile` (its own log goes to
    /// `profile/chromium.log`).
    pub fn start(profile: &Path) -> Result<Cdp, BrowserError> {
        let binary = chromium_binary();
        let log = profile.join("chromium.log");
        let log_file = std::fs::File::create(&log).map_err(|e| BrowserError::Io {
            what: format!("creating {}", log.display()),
            source: e,
        })?;
        // The shell hands Chromium our pipes as descriptors 3 (commands) and 4 (replies).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&binary)
            .args(FLAGS)
            .arg(format!(
                "--user-data-dir={}",
                profile.join("profile").display()
            ))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| BrowserError::Start {
                binary: binary.clone(),
                detail: e.to_string(),
            })?;
        let commands = child.stdin.take().expect("stdin is piped");
        let replies = child.stdout.take().expect("stdout is piped");
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies);
            let mut chunk = Vec::new();
            loop {
                chunk.clear();
                match reader.read_until(0, &mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if chunk.last() == Some(&0) {
                            chunk.pop();
                        }
                        let Ok(message) = serde_json::from_slice::<Value>(&chunk) else {
                            continue;
                        };
                        if tx.send(message).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Cdp {
            child,
            commands,
            messages,
            next_id: 1,
            events: Vec::new(),
            log,
        })
    }

    /// The last lines of Chromium's own log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    fn receive(&mut self, deadline: Instant, waiting_for: &str) -> Result<Value, BrowserError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(m) => Ok(m),
            Err(RecvTimeoutError::Timeout) => Err(BrowserError::Timeout {
                waiting_for: waiting_for.to_owned(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(BrowserError::Exited {
                binary: chromium_binary(),
                log: self.log_tail(),
            }),
        }
    }

    /// Sends `method` (to the page `session`, or to the browser) and returns its result.
    pub fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, BrowserError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON values serialise");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .map_err(|_| BrowserError::Exited {
                binary: chromium_binary(),
                log: self.log_tail(),
            })?;
        loop {
            let m = self.receive(deadline, method)?;
            if m.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = m.get("error") {
                    return Err(BrowserError::Protocol {
                        method: method.to_owned(),
                        message: e["message"].as_str().unwrap_or("?").to_owned(),
                    });
                }
                return Ok(m["result"].clone());
            }
            if m.get("method").is_some() {
                self.events.push(m);
            }
        }
    }

    /// Waits for the event `method` on `session`; earlier events stay in `events`.
    pub fn wait_for(
        &mut self,
        method: &str,
        session: &str,
        deadline: Instant,
    ) -> Result<Value, BrowserError> {
        let is_it = |m: &Value| m["method"] == method && m["sessionId"] == session;
        if let Some(m) = self.events.iter().find(|m| is_it(m)) {
            return Ok(m.clone());
        }
        loop {
            let m = self.receive(deadline, method)?;
            let found = is_it(&m);
            self.events.push(m);
            if found {
                return Ok(self.events.last().cloned().expect("just pushed"));
            }
        }
    }

    /// Asks the browser to close and waits for it (killing it after a few seconds).
    pub fn close(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let _ = self.call("Browser.close", json!({}), None, deadline);
        self.reap(deadline);
    }

    fn reap(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
