//! FP8 E4M3 (the `E4M3FN` of NVIDIA's tensor cores and of ONNX's `FLOAT8E4M3FN`): one sign
//! bit, four exponent bits of bias 7, three mantissa bits; no infinities, one NaN pattern
//! per sign (`S.1111.111`), largest finite value ±448, smallest subnormal 2⁻⁹.
//!
//! [`encode`] rounds as the GPU's `cvt.rn.satfinite.e4m3x2.f32` does: to the nearest value,
//! ties to an even mantissa, saturating at ±448 (infinities included), NaN to NaN. So the
//! CPU kernels of the FP8 operators compute on the values the GPU's FP8 GEMM reads.

/// The largest finite E4M3 value.
pub const MAX: f32 = 448.0;

/// The code of `+448`; `| 0x80` for `-448`.
const MAX_CODE: u8 = 0x7E;
/// The code of NaN (positive sign), what the GPU writes for a NaN input.
pub const NAN: u8 = 0x7F;

/// The value of an E4M3 code; every code is exact in `f32`.
pub fn decode(code: u8) -> f32 {
    let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((code >> 3) & 0x0F);
    let mantissa = f32::from(code & 0x07);
    if exponent == 0x0F && code & 0x07 == 0x07 {
        return f32::NAN;
    }
    let magnitude = if exponent == 0 {
        mantissa * 2f32.powi(-9)
    } else {
        (1.0 + mantissa / 8.0) * 2f32.powi(exponent - 7)
    };
    sign * magnitude
}

/// Every code's value, for decoding whole tensors.
pub fn table() -> [f32; 256] {
    std::array::from_fn(|c| decode(c as u8))
}

/// `x` rounded to E4M3: nearest, ties to even, saturating at ±448, NaN to [`NAN`].
pub fn encode(x: f32) -> u8 {
    if x.is_nan() {
        return NAN;
    }
    let sign = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = x.abs();
    if a >= MAX {
        return sign | MAX_CODE;
    }
    // The exponent of `a`'s binade, floored at the subnormals' (2⁻⁶, quantum 2⁻⁹).
    let e = if a < 2f32.powi(-6) {
        -6
    } else {
        ((a.to_bits() >> 23) as i32) - 127
    };
    // `a` in units of its binade's quantum (2^(e-3)): exact, a power-of-two scaling.
    let q = (a * 2f32.powi(3 - e)).round_ties_even() as u32;
    // A normal's code is (e + 7) << 3 | (q - 8), that is ((e + 6) << 3) + q, which also
    // holds for the subnormals (e = -6, q < 8) and carries q = 16 into the next binade.
    let code = (((e + 6) as u32) << 3) + q;
    if code > u32::from(MAX_CODE) {
        return sign | MAX_CODE;
    }
    sign | code as u8
}

/// Each of `values` divided by `scale` and rounded to E4M3, as the GPU's quantising kernels
/// compute it: `x · (1 / s)` in `f32` (both roundings IEEE, the same on either side), then
/// [`encode`].
pub fn quantize(values: impl Iterator<Item = f32>, scale: f32, out: &mut [u8]) {
    let inv = 1.0 / scale;
    for (o, v) in out.iter_mut().zip(values) {
        *o = encode(v * inv);
    }
}

/// The per-tensor scale that maps `amax`, the largest magnitude a tensor holds, onto
/// [`MAX`]; 1 for a tensor of zeros (any scale encodes it exactly).
pub fn scale_for(amax: f32) -> f32 {
    if amax > 0.0 && amax.is_finite() {
        amax / MAX
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The E4M3 value nearest to `x` by brute force over every finite code, ties to the
    /// even code (an even mantissa): the definition [`encode`] implements.
    fn nearest(x: f32) -> u8 {
        let x = f64::from(x);
        let mut best = 0u8;
        let mut best_d = f64::INFINITY;
        for c in 0..=255u8 {
            let v = decode(c);
            if v.is_nan() || (v == 0.0 && v.is_sign_negative() != x.is_sign_negative()) {
                continue;
            }
            let d = (f64::from(v) - x).abs();
            if d < best_d || (d == best_d && c & 1 == 0) {
                best = c;
                best_d = d;
            }
        }
        best
    }

    #[test]
    fn every_code_decodes_and_encodes_back_to_itself() {
        for c in 0..=255u8 {
            let v = decode(c);
            if c & 0x7F == NAN {
                assert!(v.is_nan());
                continue;
            }
            assert_eq!(encode(v), c, "code {c:#04x} = {v}");
        }
        assert_eq!(decode(0x7E), 448.0);
        assert_eq!(decode(0x01), 2f32.powi(-9));
        assert_eq!(decode(0x08), 2f32.powi(-6));
    }

    #[test]
    fn rounding_is_to_the_nearest_value_with_ties_to_even() {
        // Every midpoint between neighbouring codes, and points just beside them.
        let t = table();
        for c in 0..0x7Eu8 {
            let (lo, hi) = (t[c as usize], t[c as usize + 1]);
            let mid = (lo + hi) / 2.0;
            for x in [
                mid,
                mid.next_up(),
                mid.next_down(),
                -mid,
                lo * 0.999 + hi * 0.001,
            ] {
                assert_eq!(encode(x), nearest(x), "x = {x}");
            }
        }
        // Ties go to the even mantissa.
        assert_eq!(encode(17.0), 0x58); // between 16 (0x58) and 18 (0x59): to 16
        assert_eq!(encode(19.0), 0x5A); // between 18 (0x59) and 20 (0x5A): to 20
        assert_eq!(encode(2f32.powi(-10)), 0x00); // half the smallest subnormal: to zero
        assert_eq!(encode(3.0 * 2f32.powi(-10)), 0x02);
    }

    #[test]
    fn values_beyond_448_saturate_and_nan_stays_nan() {
        for x in [448.0, 463.9, 464.0, 500.0, 1e6, f32::INFINITY] {
            assert_eq!(encode(x), 0x7E, "{x}");
            assert_eq!(encode(-x), 0xFE, "{}", -x);
        }
        assert_eq!(encode(f32::NAN), NAN);
        assert_eq!(encode(-0.0), 0x80);
        assert_eq!(encode(1e-30), 0x00);
    }

    #[test]
    fn a_tensor_scaled_by_its_amax_uses_the_whole_range() {
        let s = scale_for(3.5);
        let mut q = [0u8; 3];
        quantize([3.5, -3.5, 0.0].into_iter(), s, &mut q);
        assert_eq!(q, [0x7E, 0xFE, 0x00]);
        assert_eq!(scale_for(0.0), 1.0);
    }
}
