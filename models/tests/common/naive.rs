//! Plain loops for the operators our graphs use, written independently of ONNX Runtime so
//! that the exported models can be checked against them. Tensors are row-major NCHW.

/// `Conv` with stride 1 and no padding. `w` is `[out, in, k, k]`.
pub fn conv2d(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    wt: &[f32],
    b: &[f32],
    out_c: usize,
    k: usize,
) -> (Vec<f32>, [usize; 4]) {
    let (oh, ow) = (h - k + 1, w - k + 1);
    let mut y = vec![0.0; n * out_c * oh * ow];
    for ni in 0..n {
        for o in 0..out_c {
            for yy in 0..oh {
                for xx in 0..ow {
                    let mut s = b[o] as f64;
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let xv = x[((ni * c + ci) * h + yy + ky) * w + xx + kx];
                                let wv = wt[((o * c + ci) * k + ky) * k + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((ni * out_c + o) * oh + yy) * ow + xx] = s as f32;
                }
            }
        }
    }
    (y, [n, out_c, oh, ow])
}

/// PReLU with one slope per channel (axis 1).
pub fn prelu(x: &mut [f32], channels: usize, inner: usize, slope: &[f32]) {
    for (i, v) in x.iter_mut().enumerate() {
        let c = (i / inner) % channels;
        if *v < 0.0 {
            *v *= slope[c];
        }
    }
}

/// `MaxPool` with `ceil_mode`: windows may run past the edge and then cover what is inside.
pub fn maxpool_ceil(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    k: usize,
    s: usize,
) -> (Vec<f32>, [usize; 4]) {
    let out = |len: usize| (len - k).div_ceil(s) + 1;
    let (oh, ow) = (out(h), out(w));
    let mut y = vec![f32::NEG_INFINITY; n * c * oh * ow];
    for p in 0..n * c {
        for yy in 0..oh {
            for xx in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in yy * s..(yy * s + k).min(h) {
                    for kx in xx * s..(xx * s + k).min(w) {
                        m = m.max(x[(p * h + ky) * w + kx]);
                    }
                }
                y[(p * oh + yy) * ow + xx] = m;
            }
        }
    }
    (y, [n, c, oh, ow])
}

/// `x.permute(0, 3, 2, 1).reshape(n, -1)`.
pub fn permute_flatten(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for ni in 0..n {
        for xx in 0..w {
            for yy in 0..h {
                for ci in 0..c {
                    y.push(x[((ni * c + ci) * h + yy) * w + xx]);
                }
            }
        }
    }
    y
}

/// `x · wᵀ + b` with `w` as `[out, in]`.
pub fn dense(x: &[f32], n: usize, wt: &[f32], b: &[f32], out: usize) -> Vec<f32> {
    let inp = x.len() / n;
    let mut y = vec![0.0; n * out];
    for ni in 0..n {
        for o in 0..out {
            let mut s = b[o] as f64;
            for i in 0..inp {
                s += x[ni * inp + i] as f64 * wt[o * inp + i] as f64;
            }
            y[ni * out + o] = s as f32;
        }
    }
    y
}

/// Softmax over axis 1 of `[n, c, inner]`.
pub fn softmax_axis1(x: &mut [f32], n: usize, c: usize, inner: usize) {
    for ni in 0..n {
        for i in 0..inner {
            let idx = |ci: usize| (ni * c + ci) * inner + i;
            let m = (0..c)
                .map(|ci| x[idx(ci)])
                .fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..c).map(|ci| (x[idx(ci)] - m).exp()).sum();
            for ci in 0..c {
                x[idx(ci)] = (x[idx(ci)] - m).exp() / sum;
            }
        }
    }
}
