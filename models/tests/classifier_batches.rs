//! How `DeepfakeModel` runs batches: the CPU session pool splits a batch among sessions
//! and gives the verdicts of one session over the whole batch, in order; fixed batch
//! buckets pad without changing verdicts; CUDA graphs asked for where they cannot be had
//! are reported off; lesser graph optimization (the CUDA fallback) computes the same.

mod common;

use std::path::PathBuf;

use sd2_models::classifier::DeepfakeModel;
use sd2_models::image::RgbImage;
use sd2_models::runtime::{Device, Optimization, SessionConfig};

fn demo_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sd2-demo.onnx")
}

fn load(threads: usize) -> DeepfakeModel {
    let config = SessionConfig {
        threads: Some(threads),
        ..SessionConfig::default()
    };
    DeepfakeModel::load(&demo_model(), Device::Cpu, config).expect("demo model loads")
}

/// Crops of the sample images at different places and sizes, `n` of them.
fn crops(model: &DeepfakeModel, n: usize) -> Vec<f32> {
    let images = [
        RgbImage::open(&common::sample("t1.jpg")).unwrap(),
        RgbImage::open(&common::sample("astronaut.png")).unwrap(),
    ];
    let per = model.input_len();
    let mut out = vec![0.0; n * per];
    for (i, slot) in out.chunks_mut(per).enumerate() {
        let img = &images[i % 2];
        let (w, h) = (img.view().width() as f32, img.view().height() as f32);
        let f = 0.2 + 0.1 * (i % 5) as f32;
        let bbox = [w * f * 0.5, h * f * 0.3, w * (0.5 + f), h * (0.4 + f)];
        model.prepare(img.view(), bbox, slot);
    }
    out
}

#[test]
fn pooled_batches_equal_one_session() {
    let _ = common::installed("onnxruntime");
    let mut one = load(1);
    let mut pooled = load(3);
    // 130 faces run in pieces of 128 and 2 on one session, 44, 44 and 42 on three.
    for n in [1usize, 2, 7, 130] {
        let inputs = crops(&one, n);
        let a = one.classify(&inputs).unwrap();
        let b = pooled.classify(&inputs).unwrap();
        assert_eq!(a.len(), n);
        assert_eq!(b.len(), n);
        for (x, y) in a.iter().zip(&b) {
            let d = common::max_abs_diff(&x.probabilities, &y.probabilities);
            assert!(d < 1e-5, "batch {n}: pooled differs by {d}");
        }
        // Distinct faces give distinct verdicts, so an order mix-up would show above.
        for pair in a.windows(2) {
            let d = common::max_abs_diff(&pair[0].probabilities, &pair[1].probabilities);
            assert!(d > 1e-6, "two crops gave the same verdict");
        }
    }
}

#[test]
fn fixed_batches_pad_without_changing_verdicts() {
    let _ = common::installed("onnxruntime");
    let mut plain = load(1);
    let mut fixed = DeepfakeModel::load(
        &demo_model(),
        Device::Cpu,
        SessionConfig {
            threads: Some(1),
            fixed_batches: true,
            ..SessionConfig::default()
        },
    )
    .expect("demo model loads");
    // 3 → bucket 4, 5 → 8 (the padded faces must not leak into the real ones), 1 → 1;
    // then more batch sizes than the plain model keeps tensors for, and 3, 5 and 9 again
    // with the faces in reverse order: a reused or remade slot must give the verdicts of
    // the faces it was given now, not of the last run of that size.
    let per = plain.input_len();
    let mut forward = std::collections::HashMap::new();
    for n in [3usize, 5, 1, 2, 4, 6, 7, 8, 9, 10, 11] {
        let inputs = crops(&plain, n);
        let a = plain.classify(&inputs).unwrap();
        let b = fixed.classify(&inputs).unwrap();
        assert_eq!(b.len(), n, "one verdict per face, none for the padding");
        for (x, y) in a.iter().zip(&b) {
            let d = common::max_abs_diff(&x.probabilities, &y.probabilities);
            assert!(d < 1e-5, "batch {n}: padded differs by {d}");
        }
        forward.insert(n, a);
    }
    for n in [3usize, 5, 9] {
        let reversed: Vec<f32> = crops(&plain, n)
            .chunks(per)
            .rev()
            .flatten()
            .copied()
            .collect();
        for model in [&mut plain, &mut fixed] {
            let got = model.classify(&reversed).unwrap();
            for (i, v) in got.iter().enumerate() {
                let want = &forward[&n][n - 1 - i];
                let d = common::max_abs_diff(&v.probabilities, &want.probabilities);
                assert!(d < 1e-5, "batch {n} reversed: face {i} differs by {d}");
            }
        }
    }
}

#[test]
fn cuda_graphs_asked_for_on_the_cpu_are_reported_off() {
    let _ = common::installed("onnxruntime");
    // No CUDA here: `auto` lands on the CPU like `cpu` does, and both say why no graphs.
    for device in [Device::Cpu, Device::Auto] {
        let config = SessionConfig {
            cuda_graph: true,
            ..SessionConfig::default()
        };
        let model = DeepfakeModel::load(&demo_model(), device, config).expect("demo model loads");
        assert!(!model.cuda_graph(), "{device}");
        assert_eq!(
            model.cuda_graph_off(),
            Some("the model runs on the CPU"),
            "{device}"
        );
    }
}

#[test]
fn lesser_graph_optimization_gives_the_same_verdicts() {
    let _ = common::installed("onnxruntime");
    // What `DeepfakeModel::load` falls back to on CUDA when a model loads but does not run:
    // the graph with fewer of ONNX Runtime's rewrites, or none, computes the same thing.
    let mut full = load(1);
    let inputs = crops(&full, 7);
    let want = full.classify(&inputs).unwrap();
    assert!(
        full.staging().1.is_empty(),
        "nothing to fall back from on the CPU"
    );
    for optimization in [Optimization::Basic, Optimization::Off] {
        let config = SessionConfig {
            threads: Some(1),
            optimization,
            ..SessionConfig::default()
        };
        let mut model = DeepfakeModel::load(&demo_model(), Device::Cpu, config).unwrap();
        for (x, y) in want.iter().zip(&model.classify(&inputs).unwrap()) {
            let d = common::max_abs_diff(&x.probabilities, &y.probabilities);
            assert!(d < 1e-5, "{optimization:?}: differs by {d}");
        }
    }
}
