//! The pre-LayerNorm transformer both CLIP towers share, named as in Hugging Face's
//! `modeling_clip.py` (`CLIPAttention`, `CLIPMLP`, `CLIPEncoderLayer`, `CLIPEncoder`).

use crate::kernels::{quick_gelu, softmax_last};
use crate::lora::{LoraConfig, LoraLinear};
use crate::precision;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

/// Multi-head self-attention; LoRA on the query, key, value and output projections.
#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: LoraLinear,
    pub k_proj: LoraLinear,
    pub v_proj: LoraLinear,
    pub out_proj: LoraLinear,
    pub num_heads: usize,
}

impl ClipAttention {
    pub fn new(width: usize, heads: usize, lora: LoraConfig, device: &Device) -> Self {
        ClipAttention {
            q_proj: LoraLinear::new(width, width, true, lora, device),
            k_proj: LoraLinear::new(width, width, true, lora, device),
            v_proj: LoraLinear::new(width, width, true, lora, device),
            out_proj: LoraLinear::new(width, width, true, lora, device),
            num_heads: heads,
        }
    }

    /// `x`: `[batch, tokens, width]`; `mask`: `[tokens, tokens]`, true where attention is cut.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.num_heads;
        let dh = d / h;
        let split = |y: Tensor<3>| y.reshape([b, t, h, dh]).swap_dims(1, 2); // [b, h, t, dh]
        let q = split(
            self.q_proj
                .forward(x.clone())
                .mul_scalar((dh as f64).powf(-0.5)),
        );
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let mut scores = precision::matmul(q, k.swap_dims(2, 3)); // [b, h, t, t]
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask.unsqueeze::<4>(), f32::NEG_INFINITY);
        }
        let context = precision::matmul(softmax_last(scores), v); // [b, h, t, dh]
        self.out_proj
            .forward(context.swap_dims(1, 2).reshape([b, t, d]))
    }
}

#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl ClipMlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = quick_gelu(precision::linear(&self.fc1, x));
        precision::linear(&self.fc2, h)
    }
}

#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), mask);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

/// Sizes of one tower's transformer.
#[derive(Clone, Copy, Debug)]
pub struct EncoderSpec {
    pub width: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub eps: f64,
}

impl ClipEncoder {
    pub fn new(spec: EncoderSpec, lora: LoraConfig, device: &Device) -> Self {
        let layers = (0..spec.layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention::new(spec.width, spec.heads, lora, device),
                layer_norm1: LayerNormConfig::new(spec.width)
                    .with_epsilon(spec.eps)
                    .init(device),
                mlp: ClipMlp {
                    fc1: LinearConfig::new(spec.width, spec.intermediate).init(device),
                    fc2: LinearConfig::new(spec.intermediate, spec.width).init(device),
                },
                layer_norm2: LayerNormConfig::new(spec.width)
                    .with_epsilon(spec.eps)
                    .init(device),
            })
            .collect();
        ClipEncoder { layers }
    }

    /// Runs every layer; returns the last output and the output of each layer.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Vec<Tensor<3>>) {
        let mut x = x;
        let mut outputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = layer.forward(x, mask.clone());
            outputs.push(x.clone());
        }
        (x, outputs)
    }
}
