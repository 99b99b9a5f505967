//! The MTCNN cascade finds the faces facenet-pytorch finds, where it finds them, in whole
//! sample images and in crops of them whose edge cuts through a face.

mod common;

use sd2_models::image::{RgbImage, RgbView};
use sd2_models::mtcnn::{Face, MAX_SHAPE_SESSIONS, Mtcnn, MtcnnConfig, pyramid};
use sd2_models::runtime::{Device, RuntimeError, SessionConfig};

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// `b` clipped to a `w × h` frame, as the ROI carries it.
fn clipped(b: &[f32; 4], w: usize, h: usize) -> [f32; 4] {
    let (w, h) = (w as f32, h as f32);
    [
        b[0].clamp(0.0, w),
        b[1].clamp(0.0, h),
        b[2].clamp(0.0, w),
        b[3].clamp(0.0, h),
    ]
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/mtcnn_reference.json")).unwrap()
}

fn reference_faces(image: &str) -> Vec<Face> {
    serde_json::from_value(fixture()["images"][image]["faces"].clone()).unwrap()
}

fn detector(config: MtcnnConfig) -> Mtcnn {
    Mtcnn::load(
        &common::mtcnn_dir(),
        Device::Cpu,
        SessionConfig::default(),
        config,
    )
    .unwrap()
}

fn detect(image: &str, config: MtcnnConfig) -> Vec<Face> {
    let img = RgbImage::open(&common::sample(image)).unwrap();
    detector(config).detect(img.view()).unwrap()
}

/// Every face the reference returns: its O-Net score passed 0.7.
fn all_faces() -> MtcnnConfig {
    MtcnnConfig {
        face_threshold: 0.7,
        ..MtcnnConfig::default()
    }
}

/// The face of `ours` whose box, clipped to a `w × h` frame, best overlaps `theirs`'s.
fn best_match<'a>(ours: &'a [Face], theirs: &Face, w: usize, h: usize) -> Option<&'a Face> {
    let overlap = |f: &Face| iou(&clipped(&f.bbox, w, h), &clipped(&theirs.bbox, w, h));
    ours.iter().max_by(|a, b| overlap(a).total_cmp(&overlap(b)))
}

/// `ours` is the reference's face `theirs` in a `w × h` frame: boxes clipped to the frame
/// with IoU ≥ 0.95, landmarks within 3 px, scores within 0.02.
fn assert_same_face(what: &str, ours: &Face, theirs: &Face, w: usize, h: usize) {
    let (a, b) = (clipped(&ours.bbox, w, h), clipped(&theirs.bbox, w, h));
    let overlap = iou(&a, &b);
    assert!(
        overlap >= 0.95,
        "{what}: reference box {:?} best match {:?} IoU {overlap} (clipped to {w}x{h})",
        theirs.bbox,
        ours.bbox
    );
    for (p, q) in ours.landmarks.iter().zip(&theirs.landmarks) {
        let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
        assert!(
            d <= 3.0,
            "{what}: landmark {p:?} is {d} px from the reference {q:?}"
        );
    }
    assert!(
        (ours.confidence - theirs.confidence).abs() < 0.02,
        "{what}: score {} vs {}",
        ours.confidence,
        theirs.confidence
    );
}

/// Every reference face has exactly one of ours with IoU ≥ 0.95 and landmarks within 3 px.
fn assert_parity(image: &str) {
    let ours = detect(image, all_faces());
    let theirs = reference_faces(image);
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{image}: ours {ours:?}\nreference {theirs:?}"
    );
    let img = RgbImage::open(&common::sample(image)).unwrap();
    for r in &theirs {
        let best = best_match(&ours, r, img.width, img.height).unwrap();
        assert_same_face(image, best, r, img.width, img.height);
    }
}

/// A frame edge.
#[derive(Clone, Copy, Debug)]
enum Edge {
    Left,
    Top,
    Right,
    Bottom,
}

