//! Images per second of one optimisation step of the trainer (forward over both towers, the
//! three losses, backward, AdamW) on random inputs, the computation that
//! `bench/references/reference_train_step.py` times in PyTorch.

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;

use sd2_train::loss::{
    LossConfig, classification_loss, label_separation_loss, siglip_loss, total_loss,
};
use sd2_train::model::{Sd2Config, Sd2Model};
use sd2_train::precision::{self, Precision};

/// Shapes of the benchmark step.
#[derive(Clone, Copy, Debug)]
pub struct BenchShape {
    pub batch: usize,
    /// Tokens of each label sequence and of each description sequence.
    pub label_tokens: usize,
    pub description_tokens: usize,
}

fn ids(n: usize, t: usize, vocab: usize, seed: u64, device: &Device) -> Tensor<2, Int> {
    let mut data = Vec::with_capacity(n * t);
    for r in 0..n as u64 {
        for c in 0..t as u64 {
            let v = if c + 1 == t as u64 {
                vocab as u64 - 1
            } else {
                1 + (r * 7919 + c * 104729 + seed) % (vocab as u64 - 2)
            };
            data.push(v as i32);
        }
    }
    Tensor::from_data(TensorData::new(data, [n, t]), device)
}

/// What one timing gave.
pub struct Timing {
    pub images_per_second: f64,
    /// The memory pool the device held after the steps, which keeps what they reserved
    /// (None where the backend keeps no pool: the CPU).
    pub peak_reserved: Option<u64>,
}

/// Times `steps` optimisation steps after `warmup` ones, their matrix products in
/// `precision`.
pub fn run(
    config: &Sd2Config,
    shape: BenchShape,
    warmup: usize,
    steps: usize,
    device: &Device,
    precision: Precision,
) -> Timing {
    device.seed(0);
    let mut model = Sd2Model::new(config, device).freeze_clip();
    let mut opt = AdamWConfig::new().with_weight_decay(0.01).init();
    let c = &config.clip;
    let side = c.vision.image_size;
    let b = shape.batch;
    let pixels = Tensor::<4>::random(
        [b, 3, side, side],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new((0..b as i32).map(|i| i % 5).collect::<Vec<_>>(), [b]),
        device,
    );
    let labels = ids(5, shape.label_tokens, c.text.vocab_size, 1, device);
    let faces = ids(b, shape.description_tokens, c.text.vocab_size, 2, device);
    let scenes = ids(b, shape.description_tokens, c.text.vocab_size, 3, device);
    let loss_config = LossConfig::default();
    let mut timed = None;
    for step in 0..warmup + steps {
        if step == warmup {
            device.sync().ok();
            timed = Some(Instant::now());
        }
        // LoRA's dropout masks keyed by the step, as the trainer keys them by the batch.
        let total = sd2_train::dropout::with_stream(step as u64, || {
            precision::with(precision, || {
                let f = model.image_features(pixels.clone());
                let u = model.text_features(labels.clone());
                let lc = classification_loss(model.logits(f.clone(), u.clone()), targets.clone());
                let ls = label_separation_loss(u);
                let lf = siglip_loss(
                    f.clone(),
                    model.text_features(faces.clone()),
                    model.tau(),
                    model.logit_bias.val(),
                );
                let le = siglip_loss(
                    f,
                    model.text_features(scenes.clone()),
                    model.tau(),
                    model.logit_bias.val(),
                );
                total_loss(&loss_config, Some(lc), Some(ls), Some(lf), Some(le), device).total
            })
        });
        let grads = GradientsParams::from_grads(total.backward(), &model);
        model = opt.step(1e-4, model, grads);
    }
    let _ = model.tau().into_scalar::<f32>();
    let elapsed = timed.expect("steps > 0").elapsed().as_secs_f64();
    Timing {
        images_per_second: (b * steps) as f64 / elapsed,
        // Read after the timing, not to disturb it; the pool keeps what the steps reserved.
        peak_reserved: device.memory_pool_usage().map(|u| u.bytes_reserved),
    }
}
