//! Models written by our ONNX writer load in ONNX Runtime and compute what the same
//! operations compute when written out as plain loops.

mod common;

use common::{max_abs_diff, naive, pattern};
use half::f16;
use sd2_models::onnx::{Attr, DataType, Dim, Graph, Model, Precision};
use sd2_models::runtime::{self, Device, RuntimeError, SessionConfig};

fn open(model: Model) -> (tempfile::TempDir, std::path::PathBuf, ort::session::Session) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    model.write(&path).unwrap();
    let s = runtime::open_session(&path, Device::Cpu, SessionConfig::default(), "").unwrap();
    (dir, path, s.session.into_inner())
}

/// Conv → PRelu → MaxPool(ceil) → Flatten → Gemm → Softmax, batch dynamic.
#[test]
fn conv_net_matches_plain_loops_at_any_batch() {
    let (c_in, h, w, c_out, k, classes) = (2, 6, 7, 3, 3, 4);
    let conv_w = pattern(c_out * c_in * k * k, 11);
    let conv_b = pattern(c_out, 12);
    let slope = [0.25, -0.5, 0.1];
    // After conv: 4×5; after 2×2/2 ceil pooling: 2×3.
    let flat = c_out * 2 * 3;
    let fc_w = pattern(classes * flat, 13);
    let fc_b = pattern(classes, 14);

    let mut g = Graph::new("conv-net");
    let x = g.input(
        "x",
        DataType::Float,
        &[
            "N".into(),
            Dim::Fixed(c_in as i64),
            Dim::Fixed(h as i64),
            Dim::Fixed(w as i64),
        ],
    );
    let cw = g.weight("conv.w", &[c_out, c_in, k, k], &conv_w, Precision::F32);
    let cb = g.weight("conv.b", &[c_out], &conv_b, Precision::F32);
    let y = g.node(
        "Conv",
        &[&x, &cw, &cb],
        vec![Attr::Ints("kernel_shape", vec![3, 3])],
    );
    let s = g.weight("slope", &[c_out, 1, 1], &slope, Precision::F32);
    let y = g.node("PRelu", &[&y, &s], vec![]);
    let y = g.node(
        "MaxPool",
        &[&y],
        vec![
            Attr::Ints("kernel_shape", vec![2, 2]),
            Attr::Ints("strides", vec![2, 2]),
            Attr::Int("ceil_mode", 1),
        ],
    );
    let y = g.node("Flatten", &[&y], vec![Attr::Int("axis", 1)]);
    let fw = g.weight("fc.w", &[classes, flat], &fc_w, Precision::F32);
    let fb = g.weight("fc.b", &[classes], &fc_b, Precision::F32);
    let y = g.node("Gemm", &[&y, &fw, &fb], vec![Attr::Int("transB", 1)]);
    let y = g.node("Softmax", &[&y], vec![Attr::Int("axis", 1)]);
    g.output(
        &y,
        "probs",
        DataType::Float,
        &["N".into(), Dim::Fixed(classes as i64)],
    );
    let model = Model::new(g)
        .with_metadata("model_name", "writer-test")
        .with_metadata("input_size", "6x7");
    let (_dir, _path, mut session) = open(model);

    let meta = session.metadata().unwrap();
    assert_eq!(meta.custom("model_name").as_deref(), Some("writer-test"));
    assert_eq!(meta.custom("input_size").as_deref(), Some("6x7"));
    drop(meta);

    for n in [1, 3] {
        let input = pattern(n * c_in * h * w, 20 + n as u64);
        let out = common::run_f32(&mut session, "x", &[n, c_in, h, w], &input);
        let (conv, shape) = naive::conv2d(&input, [n, c_in, h, w], &conv_w, &conv_b, c_out, k);
        let mut conv = conv;
        naive::prelu(&mut conv, c_out, shape[2] * shape[3], &slope);
        let (pooled, _) = naive::maxpool_ceil(&conv, shape, 2, 2);
        let mut logits = naive::dense(&pooled, n, &fc_w, &fc_b, classes);
        naive::softmax_axis1(&mut logits, n, classes, 1);
        assert_eq!(out[0].1, vec![n, classes]);
        let d = max_abs_diff(&out[0].2, &logits);
        assert!(d < 1e-5, "batch {n}: max difference {d}");
    }
}

