//! The Cross-Layer Attention Module and the adapter (paper §4.1).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation;

use crate::clip::encoder::ClipAttention;
use crate::lora::LoraConfig;

/// CLAM, Eq. 1: multi-head self-attention over the class tokens of all `L` layers of the
/// image tower, then a global average over the layers (`f'_sat`).
#[derive(Module, Debug)]
pub struct Clam {
    pub attention: ClipAttention,
}

impl Clam {
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Clam {
            attention: ClipAttention::new(width, heads, LoraConfig::none(), device),
        }
    }

    /// `layer_cls`: `[batch, layers, width]` → `[batch, width]`.
    pub fn forward(&self, layer_cls: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = layer_cls.dims();
        self.attention
            .forward(layer_cls, None)
            .mean_dim(1)
            .reshape([b, d])
    }
}

/// The adapter, Eq. 2: `f = W₂ · GELU(W₁ · [f'_sat, f_final])`.
#[derive(Module, Debug)]
pub struct Adapter {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Adapter {
    pub fn new(d_in: usize, hidden: usize, d_out: usize, device: &Device) -> Self {
        Adapter {
            fc1: LinearConfig::new(d_in, hidden).init(device),
            fc2: LinearConfig::new(hidden, d_out).init(device),
        }
    }

    pub fn forward(&self, sat: Tensor<2>, last: Tensor<2>) -> Tensor<2> {
        let x = Tensor::cat(vec![sat, last], 1);
        self.fc2.forward(activation::gelu(self.fc1.forward(x)))
    }
}
