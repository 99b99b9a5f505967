//! The faces of the sample photos setup extracts: real faces for calibration, parity checks
//! and benchmarks, without running a detector first.

use crate::crop::CropRecipe;
use crate::image::{ImageError, RgbImage};
use crate::paths;

/// The six faces of `t1.jpg` (facenet-pytorch's MTCNN boxes, rounded to whole pixels), as
/// `[x_min, y_min, x_max, y_max]`.
pub const T1_FACES: [[f32; 4]; 6] = [
    [465.0, 262.0, 570.0, 405.0],
    [55.0, 263.0, 165.0, 397.0],
    [908.0, 62.0, 1014.0, 202.0],
    [688.0, 132.0, 790.0, 268.0],
    [285.0, 143.0, 386.0, 278.0],
    [1073.0, 213.0, 1177.0, 350.0],
];

/// `n` model inputs (NCHW, normalised by `recipe`) of `t1.jpg`'s faces, taken in turn.
pub fn t1_crops(recipe: &CropRecipe, n: usize) -> Result<Vec<f32>, ImageError> {
    let img = RgbImage::open(&paths::samples_dir().join("t1.jpg"))?;
    let per = 3 * recipe.input_size * recipe.input_size;
    let mut out = vec![0.0; n * per];
    for (i, chunk) in out.chunks_mut(per).enumerate() {
        recipe.input_for(img.view(), T1_FACES[i % T1_FACES.len()], chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_cycle_over_the_six_faces() {
        let recipe = CropRecipe {
            input_size: 32,
            ..CropRecipe::default()
        };
        let x = t1_crops(&recipe, 7).expect("run scripts/setup.sh");
        let per = 3 * 32 * 32;
        assert_eq!(x.len(), 7 * per);
        // The seventh crop is the first face again; the second is another face.
        assert_eq!(x[..per], x[6 * per..]);
        assert_ne!(x[..per], x[per..2 * per]);
    }
}
