//! A channel: its configuration, its counters, where it stands, and the thread that keeps
//! its pipeline running (see [`crate::supervisor`]).

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gst::prelude::*;
use serde::Serialize;

use crate::config::{ChannelConfig, ChannelFields, Input, PropValue, ServiceConfig};
use crate::evidence::Evidence;
use crate::pipeline::Pipeline;
use crate::stats::{self, ChannelStats, PublishTotals};
use crate::supervisor;

/// Where a channel stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its pipeline is being built or started; no frame yet.
    Starting,
    /// Frames flow.
    Playing,
    /// The source was lost; the next try is due after a delay.
    Reconnecting,
    /// A file that ended (its messages delivered).
    Ended,
    /// Stopping: the end of stream is on its way through, the spool draining.
    Stopping,
    Stopped,
}

#[derive(Debug)]
pub struct Status {
    pub state: State,
    pub since: DateTime<Utc>,
    pub last_error: Option<String>,
    pub retry_in: Option<Duration>,
    /// The pipeline now running, for reading its elements' counters.
    pub running: Option<Pipeline>,
}

pub enum Command {
    /// End the stream, wait (bounded) for the spool to drain, and stop.
    Stop,
}

pub struct Channel {
    pub config: ChannelConfig,
    pub stats: Arc<ChannelStats>,
    status: Mutex<Status>,
    commands: Mutex<Sender<Command>>,
    /// Disconnects when the supervisor ends.
    done: Mutex<Receiver<()>>,
}

impl Channel {
    /// Starts the channel's supervisor thread.
    pub fn start(
        config: ChannelConfig,
        service: Arc<ServiceConfig>,
        evidence: Evidence,
    ) -> std::io::Result<Arc<Channel>> {
        let (commands, rx) = channel();
        let (done_tx, done) = channel();
        let ch = Arc::new(Channel {
            config,
            stats: Arc::default(),
            status: Mutex::new(Status {
                state: State::Starting,
                since: Utc::now(),
                last_error: None,
                retry_in: None,
                running: None,
            }),
            commands: Mutex::new(commands),
            done: Mutex::new(done),
        });
        let for_thread = ch.clone();
        std::thread::Builder::new()
            .name(format!("ch-{}", ch.config.name))
            .spawn(move || {
                let _done = done_tx;
                supervisor::supervise(&for_thread, &service, &evidence, rx);
            })?;
        Ok(ch)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to `state` (and records when), keeping the last error unless `error` is given.
    pub fn set_state(&self, state: State, error: Option<String>, retry_in: Option<Duration>) {
        let mut s = self.status();
        if s.state != state {
            s.state = state;
            s.since = Utc::now();
        }
        if error.is_some() {
            s.last_error = error;
        }
        s.retry_in = retry_in;
    }

    pub fn state(&self) -> State {
        self.status().state
    }

    /// Asks the channel to stop and waits up to `wait` for it; true when it stopped.
    pub fn stop(&self, wait: Duration) -> bool {
        let _ = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::Stop);
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        matches!(done.recv_timeout(wait), Err(RecvTimeoutError::Disconnected))
    }

    /// Frames waiting in `sd2deepfake` now (0 without a pipeline).
    pub fn queued_frames(&self) -> u64 {
        self.status()
            .running
            .as_ref()
            .and_then(|p| read_u64(&p.deepfake, "queued-frames"))
            .unwrap_or(0)
    }

    /// `sd2publish`'s counters over every pipeline so far, when the channel publishes.
    pub fn publish_totals(&self) -> Option<PublishTotals> {
        self.config.publish.as_ref()?;
        // Read under the status lock: a pipeline going away adds its counts to the totals
        // under it too, so no read counts them twice.
        let status = self.status();
        Some(
            match status.running.as_ref().and_then(|p| p.publish.as_ref()) {
                Some(p) => read_publish(&self.stats, p, false),
                None => self.stats.publish_totals(),
            },
        )
    }

    pub fn view(&self) -> ChannelView {
        let (state, since, last_error, retry_in) = {
            let s = self.status();
            (s.state, s.since, s.last_error.clone(), s.retry_in)
        };
        let st = &self.stats;
        ChannelView {
            name: self.config.name.clone(),
            state,
            since: since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            last_error,
            retry_in_s: retry_in.map(|d| d.as_secs_f64()),
            input: self.config.input.describe().to_owned(),
            live: !self.config.input.is_file(),
            framerate: st.framerate(),
            inference_interval: st.interval(),
            frames: stats::get(&st.frames),
            analysed_frames: stats::get(&st.analysed_frames),
            faces: stats::get(&st.faces),
            fake_faces: stats::get(&st.fake_faces),
            alerts: stats::get(&st.alerts),
            skipped_frames: stats::get(&st.skipped_frames),
            reconnects: stats::get(&st.reconnects),
            queued_frames: self.queued_frames(),
            lag_s: st.lag_seconds(),
            evidence_written: stats::get(&st.evidence_written),
            evidence_failed: stats::get(&st.evidence_failed),
            publish: self.publish_totals(),
            config: redacted(&self.config.fields),
        }
    }
}

/// `sd2publish`'s counters added to those of the pipelines before; `ended` when the
/// pipeline is going away.
pub fn read_publish(stats: &ChannelStats, publish: &gst::Element, ended: bool) -> PublishTotals {
    let read = |name| read_u64(publish, name).unwrap_or(0);
    stats.publish_read(read("published"), read("dropped"), read("spooled"), ended)
}

/// An unsigned property, when the element has it.
fn read_u64(element: &gst::Element, name: &str) -> Option<u64> {
    let pspec = element.find_property(name)?;
    let v = element.property_value(pspec.name());
    v.get::<u64>()
        .ok()
        .or_else(|| v.get::<u32>().ok().map(u64::from))
}

/// The fields without secrets.
fn redacted(fields: &ChannelFields) -> ChannelFields {
    let mut f = fields.clone();
    if let Some(p) = f.publish.as_mut() {
        for (k, v) in p.iter_mut() {
            if k == "password" {
                *v = PropValue::Text("***".into());
            }
        }
    }
    f
}

/// A channel as the API shows it.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub name: String,
    pub state: State,
    /// When it entered that state (RFC 3339, UTC).
    pub since: String,
    pub last_error: Option<String>,
    pub retry_in_s: Option<f64>,
    pub input: String,
    pub live: bool,
    pub framerate: Option<f64>,
    pub inference_interval: Option<u32>,
    pub frames: u64,
    pub analysed_frames: u64,
    pub faces: u64,
    pub fake_faces: u64,
    pub alerts: u64,
    pub skipped_frames: u64,
    pub reconnects: u64,
    pub queued_frames: u64,
    pub lag_s: f64,
    pub evidence_written: u64,
    pub evidence_failed: u64,
    pub publish: Option<PublishTotals>,
    pub config: ChannelFields,
}

impl Input {
    /// The source's kind, as logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Uri(_) if self.is_file() => "file",
            Input::Uri(_) => "uri",
            Input::Source(_) => "source",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_s_fields_are_shown_without_its_publish_password() {
        let fields = ChannelFields {
            name: Some("a".into()),
            publish: Some(
                [
                    ("username".to_owned(), PropValue::Text("op".into())),
                    ("password".to_owned(), PropValue::Text("secret".into())),
                ]
                .into(),
            ),
            ..ChannelFields::default()
        };
        let shown = serde_json::to_string(&redacted(&fields)).unwrap();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("\"username\":\"op\""), "{shown}");
    }
}
