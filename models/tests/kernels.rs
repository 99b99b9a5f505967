//! SD²'s operators (`com.sd2`): their CPU kernels compute what each operator's definition
//! says inside a real ONNX Runtime session, every CUDA kernel compiles with NVRTC (on a
//! machine without a GPU too), and a model that needs what a device lacks is refused
//! before it runs, naming the file and what is missing.

use half::f16;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::kernels::cuda::{self, nvrtc, source};
use sd2_models::kernels::{DOMAIN, OPSET, e4m3, quick_gelu};
use sd2_models::onnx::{DataType, Dim, Graph, Model, Precision};
use sd2_models::ort;
use sd2_models::runtime::{self, Device, RuntimeError, SessionConfig};

/// Deterministic values in about [-2, 2].
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (((i * 7919 + seed * 104_729) % 997) as f32 / 997.0 - 0.5) * 4.0)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const M: usize = 6;
const K: usize = 16;
const N: usize = 24;

/// A graph of every operator over an input `x` `[2, 3, K]`: `Linear` (with and without its
/// bias), `BiasQuickGelu`, and the FP8 chain `QuantizeE4M3` → `LinearE4M3` beside
/// `BiasQuickGeluE4M3`.
fn operators_graph(precision: Precision, w: &[f32], b: &[f32], w8: &[u8]) -> Model {
    let mut g = Graph::new("ops");
    let t = precision.data_type();
    let x = g.input(
        "x",
        t,
        &[Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(K as i64)],
    );
    let wn = g.weight("w", &[K, N], w, precision);
    let bn = g.weight("b", &[N], b, precision);
    let y = |g: &mut Graph, op: &str, inputs: &[&str]| {
        let out = g.fresh_name(op);
        g.node_outputs(DOMAIN, op, inputs, &[&out], vec![]);
        out
    };
    let lin = y(&mut g, "Linear", &[&x, &wn, &bn]);
    let plain = y(&mut g, "Linear", &[&x, &wn]);
    let gelu = y(&mut g, "BiasQuickGelu", &[&lin, &bn]);
    let sx = g.scalar("sx", 0.01, Precision::F32);
    let sw = g.scalar("sw", 0.005, Precision::F32);
    let q = y(&mut g, "QuantizeE4M3", &[&x, &sx]);
    let w8n = g.uint8s("w8", &[N, K], w8);
    let lin8 = y(&mut g, "LinearE4M3", &[&q, &w8n, &sx, &sw, &bn]);
    let gelu8 = y(&mut g, "BiasQuickGeluE4M3", &[&lin, &bn, &sx]);
    let dims = |n: usize| [Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(n as i64)];
    for (v, name) in [
        (&lin, "linear"),
        (&plain, "plain"),
        (&gelu, "gelu"),
        (&lin8, "linear8"),
    ] {
        g.output(v, name, t, &dims(N));
    }
    g.output(&q, "q", DataType::Uint8, &dims(K));
    g.output(&gelu8, "gelu8", DataType::Uint8, &dims(N));
    Model::new(g).with_opset(DOMAIN, OPSET)
}

/// The output `name` as `f32` values.
fn floats(out: &ort::session::SessionOutputs<'_>, name: &str, fp16: bool) -> Vec<f32> {
    if fp16 {
        let (_, v) = out[name].try_extract_tensor::<f16>().unwrap();
        v.iter().map(|h| h.to_f32()).collect()
    } else {
        out[name].try_extract_tensor::<f32>().unwrap().1.to_vec()
    }
}

#[test]
fn each_operator_computes_its_definition_on_the_cpu_in_fp32_and_fp16() {
    let w = values(K * N, 1);
    let b = values(N, 2);
    let w8: Vec<u8> = values(N * K, 3)
        .iter()
        .map(|v| e4m3::encode(v / 0.005))
        .collect();
    let x = values(M * K, 4);
    let dir = tempfile::tempdir().unwrap();
    for (precision, tol) in [(Precision::F32, 1e-5), (Precision::F16, 2e-2)] {
        let fp16 = precision == Precision::F16;
        // What the kernels see: the values as stored at this precision.
        let at = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&f| if fp16 { f16::from_f32(f).to_f32() } else { f })
                .collect()
        };
        let (xs, ws, bs) = (at(&x), at(&w), at(&b));
        let path = dir.path().join(format!("{precision:?}.onnx"));
        operators_graph(precision, &w, &b, &w8)
            .write(&path)
            .unwrap();
        let mut s = runtime::open_session(&path, Device::Cpu, SessionConfig::default(), "")
            .expect("the com.sd2 domain is registered with every session")
            .session
            .into_inner();
        let shape = [2usize, 3, K];
        let out = if fp16 {
            let h: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
            let t = ort::value::TensorRef::from_array_view((shape, h.as_slice())).unwrap();
            s.run(ort::inputs!["x" => t]).unwrap()
        } else {
            let t = ort::value::TensorRef::from_array_view((shape, x.as_slice())).unwrap();
            s.run(ort::inputs!["x" => t]).unwrap()
        };
        // Linear: X·W + B, and X·W without the bias.
        let mut want = vec![0.0f32; M * N];
        for r in 0..M {
            for c in 0..N {
                want[r * N + c] = (0..K).map(|i| xs[r * K + i] * ws[i * N + c]).sum();
            }
        }
        let linear = floats(&out, "linear", fp16);
        assert!(max_diff(&floats(&out, "plain", fp16), &want) < tol);
        let with_bias: Vec<f32> = want
            .iter()
            .enumerate()
            .map(|(i, v)| v + bs[i % N])
            .collect();
        assert!(max_diff(&linear, &with_bias) < tol, "{precision:?}");
        // BiasQuickGelu of Linear's output, as stored.
        let gelu: Vec<f32> = linear
            .iter()
            .enumerate()
            .map(|(i, v)| quick_gelu(v + bs[i % N]))
            .collect();
        assert!(
            max_diff(&floats(&out, "gelu", fp16), &gelu) < tol,
            "{precision:?}"
        );
        // The FP8 chain: codes exactly as e4m3::encode makes them, then their GEMM.
        let (_, q) = out["q"].try_extract_tensor::<u8>().unwrap();
        let want_q: Vec<u8> = xs.iter().map(|v| e4m3::encode(v * (1.0 / 0.01))).collect();
        assert_eq!(q, want_q.as_slice());
        let (_, g8) = out["gelu8"].try_extract_tensor::<u8>().unwrap();
        let want_g8: Vec<u8> = gelu
            .iter()
            .map(|v| e4m3::encode(v * (1.0 / 0.01)))
            .collect();
        assert_eq!(g8, want_g8.as_slice(), "{precision:?}");
        let mut want8 = vec![0.0f32; M * N];
        for r in 0..M {
            for c in 0..N {
                let acc: f32 = (0..K)
                    .map(|i| e4m3::decode(q[r * K + i]) * e4m3::decode(w8[c * K + i]))
                    .sum();
                want8[r * N + c] = acc * (0.01 * 0.005) + bs[c];
            }
        }
        assert!(
            max_diff(&floats(&out, "linear8", fp16), &want8) < tol,
            "{precision:?}"
        );
    }
}

