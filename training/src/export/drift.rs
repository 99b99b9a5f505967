//! How far an exported file's verdicts are from a reference file's on the same faces, as
//! the elements judge them: what an FP8 export costs against fp32.

use std::path::Path;

use sd2_models::analyzer::Judge;
use sd2_models::classifier::{DeepfakeModel, Verdict};
use sd2_models::runtime::{Device, RuntimeError, SessionConfig};
use serde::Serialize;

/// The differences over a set of faces.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Drift {
    pub faces: usize,
    /// The largest difference of a logit, and the mean of each face's largest.
    pub max_logit: f32,
    pub mean_logit: f32,
    /// The same of the fake score, 1 − p(REAL).
    pub max_fake_score: f32,
    pub mean_fake_score: f32,
    /// Faces judged fake by one file and real by the other (the paper's rule, `argmax`).
    pub verdicts_changed: usize,
    /// Faces whose label (REAL or the likeliest manipulation) changed.
    pub labels_changed: usize,
}

/// Runs `faces` (`3·S·S` values each) through `reference` and `candidate`, both loaded as
/// `sd2deepfake` loads a model on the CPU (FP8 emulated when a file is FP8), and compares.
pub fn drift(reference: &Path, candidate: &Path, faces: &[f32]) -> Result<Drift, RuntimeError> {
    let config = SessionConfig {
        emulate_fp8: true,
        ..SessionConfig::default()
    };
    let mut a = DeepfakeModel::load(reference, Device::Cpu, config)?;
    let mut b = DeepfakeModel::load(candidate, Device::Cpu, config)?;
    let per = a.input_len();
    let judge = Judge::default();
    let mut d = Drift::default();
    for chunk in faces.chunks(per * 32) {
        let (la, lb) = (a.logits(chunk)?, b.logits(chunk)?);
        for (x, y) in la.iter().zip(&lb) {
            let logit = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
            let (vx, vy) = (Verdict::from_logits(x), Verdict::from_logits(y));
            let score = (vx.fake_score() - vy.fake_score()).abs();
            let (fx, fy) = (judge.is_fake_alone(&vx), judge.is_fake_alone(&vy));
            d.faces += 1;
            d.max_logit = d.max_logit.max(logit);
            d.mean_logit += logit;
            d.max_fake_score = d.max_fake_score.max(score);
            d.mean_fake_score += score;
            d.verdicts_changed += usize::from(fx != fy);
            let label = |v: &Verdict, f| sd2_models::analyzer::label(v, f);
            d.labels_changed += usize::from(label(&vx, fx) != label(&vy, fy));
        }
    }
    if d.faces > 0 {
        d.mean_logit /= d.faces as f32;
        d.mean_fake_score /= d.faces as f32;
    }
    Ok(d)
}
