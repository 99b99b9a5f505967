//! Mixed precision (`fit --precision bf16`): a forward pass's matrix products in bfloat16,
//! as PyTorch's autocast runs them, and everything else in f32: the weights (the master
//! copies the optimizer updates, cast for each product), layer norms, softmaxes, activations
//! and the losses. Each product's result is cast back to f32, and its gradients flow back
//! through the casts to the f32 weights. bfloat16 keeps f32's exponent range, so no loss
//! scaling is needed.
//!
//! Like the dropout stream, the precision belongs to the forward pass running on a thread
//! ([`with`]); outside one, products run in f32.

use std::cell::Cell;

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The float type of a forward pass's matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matrix products in bfloat16, the rest in f32.
    Bf16,
}

impl Precision {
    fn dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

thread_local! {
    static PRODUCTS: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs `f` with its matrix products in `precision`; the thread's earlier precision is back
/// afterwards.
pub fn with<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRODUCTS.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PRODUCTS.with(|p| p.replace(precision)));
    f()
}

fn products() -> Option<FloatDType> {
    PRODUCTS.with(Cell::get).dtype()
}

/// `a · b` (batched as [`Tensor::matmul`]) in the thread's precision; the result in f32.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    match products() {
        None => a.matmul(b),
        Some(t) => a.cast(t).matmul(b.cast(t)).cast(FloatDType::F32),
    }
}

/// `layer.forward(x)` with its product in the thread's precision; the result in f32.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    match products() {
        None => layer.forward(x),
        Some(t) => burn::tensor::module::linear(
            x.cast(t),
            layer.weight.val().cast(t),
            layer.bias.as_ref().map(|b| b.val().cast(t)),
        )
        .cast(FloatDType::F32),
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;

    use super::*;

    #[test]
    fn bf16_products_stay_near_f32_and_leave_f32_behind() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let layer = LinearConfig::new(64, 32).init(&device);
        let x = Tensor::<3>::random([4, 8, 64], burn::tensor::Distribution::Default, &device);
        let full = linear(&layer, x.clone());
        let half = with(Precision::Bf16, || linear(&layer, x.clone()));
        assert_eq!(half.dtype(), full.dtype());
        let err = (half.clone() - full.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        let scale = full.clone().abs().max().into_scalar::<f32>();
        // bfloat16 keeps 8 significant bits: a sum of 64 products is within about 1%.
        assert!(err > 0.0 && err < 0.02 * scale, "{err} of {scale}");
        // Outside `with`, f32 again.
        linear(&layer, x.clone())
            .into_data()
            .assert_eq(&full.clone().into_data(), true);
        // The gradient reaches the f32 weight.
        let grads = half.sum().backward();
        let g = layer
            .weight
            .val()
            .grad(&grads)
            .expect("a gradient for the weight");
        assert_eq!(g.dtype(), burn::tensor::DType::F32);
    }
}
