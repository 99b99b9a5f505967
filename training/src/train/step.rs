//! One forward and backward pass over a batch: the losses of Eq. 6 and their gradients.

use burn::optim::GradientsParams;
use burn::prelude::*;
use sd2_models::taxonomy::DeepfakeType;

use crate::data::loader::Sample;
use crate::loss::{
    LossConfig, Losses, classification_loss, label_separation_loss, siglip_loss, total_loss,
};
use crate::model::Sd2Model;
use crate::precision::{self, Precision};
use crate::tokenizer::{CONTEXT_LENGTH, ClipTokenizer, EOT};

/// Token ids of `texts` as `[texts, t]`, cut after the longest sequence's end token
/// (attention is causal: the padding after it changes nothing).
pub fn token_tensor<S: AsRef<str>>(
    tok: &ClipTokenizer,
    texts: &[S],
    device: &Device,
) -> Tensor<2, Int> {
    let ids = tok.tokenize_batch(texts);
    let len = ids
        .chunks(CONTEXT_LENGTH)
        .map(|row| {
            row.iter()
                .position(|&t| t == EOT)
                .map_or(CONTEXT_LENGTH, |p| p + 1)
        })
        .max()
        .unwrap_or(1);
    let data: Vec<i32> = ids
        .chunks(CONTEXT_LENGTH)
        .flat_map(|row| row[..len].iter().map(|&t| t as i32))
        .collect();
    Tensor::from_data(TensorData::new(data, [texts.len(), len]), device)
}

/// `[n, 3, s, s]` of the samples' pixels.
pub fn pixel_tensor(samples: &[&Sample], side: usize, device: &Device) -> Tensor<4> {
    let data: Vec<f32> = samples
        .iter()
        .flat_map(|s| s.pixels.iter().copied())
        .collect();
    Tensor::from_data(
        TensorData::new(data, [samples.len(), 3, side, side]),
        device,
    )
}

/// The result of one pass.
pub struct StepOutput {
    pub grads: GradientsParams,
    pub losses: Losses,
}

/// How a forward pass runs: the seed of its dropout masks ([`crate::dropout`]) and the
/// precision of its matrix products ([`crate::precision`]).
#[derive(Clone, Copy, Debug)]
pub struct Forward {
    pub dropout_seed: u64,
    pub precision: Precision,
}

/// Forward and backward over `samples` with the label set `labels` (one per type). The
/// loss is multiplied by `weight` before the backward pass (a share of an accumulated or
/// sharded step).
#[allow(clippy::too_many_arguments)]
pub fn forward_backward(
    model: &Sd2Model,
    samples: &[&Sample],
    labels: &[String; DeepfakeType::COUNT],
    tok: &ClipTokenizer,
    config: &LossConfig,
    side: usize,
    weight: f64,
    forward: Forward,
) -> StepOutput {
    let device = model.logit_scale.val().device();
    let losses = crate::dropout::with_stream(forward.dropout_seed, || {
        precision::with(forward.precision, || {
            losses(model, samples, labels, tok, config, side, &device)
        })
    });
    let grads = losses.total.clone().mul_scalar(weight).backward();
    StepOutput {
        grads: GradientsParams::from_grads(grads, model),
        losses,
    }
}

/// The forward pass: the losses of Eq. 6 over `samples`.
fn losses(
    model: &Sd2Model,
    samples: &[&Sample],
    labels: &[String; DeepfakeType::COUNT],
    tok: &ClipTokenizer,
    config: &LossConfig,
    side: usize,
    device: &Device,
) -> Losses {
    let device = device.clone();
    let f = model.image_features(pixel_tensor(samples, side, &device));
    let u = (config.classification || config.separation)
        .then(|| model.text_features(token_tensor(tok, labels, &device)));
    let classification = u.as_ref().filter(|_| config.classification).map(|u| {
        let targets: Vec<i32> = samples.iter().map(|s| s.kind.index() as i32).collect();
        let targets =
            Tensor::<1, Int>::from_data(TensorData::new(targets, [samples.len()]), &device);
        classification_loss(model.logits(f.clone(), u.clone()), targets)
    });
    let separation = u.filter(|_| config.separation).map(label_separation_loss);
    let contrastive = |on: bool, pick: &dyn Fn(&Sample) -> Option<&String>| -> Option<Tensor<1>> {
        if !on {
            return None;
        }
        let (idx, texts): (Vec<i32>, Vec<&String>) = samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| pick(s).map(|t| (i as i32, t)))
            .unzip();
        if texts.is_empty() {
            return None;
        }
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [idx.len()]), &device);
        let v = model.text_features(token_tensor(tok, &texts, &device));
        Some(siglip_loss(
            f.clone().select(0, idx),
            v,
            model.tau(),
            model.logit_bias.val(),
        ))
    };
    let face = contrastive(config.face_contrastive, &|s: &Sample| s.face.as_ref());
    let environment = contrastive(config.environment_contrastive, &|s: &Sample| {
        s.environment.as_ref()
    });
    total_loss(
        config,
        classification,
        separation,
        face,
        environment,
        &device,
    )
}
