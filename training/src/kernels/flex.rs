//! The kernels on burn's CPU backend: one pass over contiguous `f32` data ([`simd`]), split
//! among rayon's threads; other float types take the composed operations.

use burn::backend::flex::FlexTensor;
use burn::backend::{DType, Flex, TensorMetadata};
use burn::tensor::TensorData;
use rayon::prelude::*;

use super::{Kernels, composed, simd};

/// Elements per task: a smaller tensor runs on the calling thread alone.
const TASK: usize = 1 << 14;

/// The `f32` elements of `t`, contiguous (copied when they are not).
fn contiguous(t: FlexTensor) -> (FlexTensor, std::ops::Range<usize>) {
    let t = t.to_contiguous();
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("to_contiguous gives a contiguous layout");
    (t, start..end)
}

/// `f(input slices…, output chunk)` over `TASK`-sized chunks of a new tensor shaped as `like`;
/// `row` keeps rows whole within a chunk.
fn map_chunks(
    like: &FlexTensor,
    inputs: &[&[f32]],
    row: usize,
    f: impl Fn(&[&[f32]], &mut [f32]) + Sync,
) -> FlexTensor {
    let n = inputs[0].len();
    let chunk = (TASK / row).max(1) * row;
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let at = i * chunk..i * chunk + o.len();
        let parts: Vec<&[f32]> = inputs.iter().map(|s| &s[at.clone()]).collect();
        f(&parts, o);
    });
    FlexTensor::from_data(TensorData::new(out, like.shape()))
}

fn is_f32(ts: &[&FlexTensor]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

impl Kernels for Flex {
    fn quick_gelu(x: FlexTensor) -> FlexTensor {
        if !is_f32(&[&x]) {
            return composed::quick_gelu::<Flex>(x);
        }
        let (x, r) = contiguous(x);
        let xs = &x.storage::<f32>()[r];
        map_chunks(&x, &[xs], 1, |i, o| simd::quick_gelu(i[0], o))
    }

    fn quick_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !is_f32(&[&x, &grad]) || x.shape() != grad.shape() {
            return composed::quick_gelu_backward::<Flex>(x, grad);
        }
        let ((x, rx), (grad, rg)) = (contiguous(x), contiguous(grad));
        let (xs, gs) = (&x.storage::<f32>()[rx], &grad.storage::<f32>()[rg]);
        map_chunks(&x, &[xs, gs], 1, |i, o| {
            simd::quick_gelu_backward(i[0], i[1], o)
        })
    }

    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let row = x.shape().last().copied().unwrap_or(0);
        if !is_f32(&[&x]) || row == 0 {
            return composed::softmax_last::<Flex>(x);
        }
        let (x, r) = contiguous(x);
        let xs = &x.storage::<f32>()[r];
        map_chunks(&x, &[xs], row, |i, o| simd::softmax_rows(i[0], o, row))
    }

    fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let row = y.shape().last().copied().unwrap_or(0);
        if !is_f32(&[&y, &grad]) || y.shape() != grad.shape() || row == 0 {
            return composed::softmax_last_backward::<Flex>(y, grad);
        }
        let ((y, ry), (grad, rg)) = (contiguous(y), contiguous(grad));
        let (ys, gs) = (&y.storage::<f32>()[ry], &grad.storage::<f32>()[rg]);
        map_chunks(&y, &[ys, gs], row, |i, o| {
            simd::softmax_rows_backward(i[0], i[1], o, row)
        })
    }
}
