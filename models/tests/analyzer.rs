//! The Analyzer on the demo model and real faces: streams sharing one loaded model get
//! the verdicts each gets alone, and their faces go to the model together.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{mtcnn_dir, sample};
use sd2_models::analyzer::{Analyzer, AnalyzerSettings, Batch, FrameOutcome, SharedModel};
use sd2_models::image::RgbImage;
use sd2_models::mtcnn::{Mtcnn, MtcnnConfig};
use sd2_models::runtime::{Device, SessionConfig};

fn demo_model() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sd2-demo.onnx"))
}

fn faces(img: &RgbImage) -> Vec<[f32; 4]> {
    let mut mtcnn = Mtcnn::load(
        &mtcnn_dir(),
        Device::Cpu,
        SessionConfig::default(),
        MtcnnConfig::default(),
    )
    .unwrap();
    mtcnn
        .detect(img.view())
        .unwrap()
        .iter()
        .map(|f| f.bbox)
        .collect()
}

/// `frames` frames of `img` through one stream's Analyzer.
fn run_stream(
    model: &SharedModel,
    img: &RgbImage,
    boxes: &[[f32; 4]],
    frames: usize,
) -> Vec<FrameOutcome> {
    let mut analyzer = Analyzer::new(AnalyzerSettings::default());
    let size = (img.width as u32, img.height as u32);
    (0..frames)
        .map(|_| {
            let seen = analyzer.observe(boxes, size);
            let plan = analyzer.plan(seen, false);
            let mut batch = Batch::new(model);
            batch.add(&plan, img.view());
            let verdicts = batch.classify();
            assert!(verdicts.error.is_none(), "{:?}", verdicts.error);
            analyzer.complete(&plan, &verdicts.frames[0])
        })
        .collect()
}

fn fake_scores(out: &[FrameOutcome]) -> Vec<f32> {
    out.iter()
        .flat_map(|o| {
            o.faces
                .iter()
                .map(|f| f.judged.unwrap().verdict.fake_score())
        })
        .collect()
}

#[test]
fn streams_sharing_one_model_get_the_verdicts_they_get_alone() {
    let img = RgbImage::open(&sample("t1.jpg")).unwrap();
    let boxes = faces(&img);
    assert_eq!(boxes.len(), 6);
    let model = SharedModel::get(&demo_model(), Device::Cpu, false, 64).unwrap();
    let again = SharedModel::get(&demo_model(), Device::Cpu, false, 64).unwrap();
    assert!(
        Arc::ptr_eq(&model, &again),
        "one loaded model per file and device"
    );
    let alone = fake_scores(&run_stream(&model, &img, &boxes, 3));
    let before = model.stats();
    let together: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| fake_scores(&run_stream(&model, &img, &boxes, 3))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for scores in together {
        assert_eq!(scores.len(), alone.len());
        for (a, b) in scores.iter().zip(&alone) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
    let after = model.stats();
    assert_eq!(after.faces - before.faces, 4 * 3 * 6);
}

#[test]
fn faces_waiting_together_go_to_the_model_in_one_run() {
    let img = RgbImage::open(&sample("t1.jpg")).unwrap();
    let boxes = faces(&img);
    // A model of its own (another file), so that no other test's faces join its runs.
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("sd2-demo.onnx");
    std::fs::copy(demo_model(), &own).unwrap();
    let model = SharedModel::get(&own, Device::Cpu, false, 1024).unwrap();
    let prepare = |n: usize| {
        let mut inputs = vec![0.0; n * model.input_len()];
        for (i, chunk) in inputs.chunks_mut(model.input_len()).enumerate() {
            model
                .recipe()
                .input_for(img.view(), boxes[i % boxes.len()], chunk);
        }
        inputs
    };
    let (big, small) = (prepare(256), prepare(6));
    let before = model.stats();
    // Handed over back to back: the model's thread takes whatever waits when it looks, so
    // the later hand-overs share a run (with the first, or after it).
    let first = model.submit(big).unwrap();
    let second = model.submit(small.clone()).unwrap();
    let third = model.submit(small).unwrap();
    assert_eq!(first.wait().unwrap().verdicts.len(), 256);
    let (b, c) = (second.wait().unwrap(), third.wait().unwrap());
    assert_eq!((b.verdicts.len(), c.verdicts.len()), (6, 6));
    for (x, y) in b.verdicts.iter().zip(&c.verdicts) {
        assert!(
            (x.fake_score() - y.fake_score()).abs() < 1e-4,
            "the same faces"
        );
    }
    let after = model.stats();
    assert_eq!(after.faces - before.faces, 268);
    assert!(
        after.runs - before.runs <= 2,
        "three hand-overs, {} runs",
        after.runs - before.runs
    );
}

#[test]
fn a_model_that_does_not_exist_is_named_in_the_error() {
    let missing = PathBuf::from("/nonexistent/sd2.onnx");
    let e = SharedModel::get(&missing, Device::Cpu, false, 8)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/nonexistent/sd2.onnx"), "{e}");
}
