//! # sd2deepfake
//!
//! Classifies the faces attached upstream (`GstVideoRegionOfInterestMeta` of type `face`,
//! from `sd2facedetect` or any element that attaches them) with an SD² model exported by
//! `sd2-train export`, running on ONNX Runtime. Each face gets a `deepfake` param (label,
//! probabilities, fake score, track id, frames ago; see [`crate::roi`]), each frame a
//! verdict (`Sd2FrameVerdictMeta`: fake when any face is judged fake, its fake score above
//! `threshold`), and when a face's track turns fake the element posts an
//! `sd2-deepfake-alert` message (`track_id`, `label`, `fake_type` (the most likely
//! manipulation), `fake_score`, `confidence`, `timestamp`, the box). A fake track turns
//! real again only once its score is `hysteresis` below the threshold.
//!
//! ```text
//! gst-launch-1.0 -m filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect ! sd2deepfake model=sd2.onnx ! sd2json location=- ! fakesink
//! ```
//!
//! Faces are followed across frames by box overlap; a tracked face goes back to the model
//! every `reclassify-interval` frames (on frames that `inference-interval` selects) and
//! carries its smoothed verdict in between. With `batch-size` above 1, the faces of
//! consecutive frames are classified together, holding frames back (in order) until the
//! batch is full or as many frames wait.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use sd2_models::classifier::{DeepfakeModel, Verdict};
use sd2_models::paths;
use sd2_models::runtime::SessionConfig;
use sd2_models::tracker::Tracker;

use super::tracks::{TrackState, due, smooth};
use crate::device::DeviceKind;
use crate::frame::{self, RgbConverter};
use crate::roi;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2deepfake",
        gst::DebugColorFlags::empty(),
        Some("SD² deepfake classification"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    model: PathBuf,
    device: DeviceKind,
    batch_size: u32,
    threshold: f32,
    inference_interval: u32,
    reclassify_interval: u32,
    smoothing: f32,
    hysteresis: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: paths::model_dir().join("sd2-demo.onnx"),
            device: DeviceKind::default(),
            batch_size: 1,
            threshold: 0.5,
            inference_interval: 1,
            reclassify_interval: 1,
            smoothing: 0.5,
            hysteresis: 0.1,
        }
    }
}

/// A face of a waiting frame.
struct PendingFace {
    track: u64,
    /// Index of its input in the batch, when it goes to the model.
    input: Option<usize>,
    /// Normalised box, for alerts.
    bbox: [f64; 4],
}

struct PendingFrame {
    buffer: gst::Buffer,
    frame: u64,
    faces: Vec<PendingFace>,
}

struct State {
    model: DeepfakeModel,
    converter: Option<RgbConverter>,
    tracker: Tracker<TrackState>,
    frame: u64,
    pending: Vec<PendingFrame>,
    inputs: Vec<f32>,
    failures: u64,
}