impl Edge {
    /// Whether `b` reaches past this edge of a `w × h` frame.
    fn crossed_by(self, b: &[f32; 4], w: usize, h: usize) -> bool {
        match self {
            Edge::Left => b[0] < 0.0,
            Edge::Top => b[1] < 0.0,
            Edge::Right => b[2] > w as f32,
            Edge::Bottom => b[3] > h as f32,
        }
    }
}

/// A crop of a sample image whose edge runs through a face (`EDGE_CROPS` in
/// `fixtures/make_mtcnn_reference.py`), and the faces the reference found in it.
#[derive(serde::Deserialize)]
struct EdgeCrop {
    image: String,
    /// The face the edge cuts, in the sample's pixels.
    cut_face: [f32; 4],
    /// Left, top, right, bottom in the sample's pixels.
    crop: [usize; 4],
    width: usize,
    height: usize,
    faces: Vec<Face>,
}

/// The crop `name` of the fixture: the face the edge cuts is found as the reference finds
/// it, its box (clipped to the crop) with IoU ≥ 0.95, landmarks within 3 px; and both boxes
/// reach past that edge.
fn assert_edge_parity(name: &str, edge: Edge) {
    let case: EdgeCrop = serde_json::from_value(fixture()["edges"][name].clone()).unwrap();
    let img = RgbImage::open(&common::sample(&case.image)).unwrap();
    let [left, top, right, bottom] = case.crop;
    let (w, h) = (right - left, bottom - top);
    assert_eq!((w, h), (case.width, case.height), "{name}: crop size");
    let stride = img.width * 3;
    let view = RgbView::new(w, h, stride, &img.data[top * stride + left * 3..]).unwrap();
    let ours = detector(all_faces()).detect(view).unwrap();

    let c = case.cut_face;
    let (dx, dy) = (left as f32, top as f32);
    let target = clipped(&[c[0] - dx, c[1] - dy, c[2] - dx, c[3] - dy], w, h);
    let overlap = |f: &Face| iou(&clipped(&f.bbox, w, h), &target);
    let theirs = case
        .faces
        .iter()
        .max_by(|a, b| overlap(a).total_cmp(&overlap(b)))
        .filter(|f| overlap(f) > 0.5)
        .unwrap_or_else(|| panic!("{name}: the reference found no face at {target:?}"));
    assert!(
        edge.crossed_by(&theirs.bbox, w, h),
        "{name}: the reference box {:?} does not reach past the {edge:?} edge",
        theirs.bbox
    );
    let best = best_match(&ours, theirs, w, h)
        .unwrap_or_else(|| panic!("{name}: no face found, reference {theirs:?}"));
    assert_same_face(name, best, theirs, w, h);
    assert!(
        edge.crossed_by(&best.bbox, w, h),
        "{name}: our box {:?} does not reach past the {edge:?} edge",
        best.bbox
    );
}

#[test]
fn astronaut_matches_the_reference() {
    assert_parity("astronaut.png");
}

#[test]
fn six_faces_photo_matches_the_reference() {
    assert_parity("t1.jpg");
}

#[test]
fn a_face_cut_by_the_left_edge_matches_the_reference() {
    assert_edge_parity("astronaut-left", Edge::Left);
    assert_edge_parity("t1-left", Edge::Left);
}

#[test]
fn a_face_cut_by_the_top_edge_matches_the_reference() {
    assert_edge_parity("astronaut-top", Edge::Top);
    assert_edge_parity("t1-top", Edge::Top);
}

#[test]
fn a_face_cut_by_the_right_edge_matches_the_reference() {
    assert_edge_parity("astronaut-right", Edge::Right);
    assert_edge_parity("t1-right", Edge::Right);
}

#[test]
fn a_face_cut_by_the_bottom_edge_matches_the_reference() {
    assert_edge_parity("astronaut-bottom", Edge::Bottom);
    assert_edge_parity("t1-bottom", Edge::Bottom);
}

#[test]
fn astronaut_has_exactly_one_face_above_point_nine() {
    let faces = detect("astronaut.png", MtcnnConfig::default());
    assert_eq!(faces.len(), 1, "{faces:?}");
    let reference = reference_faces("astronaut.png");
    assert!(iou(&faces[0].bbox, &reference[0].bbox) >= 0.9);
}

