//! A frame's analysis on its buffer: a `deepfake` param per face, the frame's verdict meta,
//! and the alerts (also posted on the bus).

use gst_video::VideoRegionOfInterestMeta;
use sd2_models::analyzer::{Alert, FrameOutcome, Judge};

use crate::roi;

/// The `sd2-deepfake-alert` structure of an alert on a frame stamped `pts`: `track_id`,
/// `label` and `fake_type` (the most likely manipulation), `fake_score`, `confidence`,
/// `timestamp` (ns; `u64::MAX` without one), the normalised box `x_min … y_max`.
pub fn alert_structure(a: &Alert, pts: Option<gst::ClockTime>) -> gst::Structure {
    let [x_min, y_min, x_max, y_max] = a.normalised_box();
    gst::Structure::builder("sd2-deepfake-alert")
        .field("track_id", a.track)
        .field("label", a.fake_type.code())
        .field("fake_type", a.fake_type.code())
        .field("fake_score", a.fake_score as f64)
        .field("confidence", a.confidence as f64)
        .field("timestamp", pts.map(|t| t.nseconds()).unwrap_or(u64::MAX))
        .field("x_min", x_min)
        .field("y_min", y_min)
        .field("x_max", x_max)
        .field("y_max", y_max)
        .build()
}

/// Writes `outcome` onto `buffer` (whose face metas are the plan's faces, in order) and
/// returns its alerts' structures.
pub fn attach(
    buffer: &mut gst::BufferRef,
    outcome: &FrameOutcome,
    judge: &Judge,
    model_name: &str,
) -> Vec<gst::Structure> {
    let pts = buffer.pts();
    let mut metas: Vec<_> = buffer
        .iter_meta_mut::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == roi::FACE)
        .collect();
    for (face, meta) in outcome.faces.iter().zip(metas.iter_mut()) {
        meta.add_param(match &face.judged {
            Some(j) => roi::deepfake_param(j, model_name, face.track),
            None => roi::unanalysed_param(model_name, face.track),
        });
    }
    drop(metas);
    let alerts: Vec<gst::Structure> = outcome
        .alerts
        .iter()
        .map(|a| alert_structure(a, pts))
        .collect();
    let v = &outcome.verdict;
    roi::set_frame_verdict(
        buffer,
        gst::Structure::builder("frame_verdict")
            .field("fake", v.fake)
            .field("fake_score", v.fake_score as f64)
            .field("label", v.label.code())
            .field("faces", v.faces as u32)
            .field("fake_faces", v.fake_faces as u32)
            .field("analysed_faces", v.analysed_faces as u32)
            .field("skipped", v.skipped)
            .field("decision", judge.decision.name())
            .field("threshold", judge.threshold as f64)
            .field("model_name", model_name)
            .field(
                "alerts",
                gst::Array::new(alerts.iter().map(|a| a.to_send_value())),
            )
            .build(),
    );
    alerts
}

use gst::prelude::*;
