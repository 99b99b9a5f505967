//! The kernels' arithmetic on `f32` slices, written so the compiler vectorises every loop: an
//! exponential without a library call, and fixed-width blocks for the reductions. Each kernel
//! is compiled twice, for the baseline x86-64 and for AVX2 with FMA, and picks the second at
//! run time where the processor has it.

use super::QUICK_GELU_SLOPE;

/// Lanes of the reductions' partial sums (an AVX2 register of `f32`).
const LANES: usize = 8;

/// Below this `exp` is 0 (`e^−87.3` is the smallest normal `f32`).
const EXP_LOW: f32 = -87.3;
/// Above this `exp` saturates at `e^88` (the scaling `2^n` stays finite up to `n = 127`).
const EXP_HIGH: f32 = 88.0;

/// `e^x` within 2 ulp up to [`EXP_HIGH`], 0 below [`EXP_LOW`], NaN for NaN. `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`;
/// `e^r` by its degree-6 Taylor–minimax polynomial (Cephes' `expf` coefficients); `2^n`
/// written into the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 · 2²³ rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(EXP_LOW, EXP_HIGH);
    let t = c * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    // The integer n sits in t's low mantissa bits; shifted into the exponent it makes 2^n.
    let two_n =
        f32::from_bits((t.to_bits().wrapping_sub(ROUND.to_bits()) << 23).wrapping_add(127 << 23));
    let e = e_r * two_n;
    if x < EXP_LOW { 0.0 } else { e }
}

/// `σ(z) = 1 / (1 + e^−z)`.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Compiles `$body` for the baseline and for AVX2 + FMA, and runs the one this processor
/// takes.
macro_rules! dispatch {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the processor has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

dispatch!(quick_gelu(x: &[f32], out: &mut [f32]) {
    let k = QUICK_GELU_SLOPE as f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * sigmoid(k * v);
    }
});

dispatch!(quick_gelu_backward(x: &[f32], grad: &[f32], out: &mut [f32]) {
    let k = QUICK_GELU_SLOPE as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
        let s = sigmoid(k * v);
        *o = g * s * (1.0 + k * v * (1.0 - s));
    }
});

/// `Σ a`, in [`LANES`] partial sums.
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let blocks = a.chunks_exact(LANES);
    let tail: f32 = blocks.remainder().iter().sum();
    for b in blocks {
        for (s, &v) in acc.iter_mut().zip(b) {
            *s += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a · b`, in [`LANES`] partial sums.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (blocks_a, blocks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = blocks_a
        .remainder()
        .iter()
        .zip(blocks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ba, bb) in blocks_a.zip(blocks_b) {
        for ((s, &x), &y) in acc.iter_mut().zip(ba).zip(bb) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

dispatch!(softmax_rows(x: &[f32], out: &mut [f32], row: usize) {
    for (xs, ys) in x.chunks_exact(row).zip(out.chunks_exact_mut(row)) {
        let max = xs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        // A row of −∞ (everything masked) has no maximum to subtract; its exponentials are 0
        // and its softmax NaN, as burn's and PyTorch's are.
        let shift = if max == f32::NEG_INFINITY { 0.0 } else { max };
        for (y, &v) in ys.iter_mut().zip(xs) {
            *y = exp(v - shift);
        }
        let inv = 1.0 / sum(ys);
        for y in ys.iter_mut() {
            *y *= inv;
        }
    }
});

dispatch!(softmax_rows_backward(y: &[f32], grad: &[f32], out: &mut [f32], row: usize) {
    let rows = y.chunks_exact(row).zip(grad.chunks_exact(row));
    for ((ys, gs), os) in rows.zip(out.chunks_exact_mut(row)) {
        let d = dot(ys, gs);
        for ((o, &p), &g) in os.iter_mut().zip(ys).zip(gs) {
            *o = p * (g - d);
        }
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_library_over_the_range_a_float_holds() {
        let mut worst = 0;
        let mut x = EXP_LOW;
        while x < EXP_HIGH {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 0.000_731;
        }
        assert!(worst <= 2, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn the_reductions_sum_every_element_whatever_the_length() {
        for n in [0usize, 1, 7, 8, 9, 17, 100] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n).map(|i| 2.0 - i as f32 * 0.5).collect();
            let want_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(sum(&a), (n * n.saturating_sub(1) / 2) as f32);
            assert!((dot(&a, &b) - want_dot).abs() <= 1e-3 * want_dot.abs().max(1.0));
        }
    }
}
