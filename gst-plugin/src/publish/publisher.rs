//! A channel's publisher: messages numbered and appended to the spool by the caller (never
//! waiting on the network), delivered by the sender thread. `sd2publish` is a thin element
//! over it; a service publishing many channels runs one per channel.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::destination::{ConfigError, Destination};
use super::sender::{Observer, Sender};
use super::spool::{Appended, Counts, Spool, SpoolError};

/// How long stopping waits for the sender's network call in progress.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the sender thread: {0}")]
    Thread(std::io::Error),
}

/// What a message is; its `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A frame's JSON line, as `sd2json` writes it.
    Frame,
    /// An `sd2-deepfake-alert`.
    Alert,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Frame => "frame",
            Kind::Alert => "alert",
        }
    }
}

pub struct Config {
    /// Named in every message's `channel` field.
    pub channel: String,
    pub spool_dir: PathBuf,
    /// Bytes.
    pub spool_size: u64,
    pub destination: Destination,
}

pub struct Publisher {
    channel: String,
    destination: String,
    spool: Arc<Spool>,
    sender: Mutex<Option<Sender>>,
}

impl Publisher {
    /// Opens (and locks) the spool and starts delivering what it holds, an earlier run's
    /// messages first.
    pub fn start(config: Config, observer: Observer) -> Result<Publisher, PublishError> {
        super::topic::check_channel(&config.channel)?;
        let spool = Arc::new(Spool::open(&config.spool_dir, config.spool_size)?);
        let destination = config.destination.describe();
        let sender = Sender::spawn(spool.clone(), config.destination, observer)
            .map_err(PublishError::Thread)?;
        Ok(Publisher {
            channel: config.channel,
            destination,
            spool,
            sender: Mutex::new(Some(sender)),
        })
    }

    /// Appends a message to `topic`: `{"channel", "seq", "kind", ...fields}`. `seq` counts
    /// the channel's messages, frames and alerts together, across restarts: a consumer
    /// that sees a `(channel, seq)` again has a duplicate.
    pub fn publish(
        &self,
        topic: &str,
        kind: Kind,
        fields: Map<String, Value>,
    ) -> Result<Appended, SpoolError> {
        self.spool.append(topic, |seq| {
            let mut m = Map::with_capacity(fields.len() + 3);
            m.insert("channel".into(), Value::from(self.channel.as_str()));
            m.insert("seq".into(), Value::from(seq));
            m.insert("kind".into(), Value::from(kind.name()));
            for (k, v) in fields {
                m.entry(k).or_insert(v);
            }
            serde_json::to_vec(&Value::Object(m)).expect("JSON values serialise")
        })
    }

    pub fn counts(&self) -> Counts {
        self.spool.counts()
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Waits up to `timeout`, or until `cancel` is set, for every message to be delivered
    /// (or dropped); true when none waits.
    pub fn drain(&self, timeout: Duration, cancel: &AtomicBool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let slice = left.min(Duration::from_millis(100));
            if self.spool.wait_drained(slice) {
                return true;
            }
            if left.is_zero() || cancel.load(Ordering::SeqCst) {
                return false;
            }
        }
    }

    /// Stops delivering; what is unconfirmed stays in the spool for the next start.
    pub fn stop(&self) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender {
            // A sender still in a network call keeps the spool (and its lock) until the
            // call returns; it delivers nothing more.
            sender.stop(STOP_TIMEOUT);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}
