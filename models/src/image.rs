//! 8-bit RGB images as the face stage reads them: a borrowed view with a row stride (a
//! mapped video frame) or an owned buffer (a decoded file).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read the image: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: cannot write the image: {reason}")]
    Write { path: String, reason: String },
    #[error(
        "an RGB image of {width}x{height} with stride {stride} needs {needed} bytes, got {got}"
    )]
    Size {
        width: usize,
        height: usize,
        stride: usize,
        needed: usize,
        got: usize,
    },
}

/// Packed 8-bit RGB pixels, `stride` bytes from one row to the next.
#[derive(Clone, Copy, Debug)]
pub struct RgbView<'a> {
    width: usize,
    height: usize,
    stride: usize,
    data: &'a [u8],
}

impl<'a> RgbView<'a> {
    pub fn new(
        width: usize,
        height: usize,
        stride: usize,
        data: &'a [u8],
    ) -> Result<Self, ImageError> {
        let needed = if height == 0 {
            0
        } else {
            stride * (height - 1) + width * 3
        };
        if stride < width * 3 || data.len() < needed {
            return Err(ImageError::Size {
                width,
                height,
                stride,
                needed,
                got: data.len(),
            });
        }
        Ok(RgbView {
            width,
            height,
            stride,
            data,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The `width * 3` bytes of row `y`.
    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width * 3]
    }
}

/// An owned, tightly packed RGB image.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, ImageError> {
        RgbView::new(width, height, width * 3, &data)?;
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// Decodes a PNG or JPEG file (alpha is dropped, grey is expanded).
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let img = image::open(path).map_err(|e| ImageError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let rgb = img.into_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        Ok(RgbImage {
            width: w,
            height: h,
            data: rgb.into_raw(),
        })
    }

    pub fn view(&self) -> RgbView<'_> {
        RgbView {
            width: self.width,
            height: self.height,
            stride: self.width * 3,
            data: &self.data,
        }
    }

    /// The image scaled (nearest neighbour) to fit a `w × h` canvas of grey `background`,
    /// centred: a frame holding it, for benchmarks and demos.
    pub fn letterboxed(&self, w: usize, h: usize, background: u8) -> RgbImage {
        let scale = (h as f32 / self.height as f32).min(w as f32 / self.width as f32);
        let (sw, sh) = (
            (self.width as f32 * scale) as usize,
            (self.height as f32 * scale) as usize,
        );
        let (x0, y0) = ((w - sw) / 2, (h - sh) / 2);
        let mut data = vec![background; w * h * 3];
        for y in 0..sh {
            let sy = (((y as f32 + 0.5) / scale) as usize).min(self.height - 1);
            for x in 0..sw {
                let sx = (((x as f32 + 0.5) / scale) as usize).min(self.width - 1);
                let src = &self.data[(sy * self.width + sx) * 3..][..3];
                data[((y0 + y) * w + x0 + x) * 3..][..3].copy_from_slice(src);
            }
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    /// The colour at `(x, y)` (pixel centres at integer coordinates), interpolated
    /// bilinearly; points outside the image take the nearest edge's colour.
    pub fn sample_bilinear(&self, x: f32, y: f32) -> [f32; 3] {
        let x = x.clamp(0.0, (self.width - 1) as f32);
        let y = y.clamp(0.0, (self.height - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let p = |xx: usize, yy: usize, c: usize| self.data[(yy * self.width + xx) * 3 + c] as f32;
        std::array::from_fn(|c| {
            let top = p(x0, y0, c) * (1.0 - fx) + p(x1, y0, c) * fx;
            let bottom = p(x0, y1, c) * (1.0 - fx) + p(x1, y1, c) * fx;
            top * (1.0 - fy) + bottom * fy
        })
    }

    /// Writes the image as PNG.
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        image::save_buffer(
            path,
            &self.data,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| ImageError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_samples_interpolate_and_clamp_to_the_edges() {
        // Two pixels: black, then (200, 100, 40).
        let img = RgbImage::new(2, 1, vec![0, 0, 0, 200, 100, 40]).unwrap();
        assert_eq!(img.sample_bilinear(0.0, 0.0), [0.0, 0.0, 0.0]);
        assert_eq!(img.sample_bilinear(0.25, 0.0), [50.0, 25.0, 10.0]);
        assert_eq!(img.sample_bilinear(1.0, 0.0), [200.0, 100.0, 40.0]);
        assert_eq!(img.sample_bilinear(-3.0, 0.7), [0.0, 0.0, 0.0]);
        assert_eq!(img.sample_bilinear(9.0, -2.0), [200.0, 100.0, 40.0]);
    }
}
