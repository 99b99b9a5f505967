//! ONNX Runtime on the exported graph computes what the burn model computes: fp32 within
//! 1e-4, fp16 within 1e-2, on random and real face inputs, for the tiny preset and for
//! ViT-L/14 with random weights; and `DeepfakeModel`, as the elements run it, gives the
//! verdicts of a plain ONNX Runtime run of the same file.

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use common::max_diff;
use half::f16;
use sd2_models::classifier::{DeepfakeModel, Verdict};
use sd2_models::crop::CropRecipe;
use sd2_models::onnx::{Model, Precision};
use sd2_models::ort;
use sd2_models::paths;
use sd2_models::runtime::{self, Device as OrtDevice, SessionConfig};
use sd2_train::clip::ClipConfig;
use sd2_train::export::{ExportInfo, Kernels, Variant, export};
use sd2_train::labels::TextLabels;
use sd2_train::model::{Sd2Model, cosine_matrix};
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::RunState;
use sd2_train::train::step::token_tensor;

/// Gives LoRA factors and every other weight some spread, so the merge is exercised.
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

fn state(clip: ClipConfig) -> RunState {
    RunState::untrained(clip, paths::clip_vocab())
}

/// (logits, embedding) from burn.
fn burn_outputs(
    model: &Sd2Model,
    tok: &ClipTokenizer,
    x: &[f32],
    n: usize,
    side: usize,
) -> (Vec<f32>, Vec<f32>) {
    let device = Device::flex();
    let pixels = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, 3, side, side]), &device);
    let f = model.image_features(pixels);
    let u = model.text_features(token_tensor(
        tok,
        &TextLabels::default_labels().simple(),
        &device,
    ));
    let logits = model.logits(f.clone(), u);
    let [_, p] = f.dims();
    let e = cosine_matrix(f, Tensor::eye(p, &device));
    let v = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    (v(logits), v(e))
}

/// A plain ONNX Runtime session on the CPU.
fn plain_session(path: &std::path::Path) -> ort::session::Session {
    runtime::open_session(path, OrtDevice::Cpu, SessionConfig::default(), "")
        .unwrap()
        .session
        .into_inner()
}

/// (logits, embedding) from ONNX Runtime.
fn ort_outputs(
    s: &mut ort::session::Session,
    x: &[f32],
    n: usize,
    side: usize,
    fp16: bool,
) -> (Vec<f32>, Vec<f32>) {
    let shape = [n, 3, side, side];
    if fp16 {
        let h: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
        let t = ort::value::TensorRef::from_array_view((shape, h.as_slice())).unwrap();
        let out = s.run(ort::inputs!["pixel_values" => t]).unwrap();
        let get = |name: &str| {
            out[name]
                .try_extract_tensor::<f16>()
                .unwrap()
                .1
                .iter()
                .map(|v| v.to_f32())
                .collect::<Vec<_>>()
        };
        (get("logits"), get("embedding"))
    } else {
        let t = ort::value::TensorRef::from_array_view((shape, x)).unwrap();
        let out = s.run(ort::inputs!["pixel_values" => t]).unwrap();
        let get = |name: &str| out[name].try_extract_tensor::<f32>().unwrap().1.to_vec();
        (get("logits"), get("embedding"))
    }
}

fn pattern(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (((i * 7919 + seed * 104729) % 256) as f32 - 127.5) / 64.0)
        .collect()
}

fn check(clip: ClipConfig, batch: usize, fp32_tol: f32, fp16_tol: f32) {
    let device = Device::flex();
    device.seed(7);
    let st = state(clip.clone());
    let model = Sd2Model::new(&st.config.model, &device)
        .map(&mut Perturb)
        .valid();
    let tok = ClipTokenizer::from_vocab_file(&st.config.vocab).expect("run scripts/setup.sh");
    let side = clip.vision.image_size;
    let dir = tempfile::tempdir().unwrap();
    let info = ExportInfo {
        model_name: "parity".into(),
        model_version: "1".into(),
    };
    let inputs = [
        ("random", pattern(batch * 3 * side * side, 3)),
        ("faces", real_faces(side, batch)),
    ];
    let wants: Vec<_> = inputs
        .iter()
        .map(|(_, x)| burn_outputs(&model, &tok, x, batch, side))
        .collect();
    // Logits are τ·cosine: compare them relative to τ.
    let tau = model.tau().into_scalar::<f32>();
    let labels = TextLabels::default_labels();
    for (precision, tol) in [(Precision::F32, fp32_tol), (Precision::F16, fp16_tol)] {
        let path = dir.path().join(format!("{precision:?}.onnx"));
        let variant = Variant {
            precision,
            fused: false,
            kernels: Kernels::Ort,
        };
        export(&model, &st, &labels, &tok, variant, &info)
            .write(&path)
            .unwrap();
        let mut session = plain_session(&path);
        // The elements' path (I/O binding, f16 conversion, the CPU session pool) must give
        // the verdicts of a plain run of the same file.
        let mut ours = DeepfakeModel::load(&path, OrtDevice::Cpu, SessionConfig::default())
            .expect("the export loads as an SD² model");
        for ((name, x), (want_logits, want_embedding)) in inputs.iter().zip(&wants) {
            let fp16 = precision == Precision::F16;
            let (logits, embedding) = ort_outputs(&mut session, x, batch, side, fp16);
            let dl = max_diff(&logits, want_logits) / tau;
            let de = max_diff(&embedding, want_embedding);
            eprintln!("{name} {precision:?}: logits differ by {dl:.2e}·τ, embeddings by {de:.2e}");
            assert!(
                dl < tol && de < tol,
                "{name} {precision:?}: logits differ by {dl}·τ, embeddings by {de}"
            );
            let verdicts = ours.classify(x).unwrap();
            assert_eq!(verdicts.len(), batch);
            for (v, l) in verdicts.iter().zip(logits.chunks(5)) {
                let d = max_diff(&v.probabilities, &Verdict::from_logits(l).probabilities);
                assert!(
                    d < 1e-4,
                    "{name} {precision:?}: DeepfakeModel differs by {d}"
                );
            }
        }
    }
}

