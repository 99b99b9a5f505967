//! The converted P-Net, R-Net and O-Net compute what facenet-pytorch's modules compute:
//! checked against plain loops over the same weights, and against the outputs PyTorch gave
//! on the same input (fixture).

mod common;

use common::{max_abs_diff, naive, pattern};
use sd2_models::mtcnn::nets::{self, NetSpec};
use sd2_models::runtime::{self, Device, SessionConfig};
use sd2_models::state_dict::StateDict;

fn weights(spec: &NetSpec) -> StateDict {
    spec.load_weights(&common::installed("facenet")).unwrap()
}

fn session(spec: &NetSpec) -> ort::session::Session {
    let path = common::mtcnn_dir().join(format!("{}.onnx", spec.name));
    runtime::open_session(&path, Device::Cpu, SessionConfig::default(), "")
        .unwrap()
        .session
        .into_inner()
}

fn conv(sd: &StateDict, name: &str, x: &[f32], shape: [usize; 4]) -> (Vec<f32>, [usize; 4]) {
    let w = sd.get(&format!("{name}.weight"));
    naive::conv2d(
        x,
        shape,
        &w.data,
        &sd.get(&format!("{name}.bias")).data,
        w.shape[0],
        w.shape[2],
    )
}

fn prelu(sd: &StateDict, name: &str, x: &mut [f32], channels: usize, inner: usize) {
    naive::prelu(x, channels, inner, &sd.get(&format!("{name}.weight")).data);
}

fn dense(sd: &StateDict, name: &str, x: &[f32], n: usize) -> Vec<f32> {
    let w = sd.get(&format!("{name}.weight"));
    naive::dense(
        x,
        n,
        &w.data,
        &sd.get(&format!("{name}.bias")).data,
        w.shape[0],
    )
}

/// `PNet.forward` as loops: (reg, prob).
fn pnet_loops(sd: &StateDict, x: &[f32], shape: [usize; 4]) -> Vec<Vec<f32>> {
    let (mut y, s) = conv(sd, "conv1", x, shape);
    prelu(sd, "prelu1", &mut y, s[1], s[2] * s[3]);
    let (y, s) = naive::maxpool_ceil(&y, s, 2, 2);
    let (mut y, s) = conv(sd, "conv2", &y, s);
    prelu(sd, "prelu2", &mut y, s[1], s[2] * s[3]);
    let (mut y, s) = conv(sd, "conv3", &y, s);
    prelu(sd, "prelu3", &mut y, s[1], s[2] * s[3]);
    let (reg, _) = conv(sd, "conv4_2", &y, s);
    let (mut prob, ps) = conv(sd, "conv4_1", &y, s);
    naive::softmax_axis1(&mut prob, ps[0], 2, ps[2] * ps[3]);
    vec![reg, prob]
}

/// `RNet.forward` / `ONet.forward` as loops, outputs in the order of `spec.outputs()`.
fn dense_net_loops(spec: &NetSpec, sd: &StateDict, x: &[f32], shape: [usize; 4]) -> Vec<Vec<f32>> {
    let n = shape[0];
    let (mut y, mut s) = (x.to_vec(), shape);
    let onet = spec.name == "onet";
    let pools: &[(usize, usize)] = if onet {
        &[(3, 2), (3, 2), (2, 2)]
    } else {
        &[(3, 2), (3, 2)]
    };
    let convs = if onet { 4 } else { 3 };
    for i in 1..=convs {
        let (c, cs) = conv(sd, &format!("conv{i}"), &y, s);
        y = c;
        s = cs;
        prelu(sd, &format!("prelu{i}"), &mut y, s[1], s[2] * s[3]);
        if let Some(&(k, st)) = pools.get(i - 1) {
            let (p, ps) = naive::maxpool_ceil(&y, s, k, st);
            y = p;
            s = ps;
        }
    }
    let flat = naive::permute_flatten(&y, s);
    let (hidden_name, prelu_name, head) = if onet {
        ("dense5", "prelu5", "dense6")
    } else {
        ("dense4", "prelu4", "dense5")
    };
    let mut h = dense(sd, hidden_name, &flat, n);
    let width = h.len() / n;
    prelu(sd, prelu_name, &mut h, width, 1);
    let mut prob = dense(sd, &format!("{head}_1"), &h, n);
    naive::softmax_axis1(&mut prob, n, 2, 1);
    let reg = dense(sd, &format!("{head}_2"), &h, n);
    if onet {
        vec![reg, dense(sd, &format!("{head}_3"), &h, n), prob]
    } else {
        vec![reg, prob]
    }
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/mtcnn_reference.json")).unwrap()
}

#[test]
fn converted_nets_match_plain_loops_and_pytorch() {
    let fx = fixture();
    for spec in nets::ALL {
        let sd = weights(&spec);
        let mut s = session(&spec);
        let reference = &fx["nets"][spec.name];
        let shape: Vec<usize> = serde_json::from_value(reference["input_shape"].clone()).unwrap();
        let shape: [usize; 4] = shape.try_into().unwrap();
        let input = pattern(shape.iter().product(), reference["seed"].as_u64().unwrap());
        let got = common::run_f32(&mut s, "input", &shape, &input);
        let loops = if spec.name == "pnet" {
            pnet_loops(&sd, &input, shape)
        } else {
            dense_net_loops(&spec, &sd, &input, shape)
        };
        for (k, name) in spec.outputs().iter().enumerate() {
            let (out_name, out_shape, out) = got.iter().find(|(n, ..)| n == name).unwrap();
            let torch = &reference["outputs"][name];
            let torch_shape: Vec<usize> = serde_json::from_value(torch["shape"].clone()).unwrap();
            let torch_data: Vec<f32> = serde_json::from_value(torch["data"].clone()).unwrap();
            assert_eq!(out_shape, &torch_shape, "{} {out_name}: shape", spec.name);
            let d_loops = max_abs_diff(out, &loops[k]);
            let d_torch = max_abs_diff(out, &torch_data);
            assert!(
                d_loops < 1e-4,
                "{} {name}: ONNX Runtime vs loops differ by {d_loops}",
                spec.name
            );
            assert!(
                d_torch < 1e-4,
                "{} {name}: ONNX Runtime vs PyTorch differ by {d_torch}",
                spec.name
            );
        }
    }
}

#[test]
fn a_checkpoint_of_the_wrong_network_is_refused_naming_the_tensors() {
    // rnet.pt read as if it were onet.pt: conv1 has 28 filters, not 32, and conv4 is absent.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::installed("facenet/rnet.pt"),
        dir.path().join("onet.pt"),
    )
    .unwrap();
    let err = nets::ONET.load_weights(dir.path()).unwrap_err().to_string();
    assert!(err.contains("onet.pt"), "{err}");
    assert!(
        err.contains("`conv1.weight` has shape [28, 3, 3, 3], expected [32, 3, 3, 3]"),
        "{err}"
    );
    assert!(err.contains("`conv4.weight` is missing"), "{err}");
    assert!(err.contains("and 11 more"), "{err}");
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pnet.pt"), b"this is not a pytorch file").unwrap();
    let err = nets::PNET.load_weights(dir.path()).unwrap_err().to_string();
    assert!(err.contains("pnet.pt: cannot read the checkpoint"), "{err}");
}
