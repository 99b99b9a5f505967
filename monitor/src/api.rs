//! The HTTP API, on `tiny_http`: a few synchronous threads suit a service whose work runs
//! on GStreamer's threads, and it brings no async runtime.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 `{"status":"ok",…}`; 503 while shutting down |
//! | `GET /metrics` | Prometheus text |
//! | `GET /channels` | every channel's state and counters |
//! | `GET /channels/{name}` | one channel; 404 |
//! | `POST /channels` | a channel's fields as JSON (as in the TOML); 201; 400, 409, 503 |
//! | `DELETE /channels/{name}` | stops it (its spool drained) and forgets it; 200; 404, 409 |
//!
//! Every error is a JSON object `{"error": "…"}`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::config::ChannelFields;
use crate::metrics;
use crate::monitor::{AddError, Monitor, RemoveError};

/// Threads answering requests: a slow request (a removal draining its spool, a channel
/// whose model loads) leaves the others answered.
const THREADS: usize = 4;
/// The largest request body read.
const MAX_BODY: usize = 64 * 1024;

/// An answer: status and body.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub allow: Option<&'static str>,
}

fn json_answer(status: u16, body: serde_json::Value) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        content_type: "application/json",
        allow: None,
    }
}

fn error(status: u16, message: impl std::fmt::Display) -> Answer {
    json_answer(status, json!({ "error": message.to_string() }))
}

fn not_allowed(allow: &'static str) -> Answer {
    Answer {
        allow: Some(allow),
        ..error(405, format!("method not allowed here: use {allow}"))
    }
}

/// The server and its threads.
pub struct Api {
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Api {
    /// Listens on `address` and answers from [`THREADS`] threads.
    pub fn start(monitor: Arc<Monitor>, address: &str) -> Result<Api, String> {
        let server = Arc::new(
            Server::http(address).map_err(|e| format!("cannot listen on {address}: {e}"))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..THREADS)
            .map(|i| {
                let (server, stop, monitor) = (server.clone(), stop.clone(), monitor.clone());
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || serve(&server, &stop, &monitor))
                    .map_err(|e| format!("cannot start an HTTP thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Api {
            server,
            stop,
            threads,
        })
    }

    pub fn address(&self) -> String {
        self.server
            .server_addr()
            .to_ip()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Stops answering once the requests being answered are.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, stop: &AtomicBool, monitor: &Monitor) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => answer(request, monitor),
            Ok(None) => {}
            Err(e) => tracing::warn!(event = "http_error", error = %e, "a request failed"),
        }
    }
}

fn answer(mut request: Request, monitor: &Monitor) {
    let mut body = Vec::new();
    let too_big = request.body_length().is_some_and(|n| n > MAX_BODY);
    let read = if too_big {
        Ok(())
    } else {
        request
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut body)
            .map(drop)
    };
    let method = request.method().clone();
    let url = request.url().to_owned();
    let a = match read {
        _ if too_big || body.len() > MAX_BODY => {
            error(413, format!("the body is larger than {MAX_BODY} bytes"))
        }
        Err(e) => error(400, format!("cannot read the body: {e}")),
        Ok(()) => route(monitor, &method, &url, &body),
    };
    if a.status >= 400 {
        tracing::info!(event = "http_refused", method = %method, url = %url, status = a.status, error = %a.body, "request refused");
    }
    let mut response = Response::from_string(a.body)
        .with_status_code(a.status)
        .with_header(Header::from_bytes("Content-Type", a.content_type).expect("a valid header"));
    if let Some(allow) = a.allow {
        response.add_header(Header::from_bytes("Allow", allow).expect("a valid header"));
    }
    let _ = request.respond(response);
}

/// Answers one request.
pub fn route(monitor: &Monitor, method: &Method, url: &str, body: &[u8]) -> Answer {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => match method {
            Method::Get => health(monitor),
            _ => not_allowed("GET"),
        },
        ["metrics"] => match method {
            Method::Get => Answer {
                status: 200,
                body: metrics::render(monitor),
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                allow: None,
            },
            _ => not_allowed("GET"),
        },
        ["channels"] => match method {
            Method::Get => json_answer(
                200,
                json!(
                    monitor
                        .channels()
                        .iter()
                        .map(|c| c.view())
                        .collect::<Vec<_>>()
                ),
            ),
            Method::Post => add(monitor, body),
            _ => not_allowed("GET, POST"),
        },
        ["channels", name] => match method {
            Method::Get => match monitor.get(name) {
                Some(ch) => json_answer(200, json!(ch.view())),
                None => error(404, format!("no channel named {name:?}")),
            },
            Method::Delete => match monitor.remove(name) {
                Ok(view) => json_answer(200, json!(view)),
                Err(e @ RemoveError::NotFound(_)) => error(404, e),
                Err(e @ RemoveError::Removing(_)) => error(409, e),
            },
            _ => not_allowed("GET, DELETE"),
        },
        _ => error(
            404,
            format!("no such path {path:?}: try /channels, /channels/NAME, /metrics or /healthz"),
        ),
    }
}

fn health(monitor: &Monitor) -> Answer {
    let channels = monitor.channels();
    let playing = channels
        .iter()
        .filter(|c| c.state() == crate::channel::State::Playing)
        .count();
    let shutting_down = monitor.is_shutting_down();
    json_answer(
        if shutting_down { 503 } else { 200 },
        json!({
            "status": if shutting_down { "shutting down" } else { "ok" },
            "channels": channels.len(),
            "playing": playing,
            "uptime_s": monitor.started.elapsed().as_secs_f64(),
        }),
    )
}

fn add(monitor: &Monitor, body: &[u8]) -> Answer {
    let fields: ChannelFields = match serde_json::from_slice(body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                400,
                format!("the body is not a channel's fields as JSON: {e}"),
            );
        }
    };
    match monitor.add_fields(fields) {
        Ok(ch) => {
            tracing::info!(
                channel = ch.name(),
                event = "added",
                "channel added through the API"
            );
            json_answer(201, json!(ch.view()))
        }
        Err(e @ AddError::Invalid(_)) => error(400, e),
        Err(e @ AddError::Exists(_)) => error(409, e),
        Err(e @ AddError::ShuttingDown) => error(503, e),
    }
}
