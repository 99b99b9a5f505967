//! The CPU kernels: plain implementations that compute what the CUDA kernels compute, in
//! `f32` (float16 tensors are widened on the way in and rounded once on the way out, as
//! the GPU does). The FP8 kernels decode E4M3 codes exactly and multiply in `f32`, so they
//! match the GPU's FP8 GEMM up to the order of accumulation.

use std::borrow::Cow;

use half::f16;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use ort::operator::ComputeContext;
use ort::value::ValueRef;

use super::{Elem, Op, e4m3, quick_gelu};

/// Runs `op`'s CPU kernel; a malformed input is an error naming the operator, never a
/// panic.
pub fn compute(op: Op, elem: Elem, ctx: &ComputeContext) -> ort::Result<()> {
    let k = Ctx { op, elem, ctx };
    match op {
        Op::Linear => k.linear(),
        Op::BiasQuickGelu => k.bias_quick_gelu(None),
        Op::QuantizeE4M3 => k.quantize(),
        Op::BiasQuickGeluE4M3 => k.bias_quick_gelu(Some(2)),
        Op::LinearE4M3 => k.linear_e4m3(),
    }
}

/// A float tensor read as `f32`: its shape and values.
struct Floats<'a> {
    shape: Vec<i64>,
    data: Cow<'a, [f32]>,
}

struct Ctx<'c> {
    op: Op,
    elem: Elem,
    ctx: &'c ComputeContext,
}

