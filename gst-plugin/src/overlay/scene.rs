//! What the overlay draws on a frame, read from the frame's metadata (see [`crate::roi`]):
//! each face's box, verdict, label line and landmarks, and a banner when the frame's
//! verdict is fake.
//!
//! A face is fake when its `deepfake` param says `fake=true`, or, without that field, when
//! its `label` is not `REAL` (the paper's decision rule). Its label line reads
//! `#<track> FAKE <type> <fake score>` or `#<track> REAL <fake score>`, where the type is
//! the most likely manipulation; a face whose verdict was carried over a frame the
//! classifier did not analyse is marked `(last)`, one with no verdict `not analysed`, and a
//! face the classifier never saw shows its detection confidence.

use gst::StructureRef;
use sd2_models::taxonomy::DeepfakeType;

use crate::roi;

/// How a face is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Real,
    Fake,
    /// Not analysed on this frame, or no verdict at all.
    Unknown,
}

/// One face as drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceMark {
    /// `(x, y, w, h)` in pixels, as the region's rectangle.
    pub rect: (u32, u32, u32, u32),
    pub verdict: Verdict,
    pub label: String,
    /// The detection's landmarks, `[x, y]` normalised to the frame.
    pub landmarks: Vec<[f64; 2]>,
}

/// What to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    pub boxes: bool,
    pub labels: bool,
    pub landmarks: bool,
    pub banner: bool,
}

impl Layers {
    fn any_of_faces(&self) -> bool {
        self.boxes || self.labels || self.landmarks
    }
}

/// Everything drawn on one frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scene {
    pub faces: Vec<FaceMark>,
    /// The banner's text, when the frame is fake.
    pub banner: Option<String>,
}

