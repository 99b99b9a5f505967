//! `sd2-train export --check N`: the written file run as the elements run it
//! (`DeepfakeModel`, ONNX Runtime on the CPU) beside the burn model it came from, on the same
//! `N` crops; their logits must agree within a tolerance of the precision, relative to τ.

use std::path::Path;

use burn::prelude::*;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::onnx::Precision;
use sd2_models::runtime::{Device as OrtDevice, RuntimeError, SessionConfig};

use crate::data::rng::Rng;
use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::tokenizer::ClipTokenizer;
use crate::train::step::token_tensor;

/// How far the file's logits are from the model's.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    pub crops: usize,
    /// The largest logit difference, in units of τ (logits are τ · cosine).
    pub worst: f32,
    /// What `worst` may be for the file's precision: 1e-4 in fp32, 1e-2 in fp16 (the
    /// parity tests' bounds).
    pub tolerance: f32,
}

impl Agreement {
    pub fn holds(&self) -> bool {
        self.worst <= self.tolerance
    }
}

/// Why the check did not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}: does not load as an SD² model: {source}", .path.display())]
    Load {
        path: std::path::PathBuf,
        source: RuntimeError,
    },
    #[error("{}: running it: {source}", .path.display())]
    Run {
        path: std::path::PathBuf,
        source: RuntimeError,
    },
}

/// `crops` normalised crops of `side` pixels, values spread as a normalised image's are.
fn crops(crops: usize, side: usize) -> Vec<f32> {
    let mut rng = Rng::new(0x5D2);
    (0..crops * 3 * side * side)
        .map(|_| rng.range(-2.0, 2.0))
        .collect()
}

/// The logits of `model` (on the CPU) and of the file at `path`, exported from it with
/// `labels`' simple labels, on the same `n` crops.
pub fn check(
    model: &Sd2Model,
    labels: &TextLabels,
    tok: &ClipTokenizer,
    path: &Path,
    precision: Precision,
    n: usize,
) -> Result<Agreement, CheckError> {
    let mut file =
        DeepfakeModel::load(path, OrtDevice::Cpu, SessionConfig::default()).map_err(|source| {
            CheckError::Load {
                path: path.to_owned(),
                source,
            }
        })?;
    let side = file.recipe().input_size;
    let x = crops(n, side);
    let theirs = file.logits(&x).map_err(|source| CheckError::Run {
        path: path.to_owned(),
        source,
    })?;
    let device = model.logit_scale.val().device();
    let pixels = Tensor::<4>::from_data(TensorData::new(x, [n, 3, side, side]), &device);
    let f = model.image_features(pixels);
    let u = model.text_features(token_tensor(tok, &labels.simple(), &device));
    let ours = model
        .logits(f, u)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 logits");
    let tau = model.tau().into_scalar::<f32>();
    let worst = theirs
        .iter()
        .flatten()
        .zip(&ours)
        .map(|(a, b)| (a - b).abs() / tau)
        // A NaN anywhere is the worst.
        .fold(0.0, |m: f32, d| if d.is_nan() || d > m { d } else { m });
    Ok(Agreement {
        crops: n,
        worst,
        tolerance: match precision {
            Precision::F32 => 1e-4,
            Precision::F16 => 1e-2,
        },
    })
}
