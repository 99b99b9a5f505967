//! `sd2deepfake`'s properties: what a user sets, with the defaults the property specs read.

use std::path::PathBuf;
use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use sd2_models::analyzer::{AnalyzerSettings, Decision, Judge};
use sd2_models::paths;

use crate::device::DeviceKind;

/// What to do with a frame when `max-in-flight` frames already wait for inference.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2QueueMode")]
pub enum QueueMode {
    #[default]
    #[enum_value(
        name = "Block: hold the streaming thread until there is room (nothing is lost)",
        nick = "block"
    )]
    Block = 0,
    #[enum_value(
        name = "Skip: let the frame pass unanalysed, its faces carrying their last verdicts (never blocks a live source)",
        nick = "skip"
    )]
    Skip = 1,
}

/// Which rule judges a face fake (see [`Decision`]).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2Decision")]
pub enum DecisionKind {
    #[default]
    #[enum_value(
        name = "Argmax: fake when a manipulation type is more probable than REAL (the paper's rule)",
        nick = "argmax"
    )]
    Argmax = 0,
    #[enum_value(
        name = "Threshold: fake when the fake score (1 - p(REAL)) is above the threshold property",
        nick = "threshold"
    )]
    Threshold = 1,
}

impl From<DecisionKind> for Decision {
    fn from(d: DecisionKind) -> Decision {
        match d {
            DecisionKind::Argmax => Decision::Argmax,
            DecisionKind::Threshold => Decision::Threshold,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub model: PathBuf,
    pub device: DeviceKind,
    pub cuda_graph: bool,
    pub batch_size: u32,
    pub max_in_flight: u32,
    pub max_queued_frames: u32,
    pub queue_mode: QueueMode,
    pub decision: DecisionKind,
    pub threshold: f32,
    pub inference_interval: u32,
    pub reclassify_interval: u32,
    pub smoothing: f32,
    pub hysteresis: f32,
}

impl Default for Settings {
    fn default() -> Self {
        let analysis = AnalyzerSettings::default();
        Settings {
            model: paths::model_dir().join("sd2-demo.onnx"),
            device: DeviceKind::default(),
            cuda_graph: false,
            batch_size: 32,
            max_in_flight: 4,
            max_queued_frames: analysis.max_pending as u32,
            queue_mode: QueueMode::default(),
            decision: DecisionKind::default(),
            threshold: analysis.judge.threshold,
            inference_interval: analysis.inference_interval,
            reclassify_interval: analysis.reclassify_interval,
            smoothing: analysis.smoothing,
            hysteresis: analysis.judge.hysteresis,
        }
    }
}

/// Properties that decide which model is loaded and how: they change only while the
/// element is stopped, so that reading them back names what runs.
pub const LOAD_PROPERTIES: [&str; 4] = ["model", "device", "cuda-graph", "batch-size"];

impl Settings {
    /// How the Analyzer judges this stream.
    pub fn analysis(&self) -> AnalyzerSettings {
        AnalyzerSettings {
            judge: Judge {
                decision: self.decision.into(),
                threshold: self.threshold,
                hysteresis: self.hysteresis,
            },
            smoothing: self.smoothing,
            inference_interval: self.inference_interval,
            reclassify_interval: self.reclassify_interval,
            // A frame waits behind at most `max-queued-frames` others, so a face sent to
            // the model is back (or failed) by then.
            max_pending: self.max_queued_frames as u64,
        }
    }

    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let v = value;
        match name {
            "model" => {
                self.model = v
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map_or_else(|| Settings::default().model, PathBuf::from)
            }
            "device" => self.device = v.get().expect("type checked upstream"),
            "cuda-graph" => self.cuda_graph = v.get().expect("type checked upstream"),
            "batch-size" => self.batch_size = v.get().expect("type checked upstream"),
            "max-in-flight" => self.max_in_flight = v.get().expect("type checked upstream"),
            "max-queued-frames" => self.max_queued_frames = v.get().expect("type checked upstream"),
            "queue-mode" => self.queue_mode = v.get().expect("type checked upstream"),
            "decision" => self.decision = v.get().expect("type checked upstream"),
            "threshold" => self.threshold = v.get().expect("type checked upstream"),
            "inference-interval" => {
                self.inference_interval = v.get().expect("type checked upstream")
            }
            "reclassify-interval" => {
                self.reclassify_interval = v.get().expect("type checked upstream")
            }
            "smoothing" => self.smoothing = v.get().expect("type checked upstream"),
            "hysteresis" => self.hysteresis = v.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
    }

    pub fn get(&self, name: &str) -> glib::Value {
        match name {
            "model" => self.model.to_string_lossy().to_value(),
            "device" => self.device.to_value(),
            "cuda-graph" => self.cuda_graph.to_value(),
            "batch-size" => self.batch_size.to_value(),
            "max-in-flight" => self.max_in_flight.to_value(),
            "max-queued-frames" => self.max_queued_frames.to_value(),
            "queue-mode" => self.queue_mode.to_value(),
            "decision" => self.decision.to_value(),
            "threshold" => self.threshold.to_value(),
            "inference-interval" => self.inference_interval.to_value(),
            "reclassify-interval" => self.reclassify_interval.to_value(),
            "smoothing" => self.smoothing.to_value(),
            "hysteresis" => self.hysteresis.to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

/// The property specs, defaults from [`Settings::default`].
pub fn specs() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        let d = Settings::default();
        let mut specs = model_specs(&d);
        specs.extend(queue_specs(&d));
        specs.extend(judgement_specs(&d));
        specs.extend([
            glib::ParamSpecUInt64::builder("skipped-frames")
                .nick("Skipped frames")
                .blurb("Frames let through unanalysed since start because the queue was full (queue-mode=skip)")
                .read_only()
                .build(),
            glib::ParamSpecUInt::builder("queued-frames")
                .nick("Queued frames")
                .blurb("Frames waiting in the element now (for the model, or behind frames that are), at most max-queued-frames")
                .read_only()
                .build(),
            glib::ParamSpecString::builder("active-device")
                .nick("Active device")
                .blurb("Where the model runs once started (cpu or cuda); unset before")
                .read_only()
                .build(),
        ]);
        specs
    });
    PROPERTIES.as_ref()
}

fn model_specs(d: &Settings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb("SD² model file written by `sd2-train export` (input pixel_values, outputs logits and embedding, crop recipe in its metadata); default: the demo model")
            .default_value(Some(d.model.to_string_lossy().as_ref()))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("device", d.device)
            .nick("Device")
            .blurb("Where the model runs: cpu, cuda (fails to start if CUDA cannot be used) or auto (CUDA when it works, else the CPU; the choice is logged)")
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("cuda-graph")
            .nick("CUDA graphs")
            .blurb("On CUDA, pad batches to 1, 2, 4, ... 128 faces and capture one CUDA graph per size when the element starts, replayed on later runs; when ONNX Runtime refuses graphs for the model, or a capture or replay fails, it runs without them and logs why")
            .default_value(d.cuda_graph)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("batch-size")
            .nick("Batch size")
            .blurb("Most faces classified in one run of the model; the faces of the frames waiting together (and of other streams sharing the model) go in one batch. Nothing waits for a batch to fill")
            .minimum(1)
            .maximum(1024)
            .default_value(d.batch_size)
            .mutable_ready()
            .build(),
    ]
}

fn queue_specs(d: &Settings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecUInt::builder("max-in-flight")
            .nick("Frames in flight")
            .blurb("Most frames with faces to classify that wait for or are in inference; beyond, queue-mode decides")
            .minimum(1)
            .maximum(1024)
            .default_value(d.max_in_flight)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("max-queued-frames")
            .nick("Frames queued")
            .blurb("Most frames of any kind waiting in the element (those without faces to classify wait in order behind those with). When that many wait the streaming thread waits, whatever queue-mode says: only a downstream that takes no frames, or a model much slower than the stream, fills it. Bounds the memory held (about 3 MB a 1080p I420 frame)")
            .minimum(1)
            .maximum(100_000)
            .default_value(d.max_queued_frames)
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("queue-mode", d.queue_mode)
            .nick("Queue mode")
            .blurb("When max-in-flight frames wait: block the streaming thread (nothing is lost), or skip (the frame passes unanalysed; for live sources)")
            .mutable_playing()
            .build(),
    ]
}

fn judgement_specs(d: &Settings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecEnum::builder_with_default("decision", d.decision)
            .nick("Decision rule")
            .blurb("When a face is judged fake: argmax (a manipulation type more probable than REAL, the paper's rule) or threshold (fake score above the threshold property). A fake face is labelled with its most likely manipulation type, a real one REAL")
            .mutable_playing()
            .build(),
        glib::ParamSpecFloat::builder("threshold")
            .nick("Fake threshold")
            .blurb("With decision=threshold: a face is judged fake when its fake score (1 - p(REAL)) is above this. A frame is fake when any face is")
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
            .blurb("A face judged fake stays fake until it is this far on the real side: its fake score this far below threshold (decision=threshold), or p(REAL) this far above the likeliest manipulation's (decision=argmax); a score wavering at the boundary raises one alert")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(d.hysteresis)
            .mutable_playing()
            .build(),
    ]
}