#[test]
fn tiny_preset_matches_burn_in_fp32_and_fp16() {
    check(ClipConfig::tiny(), 3, 1e-4, 1e-2);
}

/// The tiny preset with random weights exported as `variant` under `name` (version 7), and
/// its run state.
fn tiny_export(variant: Variant, name: &str) -> (Model, RunState) {
    let st = state(ClipConfig::tiny());
    let model = Sd2Model::new(&st.config.model, &Device::flex()).valid();
    let tok = ClipTokenizer::from_vocab_file(&st.config.vocab).expect("run scripts/setup.sh");
    let info = ExportInfo {
        model_name: name.into(),
        model_version: "7".into(),
    };
    let labels = TextLabels::default_labels();
    (export(&model, &st, &labels, &tok, variant, &info), st)
}

#[test]
fn exported_metadata_carries_the_crop_recipe_and_the_types() {
    let variant = Variant {
        precision: Precision::F32,
        fused: false,
        kernels: Kernels::Ort,
    };
    let (exported, st) = tiny_export(variant, "sd2-test");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    exported.write(&path).unwrap();
    let s = runtime::open_session(&path, OrtDevice::Cpu, SessionConfig::default(), "")
        .unwrap()
        .session;
    let meta = s.metadata().unwrap();
    let keys = meta.custom_keys().unwrap();
    let map: std::collections::HashMap<String, String> = keys
        .iter()
        .map(|k| (k.clone(), meta.custom(k).unwrap()))
        .collect();
    assert_eq!(map["model_name"], "sd2-test");
    assert_eq!(map["model_version"], "7");
    assert_eq!(map["type_names"], "REAL,FS,FR,EFS,FE");
    assert_eq!(CropRecipe::from_metadata(&map).unwrap(), st.config.crop);
    let inputs: Vec<&str> = s.inputs().iter().map(|o| o.name()).collect();
    let outputs: Vec<&str> = s.outputs().iter().map(|o| o.name()).collect();
    assert_eq!(inputs, vec!["pixel_values"]);
    assert_eq!(outputs, vec!["logits", "embedding"]);
}

/// Shape arithmetic (Shape, Size and the small int64 nodes fed by them) runs on the host,
/// between the GPU kernels of a CUDA graph; both variants read every shape from the
/// graph's initializers instead. Nor is there a convolution in the fp16 (GPU) graphs:
/// ONNX Runtime's CUDA Conv rebuilds its cuDNN plans whenever the batch size changes, so
/// their patch embedding is a MatMul over the cut-up image.
#[test]
fn neither_graph_computes_shapes_at_run_time_nor_convolves() {
    for fused in [false, true] {
        let variant = Variant {
            precision: Precision::F16,
            fused,
            kernels: Kernels::Ort,
        };
        let proto = tiny_export(variant, "shapes").0.into_proto();
        let graph = proto.graph.expect("a graph");
        let dynamic: Vec<&str> = graph
            .node
            .iter()
            .map(|n| n.op_type.as_str())
            .filter(|op| ["Shape", "Size", "ConstantOfShape", "Conv"].contains(op))
            .collect();
        assert!(dynamic.is_empty(), "fused={fused}: {dynamic:?}");
    }
}

#[test]
fn vit_l_14_with_random_weights_matches_burn_in_fp32_and_fp16() {
    check(ClipConfig::vit_l_14(), 1, 1e-4, 1e-2);
}

