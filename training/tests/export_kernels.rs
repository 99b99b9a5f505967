//! The `sd2` graph (`sd2-train export --kernels sd2`) and its FP8 variant (`--fp8
//! --calibrate`): on the CPU, through SD²'s operators' CPU kernels, the `sd2` graph computes
//! what the standard graph computes, uses its own operators where ONNX Runtime has no fused
//! kernel, and the FP8 graph, calibrated on real faces and emulated, stays near fp32; a
//! device that cannot run either is refused with the file named.

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use common::max_diff;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::contract::{GraphKind, GraphPrecision};
use sd2_models::crop::CropRecipe;
use sd2_models::kernels::{self, cuda};
use sd2_models::onnx::{Model, Precision};
use sd2_models::paths;
use sd2_models::runtime::{Device as OrtDevice, RuntimeError, SessionConfig};
use sd2_train::clip::ClipConfig;
use sd2_train::export::drift::drift;
use sd2_train::export::{
    Calibration, ExportInfo, Kernels, Variant, calibrate::calibrate, export, export_fp8,
};
use sd2_train::labels::TextLabels;
use sd2_train::model::Sd2Model;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::RunState;

/// Gives every weight some spread, so that LoRA's merge and every bias matter.
struct Perturb;

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        p.map(|t| {
            let noise = Tensor::random(
                t.shape(),
                burn::tensor::Distribution::Normal(0.0, 0.05),
                &t.device(),
            );
            t + noise
        })
    }
}

/// The tiny preset with perturbed random weights and what exporting it needs.
struct Tiny {
    model: Sd2Model,
    state: RunState,
    labels: TextLabels,
    tok: ClipTokenizer,
    info: ExportInfo,
}

impl Tiny {
    fn new(seed: u64) -> Self {
        let device = Device::flex();
        device.seed(seed);
        let state = RunState::untrained(ClipConfig::tiny(), paths::clip_vocab());
        let model = Sd2Model::new(&state.config.model, &device)
            .map(&mut Perturb)
            .valid();
        let tok =
            ClipTokenizer::from_vocab_file(&state.config.vocab).expect("run scripts/setup.sh");
        Tiny {
            model,
            state,
            labels: TextLabels::default_labels(),
            tok,
            info: ExportInfo {
                model_name: "kernels".into(),
                model_version: "1".into(),
            },
        }
    }

    fn export(&self, precision: Precision, fused: bool, kernels: Kernels) -> Model {
        let variant = Variant {
            precision,
            fused,
            kernels,
        };
        export(
            &self.model,
            &self.state,
            &self.labels,
            &self.tok,
            variant,
            &self.info,
        )
    }

    fn fp8(&self, c: &Calibration) -> Model {
        export_fp8(
            &self.model,
            &self.state,
            &self.labels,
            &self.tok,
            c,
            &self.info,
        )
    }
}

fn logits(path: &std::path::Path, x: &[f32], config: SessionConfig) -> Vec<f32> {
    let mut m = DeepfakeModel::load(path, OrtDevice::Cpu, config).expect("loads on the CPU");
    m.logits(x).unwrap().into_iter().flatten().collect()
}

#[test]
fn the_sd2_graph_computes_what_the_standard_graph_computes_on_the_cpu() {
    let t = Tiny::new(5);
    let dir = tempfile::tempdir().unwrap();
    let x = real_faces(6);
    let tau = t.model.tau().into_scalar::<f32>();
    let files = [
        ("standard", t.export(Precision::F32, false, Kernels::Ort)),
        ("sd2", t.export(Precision::F32, true, Kernels::Sd2)),
        ("sd2-fp16", t.export(Precision::F16, true, Kernels::Sd2)),
    ];
    let mut outs = Vec::new();
    for (name, m) in files {
        let path = dir.path().join(format!("{name}.onnx"));
        m.write(&path).unwrap();
        let loaded = DeepfakeModel::load(&path, OrtDevice::Cpu, SessionConfig::default()).unwrap();
        let g = loaded.metadata().graph.expect("recorded");
        assert_eq!(
            g.kind,
            if name == "standard" {
                GraphKind::Standard
            } else {
                GraphKind::Sd2
            }
        );
        outs.push(logits(&path, &x, SessionConfig::default()));
    }
    let (d32, d16) = (
        max_diff(&outs[0], &outs[1]) / tau,
        max_diff(&outs[0], &outs[2]) / tau,
    );
    eprintln!("sd2 vs standard: fp32 {d32:.2e}·τ, fp16 {d16:.2e}·τ");
    assert!(
        d32 < 1e-4,
        "the sd2 graph differs from the standard one by {d32}·τ"
    );
    assert!(d16 < 1e-2, "the fp16 sd2 graph differs by {d16}·τ");
}

/// Where the `sd2` graph leaves ONNX Runtime's operators: Q's projection is a `Linear` (the
/// bias in its epilogue) feeding attention, every MLP's bias and QuickGELU are one
/// `BiasQuickGelu` right after fc1's MatMul (no bias lanes, no `QuickGelu`), and the file
/// imports the `com.sd2` domain.
#[test]
fn the_sd2_graph_uses_its_own_operators_where_ort_has_no_fused_kernel() {
    let proto = Tiny::new(1)
        .export(Precision::F16, true, Kernels::Sd2)
        .into_proto();
    assert!(
        proto
            .opset_import
            .iter()
            .any(|o| o.domain == kernels::DOMAIN && o.version == kernels::OPSET)
    );
    let graph = proto.graph.expect("a graph");
    let producer = |value: &str| {
        graph
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == value))
            .map(|n| n.op_type.as_str())
            .unwrap_or("an input")
    };
    assert!(
        graph
            .initializer
            .iter()
            .all(|i| !i.name.starts_with("bias_lanes")),
        "no bias lanes"
    );
    let layers = ClipConfig::tiny().vision.num_hidden_layers;
    let (mut attention, mut gelu) = (0, 0);
    for n in &graph.node {
        assert_ne!(n.op_type, "QuickGelu", "{}", n.name);
        if n.op_type == "MultiHeadAttention" && producer(&n.input[0]) == "Linear" {
            attention += 1;
            assert_eq!(producer(&n.input[1]), "MatMul");
        }
        if n.op_type == "BiasQuickGelu" {
            gelu += 1;
            assert_eq!(n.domain, kernels::DOMAIN);
            assert_eq!(producer(&n.input[0]), "MatMul", "{}", n.name);
        }
    }
    assert_eq!((attention, gelu), (layers, layers));
}

