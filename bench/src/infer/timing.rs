//! What `sd2-bench infer` times on the encoder: our path on one batch size, and the logit
//! drift between variants.

use std::time::Instant;

use anyhow::Result;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::io_binding::{probe_inputs, relative_drift};

/// Seconds per iteration of our path on one batch size.
pub fn time_ours(model: &mut DeepfakeModel, batch: usize, iterations: usize) -> Result<f64> {
    let x = pattern(model, batch);
    model.classify(&x)?;
    let start = Instant::now();
    for _ in 0..iterations {
        model.classify(&x)?;
    }
    Ok(start.elapsed().as_secs_f64() / iterations as f64)
}

/// `batch` inputs of a fixed pattern, the same for every path.
fn pattern(model: &DeepfakeModel, batch: usize) -> Vec<f32> {
    probe_inputs(batch * model.input_len())
}

/// How far each model's logits are from the first's on the same 16 inputs: the largest
/// difference over the first's largest logit magnitude (fp16 against fp32 on CUDA).
pub fn logit_drift(models: &mut [DeepfakeModel]) -> Result<Vec<f64>> {
    let x = pattern(&models[0], 16);
    let reference = models[0].logits(&x)?.concat();
    models
        .iter_mut()
        .map(|m| Ok(relative_drift(&reference, &m.logits(&x)?.concat()) as f64))
        .collect()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
