//! Helpers for the monitor's tests: the installed files, free ports, the `sd2-monitor`
//! binary started as a user starts it (a TOML file, its API on a free port) and its HTTP
//! API, and an RTSP server ([`rtsp`]).
#![allow(dead_code)]

pub mod rtsp;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A file `scripts/setup.sh` installs under the cache; fails with the command to run when
/// it is absent.
pub fn installed(relative: &str) -> PathBuf {
    let p = sd2_models::paths::cache_dir().join(relative);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh first",
        p.display()
    );
    p
}

/// The demo video: 12 s of 1280×720 VP8, its last segment with a swapped face.
pub fn demo_video() -> PathBuf {
    installed("demo/faces.webm")
}

pub fn demo_uri() -> String {
    format!("file://{}", demo_video().canonicalize().unwrap().display())
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sd2-monitor`, killed when dropped unless it was terminated.
pub struct Service {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// What a terminated service left.
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let into = Arc::new(Mutex::new(String::new()));
    let out = into.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    into
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Runs `sd2-monitor --config FILE ARGS…` with `config` written to FILE, to its end;
/// returns its exit and the folder FILE is in.
pub fn run_with_config(config: &str, args: &[&str]) -> (Exit, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channels.toml");
    std::fs::write(&path, config).unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-monitor"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let exit = Exit {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    };
    (exit, dir)
}

impl Service {
    /// Starts the monitor on `config` (relative paths in it are relative to a temporary
    /// folder, which `dir` is) and waits for `/healthz`.
    pub fn start(config: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels.toml");
        std::fs::write(&path, config).unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sd2-monitor"))
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let s = Service {
            child: Some(child),
            port,
            dir,
            stdout,
            stderr,
            agent: agent(),
        };
        s.wait_for("/healthz to answer", Duration::from_secs(60), |s| {
            s.try_get("/healthz").is_some_and(|(code, _)| code == 200)
        });
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut r = self.agent.get(&self.url(path)).call().ok()?;
        let body = r.body_mut().read_to_string().ok()?;
        Some((r.status().as_u16(), body))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} got no answer; logs:\n{}", self.logs()))
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (code, body) = self.get(path);
        (
            code,
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")),
        )
    }

    /// POSTs `body` as JSON; the answer's status and JSON body.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .post(&self.url(path))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}; logs:\n{}", self.logs()));
        let text = r.body_mut().read_to_string().unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        )
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .delete(&self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap())
    }

    /// A request with any method and body: its status and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .body(body.to_owned())
            .unwrap();
        let mut r = self.agent.run(req).unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), text)
    }

    /// A channel's view from `GET /channels/NAME`.
    pub fn channel(&self, name: &str) -> Value {
        let (code, v) = self.get_json(&format!("/channels/{name}"));
        assert_eq!(code, 200, "GET /channels/{name}: {v}");
        v
    }

    /// The value of a sample of `/metrics` (`name{labels}` as written), when present.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        parse_metric(&text, sample)
    }

    /// Waits until `ready` holds, or fails after `limit` naming `what`, with the logs.
    pub fn wait_for(&self, what: &str, limit: Duration, mut ready: impl FnMut(&Service) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(
                start.elapsed() < limit,
                "waited {limit:?} for {what}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> Exit {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        // SAFETY: kill with a valid pid and signal.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = child.wait().unwrap();
        // The readers end at the pipes' end.
        std::thread::sleep(Duration::from_millis(100));
        Exit {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
            took: start.elapsed(),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a scenario once for every test of a file that reads it: a scenario that failed is
/// reported by each test, not run again by each.
pub fn once<T: Send + Sync>(
    cell: &'static std::sync::OnceLock<Result<T, String>>,
    scenario: impl FnOnce() -> T,
) -> &'static T {
    let result = cell.get_or_init(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario)).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match result {
        Ok(seen) => seen,
        Err(why) => panic!("the scenario failed: {why}"),
    }
}

/// A sample's value in Prometheus text.
pub fn parse_metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The log lines, parsed: every one must be a JSON object.
pub fn log_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}"))
        })
        .collect()
}
