//! # sd2publish
//!
//! Pass-through element that publishes each frame's JSON line (the `sd2json` shape) and
//! each alert of its frame verdict to a file, an MQTT broker or an HTTP endpoint, with
//! `channel`, `seq` and `kind` fields added. Messages go through an on-disk spool: the
//! streaming thread only appends to it, a thread of the element delivers, so an unreachable
//! destination never holds the stream; what it missed is delivered in order when it
//! returns, and after a restart of the element. A full spool drops its oldest messages and
//! says so on the bus. At end of stream the element waits (up to `drain-timeout`) for
//! every message to be delivered.
//!
//! ```text
//! gst-launch-1.0 filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect ! sd2deepfake ! \
//!     sd2publish method=mqtt location=mqtt://broker:1883 channel=cam1 ! fakesink
//! ```
//!
//! Bus messages: `sd2-publish-dropped` (`dropped`: the total since start, `spool-dir`,
//! `spool-size`; at most one a second while the spool drops), `sd2-publish-draining` (at end
//! of stream, when messages wait: `waiting`, `destination`), `sd2-publish-delivering`
//! (`destination`, `waiting`: the destination confirms messages, at first and after an
//! outage); a warning when the destination becomes unreachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::payload::{alert_fields, frame_fields};
use super::publisher::{Kind, Publisher};
use super::sender::{Event, Observer};
use super::settings::{self, Settings};
use super::spool::Counts;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2publish",
        gst::DebugColorFlags::empty(),
        Some("SD² verdicts and alerts to MQTT, HTTP or a file"),
    )
});

/// What the streaming thread tells the bus once it has let the state go.
enum Post {
    Message(gst::Structure),
    /// A warning's text and details.
    Warning(String, String),
}

/// The least time between two `sd2-publish-dropped` messages.
const DROP_REPORT_PERIOD: Duration = Duration::from_secs(1);

struct State {
    publisher: Arc<Publisher>,
    frames: Option<String>,
    alerts: Option<String>,
    width: u32,
    height: u32,
    source: Option<String>,
    /// Messages that could not be written to the spool.
    failed: u64,
    /// Drops not yet reported on the bus, and when the last report went out.
    unreported: u64,
    last_report: Option<Instant>,
}

impl State {
    fn counts(&self) -> Counts {
        let mut c = self.publisher.counts();
        c.dropped += self.failed;
        c
    }
}

#[derive(Default)]
pub struct Publish {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The counters of the last run, read after it stopped.
    last_counts: Mutex<Counts>,
    /// Set while the element stops, to end a drain early.
    cancel: AtomicBool,
}

impl Publish {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counts(&self) -> Counts {
        match self.state().as_ref() {
            Some(st) => st.counts(),
            None => *self.last_counts.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The URI of the stream, asked of upstream once.
    fn upstream_uri(&self) -> String {
        let mut q = gst::query::Uri::new();
        if self
            .obj()
            .sink_pads()
            .first()
            .is_some_and(|p| p.peer_query(&mut q))
        {
            return q.uri().map(|u| u.to_string()).unwrap_or_default();
        }
        String::new()
    }

    /// Tells the bus what the sender reports (called on the sender's thread).
    fn observer(&self, spool_dir: String) -> Observer {
        let weak = self.obj().downgrade();
        Arc::new(move |event| {
            if let Some(element) = weak.upgrade() {
                element.imp().report(event, &spool_dir);
            }
        })
    }

    fn report(&self, event: Event, spool_dir: &str) {
        match event {
            Event::Delivering {
                destination,
                waiting,
            } => {
                gst::info!(
                    CAT,
                    imp = self,
                    "delivering to {destination}, {waiting} messages waiting"
                );
                self.post(
                    gst::Structure::builder("sd2-publish-delivering")
                        .field("destination", destination)
                        .field("waiting", waiting)
                        .build(),
                );
            }
            Event::Unreachable { error, waiting } => gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("sd2publish: {error}"),
                [
                    "{waiting} messages wait in the spool {spool_dir}; they are delivered in order when it can be reached (retrying every 2 s at most)"
                ]
            ),
            Event::Spool(e) => {
                gst::element_imp_warning!(self, gst::ResourceError::Write, ("sd2publish: {e}"))
            }
        }
    }