#[test]
fn six_faces_photo_has_all_six_faces_above_point_nine() {
    let faces = detect("t1.jpg", MtcnnConfig::default());
    assert_eq!(faces.len(), 6, "{faces:?}");
    assert!(
        faces.windows(2).all(|w| w[0].confidence >= w[1].confidence),
        "most confident first"
    );
    let reference: Vec<Face> = reference_faces("t1.jpg")
        .into_iter()
        .filter(|f| f.confidence > 0.9)
        .collect();
    for r in &reference {
        assert!(
            faces.iter().any(|f| iou(&f.bbox, &r.bbox) >= 0.9),
            "reference face {r:?} not found"
        );
    }
}

#[test]
fn max_faces_keeps_the_most_confident() {
    let all = detect("t1.jpg", MtcnnConfig::default());
    let two = detect(
        "t1.jpg",
        MtcnnConfig {
            max_faces: 2,
            ..MtcnnConfig::default()
        },
    );
    assert_eq!(two, all[..2].to_vec());
}

#[test]
fn larger_minimum_face_size_skips_small_faces() {
    // The six faces are 93 to 140 px tall; a pyramid that starts at 250 px faces misses them.
    let faces = detect(
        "t1.jpg",
        MtcnnConfig {
            min_face_size: 250.0,
            ..MtcnnConfig::default()
        },
    );
    assert!(faces.len() < 6, "{faces:?}");
}

#[test]
fn frames_of_any_size_are_handled_without_faces_or_errors() {
    let mut mtcnn = detector(MtcnnConfig::default());
    for (w, h) in [
        (0, 0),
        (1, 1),
        (5, 40),
        (11, 11),
        (12, 12),
        (19, 25),
        (20, 20),
        (33, 17),
        (64, 48),
    ] {
        let data: Vec<u8> = (0..w * h * 3).map(|i| ((i * 31) % 256) as u8).collect();
        let view = RgbView::new(w, h, w * 3, &data).unwrap();
        let faces = mtcnn.detect(view).unwrap();
        assert!(faces.is_empty(), "{w}x{h}: {faces:?}");
    }
}

#[test]
fn a_missing_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Mtcnn::load(
        dir.path(),
        Device::Cpu,
        SessionConfig::default(),
        MtcnnConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::MissingModel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("pnet.onnx does not exist") && msg.contains("scripts/setup.sh"),
        "{msg}"
    );
}

#[test]
fn a_corrupt_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    for net in ["pnet", "rnet", "onet"] {
        std::fs::copy(
            common::mtcnn_dir().join(format!("{net}.onnx")),
            dir.path().join(format!("{net}.onnx")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("rnet.onnx"), b"\x08\x09garbage").unwrap();
    let err = Mtcnn::load(
        dir.path(),
        Device::Cpu,
        SessionConfig::default(),
        MtcnnConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::BadModel { .. }), "{err:?}");
    assert!(err.to_string().contains("rnet.onnx"), "{err}");
}

#[test]
fn a_model_of_the_wrong_shape_is_refused_saying_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    for (src, dst) in [("pnet", "pnet"), ("onet", "rnet"), ("onet", "onet")] {
        std::fs::copy(
            common::mtcnn_dir().join(format!("{src}.onnx")),
            dir.path().join(format!("{dst}.onnx")),
        )
        .unwrap();
    }
    let err = Mtcnn::load(
        dir.path(),
        Device::Cpu,
        SessionConfig::default(),
        MtcnnConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Contract { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("rnet.onnx"), "{msg}");
    assert!(
        msg.contains("input expected input Float32 [?,3,24,24], found input Float32 [?,3,48,48]"),
        "{msg}"
    );
}

