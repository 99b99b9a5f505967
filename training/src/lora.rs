//! LoRA (Hu et al., 2022) on a linear layer: `y = W x + b + (α / r) · B A dropout(x)`.
//!
//! `base` holds the pretrained weights and is frozen for training; `lora_a` (`[in, r]`,
//! Kaiming-uniform) and `lora_b` (`[r, out]`, zero) are the trainable factors, so a fresh
//! adapter leaves the layer's output unchanged. With rank 0 the layer is the base alone.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::precision;

/// LoRA hyper-parameters (paper §5.1: r = 8, α = 32, dropout 0.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 32.0,
            dropout: 0.1,
        }
    }
}

impl LoraConfig {
    /// No adapter: the layer is the base alone.
    pub fn none() -> Self {
        LoraConfig {
            rank: 0,
            alpha: 0.0,
            dropout: 0.0,
        }
    }
}

#[derive(Module, Debug)]
pub struct LoraLinear {
    pub base: Linear,
    pub lora_a: Option<Param<Tensor<2>>>,
    pub lora_b: Option<Param<Tensor<2>>>,
    pub dropout: Dropout,
    pub scaling: f64,
}

impl LoraLinear {
    pub fn new(d_in: usize, d_out: usize, bias: bool, lora: LoraConfig, device: &Device) -> Self {
        let base = LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
        let (lora_a, lora_b) = if lora.rank > 0 {
            let a = Initializer::KaimingUniform {
                gain: 1.0 / 3f64.sqrt(),
                fan_out_only: false,
            }
            .init_with([d_in, lora.rank], Some(d_in), Some(lora.rank), device);
            let b = Initializer::Zeros.init([lora.rank, d_out], device);
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        LoraLinear {
            base,
            lora_a,
            lora_b,
            dropout: DropoutConfig::new(lora.dropout).init(),
            scaling: if lora.rank > 0 {
                lora.alpha / lora.rank as f64
            } else {
                0.0
            },
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = precision::linear(&self.base, x.clone());
        match (&self.lora_a, &self.lora_b) {
            (Some(a), Some(b)) => {
                let x = self.dropout(x);
                let dims = x.dims();
                let flat: Tensor<2> = x.flatten(0, D - 2);
                let delta = precision::matmul(precision::matmul(flat, a.val()), b.val())
                    .mul_scalar(self.scaling);
                let mut out_dims = dims;
                out_dims[D - 1] = delta.dims()[1];
                y + delta.reshape(out_dims)
            }
            _ => y,
        }
    }

    /// `x` through the adapter's dropout while the layer trains (its flag, cleared by
    /// `freeze`, and an autodiff device), with masks from [`crate::dropout`].
    fn dropout<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.dropout.training.is_enabled() {
            crate::dropout::dropout(x, self.dropout.prob)
        } else {
            x
        }
    }

    /// The weight with the adapter folded in, `[in, out]`: `W + (α / r) · A B`.
    pub fn merged_weight(&self) -> Tensor<2> {
        let w = self.base.weight.val();
        match (&self.lora_a, &self.lora_b) {
            (Some(a), Some(b)) => w + a.val().matmul(b.val()).mul_scalar(self.scaling),
            _ => w,
        }
    }
}