/// Compiles every kernel source with NVRTC, as a session on a GPU does at load; PTX for the
/// oldest architecture each source supports and for Hopper, and Hopper's machine code.
/// Without the NVRTC library (`scripts/setup.sh --nvrtc`) there is nothing to test with:
/// the test says so and passes.
#[test]
fn every_cuda_kernel_compiles_with_nvrtc() {
    let version = match nvrtc::version() {
        Ok(v) => v,
        Err(why) => {
            eprintln!("SKIPPED: NVRTC is not installed here ({why})");
            return;
        }
    };
    eprintln!("NVRTC {}.{}", version.0, version.1);
    for src in source::SOURCES {
        for target in [
            nvrtc::Target::Ptx(src.min_arch),
            nvrtc::Target::Ptx(90),
            nvrtc::Target::Cubin(90),
        ] {
            let image = nvrtc::compile(&src, target)
                .unwrap_or_else(|e| panic!("{} for {target:?}: {e}", src.name));
            if let nvrtc::Target::Ptx(_) = target {
                let ptx = String::from_utf8_lossy(&image);
                for kernel in src.kernels {
                    assert!(
                        ptx.contains(&format!(".entry {kernel}(")),
                        "{}: no kernel {kernel} in the PTX for {target:?}",
                        src.name
                    );
                }
            } else {
                assert!(image.starts_with(b"\x7fELF"), "a cubin is an ELF image");
            }
        }
    }
    // The FP8 kernels need 8.9: asking for less is an error that says so.
    let e = nvrtc::compile(&source::FP8_SOURCE, nvrtc::Target::Ptx(80)).unwrap_err();
    assert!(e.to_string().contains("89"), "{e}");
}

/// A model file whose metadata says how its graph was written, and nothing else an SD²
/// model has: the refusals come before the contract is read.
fn file_of(graph: &str, precision: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let mut g = Graph::new("g");
    let x = g.input("x", DataType::Float, &[Dim::Fixed(1)]);
    g.output(&x, "y", DataType::Float, &[Dim::Fixed(1)]);
    let path = dir.join(format!("{graph}-{precision}.onnx"));
    Model::new(g)
        .with_metadata("graph", graph)
        .with_metadata("precision", precision)
        .write(&path)
        .unwrap();
    path
}

#[test]
fn an_sd2_graph_on_cuda_without_its_kernels_is_refused_naming_what_is_missing() {
    let Err(missing) = cuda::available() else {
        eprintln!("SKIPPED: this machine can run the CUDA kernels");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = file_of("sd2", "fp16", dir.path());
    let e = DeepfakeModel::load(&path, Device::Cuda, SessionConfig::default()).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, RuntimeError::Unmet { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("com.sd2") && text.contains(&missing.to_string()),
        "{text}"
    );
    // On this machine that names the driver, or else NVRTC or cuBLASLt.
    assert!(
        ["libcuda.so.1", "libnvrtc.so.13", "libcublasLt.so.13"]
            .iter()
            .any(|lib| text.contains(lib)),
        "{text}"
    );
    // `auto` runs it on the CPU instead, where its operators have kernels; here the file is
    // no SD² model, so what fails next is the contract, not the device.
    let e = DeepfakeModel::load(&path, Device::Auto, SessionConfig::default()).unwrap_err();
    assert!(!matches!(e, RuntimeError::Unmet { .. }), "{e}");
}

#[test]
fn an_fp8_graph_on_the_cpu_is_refused_unless_emulation_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of("sd2", "fp8", dir.path());
    let e = DeepfakeModel::load(&path, Device::Cpu, SessionConfig::default()).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, RuntimeError::Unmet { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("FP8") && text.contains("SD2_FP8_EMULATION=1"),
        "{text}"
    );
    let emulated = SessionConfig {
        emulate_fp8: true,
        ..SessionConfig::default()
    };
    let e = DeepfakeModel::load(&path, Device::Cpu, emulated).unwrap_err();
    assert!(!matches!(e, RuntimeError::Unmet { .. }), "{e}");
}
