//! What a buffer publishes: its frame's JSON line (the `sd2json` shape) and the alerts its
//! frame verdict carries.

use serde_json::{Map, Value};

use crate::json::line::{frame_line, structure_to_json};
use crate::roi;

/// The frame's JSON line, as `sd2json` writes it.
pub fn frame_fields(
    buffer: &gst::BufferRef,
    width: u32,
    height: u32,
    source: &str,
) -> Map<String, Value> {
    let verdict = roi::frame_verdict(buffer);
    match frame_line(
        buffer,
        width,
        height,
        source,
        verdict.as_ref().map(|m| m.structure()),
    ) {
        Value::Object(m) => m,
        _ => unreachable!("frame_line returns an object"),
    }
}

/// Each `sd2-deepfake-alert` of the frame's verdict (`track_id`, `label`, `fake_type`,
/// `fake_score`, `confidence`, `timestamp`, `x_min` … `y_max`), with the stream's `source`.
pub fn alert_fields(buffer: &gst::BufferRef, source: &str) -> Vec<Map<String, Value>> {
    let Some(verdict) = roi::frame_verdict(buffer) else {
        return Vec::new();
    };
    let Ok(alerts) = verdict.structure().get::<gst::Array>("alerts") else {
        return Vec::new();
    };
    alerts
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .map(|alert| {
            let mut m = Map::new();
            m.insert("source".into(), Value::from(source));
            if let Value::Object(fields) = structure_to_json(&alert) {
                m.extend(fields);
            }
            m
        })
        .collect()
}