impl Scene {
    /// What `layers` asks to draw on `buffer`.
    pub fn read(buffer: &gst::BufferRef, layers: Layers) -> Scene {
        let faces = if layers.any_of_faces() {
            roi::faces(buffer)
                .map(|m| {
                    let (verdict, label) =
                        face_label(m.param(roi::DEEPFAKE), m.param(roi::DETECTION));
                    FaceMark {
                        rect: m.rect(),
                        verdict,
                        label,
                        landmarks: m.param(roi::DETECTION).map(landmarks).unwrap_or_default(),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let banner = if layers.banner {
            roi::frame_verdict(buffer).and_then(|m| banner_text(m.structure()))
        } else {
            None
        };
        Scene { faces, banner }
    }

    /// Nothing to draw: the frame passes untouched.
    pub fn is_empty(&self) -> bool {
        self.faces.is_empty() && self.banner.is_none()
    }
}

/// An unsigned integer field, whichever integer type it was written as.
fn uint(s: &StructureRef, field: &str) -> Option<u64> {
    s.get::<u64>(field)
        .ok()
        .or_else(|| s.get::<u32>(field).ok().map(u64::from))
        .or_else(|| s.get::<i64>(field).ok().and_then(|v| u64::try_from(v).ok()))
        .or_else(|| s.get::<i32>(field).ok().and_then(|v| u64::try_from(v).ok()))
}

/// A floating-point field, double or float.
fn float(s: &StructureRef, field: &str) -> Option<f64> {
    s.get::<f64>(field)
        .ok()
        .or_else(|| s.get::<f32>(field).ok().map(f64::from))
}

/// The most likely manipulation of a fake face: its label when that is a manipulation,
/// else the manipulation with the highest probability.
fn manipulation(deepfake: &StructureRef, label: &str) -> Option<DeepfakeType> {
    label
        .parse::<DeepfakeType>()
        .ok()
        .filter(|t| t.is_fake())
        .or_else(|| {
            DeepfakeType::ALL
                .into_iter()
                .filter(|t| t.is_fake())
                .filter_map(|t| float(deepfake, t.code()).map(|p| (t, p)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(t, _)| t)
        })
}

/// A face's colour and label line from its `deepfake` and `detection` params.
pub fn face_label(
    deepfake: Option<&StructureRef>,
    detection: Option<&StructureRef>,
) -> (Verdict, String) {
    let Some(d) = deepfake else {
        let text = detection
            .and_then(|s| float(s, "confidence"))
            .map_or_else(|| "face".to_owned(), |c| format!("face {c:.2}"));
        return (Verdict::Unknown, text);
    };
    let track = uint(d, "track_id")
        .map(|t| format!("#{t} "))
        .unwrap_or_default();
    let Ok(label) = d.get::<&str>("label") else {
        return (Verdict::Unknown, format!("{track}not analysed"));
    };
    let fake = d
        .get::<bool>("fake")
        .unwrap_or(label != DeepfakeType::Real.code());
    let score = float(d, "fake_score")
        .map(|s| format!(" {s:.2}"))
        .unwrap_or_default();
    let mut text = if fake {
        let kind = manipulation(d, label)
            .map(|t| format!(" {}", t.code()))
            .unwrap_or_default();
        format!("{track}FAKE{kind}{score}")
    } else {
        format!("{track}REAL{score}")
    };
    let verdict = if !d.get::<bool>("analysed").unwrap_or(true) {
        text.push_str(" (last)");
        Verdict::Unknown
    } else if fake {
        Verdict::Fake
    } else {
        Verdict::Real
    };
    (verdict, text)
}

/// The banner of a frame whose verdict is fake (`fake=true`, or without that field, any
/// fake face): `FAKE: face swapping (0.87)`; `None` for a frame that is not fake.
pub fn banner_text(verdict: &StructureRef) -> Option<String> {
    let fake = verdict
        .get::<bool>("fake")
        .ok()
        .unwrap_or_else(|| uint(verdict, "fake_faces").unwrap_or(0) > 0);
    if !fake {
        return None;
    }
    let kind = verdict
        .get::<&str>("label")
        .ok()
        .and_then(|l| l.parse::<DeepfakeType>().ok())
        .filter(|t| t.is_fake())
        .map(|t| format!(": {}", t.description()))
        .unwrap_or_default();
    let score = float(verdict, "fake_score")
        .map(|s| format!(" ({s:.2})"))
        .unwrap_or_default();
    Some(format!("FAKE{kind}{score}"))
}

/// The landmarks of a `detection` param, as `[x, y]` pairs.
fn landmarks(detection: &StructureRef) -> Vec<[f64; 2]> {
    let Ok(flat) = detection.get::<gst::Array>("landmarks") else {
        return Vec::new();
    };
    let values: Vec<f64> = flat.iter().filter_map(|v| v.get::<f64>().ok()).collect();
    values.chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

#[cfg(test)]
mod tests {
    use gst::glib;
    use gst::prelude::*;

    use super::*;

    fn deepfake(fields: &[(&str, glib::SendValue)]) -> gst::Structure {
        let mut s = gst::Structure::new_empty(roi::DEEPFAKE);
        for (k, v) in fields {
            s.set_value(*k, v.clone());
        }
        s
    }

    fn v<T: ToSendValue>(x: T) -> glib::SendValue {
        x.to_send_value()
    }

    #[test]
    fn a_fake_face_reads_track_fake_type_and_score() {
        gst::init().unwrap();
        let d = deepfake(&[
            ("label", v("FS")),
            ("fake_score", v(0.871)),
            ("track_id", v(3u64)),
            ("analysed", v(true)),
        ]);
        assert_eq!(
            face_label(Some(&d), None),
            (Verdict::Fake, "#3 FAKE FS 0.87".to_owned())
        );
    }

    #[test]
    fn a_real_face_reads_track_and_score() {
        gst::init().unwrap();
        let d = deepfake(&[
            ("label", v("REAL")),
            ("fake_score", v(0.12)),
            ("track_id", v(1u64)),
        ]);
        assert_eq!(
            face_label(Some(&d), None),
            (Verdict::Real, "#1 REAL 0.12".to_owned())
        );
    }

    #[test]
    fn the_fake_field_decides_and_the_type_is_the_likeliest_manipulation() {
        gst::init().unwrap();
        let d = deepfake(&[
            ("label", v("REAL")),
            ("fake", v(true)),
            ("REAL", v(0.4)),
            ("FS", v(0.1)),
            ("FR", v(0.3)),
            ("EFS", v(0.1)),
            ("FE", v(0.1)),
            ("fake_score", v(0.6)),
            ("track_id", v(7u64)),
        ]);
        assert_eq!(
            face_label(Some(&d), None),
            (Verdict::Fake, "#7 FAKE FR 0.60".to_owned())
        );
        let d = deepfake(&[
            ("label", v("FE")),
            ("fake", v(false)),
            ("fake_score", v(0.45)),
        ]);
        assert_eq!(
            face_label(Some(&d), None),
            (Verdict::Real, "REAL 0.45".to_owned())
        );
    }

    #[test]
    fn faces_without_a_fresh_verdict_are_unknown() {
        gst::init().unwrap();
        let carried = deepfake(&[
            ("label", v("FS")),
            ("fake_score", v(0.9)),
            ("track_id", v(2u64)),
            ("analysed", v(false)),
        ]);
        assert_eq!(
            face_label(Some(&carried), None),
            (Verdict::Unknown, "#2 FAKE FS 0.90 (last)".to_owned())
        );
        let bare = deepfake(&[
            ("model_name", v("m")),
            ("track_id", v(4u64)),
            ("analysed", v(false)),
        ]);
        assert_eq!(
            face_label(Some(&bare), None),
            (Verdict::Unknown, "#4 not analysed".to_owned())
        );
        let detection = gst::Structure::builder(roi::DETECTION)
            .field("confidence", 0.987)
            .build();
        assert_eq!(
            face_label(None, Some(&detection)),
            (Verdict::Unknown, "face 0.99".to_owned())
        );
    }

    #[test]
    fn a_fake_frame_gets_a_banner_naming_the_manipulation() {
        gst::init().unwrap();
        let fake = gst::Structure::builder("v")
            .field("fake", true)
            .field("fake_score", 0.87)
            .field("label", "FS")
            .build();
        assert_eq!(
            banner_text(&fake).as_deref(),
            Some("FAKE: face swapping (0.87)")
        );
        let real = gst::Structure::builder("v")
            .field("fake", false)
            .field("fake_score", 0.2)
            .field("label", "REAL")
            .build();
        assert_eq!(banner_text(&real), None);
        let counted = gst::Structure::builder("v")
            .field("fake_faces", 2u32)
            .build();
        assert_eq!(banner_text(&counted).as_deref(), Some("FAKE"));
    }

    #[test]
    fn landmarks_come_in_pairs() {
        gst::init().unwrap();
        let d = gst::Structure::builder(roi::DETECTION)
            .field("landmarks", gst::Array::new([0.1, 0.2, 0.3, 0.4]))
            .build();
        assert_eq!(landmarks(&d), vec![[0.1, 0.2], [0.3, 0.4]]);
    }
}
