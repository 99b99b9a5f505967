//! The two activations a training step spends most of its element-wise time in, as burn
//! backend extensions with backward passes of their own: QuickGELU (every MLP of both
//! towers) and the softmax over the last dimension (every attention).
//!
//! burn composes them from primitive operations, and its autodiff records each one: QuickGELU
//! becomes a scale, a sigmoid and a product, and the sigmoid's backward computes the sigmoid
//! again; the softmax becomes max, subtraction, exponential, sum and division, whose backward
//! computes the exponential again. Here each is one operation whose backward is one
//! operation too (from the saved input for QuickGELU, from the saved output for the softmax).
//! On the CPU (`flex`) both run as single passes with a vectorised exponential
//! ([`simd`]); on other backends they are the same compositions as before, with the
//! shorter backward.

mod autodiff;
mod flex;
pub mod simd;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Scalar, TensorMetadata, backend_extension};
use burn::prelude::*;

/// QuickGELU's slope, `x · σ(1.702 x)`.
pub const QUICK_GELU_SLOPE: f64 = 1.702;

#[backend_extension(Flex, Autodiff, Cube: cfg(feature = "cuda"))]
pub trait Kernels: Backend {
    /// `x · σ(1.702 x)`.
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::quick_gelu::<Self>(x)
    }

    /// The gradient through QuickGELU at `x`: `g · s · (1 + 1.702 · x · (1 − s))`, with
    /// `s = σ(1.702 x)`.
    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::quick_gelu_backward::<Self>(x, grad)
    }

    /// The softmax over the last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::softmax_last::<Self>(x)
    }

    /// The gradient through the softmax from its output `y`: `y · (g − Σ g · y)`, the sum
    /// over the last dimension.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::softmax_last_backward::<Self>(y, grad)
    }
}

/// The kernels as compositions of a backend's own operations.
mod composed {
    use super::*;

    pub fn quick_gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let s = B::sigmoid(B::float_mul_scalar(
            x.clone(),
            Scalar::Float(QUICK_GELU_SLOPE),
        ));
        B::float_mul(x, s)
    }

    pub fn quick_gelu_backward<B: Backend>(
        x: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let k = Scalar::Float(QUICK_GELU_SLOPE);
        let s = B::sigmoid(B::float_mul_scalar(x.clone(), k));
        let one_minus_s = B::float_add_scalar(B::float_neg(s.clone()), Scalar::Float(1.0));
        let slope = B::float_mul(B::float_mul_scalar(x, k), one_minus_s);
        let local = B::float_mul(s, B::float_add_scalar(slope, Scalar::Float(1.0)));
        B::float_mul(grad, local)
    }

    pub fn softmax_last<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let last = x.shape().num_dims() - 1;
        B::softmax(x, last)
    }

    pub fn softmax_last_backward<B: Backend>(
        y: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let last = y.shape().num_dims() - 1;
        let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
        B::float_mul(y, B::float_sub(grad, dot))
    }
}

/// `x · σ(1.702 x)` (OpenAI's QuickGELU), one operation forward and backward.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Kernels>::quick_gelu(x.into_dispatch()))
}

/// The softmax over the last dimension, one operation forward and backward.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as Kernels>::softmax_last(x.into_dispatch()))
}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cube {}

#[cfg(test)]
mod tests {
    use burn::tensor::activation;

    use super::*;

    fn inputs(device: &Device) -> Tensor<3> {
        // Values from −30 to 30, the tails of both functions among them.
        let data: Vec<f32> = (0..2 * 5 * 61).map(|i| (i % 61) as f32 - 30.0).collect();
        let x = Tensor::<3>::from_data(TensorData::new(data, [2, 5, 61]), device);
        x.mul_scalar(0.37)
    }

    /// The largest differences in value and in input gradient between `f` and `reference` on
    /// the same inputs, under the same upstream gradient.
    fn compare(f: fn(Tensor<3>) -> Tensor<3>, reference: fn(Tensor<3>) -> Tensor<3>) -> (f32, f32) {
        let device = Device::flex().autodiff();
        let run = |g: fn(Tensor<3>) -> Tensor<3>| {
            let x = inputs(&device).require_grad();
            let upstream = inputs(&device).mul_scalar(0.7).sin();
            let y = g(x.clone());
            let grads = (y.clone() * upstream).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y1, g1), (y2, g2)) = (run(f), run(reference));
        let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        (diff(y1, y2), diff(g1, g2))
    }

    #[test]
    fn quick_gelu_and_its_gradient_match_burns_composition() {
        let (value, grad) = compare(quick_gelu, |x| {
            x.clone() * activation::sigmoid(x.mul_scalar(QUICK_GELU_SLOPE))
        });
        assert!(
            value < 2e-6 && grad < 2e-6,
            "value {value}, gradient {grad}"
        );
    }

    #[test]
    fn the_softmax_and_its_gradient_match_burns() {
        let (value, grad) = compare(softmax_last, |x| activation::softmax(x, 2));
        assert!(
            value < 1e-6 && grad < 1e-6,
            "value {value}, gradient {grad}"
        );
    }

    #[test]
    fn a_masked_score_gets_no_weight_and_a_row_of_equal_scores_is_uniform() {
        let device = Device::flex();
        let x = Tensor::<2>::from_floats([[1.0, f32::NEG_INFINITY, 1.0, 1.0]], &device);
        let y = softmax_last(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y[1], 0.0);
        for v in [y[0], y[2], y[3]] {
            assert!((v - 1.0 / 3.0).abs() < 1e-7, "{y:?}");
        }
    }
}
