//! The image embedding and the cosine head (paper §5.1): the last class token, normalised
//! and projected; `logits` = τ · cos(f, u) against the five simple labels' embeddings `u`,
//! which the text tower computes here and the graph holds as a constant.

use burn::nn::Linear;
use burn::prelude::*;
use sd2_models::contract::{EMBEDDING, LOGITS};
use sd2_models::onnx::Dim;
use sd2_models::taxonomy::DeepfakeType;

use super::graph::Builder;
use super::weights::{layer_norm, values};
use crate::clip::vision::ClipVisionTransformer;
use crate::model::{Sd2Model, cosine_matrix};
use crate::tokenizer::ClipTokenizer;
use crate::train::step::token_tensor;

/// The image embedding (`[N, P]`) from the last layer's class token (`[N, 1, D]`):
/// `post_layernorm`, then `visual_projection`.
pub fn embedding(
    b: &mut Builder,
    last_cls: &str,
    vm: &ClipVisionTransformer,
    projection: &Linear,
) -> String {
    let dims = projection.weight.val().dims();
    let squeeze = b.shape("squeeze_shape", &[0, dims[0] as i64]);
    let last = b.g.node("Reshape", &[last_cls, &squeeze], vec![]);
    let pooled = layer_norm(b, &last, "post_layernorm", &vm.post_layernorm);
    let w = values(projection.weight.val());
    b.linear(&pooled, "visual_projection", &w, dims, None)
}

/// The labels' unit-length text embeddings as `[P, 5]`, and τ.
pub fn label_embeddings(
    model: &Sd2Model,
    tok: &ClipTokenizer,
    labels: &[String; DeepfakeType::COUNT],
) -> (Vec<f32>, f32) {
    let device = model.logit_scale.val().device();
    let u = model.text_features(token_tensor(tok, labels, &device));
    let [_, p] = u.dims();
    let u = cosine_matrix(Tensor::eye(p, &device), u); // [P, 5]: normalised labels, transposed
    (values(u), model.tau().into_scalar::<f32>())
}

/// The outputs: `logits` of `f` (`[N, P]`) against `labels` (`[P, 5]`, unit length), and
/// `f` normalised as `embedding`.
pub fn write(b: &mut Builder, f: &str, labels: &[f32], tau: f32) {
    let p = labels.len() / DeepfakeType::COUNT;
    let unit = b.l2_normalise(f);
    let labels = b.weight("label_embeddings", &[p, DeepfakeType::COUNT], labels);
    let sims = b.g.node("MatMul", &[&unit, &labels], vec![]);
    let tau = b.g.scalar("tau", tau, b.precision);
    let logits = b.g.node("Mul", &[&sims, &tau], vec![]);
    let io = b.io_type();
    let types = Dim::Fixed(DeepfakeType::COUNT as i64);
    b.g.output(&logits, LOGITS, io, &["N".into(), types]);
    b.g.output(&unit, EMBEDDING, io, &["N".into(), Dim::Fixed(p as i64)]);
}
