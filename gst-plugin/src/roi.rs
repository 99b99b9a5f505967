//! The metadata on buffers: one `GstVideoRegionOfInterestMeta` of type `face` per face,
//! carrying params in the shape other GStreamer analytics tools read (a `detection`
//! structure with a normalised box and `confidence`, `label`, `label_id`).
//!
//! `detection` fields: `x_min`, `y_min`, `x_max`, `y_max` (doubles in [0, 1] of the frame:
//! the box clipped to the frame, as the ROI rectangle), `confidence` (double), `label`
//! (`"face"`), `label_id` (int, 0), `landmarks` (array of ten doubles, x and y of both eyes,
//! the nose and the mouth corners, normalised like the box, and not clipped: a landmark of a
//! face cut by an edge may lie outside [0, 1]) and `frames_ago` (uint: 0 on frames the
//! detector ran on, else how many frames ago it did). When the face's box reaches past an
//! edge of the frame (a face the edge cuts), the param also carries the box as MTCNN found
//! it: `unclipped_x_min`, `unclipped_y_min`, `unclipped_x_max`, `unclipped_y_max` (doubles
//! normalised like the box, below 0 or above 1 past the edge).

use gst_video::VideoRegionOfInterestMeta;
use sd2_models::analyzer::Judged;
use sd2_models::mtcnn::Face;
use sd2_models::taxonomy::DeepfakeType;

/// The ROI type of faces.
pub const FACE: &str = "face";
/// The name of the detection param.
pub const DETECTION: &str = "detection";

/// The name of the deepfake param.
pub const DEEPFAKE: &str = "deepfake";
/// The custom meta holding a frame's verdict.
pub const VERDICT_META: &str = "Sd2FrameVerdictMeta";

/// Registers the custom meta types (once, at plugin load).
pub fn register_metas() {
    if !gst::meta::CustomMeta::is_registered(VERDICT_META) {
        gst::meta::CustomMeta::register(VERDICT_META, &[]);
    }
}

/// The `deepfake` param of a face: `label` (REAL for a face judged real, its most likely
/// manipulation `FS`, `FR`, `EFS` or `FE` for one judged fake), `label_id`, `confidence`
/// (the label's probability), `fake` (the judgement, under the element's `decision` rule),
/// one probability per type under the type's name, `fake_score` (1 − p(REAL)),
/// `model_name`, `track_id`, `frames_ago` (frames since the verdict was computed) and
/// `analysed` (false on a frame the element let pass unanalysed because its queue was full,
/// or when the face was due and its classification failed: the verdict is the track's last
/// one).
pub fn deepfake_param(j: &Judged, model_name: &str, track_id: u64) -> gst::Structure {
    let v = &j.verdict;
    let mut b = gst::Structure::builder(DEEPFAKE)
        .field("label", j.label.code())
        .field("label_id", j.label.index() as i32)
        .field("confidence", j.confidence() as f64)
        .field("fake", j.fake);
    for t in DeepfakeType::ALL {
        b = b.field(t.code(), v.probabilities[t.index()] as f64);
    }
    b.field("fake_score", v.fake_score() as f64)
        .field("model_name", model_name)
        .field("track_id", track_id)
        .field(
            "frames_ago",
            u32::try_from(j.frames_ago).unwrap_or(u32::MAX),
        )
        .field("analysed", j.current)
        .build()
}

/// The `deepfake` param of a face the element has no verdict for (first seen on a frame it
/// let pass unanalysed, or whose classification failed): `model_name`, `track_id` and
/// `analysed` (false), without a label.
pub fn unanalysed_param(model_name: &str, track_id: u64) -> gst::Structure {
    gst::Structure::builder(DEEPFAKE)
        .field("model_name", model_name)
        .field("track_id", track_id)
        .field("analysed", false)
        .build()
}

/// Attaches a frame's verdict: `fake` (any face judged fake), `fake_score` (the highest of
/// its faces), `label` (of its most suspicious fake face, REAL when none is fake), `faces`,
/// `fake_faces`, `analysed_faces` (faces with a verdict), `skipped` (the frame passed
/// unanalysed), `decision` (`argmax` or `threshold`), `threshold`, `model_name` and
/// `alerts` (an array of `sd2-deepfake-alert` structures, one per track that turned fake on
/// this frame, as posted on the bus; empty on most frames).
pub fn set_frame_verdict(buffer: &mut gst::BufferRef, verdict: gst::Structure) {
    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, VERDICT_META) {
        let s = meta.mut_structure();
        for (k, v) in verdict.iter() {
            s.set_value(k, v.clone());
        }
    }
}

/// A frame's verdict, when one is attached.
pub fn frame_verdict(
    buffer: &gst::BufferRef,
) -> Option<gst::meta::MetaRef<'_, gst::meta::CustomMeta>> {
    gst::meta::CustomMeta::from_buffer(buffer, VERDICT_META).ok()
}

/// The frame rectangle `(x, y, w, h)` in whole pixels covering `bbox`, clamped to the frame.
pub fn pixel_rect(bbox: [f32; 4], width: u32, height: u32) -> (u32, u32, u32, u32) {
    let clamp = |v: f32, max: u32| v.clamp(0.0, max as f32);
    let x1 = clamp(bbox[0], width).floor() as u32;
    let y1 = clamp(bbox[1], height).floor() as u32;
    let x2 = clamp(bbox[2], width).ceil() as u32;
    let y2 = clamp(bbox[3], height).ceil() as u32;
    (x1, y1, x2.saturating_sub(x1), y2.saturating_sub(y1))
}

