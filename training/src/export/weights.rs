//! The burn model's weights as the `f32` lists the graph stores, `[in, out]` for linear
//! layers as burn keeps them.

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::graph::Builder;
use crate::clip::encoder::ClipAttention;

/// The values of a tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

/// A linear layer's bias; every layer of the image side has one.
pub fn bias(l: &Linear) -> Vec<f32> {
    values(l.bias.as_ref().expect("bias").val())
}

/// The (weight with LoRA merged, bias) of Q, K, V and the output projection; a projection
/// without a bias gets an empty one.
pub fn attention(a: &ClipAttention) -> [(Vec<f32>, Vec<f32>); 4] {
    [&a.q_proj, &a.k_proj, &a.v_proj, &a.out_proj].map(|p| {
        let b = p
            .base
            .bias
            .as_ref()
            .map(|b| values(b.val()))
            .unwrap_or_default();
        (values(p.merged_weight()), b)
    })
}

/// γ and β of a LayerNorm (β empty when it has none).
pub fn layer_norm_params(m: &LayerNorm) -> (Vec<f32>, Vec<f32>) {
    (
        values(m.gamma.val()),
        m.beta.as_ref().map(|b| values(b.val())).unwrap_or_default(),
    )
}

/// `m` applied to `x`, its weights stored as `{name}.gamma` and `{name}.beta`.
pub fn layer_norm(b: &mut Builder, x: &str, name: &str, m: &LayerNorm) -> String {
    let (gamma, beta) = layer_norm_params(m);
    b.layer_norm(x, name, &gamma, &beta)
}
