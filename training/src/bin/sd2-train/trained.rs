//! A trained checkpoint as `eval` and `export` read it: the model, how it was trained, and
//! its text labels and tokenizer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sd2_train::eval;
use sd2_train::labels::TextLabels;
use sd2_train::model::Sd2Model;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::{self, RunState};

pub struct Trained {
    /// The checkpoint folder.
    pub dir: PathBuf,
    pub model: Sd2Model,
    pub state: RunState,
    pub labels: TextLabels,
    pub tok: ClipTokenizer,
}

/// `path`: a checkpoint folder (`checkpoints/step-…`) or a run folder (its newest
/// checkpoint), loaded on the CPU.
pub fn open(path: &Path) -> Result<Trained> {
    let dir = if path.join("state.json").exists() {
        path.to_owned()
    } else {
        checkpoint::latest(path)
            .with_context(|| format!("{}: no checkpoint here", path.display()))?
    };
    let (model, state) = eval::load_trained(&dir, &burn::prelude::Device::flex())?;
    let labels = match &state.config.labels {
        Some(p) => TextLabels::from_file(p).map_err(anyhow::Error::msg)?,
        None => TextLabels::default_labels(),
    };
    let tok = ClipTokenizer::from_vocab_file(&state.config.vocab)?;
    Ok(Trained {
        dir,
        model,
        state,
        labels,
        tok,
    })
}
