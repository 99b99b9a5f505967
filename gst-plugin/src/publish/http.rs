//! HTTP: each message POSTed as `application/json` to the location, its topic in the
//! `X-Sd2-Topic` header. A 2xx answer confirms it; any other answer, or none, is a failure
//! the sender retries with backoff. Through ureq (blocking, pure Rust, rustls).

use std::time::Duration;

use super::destination::HttpTarget;
use super::link::{Link, LinkError};
use super::record::Record;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an answer's body read (and ignored), so the connection can be reused.
const MAX_ANSWER: u64 = 64 << 10;

pub struct HttpLink {
    agent: ureq::Agent,
    url: String,
    confirmed: Vec<u64>,
}

impl HttpLink {
    pub fn new(t: &HttpTarget) -> HttpLink {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .tls_config(t.roots.ureq_config())
            .build()
            .new_agent();
        HttpLink {
            agent,
            url: t.url.clone(),
            confirmed: Vec::new(),
        }
    }
}

impl Link for HttpLink {
    fn window(&self) -> usize {
        1
    }

    fn send(&mut self, record: &Record) -> Result<(), LinkError> {
        let answer = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Sd2-Topic", &record.topic)
            .send(&record.payload[..]);
        let mut answer = answer.map_err(|e| LinkError::Unreachable {
            destination: self.url.clone(),
            reason: e.to_string(),
        })?;
        let status = answer.status();
        let _ = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec();
        if !status.is_success() {
            return Err(LinkError::Refused {
                destination: self.url.clone(),
                reason: format!("it answered {status} to message {}", record.seq),
            });
        }
        self.confirmed.push(record.seq);
        Ok(())
    }

    fn poll(&mut self, _timeout: Duration, confirmed: &mut Vec<u64>) -> Result<(), LinkError> {
        confirmed.append(&mut self.confirmed);
        Ok(())
    }
}
