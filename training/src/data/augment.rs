//! Training augmentation (paper §5.1, after DeepfakeBench's CLIP recipe): horizontal flip,
//! rotation, isotropic resizing, brightness and contrast, JPEG compression. Every choice is
//! drawn from the [`Rng`] it is given, so a sample's augmentation depends only on the seed
//! and the sample's place in the epoch.

use image::imageops::FilterType;
use sd2_models::image::RgbImage;
use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// Probabilities and ranges.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    pub flip: f32,
    pub rotate: f32,
    /// Degrees either way.
    pub rotate_limit: f32,
    /// Isotropic down-and-up resizing, to a side between `rescale_min` and 1 of the input.
    pub rescale: f32,
    pub rescale_min: f32,
    pub brightness_contrast: f32,
    /// Brightness shift as a fraction of 255, and contrast gain around the mean, either way.
    pub brightness_contrast_limit: f32,
    pub jpeg: f32,
    pub jpeg_quality: [u8; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            flip: 0.5,
            rotate: 0.5,
            rotate_limit: 10.0,
            rescale: 0.3,
            rescale_min: 0.5,
            brightness_contrast: 0.5,
            brightness_contrast_limit: 0.1,
            jpeg: 0.5,
            jpeg_quality: [40, 100],
        }
    }
}

impl AugmentConfig {
    /// No augmentation (evaluation).
    pub fn none() -> Self {
        AugmentConfig {
            flip: 0.0,
            rotate: 0.0,
            rescale: 0.0,
            brightness_contrast: 0.0,
            jpeg: 0.0,
            ..Self::default()
        }
    }
}

fn to_image(img: RgbImage) -> image::RgbImage {
    image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data)
        .expect("buffer matches size")
}

fn from_image(img: image::RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    RgbImage::new(w, h, img.into_raw()).expect("buffer matches size")
}

/// The longest side scaled to `side`, centred on a black square (faces cropped at another size).
pub fn fit_square(img: RgbImage, side: usize) -> RgbImage {
    if img.width == side && img.height == side {
        return img;
    }
    let scale = side as f32 / img.width.max(img.height) as f32;
    let (w, h) = (
        ((img.width as f32 * scale).round() as u32).clamp(1, side as u32),
        ((img.height as f32 * scale).round() as u32).clamp(1, side as u32),
    );
    let resized = image::imageops::resize(&to_image(img), w, h, FilterType::Triangle);
    let mut canvas = image::RgbImage::new(side as u32, side as u32);
    image::imageops::overlay(
        &mut canvas,
        &resized,
        ((side as u32 - w) / 2) as i64,
        ((side as u32 - h) / 2) as i64,
    );
    from_image(canvas)
}

fn flip(img: &mut RgbImage) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (w - 1 - x) * 3 + c);
            }
        }
    }
}

/// Rotation about the centre, bilinear, edges extended.
fn rotate(img: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let v = img.sample_bilinear(c * dx + s * dy + cx, -s * dx + c * dy + cy);
            for (o, v) in out[(y * w + x) * 3..][..3].iter_mut().zip(v) {
                *o = v.round() as u8;
            }
        }
    }
    RgbImage::new(w, h, out).expect("same size")
}

fn rescale(img: RgbImage, factor: f32) -> RgbImage {
    let (w, h) = (img.width as u32, img.height as u32);
    let small = (
        ((w as f32 * factor).round() as u32).max(1),
        ((h as f32 * factor).round() as u32).max(1),
    );
    let down = image::imageops::resize(&to_image(img), small.0, small.1, FilterType::Triangle);
    from_image(image::imageops::resize(&down, w, h, FilterType::Triangle))
}

fn brightness_contrast(img: &mut RgbImage, brightness: f32, contrast: f32) {
    let mean = img.data.iter().map(|&v| v as f32).sum::<f32>() / img.data.len().max(1) as f32;
    for v in &mut img.data {
        *v = ((*v as f32 - mean) * (1.0 + contrast) + mean + brightness * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
}

fn jpeg(img: RgbImage, quality: u8) -> Result<RgbImage, image::ImageError> {
    let mut bytes = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
    to_image(img).write_with_encoder(enc)?;
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)?;
    Ok(from_image(decoded.into_rgb8()))
}

/// Applies the configured augmentations to a square face crop.
pub fn augment(img: RgbImage, c: &AugmentConfig, rng: &mut Rng) -> RgbImage {
    let mut img = img;
    if rng.chance(c.flip) {
        flip(&mut img);
    }
    if rng.chance(c.rotate) {
        img = rotate(&img, rng.range(-c.rotate_limit, c.rotate_limit));
    }
    if rng.chance(c.rescale) {
        img = rescale(img, rng.range(c.rescale_min, 1.0));
    }
    if rng.chance(c.brightness_contrast) {
        let l = c.brightness_contrast_limit;
        let (b, k) = (rng.range(-l, l), rng.range(-l, l));
        brightness_contrast(&mut img, b, k);
    }
    if rng.chance(c.jpeg) {
        let [lo, hi] = c.jpeg_quality;
        let q = lo + rng.below((hi - lo) as usize + 1) as u8;
        let original = img.clone();
        img = jpeg(img, q).unwrap_or(original);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(side: usize) -> RgbImage {
        let data = (0..side * side)
            .flat_map(|i| [(i % side * 4) as u8, (i / side * 4) as u8, 128])
            .collect();
        RgbImage::new(side, side, data).unwrap()
    }

    #[test]
    fn the_same_rng_gives_the_same_augmentation() {
        let c = AugmentConfig {
            flip: 1.0,
            rotate: 1.0,
            rescale: 1.0,
            brightness_contrast: 1.0,
            jpeg: 1.0,
            ..AugmentConfig::default()
        };
        let a = augment(gradient(32), &c, &mut Rng::keyed(1, &[2]));
        let b = augment(gradient(32), &c, &mut Rng::keyed(1, &[2]));
        let other = augment(gradient(32), &c, &mut Rng::keyed(1, &[3]));
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!((a.width, a.height), (32, 32));
    }

    #[test]
    fn no_augmentation_leaves_the_image_alone() {
        let img = gradient(16);
        assert_eq!(
            augment(img.clone(), &AugmentConfig::none(), &mut Rng::new(0)),
            img
        );
    }

    #[test]
    fn flipping_mirrors_and_rotation_by_zero_is_identity() {
        let mut img = gradient(8);
        flip(&mut img);
        assert_eq!(img.data[0], (7 * 4) as u8);
        let g = gradient(8);
        assert_eq!(rotate(&g, 0.0), g);
    }

    #[test]
    fn other_sizes_are_fitted_into_the_square() {
        let wide = RgbImage::new(40, 20, vec![200; 40 * 20 * 3]).unwrap();
        let sq = fit_square(wide, 20);
        assert_eq!((sq.width, sq.height), (20, 20));
        assert_eq!(sq.data[0], 0, "padding is black");
        assert_eq!(sq.data[(10 * 20 + 10) * 3], 200);
    }
}