#[test]
fn fused_contrib_operator_graph_matches_the_standard_graph_and_burn() {
    let device = Device::flex();
    device.seed(11);
    let st = state(ClipConfig::tiny());
    let model = Sd2Model::new(&st.config.model, &device)
        .map(&mut Perturb)
        .valid();
    let tok = ClipTokenizer::from_vocab_file(&st.config.vocab).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let info = ExportInfo {
        model_name: "fused".into(),
        model_version: "1".into(),
    };
    let side = 64;
    let x = real_faces(side, 3);
    // Standard fp32, fused fp32, and fused fp16: the graph the CUDA path runs, which ONNX
    // Runtime's CPU provider also runs.
    let variants = [
        (Precision::F32, false),
        (Precision::F32, true),
        (Precision::F16, true),
    ];
    let mut outs = Vec::new();
    for (precision, fused) in variants {
        let path = dir.path().join(format!("{precision:?}-{fused}.onnx"));
        let variant = Variant {
            precision,
            fused,
            kernels: Kernels::Ort,
        };
        export(
            &model,
            &st,
            &TextLabels::default_labels(),
            &tok,
            variant,
            &info,
        )
        .write(&path)
        .unwrap();
        let fp16 = precision == Precision::F16;
        outs.push(ort_outputs(&mut plain_session(&path), &x, 3, side, fp16));
    }
    let (want, want_embedding) = burn_outputs(&model, &tok, &x, 3, side);
    let tau = model.tau().into_scalar::<f32>();
    let d = max_diff(&outs[0].0, &outs[1].0) / tau;
    eprintln!("fused vs standard: logits differ by {d:.2e}·τ");
    assert!(d < 1e-4, "fused and standard graphs differ by {d}·τ");
    assert!(max_diff(&outs[1].0, &want) / tau < 1e-4);
    assert!(max_diff(&outs[0].1, &outs[1].1) < 1e-4);
    let (dl, de) = (
        max_diff(&outs[2].0, &want) / tau,
        max_diff(&outs[2].1, &want_embedding),
    );
    eprintln!("fused fp16 vs burn: logits differ by {dl:.2e}·τ, embeddings by {de:.2e}");
    assert!(dl < 1e-2 && de < 1e-2, "fused fp16: {dl}·τ, {de}");
    // Both fused graphs do use the contrib operators.
    for file in ["F32-true.onnx", "F16-true.onnx"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        for op in [
            "MultiHeadAttention",
            "SkipLayerNormalization",
            "QuickGelu",
            "BiasGelu",
            "com.microsoft",
        ] {
            assert!(
                bytes.windows(op.len()).any(|w| w == op.as_bytes()),
                "{file}: {op} missing"
            );
        }
    }
}

/// What makes the fused graph fast on ONNX Runtime's CUDA provider, kept from regressing:
/// each `MultiHeadAttention` reads Q, K and V straight from their projections (no Split
/// of a packed projection, no bias of its own, which would make the kernel copy all three
/// into a workspace first), and no MLP has a separate bias Add before its `QuickGelu` (the
/// bias rides in the MatMul). That these rewrites are exact is
/// `fused_contrib_operator_graph_matches_the_standard_graph_and_burn`.
#[test]
fn fused_graph_feeds_attention_and_gelu_straight_from_matmuls() {
    let variant = Variant {
        precision: Precision::F16,
        fused: true,
        kernels: Kernels::Ort,
    };
    let graph = tiny_export(variant, "fusions")
        .0
        .into_proto()
        .graph
        .expect("a graph");
    let producer = |value: &str| {
        graph
            .node
            .iter()
            .find(|n| n.output.iter().any(|o| o == value))
            .map(|n| n.op_type.as_str())
            .unwrap_or("an input")
    };
    let layers = ClipConfig::tiny().vision.num_hidden_layers;
    let (mut attention, mut gelu) = (0, 0);
    for n in &graph.node {
        assert_ne!(n.op_type, "Split", "a Split copies its input");
        if n.op_type == "MultiHeadAttention" {
            attention += 1;
            let inputs: Vec<&str> = n.input.iter().map(|i| producer(i)).collect();
            // Q carries its bias; K's is dropped and V's folded into the output's.
            assert_eq!(inputs, ["Add", "MatMul", "MatMul"], "{}", n.name);
        }
        if n.op_type == "QuickGelu" {
            gelu += 1;
            assert_eq!(producer(&n.input[0]), "MatMul", "{}", n.name);
        }
    }
    // Every layer's attention and MLP, and CLAM's attention.
    assert_eq!((attention, gelu), (layers + 1, layers));
}

/// Normalised crops of the sample faces, `side` pixels.
fn real_faces(side: usize, n: usize) -> Vec<f32> {
    let recipe = CropRecipe {
        input_size: side,
        ..CropRecipe::default()
    };
    sd2_models::samples::t1_crops(&recipe, n).expect("run scripts/setup.sh")
}
