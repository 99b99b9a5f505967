//! Everything a training run depends on, saved with every checkpoint so that `--resume`
//! continues the same run.

use std::path::PathBuf;

use sd2_models::crop::CropRecipe;
use serde::{Deserialize, Serialize};

use crate::data::augment::AugmentConfig;
use crate::loss::LossConfig;
use crate::model::Sd2Config;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub manifest: PathBuf,
    pub image_root: Option<PathBuf>,
    /// Pretrained CLIP (Hugging Face directory or file, or an OpenAI / open_clip state
    /// dict); `None` starts from random weights (tests, the demo detector).
    pub clip_checkpoint: Option<PathBuf>,
    pub vocab: PathBuf,
    /// Text labels file; `None` for the paper's.
    pub labels: Option<PathBuf>,
    /// Train with the first N labels of each type only (all when unset). With a text tower
    /// that does not know language yet (random weights), one label per type is what works.
    pub labels_per_type: Option<usize>,
    pub model: Sd2Config,
    pub loss: LossConfig,
    pub augment: AugmentConfig,
    pub crop: CropRecipe,
    /// AdamW (paper: 5e-7).
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    /// Images per forward pass (per device).
    pub micro_batch: usize,
    /// Forward passes per optimizer step: the effective batch is
    /// `micro_batch × accumulation × devices` (paper: 1,024).
    pub accumulation: usize,
    pub epochs: usize,
    /// Stop after this many optimizer steps (all epochs when unset).
    pub max_steps: Option<usize>,
    pub checkpoint_every: usize,
    pub keep_checkpoints: usize,
    pub seed: u64,
    pub workers: usize,
    /// Data-parallel devices: `flex` (CPU), `cuda:N`.
    pub devices: Vec<String>,
}

impl RunConfig {
    /// Images per optimizer step.
    pub fn effective_batch(&self) -> usize {
        self.micro_batch * self.accumulation * self.devices.len().max(1)
    }
}