    fn post(&self, s: gst::Structure) {
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    /// The `sd2-publish-dropped` message, when drops wait to be reported and the last
    /// report is old enough (or `now`).
    fn drop_report(&self, st: &mut State, now: bool) -> Option<gst::Structure> {
        let due = st
            .last_report
            .is_none_or(|t| t.elapsed() >= DROP_REPORT_PERIOD);
        if st.unreported == 0 || !(now || due) {
            return None;
        }
        st.unreported = 0;
        st.last_report = Some(Instant::now());
        let spool = st.publisher.spool();
        Some(
            gst::Structure::builder("sd2-publish-dropped")
                .field("dropped", st.counts().dropped)
                .field("spool-dir", spool.dir().display().to_string())
                .field("spool-size", spool.limit())
                .build(),
        )
    }

    /// Appends the buffer's messages to the spool; returns what to tell the bus.
    fn spool_buffer(&self, st: &mut State, buf: &gst::BufferRef) -> Vec<Post> {
        if st.source.is_none() {
            st.source = Some(self.upstream_uri());
        }
        let source = st.source.as_deref().unwrap_or("");
        let mut messages = Vec::new();
        if let Some(topic) = &st.frames {
            messages.push((
                topic,
                Kind::Frame,
                frame_fields(buf, st.width, st.height, source),
            ));
        }
        if let Some(topic) = &st.alerts {
            for fields in alert_fields(buf, source) {
                messages.push((topic, Kind::Alert, fields));
            }
        }
        let first_loss = st.counts().dropped == 0;
        let (mut dropped, mut failed) = (0, 0);
        let mut posts = Vec::new();
        for (topic, kind, fields) in messages {
            match st.publisher.publish(topic, kind, fields) {
                Ok(a) => dropped += a.dropped,
                Err(e) => {
                    if failed == 0 {
                        posts.push(Post::Warning(
                            format!("sd2publish: {e}"),
                            "the message is lost".into(),
                        ));
                    }
                    failed += 1;
                }
            }
        }
        let spool = st.publisher.spool();
        if dropped > 0 && first_loss {
            posts.push(Post::Warning(
                format!(
                    "sd2publish: the spool {} is full; its oldest messages are dropped",
                    spool.dir().display()
                ),
                format!(
                    "spool-size is {} bytes; {} cannot be reached",
                    spool.limit(),
                    st.publisher.destination()
                ),
            ));
        }
        st.failed += failed;
        st.unreported += dropped + failed;
        posts.extend(self.drop_report(st, false).map(Post::Message));
        posts
    }

    fn tell(&self, posts: Vec<Post>) {
        for p in posts {
            match p {
                Post::Message(s) => self.post(s),
                Post::Warning(text, detail) => gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("{text}"),
                    ["{detail}"]
                ),
            }
        }
    }

    /// At end of stream: waits for the spool to drain, up to `drain-timeout`.
    fn drain(&self) {
        let timeout = self.settings().drain_timeout();
        let (publisher, report) = {
            let mut guard = self.state();
            let Some(st) = guard.as_mut() else { return };
            (st.publisher.clone(), self.drop_report(st, true))
        };
        if let Some(s) = report {
            self.post(s);
        }
        let waiting = publisher.counts().waiting;
        if waiting == 0 {
            return;
        }
        if !timeout.is_zero() {
            self.post(
                gst::Structure::builder("sd2-publish-draining")
                    .field("waiting", waiting)
                    .field("destination", publisher.destination())
                    .build(),
            );
        }
        if !publisher.drain(timeout, &self.cancel) {
            let left = publisher.counts().waiting;
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "sd2publish: {left} messages were not delivered to {} by the end of the stream",
                    publisher.destination()
                ),
                [
                    "they stay in the spool {} and are delivered first when a publisher next runs on it (drain-timeout is {} ms)",
                    publisher.spool().dir().display(),
                    timeout.as_millis()
                ]
            );
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for Publish {
    const NAME: &'static str = "GstSd2Publish";
    type Type = super::Publish;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for Publish {
    fn properties() -> &'static [glib::ParamSpec] {
        settings::specs()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.settings().set(pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "published" => self.counts().published.to_value(),
            "spooled" => self.counts().waiting.to_value(),
            "dropped" => self.counts().dropped.to_value(),
            name => self.settings().get(name),
        }
    }
}

impl GstObjectImpl for Publish {}

impl ElementImpl for Publish {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² publisher",
                "Sink/Analyzer/Video",
                "Publishes each frame's JSON line and each deepfake alert to MQTT, HTTP or a file, through an on-disk spool that loses nothing while the destination is down",
                "SD² GStreamer developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            crate::pads::sink_and_src(&caps, &caps)
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => self.cancel.store(false, Ordering::SeqCst),
            // A drain in progress ends, so that the streaming thread lets the pads go.
            gst::StateChange::PausedToReady => self.cancel.store(true, Ordering::SeqCst),
            _ => {}
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for Publish {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings().clone();
        let prepared = s
            .prepare()
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("sd2publish: {}", e)))?;
        let spool_dir = prepared.config.spool_dir.display().to_string();
        let publisher = Publisher::start(prepared.config, self.observer(spool_dir.clone()))
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("sd2publish: {}", e)))?;
        gst::debug!(
            CAT,
            imp = self,
            "publishing channel {} to {} through the spool {spool_dir} ({} messages waiting)",
            s.channel,
            publisher.destination(),
            publisher.counts().waiting
        );
        *self.state() = Some(State {
            publisher: Arc::new(publisher),
            frames: prepared.frames,
            alerts: prepared.alerts,
            width: 0,
            height: 0,
            source: s.source,
            failed: 0,
            unreported: 0,
            last_report: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(mut st) = self.state().take() else {
            return Ok(());
        };
        let report = self.drop_report(&mut st, true);
        st.publisher.stop();
        *self.last_counts.lock().unwrap_or_else(|e| e.into_inner()) = st.counts();
        if let Some(s) = report {
            self.post(s);
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        if let Some(st) = self.state().as_mut() {
            let s = incaps.structure(0);
            let dimension =
                |name| s.and_then(|s| s.get::<i32>(name).ok()).unwrap_or(0).max(0) as u32;
            st.width = dimension("width");
            st.height = dimension("height");
        }
        self.parent_set_caps(incaps, outcaps)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Eos(_) => self.drain(),
            // A flush (a seek) ends a drain in progress, which holds the streaming thread.
            gst::EventView::FlushStart(_) => self.cancel.store(true, Ordering::SeqCst),
            gst::EventView::FlushStop(_) => self.cancel.store(false, Ordering::SeqCst),
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let posts = {
            let mut guard = self.state();
            let Some(st) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            self.spool_buffer(st, buf)
        };
        // Posted with the state unlocked, so that a bus sync handler may read properties.
        self.tell(posts);
        Ok(gst::FlowSuccess::Ok)
    }
}