pub struct Deepfake {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

/// Faces on a buffer as pixel boxes: from the `detection` param's normalised box when it
/// has one, else from the ROI rectangle.
fn face_boxes(buf: &gst::BufferRef, width: u32, height: u32) -> Vec<[f32; 4]> {
    let (w, h) = (width as f64, height as f64);
    roi::faces(buf)
        .map(|m| {
            let d = m.param(roi::DETECTION);
            let get = |k: &str| d.and_then(|s| s.get::<f64>(k).ok());
            match (get("x_min"), get("y_min"), get("x_max"), get("y_max")) {
                (Some(a), Some(b), Some(c), Some(e)) => [
                    (a * w) as f32,
                    (b * h) as f32,
                    (c * w) as f32,
                    (e * h) as f32,
                ],
                _ => {
                    let (x, y, rw, rh) = m.rect();
                    [x as f32, y as f32, (x + rw) as f32, (y + rh) as f32]
                }
            }
        })
        .collect()
}

/// The manipulation type the model finds most likely.
fn most_likely_fake(v: &Verdict) -> sd2_models::taxonomy::DeepfakeType {
    let best = (1..v.probabilities.len())
        .max_by(|&a, &b| v.probabilities[a].total_cmp(&v.probabilities[b]))
        .unwrap_or(1);
    sd2_models::taxonomy::DeepfakeType::ALL[best]
}

impl Deepfake {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings().clone();
        let ready = {
            let mut guard = self.state();
            let Some(st) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let Some(converter) = st.converter.as_mut() else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("no caps were negotiated before the first buffer")
                );
                return Err(gst::FlowError::NotNegotiated);
            };
            let (width, height) = (converter.info().width(), converter.info().height());
            let boxes = face_boxes(&buffer, width, height);
            let frame = st.frame;
            st.frame += 1;
            let tracks = st.tracker.update(frame, &boxes);
            let analysed = frame % settings.inference_interval.max(1) as u64 == 0;
            let reclassify = settings.reclassify_interval.max(1) as u64;
            let mut faces = Vec::with_capacity(boxes.len());
            let mut wanted = Vec::new();
            for (bbox, &t) in boxes.iter().zip(&tracks) {
                let track = &mut st.tracker.tracks[t];
                let input = if due(&track.state, frame, analysed, reclassify) {
                    track.state.scheduled = Some(frame);
                    wanted.push(*bbox);
                    Some(st.inputs.len() / st.model.input_len() + wanted.len() - 1)
                } else {
                    None
                };
                faces.push(PendingFace {
                    track: track.id,
                    input,
                    bbox: [
                        bbox[0] as f64 / width as f64,
                        bbox[1] as f64 / height as f64,
                        bbox[2] as f64 / width as f64,
                        bbox[3] as f64 / height as f64,
                    ],
                });
            }
            if !wanted.is_empty() {
                let per = st.model.input_len();
                let start = st.inputs.len();
                st.inputs.resize(start + per * wanted.len(), 0.0);
                let (model, inputs) = (&st.model, &mut st.inputs[start..]);
                let prepared = converter.with_rgb(&buffer, |rgb| {
                    for (b, out) in wanted.iter().zip(inputs.chunks_mut(per)) {
                        model.prepare(rgb, *b, out);
                    }
                });
                if let Err(e) = prepared {
                    st.failures += 1;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Decode,
                        ("frame {} not analysed: {}", frame, e)
                    );
                    st.inputs.truncate(start);
                    for f in &mut faces {
                        f.input = None;
                    }
                }
            }
            st.pending.push(PendingFrame {
                buffer,
                frame,
                faces,
            });
            let batch = settings.batch_size.max(1) as usize;
            let queued = st.inputs.len() / st.model.input_len();
            if queued >= batch || st.pending.len() >= batch {
                Some(self.finish(st, &settings))
            } else {
                None
            }
        };
        match ready {
            Some(buffers) => self.push_all(buffers),
            None => Ok(gst::FlowSuccess::Ok),
        }
    }

    /// Classifies the waiting faces and returns the waiting buffers with their metadata.
    fn finish(&self, st: &mut State, settings: &Settings) -> Vec<gst::Buffer> {
        let verdicts = if st.inputs.is_empty() {
            Vec::new()
        } else {
            match st.model.classify(&st.inputs) {
                Ok(v) => v,
                Err(e) => {
                    st.failures += 1;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Failed,
                        ("faces not classified: {}", e)
                    );
                    Vec::new()
                }
            }
        };
        st.inputs.clear();
        let name = st.model.name().to_owned();
        let mut out = Vec::with_capacity(st.pending.len());
        for p in st.pending.drain(..) {
            let mut buffer = p.buffer;
            let b = buffer.make_mut();
            let pts = b.pts();
            let (mut best, mut best_label, mut fake_faces, mut analysed) =
                (0.0f64, String::from("REAL"), 0u32, 0u32);
            let mut metas: Vec<_> = b
                .iter_meta_mut::<VideoRegionOfInterestMeta>()
                .filter(|m| m.roi_type() == roi::FACE)
                .collect();
            for (face, meta) in p.faces.iter().zip(metas.iter_mut()) {
                let Some(track) = st.tracker.tracks.iter_mut().find(|t| t.id == face.track) else {
                    continue;
                };
                if let Some(v) = face.input.and_then(|i| verdicts.get(i)) {
                    let old = track.state.verdict.as_ref().map(|(v, _)| v);
                    track.state.verdict = Some((smooth(old, v, settings.smoothing), p.frame));
                }
                let Some((v, at)) = track.state.verdict else {
                    continue;
                };
                analysed += 1;
                meta.add_param(roi::deepfake_param(
                    &v,
                    &name,
                    track.id,
                    (p.frame - at) as u32,
                ));
                let score = v.fake_score() as f64;
                // A fake track stays fake until its score drops `hysteresis` below the
                // threshold, so a score wavering around it does not repeat alerts.
                let bar = if track.state.fake {
                    settings.threshold - settings.hysteresis
                } else {
                    settings.threshold
                };
                let fake = score > bar as f64;
                if fake {
                    fake_faces += 1;
                }
                if score >= best {
                    best = score;
                    best_label = v.label().code().to_owned();
                }
                if fake && !track.state.fake {
                    self.alert(&v, track.id, face.bbox, pts);
                }
                track.state.fake = fake;
            }
            drop(metas);
            roi::set_frame_verdict(
                b,
                gst::Structure::builder("frame_verdict")
                    .field("fake", fake_faces > 0)
                    .field("fake_score", best)
                    .field("label", best_label)
                    .field("faces", p.faces.len() as u32)
                    .field("fake_faces", fake_faces)
                    .field("analysed_faces", analysed)
                    .field("threshold", settings.threshold as f64)
                    .field("model_name", name.as_str())
                    .build(),
            );
            out.push(buffer);
        }
        out
    }

    fn alert(&self, v: &Verdict, track: u64, bbox: [f64; 4], pts: Option<gst::ClockTime>) {
        gst::info!(
            CAT,
            imp = self,
            "track {track} judged {} ({:.3})",
            v.label(),
            v.fake_score()
        );
        let s = gst::Structure::builder("sd2-deepfake-alert")
            .field("track_id", track)
            .field("label", v.label().code())
            .field("fake_type", most_likely_fake(v).code())
            .field("fake_score", v.fake_score() as f64)
            .field("confidence", v.confidence() as f64)
            .field("timestamp", pts.map(|t| t.nseconds()).unwrap_or(u64::MAX))
            .field("x_min", bbox[0])
            .field("y_min", bbox[1])
            .field("x_max", bbox[2])
            .field("y_max", bbox[3])
            .build();
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    fn push_all(&self, buffers: Vec<gst::Buffer>) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut result = Ok(gst::FlowSuccess::Ok);
        for b in buffers {
            result = self.srcpad.push(b);
            if result.is_err() {
                break;
            }
        }
        result
    }

    /// Classifies and pushes whatever waits.
    fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings().clone();
        let buffers = match self.state().as_mut() {
            Some(st) if !st.pending.is_empty() => self.finish(st, &settings),
            _ => Vec::new(),
        };
        self.push_all(buffers)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                let _ = self.drain();
                let caps = c.caps_owned();
                match gst_video::VideoInfo::from_caps(&caps)
                    .map_err(|e| e.to_string())
                    .and_then(|info| RgbConverter::new(&info).map_err(|e| e.to_string()))
                {
                    Ok(conv) => {
                        if let Some(st) = self.state().as_mut() {
                            st.converter = Some(conv);
                        }
                    }
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("cannot use caps {}: {}", caps, e)
                        );
                        return false;
                    }
                }
                self.srcpad.push_event(event)
            }
            gst::EventView::FlushStop(_) => {
                if let Some(st) = self.state().as_mut() {
                    st.pending.clear();
                    st.inputs.clear();
                    st.tracker.clear();
                    st.frame = 0;
                }
                self.srcpad.push_event(event)
            }
            _ if event.is_serialized() => {
                let _ = self.drain();
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            if !self.sinkpad.peer_query(q.query_mut()) {
                return false;
            }
            let (live, min, max) = q.result();
            let batch = self.settings().batch_size.max(1) as u64;
            let frame = self
                .state()
                .as_ref()
                .and_then(|st| st.converter.as_ref())
                .map(|c| c.info().fps())
                .filter(|f| f.numer() > 0)
                .map(|f| {
                    gst::ClockTime::SECOND
                        .mul_div_floor(f.denom() as u64, f.numer() as u64)
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let ours = frame * (batch - 1);
            q.set(live, min + ours, max.map(|m| m + ours));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings().clone();
        let model = DeepfakeModel::load(&s.model, s.device.into(), SessionConfig::default())
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("sd2deepfake: {}", e)))?;
        match model.fallback_reason() {
            Some(reason) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "device=auto: CUDA cannot be used ({reason}); running on the CPU"
                );
                let msg = gst::message::Element::builder(
                    gst::Structure::builder("sd2-device")
                        .field("device", "cpu")
                        .field("reason", reason)
                        .build(),
                )
                .src(&*self.obj())
                .build();
                let _ = self.obj().post_message(msg);
            }
            None => gst::info!(
                CAT,
                imp = self,
                "model {} running on {}",
                model.name(),
                model.placement()
            ),
        }
        *self.state() = Some(State {
            model,
            converter: None,
            tracker: Tracker::new(0.3, 25),
            frame: 0,
            pending: Vec::new(),
            inputs: Vec::new(),
            failures: 0,
        });
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for Deepfake {
    const NAME: &'static str = "GstSd2Deepfake";
    type Type = super::Deepfake;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad =
            gst::Pad::builder_from_template(&klass.pad_template("sink").expect("sink template"))
                .chain_function(|pad, parent, buffer| {
                    Deepfake::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |this| this.chain(pad, buffer),
                    )
                })
                .event_function(|pad, parent, event| {
                    Deepfake::catch_panic_pad_function(
                        parent,
                        || false,
                        |this| this.sink_event(pad, event),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
        let srcpad =
            gst::Pad::builder_from_template(&klass.pad_template("src").expect("src template"))
                .query_function(|pad, parent, query| {
                    Deepfake::catch_panic_pad_function(
                        parent,
                        || false,
                        |this| this.src_query(pad, query),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
        Deepfake {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
        }
    }
}

impl ObjectImpl for Deepfake {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("add the sink pad");
        obj.add_pad(&self.srcpad).expect("add the src pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("SD² model file written by `sd2-train export` (input pixel_values, outputs logits and embedding, crop recipe in its metadata); default: the demo model scripts/setup.sh trains")
                    .default_value(Some(d.model.to_string_lossy().as_ref()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", d.device)
                    .nick("Device")
                    .blurb("Where the model runs: cpu, cuda (fails to start if CUDA cannot be used) or auto (CUDA when it works, else the CPU; the choice is logged)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Faces classified together; above 1, frames are held back (in order) until this many faces or frames wait, adding up to batch-size - 1 frames of latency")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(d.batch_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Fake threshold")
                    .blurb("A face is judged fake when its fake score (1 - p(REAL)) is above this; a frame is fake when any face is")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-interval")
                    .nick("Inference interval")
                    .blurb("Send tracked faces to the model only on every Nth frame (new faces go at first sight); the frames in between carry each track's last verdict, with frames_ago set")
                    .minimum(1)
                    .default_value(d.inference_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("reclassify-interval")
                    .nick("Reclassify interval")
                    .blurb("Send a tracked face to the model again once this many frames have passed since it last went")
                    .minimum(1)
                    .default_value(d.reclassify_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("smoothing")
                    .nick("Smoothing")
                    .blurb("Weight of a track's past verdict when a new one arrives (0: the latest verdict only)")
                    .minimum(0.0)
                    .maximum(0.99)
                    .default_value(d.smoothing)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("hysteresis")
                    .nick("Hysteresis")
                    .blurb("A face judged fake stays fake until its fake score falls this far below threshold, so a score wavering around the threshold raises one alert")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.hysteresis)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("active-device")
                    .nick("Active device")
                    .blurb("Where the model runs once started (cpu or cuda); unset before")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map_or_else(|| Settings::default().model, PathBuf::from)
            }
            "device" => s.device = value.get().expect("type checked upstream"),
            "batch-size" => s.batch_size = value.get().expect("type checked upstream"),
            "threshold" => s.threshold = value.get().expect("type checked upstream"),
            "inference-interval" => {
                s.inference_interval = value.get().expect("type checked upstream")
            }
            "reclassify-interval" => {
                s.reclassify_interval = value.get().expect("type checked upstream")
            }
            "smoothing" => s.smoothing = value.get().expect("type checked upstream"),
            "hysteresis" => s.hysteresis = value.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "active-device" {
            return self
                .state()
                .as_ref()
                .map(|st| st.model.placement().to_string())
                .to_value();
        }
        let s = self.settings();
        match pspec.name() {
            "model" => s.model.to_string_lossy().to_value(),
            "device" => s.device.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "threshold" => s.threshold.to_value(),
            "inference-interval" => s.inference_interval.to_value(),
            "reclassify-interval" => s.reclassify_interval.to_value(),
            "smoothing" => s.smoothing.to_value(),
            "hysteresis" => s.hysteresis.to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

impl GstObjectImpl for Deepfake {}

impl ElementImpl for Deepfake {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² deepfake classification",
                "Filter/Analyzer/Video",
                "Classifies the faces attached upstream as real or face swapping, reenactment, synthesis or editing with an SD² model",
                "SD² GStreamer developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = frame::caps();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused
            && let Err(e) = self.start()
        {
            self.post_error_message(e);
            return Err(gst::StateChangeError);
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady
            && let Some(st) = self.state().take().filter(|st| st.failures > 0)
        {
            gst::warning!(
                CAT,
                imp = self,
                "{} batches could not be analysed",
                st.failures
            );
        }
        Ok(result)
    }
}