#[test]
fn an_fp8_export_calibrated_on_real_faces_keeps_fp32_verdicts_and_runs_only_where_allowed() {
    let t = Tiny::new(9);
    let dir = tempfile::tempdir().unwrap();
    let calibration_faces = real_faces(12);
    let c = calibrate(&t.model, &t.state, &t.labels, &t.tok, &calibration_faces).unwrap();
    let layers = ClipConfig::tiny().vision.num_hidden_layers;
    assert_eq!((c.faces, c.amax.len()), (12, 4 * layers));
    assert!(c.amax.values().all(|&a| a > 0.0 && a.is_finite()), "{c:?}");
    let fp8 = dir.path().join("fp8.onnx");
    let proto = t.fp8(&c).into_proto();
    let gemms = proto
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type == "LinearE4M3")
        .count();
    assert_eq!(
        gemms,
        6 * layers,
        "Q, K, V, out, fc1 and fc2 of every layer in FP8"
    );
    t.fp8(&c).write(&fp8).unwrap();
    // Refused on the CPU unless emulation is allowed, naming the file.
    let e = DeepfakeModel::load(&fp8, OrtDevice::Cpu, SessionConfig::default()).unwrap_err();
    assert!(matches!(e, RuntimeError::Unmet { .. }), "{e}");
    assert!(e.to_string().contains(&fp8.display().to_string()), "{e}");
    let emulated = SessionConfig {
        emulate_fp8: true,
        ..SessionConfig::default()
    };
    let m = DeepfakeModel::load(&fp8, OrtDevice::Cpu, emulated).unwrap();
    assert_eq!(m.metadata().graph.unwrap().precision, GraphPrecision::Fp8);
    // Against the fp32 standard graph on other crops of real faces.
    let standard = dir.path().join("standard.onnx");
    t.export(Precision::F32, false, Kernels::Ort)
        .write(&standard)
        .unwrap();
    let x = real_faces(6);
    let d = drift(&standard, &fp8, &x).unwrap();
    eprintln!("fp8 vs fp32: {d:?}");
    assert_eq!(d.faces, 6);
    let tau = t.model.tau().into_scalar::<f32>();
    assert!(
        d.max_logit / tau < 0.05,
        "FP8 moved a logit by {}·τ",
        d.max_logit / tau
    );
    assert!(d.max_fake_score < 0.02, "{d:?}");
}

/// What ONNX's checker checks of a graph's structure, on every variant: initializer names
/// are unique, and every node reads a graph input, an initializer or an earlier node's
/// output (nodes in topological order), and writes names no other node writes.
#[test]
fn every_variant_is_a_well_formed_graph() {
    let t = Tiny::new(4);
    let c = calibrate(&t.model, &t.state, &t.labels, &t.tok, &real_faces(3)).unwrap();
    let models = [
        ("standard", t.export(Precision::F32, false, Kernels::Ort)),
        ("fused fp16", t.export(Precision::F16, true, Kernels::Ort)),
        ("sd2 fp32", t.export(Precision::F32, true, Kernels::Sd2)),
        ("sd2 fp16", t.export(Precision::F16, true, Kernels::Sd2)),
        ("sd2 fp8", t.fp8(&c)),
    ];
    for (name, m) in models {
        let g = m.into_proto().graph.expect("a graph");
        let mut known = std::collections::HashSet::new();
        for i in &g.initializer {
            assert!(
                known.insert(i.name.clone()),
                "{name}: initializer {} twice",
                i.name
            );
        }
        known.extend(g.input.iter().map(|i| i.name.clone()));
        for n in &g.node {
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                assert!(
                    known.contains(i),
                    "{name}: {} reads {i} before it is made",
                    n.name
                );
            }
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                assert!(known.insert(o.clone()), "{name}: {o} written twice");
            }
        }
    }
}

#[test]
fn an_sd2_export_on_cuda_without_its_kernels_is_refused_naming_the_file_and_what_is_missing() {
    let Err(missing) = cuda::available() else {
        eprintln!("SKIPPED: this machine can run the CUDA kernels");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sd2.onnx");
    Tiny::new(2)
        .export(Precision::F16, true, Kernels::Sd2)
        .write(&path)
        .unwrap();
    let e = DeepfakeModel::load(&path, OrtDevice::Cuda, SessionConfig::default()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&missing.to_string()), "{text}");
    // `auto` runs it on the CPU, saying why.
    let m = DeepfakeModel::load(&path, OrtDevice::Auto, SessionConfig::default()).unwrap();
    assert!(m.fallback_reason().is_some_and(|r| !r.is_empty()));
}

/// Normalised crops of `n` faces of t1.jpg, 64 pixels.
fn real_faces(n: usize) -> Vec<f32> {
    let recipe = CropRecipe {
        input_size: 64,
        ..CropRecipe::default()
    };
    sd2_models::samples::t1_crops(&recipe, n).expect("run scripts/setup.sh")
}
