//! Pad probes around `sd2deepfake`: the latency (keyed by PTS), the counters read from the frame verdict
//! and face params, the lag behind the clock, and evidence of alerts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gstsd2::roi;

use crate::evidence::{AlertRecord, Evidence, Job};
use crate::pipeline::Pipeline;
use crate::stats::{self, ChannelStats};

/// What the probes report to.
#[derive(Clone)]
pub struct Sink {
    pub channel: String,
    pub source: String,
    pub analysis_fps: f64,
    pub stats: Arc<ChannelStats>,
    pub evidence: Evidence,
}

pub fn install(p: &Pipeline, sink: Sink) {
    crate::interval::install(p, sink.clone());
    let into = p
        .deepfake
        .static_pad("sink")
        .expect("sd2deepfake has a sink pad");
    let stats = sink.stats.clone();
    into.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => stats.entered(b.pts().map(|t| t.nseconds())),
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                    stats.forget_pending()
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    let out = p
        .deepfake
        .static_pad("src")
        .expect("sd2deepfake has a src pad");
    let segment = Mutex::new(gst::FormattedSegment::<gst::ClockTime>::new());
    // Weak: the probe belongs to the element's pad, which the element holds.
    let element = p.deepfake.downgrade();
    out.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => {
                    let seg = segment.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if let Some(element) = element.upgrade() {
                        frame_out(&sink, pad, &element, &seg, b);
                    }
                }
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Segment(s) = e.view()
                        && let Ok(s) = s.segment().clone().downcast::<gst::ClockTime>()
                    {
                        *segment.lock().unwrap_or_else(|e| e.into_inner()) = s;
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// A face's `deepfake` param as the monitor counts it.
struct FaceVerdict {
    fresh: bool,
    fake: bool,
    track: Option<u64>,
    scores: BTreeMap<String, f64>,
    model_name: String,
}

fn face_verdicts(buffer: &gst::BufferRef) -> Vec<FaceVerdict> {
    roi::faces(buffer)
        .filter_map(|m| {
            let d = m.param(roi::DEEPFAKE)?;
            let analysed = d.get::<bool>("analysed").unwrap_or(false);
            let frames_ago = d.get::<u32>("frames_ago").unwrap_or(u32::MAX);
            let scores = ["REAL", "FS", "FR", "EFS", "FE"]
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), d.get::<f64>(*k).ok()?)))
                .collect();
            Some(FaceVerdict {
                fresh: analysed && frames_ago == 0,
                fake: d.get::<bool>("fake").unwrap_or(false),
                track: d.get::<u64>("track_id").ok(),
                scores,
                model_name: d.get::<String>("model_name").unwrap_or_default(),
            })
        })
        .collect()
}

fn alert_record(a: &gst::StructureRef, faces: &[FaceVerdict]) -> Option<AlertRecord> {
    let track_id = a.get::<u64>("track_id").ok()?;
    let face = faces.iter().find(|f| f.track == Some(track_id));
    let f = |k: &str| a.get::<f64>(k).unwrap_or(f64::NAN);
    Some(AlertRecord {
        track_id,
        label: a.get::<String>("label").unwrap_or_default(),
        fake_type: a.get::<String>("fake_type").unwrap_or_default(),
        fake_score: f("fake_score"),
        confidence: f("confidence"),
        scores: face.map(|f| f.scores.clone()).unwrap_or_default(),
        bbox: [f("x_min"), f("y_min"), f("x_max"), f("y_max")],
        model_name: face.map(|f| f.model_name.clone()).unwrap_or_default(),
    })
}

/// Counts a frame leaving `sd2deepfake`, times it, and hands its alerts to the evidence
/// writer.
fn frame_out(
    sink: &Sink,
    pad: &gst::Pad,
    element: &gst::Element,
    segment: &gst::FormattedSegment<gst::ClockTime>,
    buffer: &gst::Buffer,
) {
    let s = &sink.stats;
    let pts = buffer.pts();
    stats::add(&s.frames, 1);
    let faces = face_verdicts(buffer);
    let fresh = faces.iter().filter(|f| f.fresh).count() as u64;
    let latency = s.left(pts.map(|t| t.nseconds()));
    if fresh > 0 {
        stats::add(&s.analysed_frames, 1);
        stats::add(&s.faces, fresh);
        stats::add(
            &s.fake_faces,
            faces.iter().filter(|f| f.fresh && f.fake).count() as u64,
        );
        if let Some(l) = latency {
            s.observe_latency(l);
        }
    }
    if let (Some(now), Some(rt)) = (element.current_running_time(), segment.to_running_time(pts)) {
        let lag = now.nseconds() as i64 - rt.nseconds() as i64;
        s.lag_us
            .store(lag / 1000, std::sync::atomic::Ordering::Relaxed);
    }
    let Some(verdict) = roi::frame_verdict(buffer) else {
        return;
    };
    let v = verdict.structure();
    if v.get::<bool>("skipped").unwrap_or(false) {
        stats::add(&s.skipped_frames, 1);
    }
    let alerts: Vec<AlertRecord> = v
        .get::<gst::Array>("alerts")
        .map(|a| {
            a.iter()
                .filter_map(|v| v.get::<gst::Structure>().ok())
                .filter_map(|a| alert_record(&a, &faces))
                .collect()
        })
        .unwrap_or_default();
    if alerts.is_empty() {
        return;
    }
    stats::add(&s.alerts, alerts.len() as u64);
    for a in &alerts {
        tracing::warn!(
            channel = %sink.channel,
            event = "alert",
            track = a.track_id,
            label = %a.label,
            fake_score = a.fake_score,
            pts = pts.map(|t| t.nseconds()),
            "a face turned fake"
        );
    }
    let Some(info) = pad
        .current_caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
    else {
        stats::add(&s.evidence_failed, alerts.len() as u64);
        return;
    };
    // A copy, so that the decoder's buffer goes back to its pool at once.
    let Ok(frame) = buffer.copy_deep() else {
        stats::add(&s.evidence_failed, alerts.len() as u64);
        return;
    };
    sink.evidence.submit(Job {
        channel: sink.channel.clone(),
        source: sink.source.clone(),
        buffer: frame,
        info,
        time: chrono::Utc::now(),
        pts,
        alerts,
        stats: s.clone(),
    });
}
