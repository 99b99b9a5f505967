//! The face crop recipe, shared by training (`sd2-train make-demo-set`, the data loader)
//! and inference (`sd2deepfake`), so that a model sees at run time exactly what it saw in
//! training. An exported model records its recipe ([`crate::contract`]).
//!
//! 1. The square with the same centre as the detected box and a side of `scale` times the
//!    box's longer side (the paper crops "square regions centred on the detected bounding
//!    boxes", Appendix A.3; 1.3 is DeepfakeBench's margin).
//! 2. Resampled to `input_size × input_size` with a triangle (bilinear) filter whose
//!    support widens when shrinking, so large faces are averaged rather than aliased;
//!    parts of the square outside the frame are black. The result is 8-bit RGB, the form
//!    training sets store as PNG.
//! 3. Scaled to [0, 1] and normalised with CLIP's mean and standard deviation, channel-major.

use std::collections::HashMap;

use crate::contract::MetadataError;
use crate::image::{RgbImage, RgbView};

/// CLIP's per-channel mean (RGB), on pixels scaled to [0, 1].
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation (RGB), as OpenAI publishes it.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// How a face becomes a model input.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropRecipe {
    /// Side of the square model input in pixels (224 for ViT-L/14).
    pub input_size: usize,
    /// Side of the cropped square as a multiple of the box's longer side.
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for CropRecipe {
    fn default() -> Self {
        CropRecipe {
            input_size: 224,
            scale: 1.3,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}

/// Name of the resampling filter, recorded in model metadata.
pub const RESAMPLE_FILTER: &str = "triangle-antialiased";

/// A recipe that cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RecipeError {
    #[error("crop recipe: input size {0} is not in 1..=4096")]
    InputSize(usize),
    #[error("crop recipe: scale {0} is not a positive number")]
    Scale(f32),
    #[error("crop recipe: mean {0:?} has a value that is not finite")]
    Mean([f32; 3]),
    #[error("crop recipe: standard deviation {0:?} has a value that is not positive")]
    Std([f32; 3]),
}

/// Taps and weights of one output sample.
struct Taps {
    first: i64,
    weights: Vec<f32>,
}

/// Triangle-filter taps for `n` outputs covering `[start, start + len)` of the input axis.
fn taps(start: f32, len: f32, n: usize) -> Vec<Taps> {
    let step = len / n as f32;
    let support = step.max(1.0);
    (0..n)
        .map(|i| {
            let centre = start + (i as f32 + 0.5) * step;
            let first = (centre - support).floor() as i64;
            let last = (centre + support).ceil() as i64;
            let mut weights: Vec<f32> = (first..=last)
                .map(|j| (1.0 - ((j as f32 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let sum: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            Taps { first, weights }
        })
        .collect()
}

impl CropRecipe {
    /// Checks that the recipe can be applied.
    pub fn validate(&self) -> Result<(), RecipeError> {
        if self.input_size == 0 || self.input_size > 4096 {
            return Err(RecipeError::InputSize(self.input_size));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(RecipeError::Scale(self.scale));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(RecipeError::Mean(self.mean));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(RecipeError::Std(self.std));
        }
        Ok(())
    }

    /// The square region `[x1, y1, x2, y2]` cropped for a face box.
    pub fn square(&self, bbox: [f32; 4]) -> [f32; 4] {
        let (cx, cy) = ((bbox[0] + bbox[2]) * 0.5, (bbox[1] + bbox[3]) * 0.5);
        let side = (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]).max(1.0) * self.scale;
        [
            cx - side * 0.5,
            cy - side * 0.5,
            cx + side * 0.5,
            cy + side * 0.5,
        ]
    }

    /// Steps 1 and 2: the 8-bit RGB crop of a face box.
    pub fn crop(&self, img: RgbView<'_>, bbox: [f32; 4]) -> RgbImage {
        let n = self.input_size;
        let sq = self.square(bbox);
        let side = sq[2] - sq[0];
        let xs = taps(sq[0], side, n);
        let ys = taps(sq[1], side, n);
        let (w, h) = (img.width() as i64, img.height() as i64);
        // Horizontal pass over the rows the vertical taps reach; rows outside the frame stay black.
        let row0 = ys.first().map_or(0, |t| t.first);
        let row1 = ys.last().map_or(0, |t| t.first + t.weights.len() as i64);
        let rows = (row1 - row0) as usize;
        let mut horiz = vec![0f32; rows * n * 3];
        for r in 0..rows {
            let y = row0 + r as i64;
            if y < 0 || y >= h {
                continue;
            }
            let src = img.row(y as usize);
            for (ox, t) in xs.iter().enumerate() {
                let mut acc = [0f32; 3];
                for (k, wgt) in t.weights.iter().enumerate() {
                    let x = t.first + k as i64;
                    if x >= 0 && x < w {
                        let p = &src[x as usize * 3..x as usize * 3 + 3];
                        for c in 0..3 {
                            acc[c] += wgt * p[c] as f32;
                        }
                    }
                }
                horiz[(r * n + ox) * 3..(r * n + ox) * 3 + 3].copy_from_slice(&acc);
            }
        }
        let mut out = vec![0u8; n * n * 3];
        for (oy, t) in ys.iter().enumerate() {
            for ox in 0..n {
                let mut acc = [0f32; 3];
                for (k, wgt) in t.weights.iter().enumerate() {
                    let r = (t.first + k as i64 - row0) as usize;
                    let p = &horiz[(r * n + ox) * 3..(r * n + ox) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += wgt * p[c];
                    }
                }
                for c in 0..3 {
                    out[(oy * n + ox) * 3 + c] = acc[c].round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        RgbImage::new(n, n, out).expect("n × n × 3 bytes")
    }

    /// Step 3: writes an 8-bit crop as normalised `[3, n, n]` values into `out`.
    ///
    /// # Panics
    /// If the crop is not `input_size` square or `out` is not `3·n·n` long.
    pub fn normalise_into(&self, crop: &RgbImage, out: &mut [f32]) {
        let n = self.input_size;
        assert!(
            crop.width == n && crop.height == n,
            "crop is {}x{}, recipe wants {n}x{n}",
            crop.width,
            crop.height
        );
        assert_eq!(out.len(), 3 * n * n);
        let plane = n * n;
        for (i, px) in crop.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
    }

    /// All three steps: the model input for one face, `[3, n, n]`.
    pub fn input_for(&self, img: RgbView<'_>, bbox: [f32; 4], out: &mut [f32]) {
        let crop = self.crop(img, bbox);
        self.normalise_into(&crop, out);
    }

    /// The recipe's entries of ONNX `metadata_props` (part of [`crate::contract`]).
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        crate::contract::recipe_props(self).to_vec()
    }

    /// Reads a recipe back from `metadata_props`, saying which entry is missing or wrong.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Self, MetadataError> {
        crate::contract::recipe_from_props(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> RgbImage {
        let data = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| [(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
            })
            .collect();
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn square_is_centred_on_the_box_and_scaled_from_its_longer_side() {
        let r = CropRecipe::default();
        let sq = r.square([10.0, 20.0, 50.0, 120.0]);
        assert_eq!(sq, [-35.0, 5.0, 95.0, 135.0]);
    }

    #[test]
    fn an_aligned_crop_at_the_input_size_copies_pixels() {
        let img = gradient(64, 48);
        let r = CropRecipe {
            input_size: 16,
            scale: 1.0,
            ..CropRecipe::default()
        };
        let crop = r.crop(img.view(), [8.0, 4.0, 24.0, 20.0]);
        for y in 0..16 {
            for x in 0..16 {
                let src = &img.data[((y + 4) * 64 + x + 8) * 3..][..3];
                assert_eq!(&crop.data[(y * 16 + x) * 3..][..3], src, "at {x},{y}");
            }
        }
    }

    #[test]
    fn shrinking_averages_and_the_outside_is_black() {
        // A uniform grey frame: every crop pixel inside is that grey, outside is black.
        let img = RgbImage::new(100, 100, vec![200; 100 * 100 * 3]).unwrap();
        let r = CropRecipe {
            input_size: 10,
            scale: 2.0,
            ..CropRecipe::default()
        };
        // The box's square is [-25, -25, 75, 75]: its top-left quarter lies outside the frame.
        let crop = r.crop(img.view(), [0.0, 0.0, 50.0, 50.0]);
        assert_eq!(crop.data[0], 0, "top-left corner is outside the frame");
        assert_eq!(
            crop.data[(9 * 10 + 9) * 3],
            200,
            "bottom-right corner is inside"
        );
        // A pixel straddling the edge is between the two.
        let edge = crop.data[(5 * 10 + 2) * 3];
        assert!(edge > 0 && edge < 200, "{edge}");
    }

    #[test]
    fn normalisation_uses_clip_statistics_channel_major() {
        let r = CropRecipe {
            input_size: 1,
            ..CropRecipe::default()
        };
        let crop = RgbImage::new(1, 1, vec![255, 0, 128]).unwrap();
        let mut out = [0.0; 3];
        r.normalise_into(&crop, &mut out);
        assert!((out[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((out[1] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
        assert!((out[2] - (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2]).abs() < 1e-6);
    }

    #[test]
    fn metadata_round_trips_and_names_what_is_wrong() {
        let r = CropRecipe::default();
        let meta: HashMap<String, String> = r
            .to_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(CropRecipe::from_metadata(&meta).unwrap(), r);
        let mut broken = meta.clone();
        broken.remove("mean");
        assert!(
            CropRecipe::from_metadata(&broken)
                .unwrap_err()
                .to_string()
                .contains("`mean` is missing")
        );
        let mut broken = meta;
        broken.insert("std".into(), "0.2,0,0.3".into());
        assert!(
            CropRecipe::from_metadata(&broken)
                .unwrap_err()
                .to_string()
                .contains("not positive")
        );
    }
}
