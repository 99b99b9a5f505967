//! Calibrating an FP8 export: the largest magnitude of the activations at each FP8 site
//! over real faces, measured by ONNX Runtime on the model's unquantised `sd2` graph
//! ([`super::calibration_graph`]), which becomes the site's per-tensor scale (amax / 448).

use std::path::PathBuf;

use sd2_models::contract::PIXEL_VALUES;
use sd2_models::crop::CropRecipe;
use sd2_models::ort;
use sd2_models::runtime::{self, Device, RuntimeError, SessionConfig};

use super::sd2::{AMAX, Calibration, sites};
use super::{ExportInfo, calibration_graph};
use crate::data::augment::AugmentConfig;
use crate::data::loader::{LoaderConfig, load_sample};
use crate::data::manifest::Manifest;
use crate::data::rng::Rng;
use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::tokenizer::ClipTokenizer;
use crate::train::checkpoint::RunState;

/// Faces per run of the calibration graph.
const BATCH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("no faces to calibrate on")]
    NoFaces,
    #[error("writing the calibration graph {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("running the calibration graph: {0}")]
    Run(String),
}

/// Each FP8 site's largest magnitude over `faces` (normalised crops, `3·S·S` values each,
/// as the model's recipe makes them), run on the CPU.
pub fn calibrate(
    model: &Sd2Model,
    state: &RunState,
    labels: &TextLabels,
    tok: &ClipTokenizer,
    faces: &[f32],
) -> Result<Calibration, CalibrateError> {
    let side = state.config.crop.input_size;
    let per = 3 * side * side;
    let n = faces.len() / per;
    if n == 0 {
        return Err(CalibrateError::NoFaces);
    }
    let dir = tempfile::tempdir().map_err(|source| CalibrateError::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let path = dir.path().join("calibration.onnx");
    calibration_graph(model, state, labels, tok)
        .write(&path)
        .map_err(|source| CalibrateError::Write {
            path: path.clone(),
            source,
        })?;
    let mut session = runtime::open_session(&path, Device::Cpu, SessionConfig::default(), "")?
        .session
        .into_inner();
    let layers = state.config.model.clip.vision.num_hidden_layers;
    let names = sites(layers);
    let mut amax = vec![0.0f32; names.len()];
    let run = |e: ort::Error| CalibrateError::Run(e.to_string());
    for start in (0..n).step_by(BATCH) {
        let count = BATCH.min(n - start);
        let x = &faces[start * per..(start + count) * per];
        let t = ort::value::TensorRef::from_array_view(([count, 3, side, side], x)).map_err(run)?;
        let out = session.run(ort::inputs![PIXEL_VALUES => t]).map_err(run)?;
        for (m, site) in amax.iter_mut().zip(&names) {
            let name = format!("{AMAX}{site}");
            let (_, v) = out[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(run)?;
            *m = v.iter().fold(*m, |a, b| a.max(*b));
        }
    }
    Ok(Calibration {
        faces: n,
        amax: names.into_iter().zip(amax).collect(),
    })
}

/// One line on what a calibration measured.
pub fn describe(info: &ExportInfo, c: &Calibration) -> String {
    let (lo, hi) = c
        .amax
        .values()
        .fold((f32::INFINITY, 0.0f32), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    format!(
        "{}: {} FP8 sites calibrated on {} faces, activation amax {lo:.3}–{hi:.3}",
        info.model_name,
        c.amax.len(),
        c.faces
    )
}

/// Up to `limit` faces of `manifest`, evenly spaced over its rows, prepared by `recipe`
/// without augmentation: their pixels (`3·S·S` each), their rows, and the rows that could
/// not be read, with why.
pub fn manifest_faces(
    manifest: &Manifest,
    recipe: CropRecipe,
    limit: usize,
) -> (Vec<f32>, Vec<usize>, Vec<String>) {
    let rows = manifest.entries.len();
    let take = limit.min(rows);
    let config = LoaderConfig {
        batch_size: 1,
        workers: 1,
        prefetch: 1,
        augment: AugmentConfig::none(),
        recipe,
        seed: 0,
    };
    let (mut pixels, mut used, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..take {
        let row = i * rows / take;
        match load_sample(manifest, row, &config, &mut Rng::new(0)) {
            Ok(s) => {
                pixels.extend_from_slice(&s.pixels);
                used.push(row);
            }
            Err(e) => skipped.push(format!(
                "{} line {}: {e}",
                manifest.path.display(),
                manifest.entries[row].line
            )),
        }
    }
    (pixels, used, skipped)
}