#[test]
fn results_do_not_depend_on_the_number_of_workers() {
    let img = RgbImage::open(&common::sample("t1.jpg")).unwrap();
    let config = all_faces();
    let runs: Vec<Vec<Face>> = [1, 2, 3]
        .into_iter()
        .map(|threads| {
            let session = SessionConfig {
                threads: Some(threads),
                ..SessionConfig::default()
            };
            let mut m = Mtcnn::load(&common::mtcnn_dir(), Device::Cpu, session, config).unwrap();
            m.detect(img.view()).unwrap()
        })
        .collect();
    assert_eq!(runs[0].len(), 8);
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
}

#[test]
fn padded_batches_find_the_same_faces() {
    // What MTCNN does on CUDA: R-Net and O-Net batches padded to a power of two. The
    // padding must not change a face, nor add one.
    let config = MtcnnConfig::default();
    for name in ["t1.jpg", "astronaut.png"] {
        let img = RgbImage::open(&common::sample(name)).unwrap();
        let [plain, padded] = [false, true].map(|fixed_batches| {
            let session = SessionConfig {
                threads: Some(1),
                fixed_batches,
                ..SessionConfig::default()
            };
            let mut m = Mtcnn::load(&common::mtcnn_dir(), Device::Cpu, session, config).unwrap();
            m.detect(img.view()).unwrap()
        });
        assert!(!plain.is_empty(), "{name}");
        assert_eq!(plain, padded, "{name}");
    }
}

#[test]
fn a_session_per_shape_finds_the_same_faces() {
    // What MTCNN does on CUDA: every pyramid level and padded batch size has a session of
    // its own. A stream's frames repeat those shapes, so the second round opens none.
    let config = MtcnnConfig::default();
    let imgs: Vec<RgbImage> = ["t1.jpg", "astronaut.png"]
        .iter()
        .map(|n| RgbImage::open(&common::sample(n)).unwrap())
        .collect();
    let load = |shaped| {
        let session = SessionConfig {
            threads: Some(1),
            shape_sessions: Some(shaped),
            ..SessionConfig::default()
        };
        Mtcnn::load(&common::mtcnn_dir(), Device::Cpu, session, config).unwrap()
    };
    let (mut plain, mut shaped) = (load(false), load(true));
    assert_eq!(shaped.sessions(), 3, "one session per network at load");
    let mut opened = 0;
    for round in 0..2 {
        for img in &imgs {
            let faces = shaped.detect(img.view()).unwrap();
            assert!(!faces.is_empty());
            assert_eq!(faces, plain.detect(img.view()).unwrap());
        }
        if round == 0 {
            opened = shaped.sessions();
        }
    }
    let levels: usize = imgs
        .iter()
        .map(|i| pyramid(i.width, i.height, config.min_face_size, config.factor).len())
        .sum();
    assert!(
        opened >= levels + 2,
        "{opened} sessions for {levels} levels"
    );
    assert_eq!(shaped.sessions(), opened, "repeated shapes opened sessions");
    assert_eq!(plain.sessions(), 3);
}

#[test]
fn sessions_per_shape_are_bounded() {
    // A pyramid with more levels than a network may hold sessions: the least recently
    // used are closed and reopened as needed, and the faces do not change.
    let config = MtcnnConfig {
        factor: 0.9,
        ..MtcnnConfig::default()
    };
    let img = RgbImage::open(&common::sample("t1.jpg")).unwrap();
    let levels = pyramid(img.width, img.height, config.min_face_size, config.factor).len();
    assert!(levels > MAX_SHAPE_SESSIONS, "{levels} levels");
    let [plain, shaped] = [false, true].map(|shaped| {
        let session = SessionConfig {
            threads: Some(1),
            shape_sessions: Some(shaped),
            ..SessionConfig::default()
        };
        let mut m = Mtcnn::load(&common::mtcnn_dir(), Device::Cpu, session, config).unwrap();
        let faces = m.detect(img.view()).unwrap();
        // One worker: a P-Net session per level up to the bound, one R-Net and one
        // O-Net batch.
        let expected = if shaped { MAX_SHAPE_SESSIONS + 2 } else { 3 };
        assert_eq!(m.sessions(), expected);
        faces
    });
    assert!(!plain.is_empty());
    assert_eq!(plain, shaped);
}
