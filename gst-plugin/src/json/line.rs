//! The JSON line of one frame:
//!
//! ```json
//! {"timestamp": 40000000, "resolution": {"width": 1280, "height": 720}, "source": "file:///clip.webm",
//!  "frame_verdict": null,
//!  "objects": [{"x": 181, "y": 62, "w": 87, "h": 110, "roi_type": "face", "id": 0,
//!               "detection": {"bounding_box": {"x_min": 0.35, "y_min": 0.12, "x_max": 0.52, "y_max": 0.34},
//!                             "confidence": 0.99, "label": "face", "label_id": 0,
//!                             "landmarks": [[0.4, 0.2], ...], "frames_ago": 0}}]}
//! ```
//!
//! `timestamp` is the buffer's PTS in nanoseconds (null when it has none). Every param of a
//! face is written under its structure name; `detection` groups its box under
//! `bounding_box` and its landmarks as `[x, y]` pairs, as other GStreamer analytics tools
//! write them.

use serde_json::{Map, Value, json};

use crate::roi;

/// A GStreamer value as JSON: numbers, strings, booleans, arrays, lists and structures;
/// anything else as its GStreamer serialisation.
fn value_to_json(v: &glib::SendValue) -> Value {
    macro_rules! try_as {
        ($($t:ty),*) => {$(
            if let Ok(x) = v.get::<$t>() {
                return json!(x);
            }
        )*};
    }
    try_as!(f64, f32, i32, u32, i64, u64, bool);
    if let Ok(s) = v.get::<Option<String>>() {
        return s.map_or(Value::Null, Value::String);
    }
    if let Ok(a) = v.get::<gst::Array>() {
        return Value::Array(a.iter().map(value_to_json).collect());
    }
    if let Ok(l) = v.get::<gst::List>() {
        return Value::Array(l.iter().map(value_to_json).collect());
    }
    if let Ok(s) = v.get::<gst::Structure>() {
        return structure_to_json(&s);
    }
    v.serialize()
        .map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// A structure's fields as a JSON object (the structure's name is not included).
pub fn structure_to_json(s: &gst::StructureRef) -> Value {
    Value::Object(
        s.iter()
            .map(|(k, v)| (k.to_string(), value_to_json(v)))
            .collect(),
    )
}

/// The `detection` param in the conventional layout.
fn detection_to_json(s: &gst::StructureRef) -> Value {
    let Value::Object(mut fields) = structure_to_json(s) else {
        unreachable!("structure_to_json returns objects")
    };
    let mut bbox = Map::new();
    for k in ["x_min", "y_min", "x_max", "y_max"] {
        if let Some(v) = fields.remove(k) {
            bbox.insert(k.to_owned(), v);
        }
    }
    if !bbox.is_empty() {
        fields.insert("bounding_box".into(), Value::Object(bbox));
    }
    if let Some(Value::Array(flat)) = fields.get("landmarks")
        && flat.len() % 2 == 0
    {
        let pairs = flat.chunks(2).map(|p| Value::Array(p.to_vec())).collect();
        fields.insert("landmarks".into(), Value::Array(pairs));
    }
    Value::Object(fields)
}

/// The JSON object for one buffer.
pub fn frame_line(
    buffer: &gst::BufferRef,
    width: u32,
    height: u32,
    source: &str,
    frame_verdict: Option<&gst::StructureRef>,
) -> Value {
    let objects: Vec<Value> = roi::faces(buffer)
        .map(|meta| {
            let (x, y, w, h) = meta.rect();
            let mut o = Map::new();
            o.insert("x".into(), json!(x));
            o.insert("y".into(), json!(y));
            o.insert("w".into(), json!(w));
            o.insert("h".into(), json!(h));
            o.insert("roi_type".into(), json!(meta.roi_type()));
            o.insert("id".into(), json!(meta.id()));
            for p in meta.params() {
                let v = if p.name() == roi::DETECTION {
                    detection_to_json(p)
                } else {
                    structure_to_json(p)
                };
                o.insert(p.name().to_string(), v);
            }
            Value::Object(o)
        })
        .collect();
    json!({
        "timestamp": buffer.pts().map(|t| t.nseconds()),
        "resolution": {"width": width, "height": height},
        "source": source,
        "frame_verdict": frame_verdict.map_or(Value::Null, structure_to_json),
        "objects": objects,
    })
}

use gst::glib;
use gst::prelude::*;

#[cfg(test)]
mod tests {
    use super::*;
    use sd2_models::mtcnn::Face;

    #[test]
    fn a_face_becomes_an_object_with_its_detection() {
        gst::init().unwrap();
        let mut buf = gst::Buffer::with_size(16).unwrap();
        {
            let b = buf.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(40));
            let face = Face {
                bbox: [100.0, 50.0, 200.0, 170.0],
                confidence: 0.98,
                landmarks: [
                    [120.0, 90.0],
                    [180.0, 90.0],
                    [150.0, 120.0],
                    [125.0, 150.0],
                    [175.0, 150.0],
                ],
            };
            roi::attach_face(b, &face, 3, 400, 200, 2);
        }
        let line = frame_line(&buf, 400, 200, "file:///x.webm", None);
        assert_eq!(line["timestamp"], json!(40_000_000u64));
        assert_eq!(line["resolution"], json!({"width": 400, "height": 200}));
        assert_eq!(line["frame_verdict"], Value::Null);
        let o = &line["objects"][0];
        assert_eq!(
            (
                o["x"].clone(),
                o["y"].clone(),
                o["w"].clone(),
                o["h"].clone()
            ),
            (json!(100), json!(50), json!(100), json!(120))
        );
        assert_eq!(o["roi_type"], "face");
        assert_eq!(o["id"], 3);
        let d = &o["detection"];
        assert_eq!(
            d["bounding_box"],
            json!({"x_min": 0.25, "y_min": 0.25, "x_max": 0.5, "y_max": 0.85})
        );
        assert!((d["confidence"].as_f64().unwrap() - 0.98).abs() < 1e-6);
        assert_eq!(d["label"], "face");
        assert_eq!(d["frames_ago"], 2);
        assert_eq!(d["landmarks"][1], json!([0.45, 0.45]));
        assert_eq!(d["landmarks"].as_array().unwrap().len(), 5);
    }
}
