//! # sd2json
//!
//! Pass-through element that writes one JSON line per frame (see [`super::line`] for its
//! shape) to `location`, a file or `-` for standard output. Lines are written by a thread
//! of their own; when the output falls so far behind that a frame waits longer than its
//! duration, the element posts a warning saying so.
//!
//! ```text
//! gst-launch-1.0 -q filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect ! sd2json location=- ! fakesink
//! ```

use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::line::frame_line;
use super::writer::LineWriter;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2json",
        gst::DebugColorFlags::empty(),
        Some("SD² JSON lines"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    source: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: "-".into(),
            source: None,
        }
    }
}

struct State {
    writer: LineWriter,
    location: String,
    width: u32,
    height: u32,
    frame_duration: Option<Duration>,
    source: Option<String>,
    /// Frames that waited longer than their duration for the output.
    late: u64,
}

#[derive(Default)]
pub struct Json {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl Json {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
}

#[glib::object_subclass]
impl ObjectSubclass for Json {
    const NAME: &'static str = "GstSd2Json";
    type Type = super::Json;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for Json {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("File to write one JSON line per frame to (truncated at start), or - for standard output")
                    .default_value(Some("-"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("source")
                    .nick("Source")
                    .blurb("Value of each line's \"source\" field; unset, the element asks upstream for the stream's URI")
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        match pspec.name() {
            "location" => {
                s.location = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| "-".into())
            }
            "source" => s.source = value.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "location" => s.location.to_value(),
            "source" => s.source.to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

impl GstObjectImpl for Json {}

impl ElementImpl for Json {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² JSON lines",
                "Sink/Analyzer/Video",
                "Writes one JSON line per frame with its faces, their detection and deepfake params, and the frame verdict",
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
}

impl BaseTransformImpl for Json {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings().clone();
        let writer = LineWriter::open(&s.location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ("sd2json: cannot open {} for writing: {}", s.location, e)
            )
        })?;
        gst::debug!(CAT, imp = self, "writing JSON lines to {}", s.location);
        *self.state() = Some(State {
            writer,
            location: s.location,
            width: 0,
            height: 0,
            frame_duration: None,
            source: s.source,
            late: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(st) = self.state().take() {
            st.writer.finish().map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Write,
                    ("sd2json: writing {} failed: {}", st.location, e)
                )
            })?;
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        if let Some(st) = self.state().as_mut() {
            let s = incaps.structure(0);
            st.width = s
                .and_then(|s| s.get::<i32>("width").ok())
                .unwrap_or(0)
                .max(0) as u32;
            st.height = s
                .and_then(|s| s.get::<i32>("height").ok())
                .unwrap_or(0)
                .max(0) as u32;
            st.frame_duration = s
                .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
                .filter(|f| f.numer() > 0 && f.denom() > 0)
                .map(|f| Duration::from_secs_f64(f.denom() as f64 / f.numer() as f64));
        }
        self.parent_set_caps(incaps, outcaps)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.state();
        let Some(st) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        if st.source.is_none() {
            st.source = Some(self.upstream_uri());
        }
        let verdict = crate::roi::frame_verdict(buf);
        let line = frame_line(
            buf,
            st.width,
            st.height,
            st.source.as_deref().unwrap_or(""),
            verdict.as_ref().map(|m| m.structure()),
        );
        match st.writer.send(line.to_string()) {
            Some(waited) => {
                if st.frame_duration.is_some_and(|d| waited > d) {
                    st.late += 1;
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Write,
                        (
                            "writing {} is slower than the stream: a frame waited {} ms for the output",
                            st.location,
                            waited.as_millis()
                        ),
                        ["{} frames have waited longer than their duration", st.late]
                    );
                }
                Ok(gst::FlowSuccess::Ok)
            }
            None => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("sd2json: writing {} stopped", st.location)
                );
                Err(gst::FlowError::Error)
            }
        }
    }
}