/// The `detection` param of a face in a `width × height` frame: the box clipped to the frame
/// in `x_min` … `y_max`, and, when it reaches past an edge, as found in `unclipped_x_min` …
/// `unclipped_y_max` (see the module documentation).
pub fn detection_param(face: &Face, width: u32, height: u32, frames_ago: u32) -> gst::Structure {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let landmarks = gst::Array::new(
        face.landmarks
            .iter()
            .flat_map(|p| [p[0] as f64 / w, p[1] as f64 / h]),
    );
    let b = face.bbox;
    let unclipped = [
        b[0] as f64 / w,
        b[1] as f64 / h,
        b[2] as f64 / w,
        b[3] as f64 / h,
    ];
    let mut s = gst::Structure::builder(DETECTION)
        .field("x_min", unclipped[0].clamp(0.0, 1.0))
        .field("y_min", unclipped[1].clamp(0.0, 1.0))
        .field("x_max", unclipped[2].clamp(0.0, 1.0))
        .field("y_max", unclipped[3].clamp(0.0, 1.0))
        .field("confidence", face.confidence as f64)
        .field("label", FACE)
        .field("label_id", 0i32)
        .field("landmarks", landmarks)
        .field("frames_ago", frames_ago);
    if unclipped.iter().any(|v| !(0.0..=1.0).contains(v)) {
        s = s
            .field("unclipped_x_min", unclipped[0])
            .field("unclipped_y_min", unclipped[1])
            .field("unclipped_x_max", unclipped[2])
            .field("unclipped_y_max", unclipped[3]);
    }
    s.build()
}

/// Attaches a face to `buffer` with id `id`.
pub fn attach_face(
    buffer: &mut gst::BufferRef,
    face: &Face,
    id: i32,
    width: u32,
    height: u32,
    frames_ago: u32,
) {
    let rect = pixel_rect(face.bbox, width, height);
    let mut meta = VideoRegionOfInterestMeta::add(buffer, FACE, rect);
    meta.set_id(id);
    meta.add_param(detection_param(face, width, height, frames_ago));
}

/// The faces on a buffer, in the order they were attached.
pub fn faces(
    buffer: &gst::BufferRef,
) -> impl Iterator<Item = gst::MetaRef<'_, VideoRegionOfInterestMeta>> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == FACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4]) -> Face {
        Face {
            bbox,
            confidence: 0.99,
            landmarks: [[bbox[0] + 10.0, bbox[1] + 10.0]; 5],
        }
    }

    fn field(s: &gst::StructureRef, name: &str) -> Option<f64> {
        s.get::<f64>(name).ok()
    }

    #[test]
    fn a_box_inside_the_frame_carries_no_unclipped_box() {
        gst::init().unwrap();
        let s = detection_param(&face([20.0, 10.0, 60.0, 90.0]), 200, 100, 0);
        let b = ["x_min", "y_min", "x_max", "y_max"].map(|k| field(&s, k));
        assert_eq!(b, [Some(0.1), Some(0.1), Some(0.3), Some(0.9)]);
        for k in [
            "unclipped_x_min",
            "unclipped_y_min",
            "unclipped_x_max",
            "unclipped_y_max",
        ] {
            assert!(!s.has_field(k), "{k} in {s}");
        }
    }

    #[test]
    fn a_box_past_an_edge_is_clipped_and_also_carried_unclipped() {
        gst::init().unwrap();
        // Past the left and bottom edges of a 200 × 100 frame.
        let s = detection_param(&face([-30.0, 40.0, 50.0, 120.0]), 200, 100, 0);
        let clipped = ["x_min", "y_min", "x_max", "y_max"].map(|k| field(&s, k));
        assert_eq!(clipped, [Some(0.0), Some(0.4), Some(0.25), Some(1.0)]);
        let unclipped = [
            "unclipped_x_min",
            "unclipped_y_min",
            "unclipped_x_max",
            "unclipped_y_max",
        ]
        .map(|k| field(&s, k));
        assert_eq!(unclipped, [Some(-0.15), Some(0.4), Some(0.25), Some(1.2)]);
        // The ROI rectangle is the clipped box.
        assert_eq!(
            pixel_rect([-30.0, 40.0, 50.0, 120.0], 200, 100),
            (0, 40, 50, 60)
        );
    }

    #[test]
    fn each_edge_alone_brings_the_unclipped_box() {
        gst::init().unwrap();
        for bbox in [
            [-1.0, 10.0, 50.0, 60.0],
            [10.0, -1.0, 50.0, 60.0],
            [10.0, 10.0, 201.0, 60.0],
            [10.0, 10.0, 50.0, 101.0],
        ] {
            let s = detection_param(&face(bbox), 200, 100, 0);
            assert!(s.has_field("unclipped_x_min"), "{bbox:?}: {s}");
        }
        let s = detection_param(&face([0.0, 0.0, 200.0, 100.0]), 200, 100, 0);
        assert!(!s.has_field("unclipped_x_min"), "the whole frame: {s}");
    }

    #[test]
    fn rectangles_cover_the_box_inside_the_frame() {
        assert_eq!(
            pixel_rect([10.2, 20.7, 30.1, 40.0], 100, 100),
            (10, 20, 21, 20)
        );
        assert_eq!(
            pixel_rect([-5.0, -5.0, 10.0, 10.0], 100, 100),
            (0, 0, 10, 10)
        );
        assert_eq!(
            pixel_rect([90.0, 95.0, 120.0, 130.0], 100, 100),
            (90, 95, 10, 5)
        );
        assert_eq!(
            pixel_rect([150.0, 150.0, 160.0, 160.0], 100, 100),
            (100, 100, 0, 0)
        );
    }
}