/// fp16 initializers, and a graph whose input and output are fp16 themselves.
#[test]
fn fp16_weights_and_fp16_io_match_f32_loops_within_half_precision() {
    let (n, i, o) = (3, 8, 4);
    let w = pattern(o * i, 31);
    let b = pattern(o, 32);
    let x = pattern(n * i, 33);
    let want = naive::dense(&x, n, &w, &b, o);
    // MatMul takes [in, out]: store the transpose.
    let wt: Vec<f32> = (0..i * o).map(|k| w[(k % o) * i + k / o]).collect();

    // f32 in, f16 weights, f32 out.
    let mut g = Graph::new("half-weights");
    let xin = g.input("x", DataType::Float, &["N".into(), Dim::Fixed(i as i64)]);
    let xh = g.node(
        "Cast",
        &[&xin],
        vec![Attr::Int("to", DataType::Float16 as i64)],
    );
    let wn = g.weight("w", &[i, o], &wt, Precision::F16);
    let bn = g.weight("b", &[o], &b, Precision::F16);
    let y = g.node("MatMul", &[&xh, &wn], vec![]);
    let y = g.node("Add", &[&y, &bn], vec![]);
    let y = g.node("Cast", &[&y], vec![Attr::Int("to", DataType::Float as i64)]);
    g.output(
        &y,
        "y",
        DataType::Float,
        &["N".into(), Dim::Fixed(o as i64)],
    );
    let (_dir, path, mut session) = open(Model::new(g));
    let out = common::run_f32(&mut session, "x", &[n, i], &x);
    let d = max_abs_diff(&out[0].2, &want);
    assert!(d < 1e-2, "fp16 weights: max difference {d}");
    // The weights really are stored as 2-byte floats: 32 + 4 values, not 4-byte ones.
    let bytes = std::fs::read(&path).unwrap();
    let w16: Vec<u8> = wt
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    assert!(
        bytes.windows(w16.len()).any(|win| win == w16.as_slice()),
        "fp16 raw data not found in the file"
    );

    // f16 in, f16 out.
    let mut g = Graph::new("half-io");
    let xin = g.input("x", DataType::Float16, &["N".into(), Dim::Fixed(i as i64)]);
    let wn = g.weight("w", &[i, o], &wt, Precision::F16);
    let bn = g.weight("b", &[o], &b, Precision::F16);
    let y = g.node("MatMul", &[&xin, &wn], vec![]);
    let y = g.node("Add", &[&y, &bn], vec![]);
    g.output(
        &y,
        "y",
        DataType::Float16,
        &["N".into(), Dim::Fixed(o as i64)],
    );
    let (_dir, _path, mut session) = open(Model::new(g));
    let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
    let t = ort::value::TensorRef::from_array_view(([n, i], xh.as_slice())).unwrap();
    let outs = session.run(ort::inputs!["x" => t]).unwrap();
    let (shape, y) = outs["y"].try_extract_tensor::<f16>().unwrap();
    assert_eq!(
        shape.iter().copied().collect::<Vec<_>>(),
        vec![n as i64, o as i64]
    );
    let y: Vec<f32> = y.iter().map(|v| v.to_f32()).collect();
    let d = max_abs_diff(&y, &want);
    assert!(d < 1e-2, "fp16 I/O: max difference {d}");
}

#[test]
fn a_broken_graph_is_refused_with_the_file_named() {
    let mut g = Graph::new("broken");
    let x = g.input("x", DataType::Float, &[Dim::Fixed(2)]);
    let y = g.node("Add", &[&x, "not_defined_anywhere"], vec![]);
    g.output(&y, "y", DataType::Float, &[Dim::Fixed(2)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    Model::new(g).write(&path).unwrap();
    match runtime::open_session(&path, Device::Cpu, SessionConfig::default(), "") {
        Err(e @ RuntimeError::BadModel { .. }) => {
            assert!(e.to_string().contains("broken.onnx"), "{e}")
        }
        other => panic!("expected BadModel, got {other:?}"),
    }
}
