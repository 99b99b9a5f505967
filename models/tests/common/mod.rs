//! Helpers shared by the integration tests of `sd2-models`.
#![allow(dead_code)]

pub mod naive;

use std::path::PathBuf;

use sd2_models::paths;

/// A file that `scripts/setup.sh` installs; fails the test with the command to run when absent.
pub fn installed(relative: &str) -> PathBuf {
    let p = paths::cache_dir().join(relative);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh first (it installs the ONNX Runtime library, the MTCNN weights and the sample faces)",
        p.display()
    );
    p
}

/// The MTCNN ONNX files written by setup.
pub fn mtcnn_dir() -> PathBuf {
    installed("models/mtcnn")
}

/// The sample images.
pub fn sample(name: &str) -> PathBuf {
    installed(&format!("samples/{name}"))
}

/// Deterministic normalised pixels, the formula of `fixtures/make_mtcnn_reference.py`.
pub fn pattern(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (((i * 7919 + seed * 104729) % 256) as f32 - 127.5) * 0.0078125)
        .collect()
}

/// Largest absolute difference between two slices of equal length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs a session on one f32 input and returns every output as (shape, data).
pub fn run_f32(
    session: &mut ort::session::Session,
    input: &str,
    shape: &[usize],
    data: &[f32],
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let t = ort::value::TensorRef::from_array_view((shape.to_vec(), data)).unwrap();
    let names: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_owned())
        .collect();
    let out = session.run(ort::inputs![input => t]).unwrap();
    names
        .into_iter()
        .map(|n| {
            let (s, d) = out[n.as_str()].try_extract_tensor::<f32>().unwrap();
            let shape = s.iter().map(|&v| v as usize).collect();
            (n, shape, d.to_vec())
        })
        .collect()
}
