//! Everything a training run depends on, saved with every checkpoint so that `--resume`
//! continues the same run.

use std::path::PathBuf;

use sd2_models::crop::{CropRecipe, RecipeError};
use serde::{Deserialize, Serialize};

use crate::data::augment::AugmentConfig;
use crate::loss::LossConfig;
use crate::model::Sd2Config;
use crate::precision::Precision;

/// A setting a run cannot train with, named by its flag.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("{flag} must be a finite number, at least 0 (got {value})")]
    NotFinite { flag: &'static str, value: f64 },
    #[error("--lora-dropout must be at least 0 and below 1 (got {0})")]
    Dropout(f64),
    #[error(
        "the CLIP text tower has {found} token embeddings, fewer than the {} of CLIP's tokenizer{}",
        crate::tokenizer::VOCAB_SIZE,
        .checkpoint.as_ref().map(|p| format!(" (checkpoint {})", p.display())).unwrap_or_default()
    )]
    Vocabulary {
        found: usize,
        checkpoint: Option<PathBuf>,
    },
    #[error(transparent)]
    Crop(#[from] RecipeError),
}

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
    /// The float type of the forward pass's matrix products ([`Precision`]); a run saved
    /// before there was a choice computed in f32.
    #[serde(default)]
    pub precision: Precision,
}

impl RunConfig {
    /// Whether a run of `self` continues `other` exactly: everything that decides what it
    /// computes agrees. What may differ: when it stops (`epochs`, `max_steps`), how it saves
    /// (`checkpoint_every`, `keep_checkpoints`), decoding threads, which devices (not how
    /// many: they divide each batch), and where the manifest, the images and the vocabulary
    /// are (a resumed run checks the manifest's contents instead; CLIP's vocabulary is one
    /// file).
    pub fn continues(&self, other: &RunConfig) -> bool {
        let computation = |c: &RunConfig| RunConfig {
            manifest: PathBuf::new(),
            image_root: None,
            vocab: PathBuf::new(),
            epochs: 0,
            max_steps: None,
            checkpoint_every: 0,
            keep_checkpoints: 0,
            workers: 0,
            devices: vec![String::new(); c.devices.len()],
            ..c.clone()
        };
        computation(self) == computation(other)
    }

    /// Refuses settings a run cannot train with, before anything is loaded.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (flag, v) in [
            ("--batch", self.micro_batch),
            ("--accumulation", self.accumulation),
            ("--epochs", self.epochs),
            ("--checkpoint-every", self.checkpoint_every),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        for (flag, value) in [
            ("--lr", self.learning_rate),
            ("--weight-decay", self.weight_decay),
            ("--alpha", self.loss.alpha),
            ("--lora-alpha", self.model.lora.alpha),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::NotFinite { flag, value });
            }
        }
        let dropout = self.model.lora.dropout;
        if !(0.0..1.0).contains(&dropout) {
            return Err(ConfigError::Dropout(dropout));
        }
        let found = self.model.clip.text.vocab_size;
        if found < crate::tokenizer::VOCAB_SIZE {
            return Err(ConfigError::Vocabulary {
                found,
                checkpoint: self.clip_checkpoint.clone(),
            });
        }
        Ok(self.crop.validate()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::clip::ClipConfig;
    use crate::train::checkpoint::RunState;

    #[test]
    fn zero_sizes_and_a_short_vocabulary_are_refused() {
        let base = RunState::untrained(ClipConfig::tiny(), "vocab".into()).config;
        assert_eq!(base.validate(), Ok(()));
        let mut c = base.clone();
        c.micro_batch = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "--batch must be at least 1"
        );
        let mut c = base.clone();
        c.accumulation = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "--accumulation must be at least 1"
        );
        let mut c = base.clone();
        c.model.clip.text.vocab_size = 1000;
        c.clip_checkpoint = Some("clip_tiny".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("1000 token embeddings") && e.contains("clip_tiny"),
            "{e}"
        );
        // serde_json writes NaN as null, which no checkpoint could be read back from.
        let mut c = base.clone();
        c.learning_rate = f64::NAN;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("--lr must be a finite number")
        );
        let mut c = base.clone();
        c.model.lora.dropout = 1.0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("--lora-dropout")
        );
    }
}
