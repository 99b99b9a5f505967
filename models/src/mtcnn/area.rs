//! Area resampling through a summed-area table.
//!
//! The reference MTCNN resizes with `interpolate(mode="area")`, which is PyTorch's
//! `adaptive_avg_pool2d`: output cell `i` of `n` averages input cells
//! `floor(i·m/n) .. ceil((i+1)·m/n)`. With one summed-area table per frame every average is
//! four lookups, so the whole image pyramid and every R-Net and O-Net crop cost time in
//! proportion to their output size, not the frame's.

use crate::image::RgbView;

/// MTCNN's input normalisation: `(v - 127.5) / 128`.
pub fn normalise(v: f32) -> f32 {
    (v - 127.5) * 0.0078125
}

/// Sums of an RGB image over every rectangle `[0, x) × [0, y)`.
///
/// Sums wrap at 2³²; differences of four of them are exact for any region under 16.8
/// million pixels.
pub struct IntegralImage {
    width: usize,
    height: usize,
    sums: Vec<u32>,
}

impl IntegralImage {
    pub fn new(img: RgbView<'_>) -> Self {
        let (w, h) = (img.width(), img.height());
        let row_len = (w + 1) * 3;
        let mut sums = vec![0u32; row_len * (h + 1)];
        for y in 0..h {
            let src = img.row(y);
            let (prev, cur) = sums[y * row_len..(y + 2) * row_len].split_at_mut(row_len);
            let mut acc = [0u32; 3];
            for x in 0..w {
                for c in 0..3 {
                    acc[c] = acc[c].wrapping_add(src[x * 3 + c] as u32);
                    let i = (x + 1) * 3 + c;
                    cur[i] = prev[i].wrapping_add(acc[c]);
                }
            }
        }
        IntegralImage {
            width: w,
            height: h,
            sums,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    #[inline]
    fn at(&self, x: usize, y: usize, c: usize) -> u32 {
        self.sums[(y * (self.width + 1) + x) * 3 + c]
    }

    /// Resamples the region `[x0, x1) × [y0, y1)` to `out_w × out_h` by area averaging and
    /// writes it normalised, channel-major (`[3, out_h, out_w]`), into `out`.
    ///
    /// # Panics
    /// If the region is empty or not inside the image, or `out` is not `3·out_w·out_h` long.
    pub fn resample_into(&self, region: [usize; 4], out_w: usize, out_h: usize, out: &mut [f32]) {
        let [x0, y0, x1, y1] = region;
        assert!(
            x0 < x1 && y0 < y1 && x1 <= self.width && y1 <= self.height,
            "bad region {region:?}"
        );
        assert_eq!(out.len(), 3 * out_w * out_h);
        let (in_w, in_h) = (x1 - x0, y1 - y0);
        let span = |i: usize, n_in: usize, n_out: usize| {
            (i * n_in / n_out, ((i + 1) * n_in).div_ceil(n_out))
        };
        let cols: Vec<(usize, usize)> = (0..out_w)
            .map(|i| {
                let (a, b) = span(i, in_w, out_w);
                (x0 + a, x0 + b)
            })
            .collect();
        let plane = out_w * out_h;
        for oy in 0..out_h {
            let (a, b) = span(oy, in_h, out_h);
            let (ya, yb) = (y0 + a, y0 + b);
            for (ox, &(xa, xb)) in cols.iter().enumerate() {
                let count = ((yb - ya) * (xb - xa)) as f32;
                for c in 0..3 {
                    let s = self
                        .at(xb, yb, c)
                        .wrapping_sub(self.at(xa, yb, c))
                        .wrapping_sub(self.at(xb, ya, c))
                        .wrapping_add(self.at(xa, ya, c));
                    out[c * plane + oy * out_w + ox] = normalise(s as f32 / count);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::RgbImage;

    /// adaptive_avg_pool2d written out directly, one output cell at a time.
    fn naive(img: &RgbImage, region: [usize; 4], ow: usize, oh: usize) -> Vec<f32> {
        let [x0, y0, x1, y1] = region;
        let (iw, ih) = (x1 - x0, y1 - y0);
        let mut out = vec![0.0; 3 * ow * oh];
        for c in 0..3 {
            for oy in 0..oh {
                let ya = (oy as f64 * ih as f64 / oh as f64).floor() as usize;
                let yb = ((oy + 1) as f64 * ih as f64 / oh as f64).ceil() as usize;
                for ox in 0..ow {
                    let xa = (ox as f64 * iw as f64 / ow as f64).floor() as usize;
                    let xb = ((ox + 1) as f64 * iw as f64 / ow as f64).ceil() as usize;
                    let mut s = 0.0f64;
                    for y in ya..yb {
                        for x in xa..xb {
                            s += img.data[((y0 + y) * img.width + x0 + x) * 3 + c] as f64;
                        }
                    }
                    let avg = s / ((yb - ya) * (xb - xa)) as f64;
                    out[c * ow * oh + oy * ow + ox] = normalise(avg as f32);
                }
            }
        }
        out
    }

    fn test_image(w: usize, h: usize) -> RgbImage {
        let data = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn matches_adaptive_average_pooling_down_and_up() {
        let img = test_image(37, 23);
        let sat = IntegralImage::new(img.view());
        for (region, ow, oh) in [
            ([0, 0, 37, 23], 12, 9),
            ([3, 2, 30, 21], 24, 24),
            ([5, 5, 9, 8], 48, 48),
            ([0, 0, 37, 23], 37, 23),
        ] {
            let mut out = vec![0.0; 3 * ow * oh];
            sat.resample_into(region, ow, oh, &mut out);
            let want = naive(&img, region, ow, oh);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{region:?} -> {ow}x{oh}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn reads_views_with_padding_between_rows() {
        let img = test_image(5, 4);
        let stride = 5 * 3 + 7;
        let mut padded = vec![0xAAu8; stride * 4];
        for y in 0..4 {
            padded[y * stride..y * stride + 15].copy_from_slice(&img.data[y * 15..y * 15 + 15]);
        }
        let view = RgbView::new(5, 4, stride, &padded).unwrap();
        let (mut a, mut b) = (vec![0.0; 3 * 4], vec![0.0; 3 * 4]);
        IntegralImage::new(view).resample_into([0, 0, 5, 4], 2, 2, &mut a);
        IntegralImage::new(img.view()).resample_into([0, 0, 5, 4], 2, 2, &mut b);
        assert_eq!(a, b);
    }
}