impl Ctx<'_> {
    fn fail(&self, msg: impl std::fmt::Display) -> ort::Error {
        ort::Error::new(format!("com.sd2:{}: {msg}", self.op.name()))
    }

    fn input(&self, i: usize) -> ort::Result<ValueRef<'_>> {
        self.ctx
            .input(i)?
            .ok_or_else(|| self.fail(format!("input {i} is missing")))
    }

    fn floats<'v>(&self, v: &'v ValueRef<'_>) -> ort::Result<Floats<'v>> {
        Ok(match self.elem {
            Elem::F32 => {
                let (shape, data) = v.try_extract_tensor::<f32>()?;
                Floats {
                    shape: shape.to_vec(),
                    data: Cow::Borrowed(data),
                }
            }
            Elem::F16 => {
                let (shape, data) = v.try_extract_tensor::<f16>()?;
                Floats {
                    shape: shape.to_vec(),
                    data: Cow::Owned(data.iter().map(|h| h.to_f32()).collect()),
                }
            }
        })
    }

    fn scalar(&self, i: usize) -> ort::Result<f32> {
        let v = self.input(i)?;
        let (_, data) = v.try_extract_tensor::<f32>()?;
        match data {
            [s] if s.is_finite() && *s > 0.0 => Ok(*s),
            _ => Err(self.fail(format!(
                "input {i} must be one positive, finite float32 scale, found {data:?}"
            ))),
        }
    }

    /// Rows and row length of a tensor of shape `[…, k]`.
    fn rows(&self, shape: &[i64]) -> ort::Result<(usize, usize)> {
        match shape.split_last() {
            Some((&k, lead)) if k >= 0 && lead.iter().all(|&d| d >= 0) => {
                Ok((lead.iter().product::<i64>() as usize, k as usize))
            }
            _ => Err(self.fail(format!("expected a tensor [..., K], found {shape:?}"))),
        }
    }

    fn matrix(&self, shape: &[i64], what: &str) -> ort::Result<[usize; 2]> {
        match *shape {
            [a, b] if a >= 0 && b >= 0 => Ok([a as usize, b as usize]),
            _ => Err(self.fail(format!("{what} must be 2-D, found {shape:?}"))),
        }
    }

    /// A bias of `n` values.
    fn bias(&self, i: usize, n: usize) -> ort::Result<Vec<f32>> {
        let v = self.input(i)?;
        let b = self.floats(&v)?;
        if b.data.len() != n {
            return Err(self.fail(format!(
                "the bias has {} values, expected {n}",
                b.data.len()
            )));
        }
        Ok(b.data.into_owned())
    }

    fn write_floats(&self, shape: Vec<i64>, data: &[f32]) -> ort::Result<()> {
        let mut out = self
            .ctx
            .output(0, shape)?
            .ok_or_else(|| self.fail("no output"))?;
        match self.elem {
            Elem::F32 => out.try_extract_tensor_mut::<f32>()?.1.copy_from_slice(data),
            Elem::F16 => {
                for (o, v) in out.try_extract_tensor_mut::<f16>()?.1.iter_mut().zip(data) {
                    *o = f16::from_f32(*v);
                }
            }
        }
        Ok(())
    }

    fn write_codes(&self, shape: Vec<i64>, codes: &[u8]) -> ort::Result<()> {
        let mut out = self
            .ctx
            .output(0, shape)?
            .ok_or_else(|| self.fail("no output"))?;
        out.try_extract_tensor_mut::<u8>()?.1.copy_from_slice(codes);
        Ok(())
    }

    /// `Linear(X, W, B?)`: `X·W + B`.
    fn linear(&self) -> ort::Result<()> {
        let (xv, wv) = (self.input(0)?, self.input(1)?);
        let (x, w) = (self.floats(&xv)?, self.floats(&wv)?);
        let (m, k) = self.rows(&x.shape)?;
        let [wk, n] = self.matrix(&w.shape, "W")?;
        if wk != k {
            return Err(self.fail(format!("X rows have {k} values, W expects {wk}")));
        }
        let mut y = vec![0.0; m * n];
        if self.ctx.input(2)?.is_some() {
            let b = self.bias(2, n)?;
            for row in y.chunks_exact_mut(n.max(1)) {
                row.copy_from_slice(&b);
            }
        }
        gemm(&x.data, &w.data, &mut y, [m, k, n], false).map_err(|e| self.fail(e))?;
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rows() checked the rank") = n as i64;
        self.write_floats(shape, &y)
    }

    /// `BiasQuickGelu(X, B)`; with `scale` (the scale's input), `BiasQuickGeluE4M3`.
    fn bias_quick_gelu(&self, scale: Option<usize>) -> ort::Result<()> {
        let xv = self.input(0)?;
        let x = self.floats(&xv)?;
        let (_, n) = self.rows(&x.shape)?;
        let b = self.bias(1, n)?;
        let y = x
            .data
            .chunks_exact(n.max(1))
            .flat_map(|row| row.iter().zip(&b).map(|(v, b)| quick_gelu(v + b)));
        match scale {
            None => self.write_floats(x.shape.clone(), &y.collect::<Vec<_>>()),
            Some(i) => {
                let s = self.scalar(i)?;
                let mut codes = vec![0; x.data.len()];
                e4m3::quantize(y, s, &mut codes);
                self.write_codes(x.shape.clone(), &codes)
            }
        }
    }

    /// `QuantizeE4M3(X, S)`.
    fn quantize(&self) -> ort::Result<()> {
        let xv = self.input(0)?;
        let x = self.floats(&xv)?;
        let s = self.scalar(1)?;
        let mut codes = vec![0; x.data.len()];
        e4m3::quantize(x.data.iter().copied(), s, &mut codes);
        self.write_codes(x.shape.clone(), &codes)
    }

    /// `LinearE4M3(Q, W, SQ, SW, B)`: `(Q·Wᵀ)·SQ·SW + B`.
    fn linear_e4m3(&self) -> ort::Result<()> {
        let (qv, wv) = (self.input(0)?, self.input(1)?);
        let (qs, q) = qv.try_extract_tensor::<u8>()?;
        let (ws, w) = wv.try_extract_tensor::<u8>()?;
        let (m, k) = self.rows(qs)?;
        let [n, wk] = self.matrix(ws, "W")?;
        if wk != k {
            return Err(self.fail(format!("Q rows have {k} values, W expects {wk}")));
        }
        let scale = self.scalar(2)? * self.scalar(3)?;
        let b = self.bias(4, n)?;
        let table = e4m3::table();
        let decode =
            |codes: &[u8]| -> Vec<f32> { codes.iter().map(|&c| table[c as usize]).collect() };
        let mut y = vec![0.0; m * n];
        gemm(&decode(q), &decode(w), &mut y, [m, k, n], true).map_err(|e| self.fail(e))?;
        for row in y.chunks_exact_mut(n.max(1)) {
            for (v, b) in row.iter_mut().zip(&b) {
                *v = *v * scale + b;
            }
        }
        let mut shape = qs.to_vec();
        *shape.last_mut().expect("rows() checked the rank") = n as i64;
        self.write_floats(shape, &y)
    }
}

/// `y += x · w` with `x` as `[m, k]` and `w` as `[k, n]`, or as `[n, k]` when `w_rows_out`.
fn gemm(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    [m, k, n]: [usize; 3],
    w_rows_out: bool,
) -> Result<(), ndarray::ShapeError> {
    let x = ArrayView2::from_shape((m, k), x)?;
    let mut y = ArrayViewMut2::from_shape((m, n), y)?;
    if w_rows_out {
        let w = ArrayView2::from_shape((n, k), w)?;
        general_mat_mul(1.0, &x, &w.t(), 1.0, &mut y);
    } else {
        let w = ArrayView2::from_shape((k, n), w)?;
        general_mat_mul(1.0, &x, &w, 1.0, &mut y);
    }
    Ok(())
}
