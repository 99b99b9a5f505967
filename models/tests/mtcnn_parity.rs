//! The MTCNN cascade finds the faces facenet-pytorch finds, where it finds them.

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

fn reference_faces(image: &str) -> Vec<Face> {
    let fx: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/mtcnn_reference.json")).unwrap();
    serde_json::from_value(fx["images"][image]["faces"].clone()).unwrap()
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

/// Every reference face has exactly one of ours with IoU ≥ 0.95 and landmarks within 3 px.
fn assert_parity(image: &str) {
    let all = MtcnnConfig {
        face_threshold: 0.7,
        ..MtcnnConfig::default()
    };
    let ours = detect(image, all);
    let theirs = reference_faces(image);
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{image}: ours {ours:?}\nreference {theirs:?}"
    );
    for r in &theirs {
        let best = ours
            .iter()
            .max_by(|a, b| iou(&a.bbox, &r.bbox).total_cmp(&iou(&b.bbox, &r.bbox)))
            .unwrap();
        let overlap = iou(&best.bbox, &r.bbox);
        assert!(
            overlap >= 0.95,
            "{image}: reference box {:?} best match {:?} IoU {overlap}",
            r.bbox,
            best.bbox
        );
        for (p, q) in best.landmarks.iter().zip(&r.landmarks) {
            let d = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
            assert!(
                d <= 3.0,
                "{image}: landmark {p:?} is {d} px from the reference {q:?}"
            );
        }
        assert!(
            (best.confidence - r.confidence).abs() < 0.02,
            "{image}: score {} vs {}",
            best.confidence,
            r.confidence
        );
    }
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
    let config = MtcnnConfig {
        face_threshold: 0.7,
        ..MtcnnConfig::default()
    };
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
