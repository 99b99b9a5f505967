//! One video through GStreamer:
//!
//! ```text
//! filesrc location=VIDEO ! sd2bin frames-per-video=32 model=MODEL ! video/x-raw,format=RGB ! appsink
//! ```
//!
//! The sink asks for RGB, so `sd2bin`'s own converter (before face detection) makes it: a
//! converter after the analysis would drop the faces' params, which GStreamer 1.22 does not
//! copy when it converts a frame's region metas.
//!
//! Each frame that reaches the sink has been sampled, its faces found and classified; its
//! faces go into the video's tally and thumbnails are cut from its pixels. The inner
//! `sd2deepfake` runs without smoothing, so that each face is judged on its own frame as
//! `sd2-train eval` judges it. A file is refused when GStreamer reports an error, when no
//! frame decodes, and when its frames stop well before the duration its container declares
//! (a truncated file).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use image::RgbImage;
use sd2_models::analyzer::Judge;

use crate::frames::{RgbFrame, classified_faces, thumbnail};
use crate::tally::{VideoAccumulator, VideoSummary};

/// Which frames are analysed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// This many evenly spaced over the video (the paper evaluates 32).
    PerVideo(u32),
    /// At most this many a second.
    PerSecond(f64),
    Every,
}

impl Sampling {
    pub fn describe(self) -> String {
        match self {
            Sampling::PerVideo(n) => format!("{n} per video"),
            Sampling::PerSecond(f) => format!("{f} per second"),
            Sampling::Every => "every frame".into(),
        }
    }
}

/// How videos are analysed.
#[derive(Clone, Debug)]
pub struct AnalyseOptions {
    pub model: PathBuf,
    pub sampling: Sampling,
    pub judge: Judge,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// How many of the most suspicious faces to cut thumbnails of (0: none).
    pub thumbnails: usize,
    /// A video that makes no progress for this long is given up.
    pub stall: Duration,
}

/// Why a video could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot build the pipeline: {0}")]
    Pipeline(String),
    #[error("{0}")]
    Stream(String),
    #[error("no video frame could be decoded")]
    NoFrames,
    #[error(
        "truncated: its video stops at {end:.1} s of the {duration:.1} s its container declares"
    )]
    Truncated { end: f64, duration: f64 },
    #[error("no progress for {0} s; given up")]
    Stalled(u64),
}

/// What a video's analysis gives.
pub struct Analysis {
    pub summary: VideoSummary<RgbImage>,
    pub duration_s: Option<f64>,
}

/// Where the analysis is: the fraction of the video's duration behind it (when known) and
/// the frames analysed.
pub type ProgressFn = dyn Fn(Option<f64>, usize) + Send + Sync;

/// What the streaming threads gather.
struct Shared {
    acc: VideoAccumulator<RgbImage>,
    /// Decoded video frames: the first timestamp and the furthest end (nanoseconds).
    first_pts: Option<u64>,
    end_pts: u64,
    duration: Option<gst::ClockTime>,
    last_activity: Instant,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops the pipeline however the analysis ends.
struct Running(gst::Pipeline);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Analyses the video at `path`, calling `progress` after each analysed frame.
pub fn analyse(
    path: &Path,
    opts: &AnalyseOptions,
    progress: Arc<ProgressFn>,
) -> Result<Analysis, ScanError> {
    let (pipeline, bin, sink) = build(path, opts)?;
    let shared = Arc::new(Mutex::new(Shared {
        acc: VideoAccumulator::new(opts.judge),
        first_pts: None,
        end_pts: 0,
        duration: None,
        last_activity: Instant::now(),
    }));
    watch_decoded_frames(&bin, &shared)?;
    collect_frames(&sink, &shared, opts.thumbnails > 0, progress);
    let running = Running(pipeline);
    let bus = running.0.bus().expect("pipelines have a bus");
    if running.0.set_state(gst::State::Playing).is_err() {
        return Err(bus_error(&bus)
            .unwrap_or_else(|| ScanError::Stream("the pipeline refused to start".into())));
    }
    loop {
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break,
            Some(gst::MessageView::Error(e)) => return Err(ScanError::Stream(error_text(e))),
            _ => {
                let idle = lock(&shared).last_activity.elapsed();
                if idle > opts.stall {
                    return Err(ScanError::Stalled(idle.as_secs()));
                }
            }
        }
    }
    let declared = running.0.query_duration::<gst::ClockTime>();
    // Stopped: the streaming threads are done with the analysis.
    drop(running);
    let mut s = lock(&shared);
    let acc = std::mem::replace(&mut s.acc, VideoAccumulator::new(opts.judge));
    let first = s.first_pts.ok_or(ScanError::NoFrames)?;
    let duration = declared.or(s.duration).map(|d| d.nseconds());
    if let Some(d) = duration {
        let decoded = s.end_pts.saturating_sub(first);
        // A video track may end a little before the audio that sets the container's
        // duration; a second or 5% short is not a damaged file.
        let slack = (d / 20).max(1_000_000_000);
        if decoded + slack < d {
            return Err(ScanError::Truncated {
                end: decoded as f64 / 1e9,
                duration: d as f64 / 1e9,
            });
        }
    }
    Ok(Analysis {
        summary: acc.finish(opts.thumbnails),
        duration_s: duration.map(|d| d as f64 / 1e9),
    })
}

