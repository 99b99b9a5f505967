//! Which frames are analysed: every Nth, N being the stream's frame rate over the channel's
//! `analysis_fps` (rounded, at least 1), set on both `sd2facedetect` and `sd2deepfake` by a
//! probe on the detector's sink pad. No `videorate`: every frame still flows (and is
//! published) with its faces' last verdicts.
//!
//! The rate comes from the caps; a stream whose caps give none (RTP, such as RTSP, often
//! does not) is assumed at 25 fps until the timestamps of its first [`RATE_FRAMES`] frames
//! measure it.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use gst::prelude::*;

use crate::pipeline::Pipeline;
use crate::probes::Sink;

/// The frame rate assumed while none is known.
const ASSUMED_FPS: f64 = 25.0;
/// Frames whose timestamps measure a rate the caps do not give.
pub const RATE_FRAMES: u64 = 25;

/// Frames between analyses: `fps / analysis_fps`, rounded, at least 1.
pub fn interval(fps: Option<f64>, analysis_fps: f64) -> u32 {
    let fps = fps
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(ASSUMED_FPS);
    (fps / analysis_fps).round().clamp(1.0, u32::MAX as f64) as u32
}

/// Measures a frame rate from timestamps: the first frame's, and the one
/// [`RATE_FRAMES`] frames later.
#[derive(Debug, Default)]
pub struct RateMeter {
    first: Option<u64>,
    frames: u64,
}

impl RateMeter {
    /// Takes a frame's timestamp (ns); the rate once enough frames have been seen.
    pub fn frame(&mut self, pts: Option<u64>) -> Option<f64> {
        let pts = pts?;
        let first = *self.first.get_or_insert(pts);
        self.frames += 1;
        if self.frames <= RATE_FRAMES {
            return None;
        }
        let span = pts.checked_sub(first).filter(|s| *s > 0)?;
        Some(RATE_FRAMES as f64 * 1e9 / span as f64)
    }
}

/// What the probe knows of the stream's rate.
enum Rate {
    /// No caps yet, or the rate is known.
    Settled,
    /// The caps gave no rate: measuring.
    Measuring(RateMeter),
}

pub fn install(p: &Pipeline, sink: Sink) {
    let pad = p
        .facedetect
        .static_pad("sink")
        .expect("sd2facedetect has a sink pad");
    // Weak: the probe belongs to a pad the elements hold.
    let elements = [p.facedetect.downgrade(), p.deepfake.downgrade()];
    let rate = Mutex::new(Rate::Settled);
    let apply = move |fps: Option<f64>, how: &str| {
        let n = interval(fps, sink.analysis_fps);
        let previous = sink.stats.interval.swap(n, Ordering::Relaxed);
        sink.stats.framerate_milli.store(
            fps.map(|f| (f * 1000.0).round() as u64).unwrap_or(0),
            Ordering::Relaxed,
        );
        for el in elements.iter().filter_map(|e| e.upgrade()) {
            el.set_property("inference-interval", n);
        }
        if previous != n {
            tracing::info!(
                channel = %sink.channel,
                event = "interval",
                fps = fps.unwrap_or(ASSUMED_FPS),
                rate_from = how,
                analysis_fps = sink.analysis_fps,
                inference_interval = n,
                "analysing one frame in {n}"
            );
        }
    };
    pad.add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
        move |_, info| {
            let mut rate = rate.lock().unwrap_or_else(|e| e.into_inner());
            match &info.data {
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Caps(c) = e.view() {
                        match caps_fps(c.caps()) {
                            Some(fps) => {
                                *rate = Rate::Settled;
                                apply(Some(fps), "caps");
                            }
                            None => {
                                *rate = Rate::Measuring(RateMeter::default());
                                apply(None, "assumed");
                            }
                        }
                    }
                }
                Some(gst::PadProbeData::Buffer(b)) => {
                    if let Rate::Measuring(m) = &mut *rate
                        && let Some(fps) = m.frame(b.pts().map(|t| t.nseconds()))
                    {
                        *rate = Rate::Settled;
                        apply(Some(fps), "timestamps");
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn caps_fps(caps: &gst::CapsRef) -> Option<f64> {
    let fps = gst_video::VideoInfo::from_caps(caps).ok()?.fps();
    (fps.numer() > 0 && fps.denom() > 0).then(|| fps.numer() as f64 / fps.denom() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_the_frame_rate_over_the_analysis_rate() {
        assert_eq!(interval(Some(25.0), 1.0), 25);
        assert_eq!(interval(Some(30000.0 / 1001.0), 1.0), 30);
        assert_eq!(interval(Some(50.0), 2.0), 25);
        assert_eq!(interval(Some(25.0), 100.0), 1, "never below one frame");
        assert_eq!(interval(None, 1.0), 25, "25 fps assumed without a rate");
        assert_eq!(interval(Some(0.0), 5.0), 5);
    }

    #[test]
    fn a_rate_is_measured_over_the_first_frames_timestamps() {
        let mut m = RateMeter::default();
        let step = 1_000_000_000 / 30;
        for i in 0..RATE_FRAMES {
            assert_eq!(m.frame(Some(1_000 + i * step)), None);
        }
        let fps = m.frame(Some(1_000 + RATE_FRAMES * step)).unwrap();
        assert!((fps - 30.0).abs() < 0.01, "{fps}");
    }

    #[test]
    fn frames_without_timestamps_measure_nothing() {
        let mut m = RateMeter::default();
        for _ in 0..2 * RATE_FRAMES {
            assert_eq!(m.frame(None), None);
        }
    }
}