fn make(factory: &str) -> Result<gst::Element, ScanError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| ScanError::Pipeline(format!("GStreamer element {factory} is missing")))
}

fn build(
    path: &Path,
    opts: &AnalyseOptions,
) -> Result<(gst::Pipeline, gst::Element, gst_app::AppSink), ScanError> {
    let pipeline = gst::Pipeline::new();
    let src = make("filesrc")?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let bin = make("sd2bin")?;
    bin.set_property("model", opts.model.to_string_lossy().as_ref());
    match opts.sampling {
        Sampling::PerVideo(n) => bin.set_property("frames-per-video", n),
        Sampling::PerSecond(f) => bin.set_property("sample-fps", f),
        Sampling::Every => {}
    }
    bin.set_property_from_str("device", &opts.device);
    let deepfake = inner(&bin, "sd2deepfake")
        .ok_or_else(|| ScanError::Pipeline("sd2bin holds no sd2deepfake".into()))?;
    deepfake.set_property("smoothing", 0f32);
    deepfake.set_property("hysteresis", 0f32);
    deepfake.set_property_from_str("decision", opts.judge.decision.name());
    deepfake.set_property("threshold", opts.judge.threshold);
    let rgb = gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Rgb)
        .build();
    let sink = gst_app::AppSink::builder().caps(&rgb).sync(false).build();
    pipeline
        .add_many([&src, &bin, sink.upcast_ref()])
        .and_then(|()| gst::Element::link_many([&src, &bin]))
        .and_then(|()| bin.link(&sink))
        .map_err(|e| ScanError::Pipeline(e.to_string()))?;
    Ok((pipeline, bin, sink))
}

/// The child of `bin` made by `factory`.
fn inner(bin: &gst::Element, factory: &str) -> Option<gst::Element> {
    let proxy = bin.dynamic_cast_ref::<gst::ChildProxy>()?;
    (0..proxy.children_count())
        .filter_map(|i| proxy.child_by_index(i))
        .filter_map(|c| c.downcast::<gst::Element>().ok())
        .find(|e| e.factory().is_some_and(|f| f.name() == factory))
}

/// Records how far the decoded video reaches, before sampling drops frames.
fn watch_decoded_frames(bin: &gst::Element, shared: &Arc<Mutex<Shared>>) -> Result<(), ScanError> {
    let decodebin = inner(bin, "decodebin")
        .ok_or_else(|| ScanError::Pipeline("sd2bin holds no decodebin".into()))?;
    let shared = shared.clone();
    decodebin.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        if !video {
            return;
        }
        let shared = shared.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                let mut s = lock(&shared);
                s.last_activity = Instant::now();
                if let Some(pts) = b.pts() {
                    let pts = pts.nseconds();
                    s.first_pts = Some(s.first_pts.map_or(pts, |f| f.min(pts)));
                    let end = pts + b.duration().map_or(0, |d| d.nseconds());
                    s.end_pts = s.end_pts.max(end);
                }
            }
            gst::PadProbeReturn::Ok
        });
    });
    Ok(())
}

/// Reads each analysed frame at the sink into the tally.
fn collect_frames(
    sink: &gst_app::AppSink,
    shared: &Arc<Mutex<Shared>>,
    thumbnails: bool,
    progress: Arc<ProgressFn>,
) {
    let shared = shared.clone();
    let callbacks = gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let pts = buffer.pts().unwrap_or(gst::ClockTime::ZERO);
            let time = sample
                .segment()
                .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                .and_then(|s| s.to_stream_time(pts))
                .unwrap_or(pts);
            let faces = classified_faces(buffer);
            let info = sample
                .caps()
                .filter(|_| thumbnails && !faces.is_empty())
                .and_then(|c| gst_video::VideoInfo::from_caps(c).ok());
            let frame = info
                .as_ref()
                .and_then(|i| gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, i).ok());
            // Asked before taking the lock: the query travels upstream, where the decoded
            // frames' probe takes it too.
            let known = lock(&shared).duration;
            let duration = known.or_else(|| sink.query_duration::<gst::ClockTime>());
            let mut s = lock(&shared);
            s.last_activity = Instant::now();
            s.duration = duration;
            s.acc.add_frame(time.seconds_f64(), &faces, |face| {
                let f = frame.as_ref()?;
                let rgb = RgbFrame {
                    data: f.plane_data(0).ok()?,
                    stride: f.plane_stride()[0] as usize,
                    width: f.width(),
                    height: f.height(),
                };
                thumbnail(&rgb, face.rect)
            });
            let fraction = duration
                .filter(|d| d.nseconds() > 0)
                .map(|d| (time.seconds_f64() / d.seconds_f64()).min(1.0));
            let frames = s.acc.frames();
            drop(s);
            progress(fraction, frames);
            Ok(gst::FlowSuccess::Ok)
        })
        .build();
    sink.set_callbacks(callbacks);
}

/// The message of the first error on `bus`, if one was posted.
fn bus_error(bus: &gst::Bus) -> Option<ScanError> {
    let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(ScanError::Stream(error_text(e))),
        _ => None,
    }
}

/// An error message as a person reads it: GStreamer's message, without its debug trail.
fn error_text(e: &gst::message::Error) -> String {
    e.error().message().trim_end_matches('.').to_owned()
}
