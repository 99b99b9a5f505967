//! `sd2-train eval`: a trained model on a manifest split, as the paper evaluates (§5.1):
//! logits against the simple label of each type ([`score`]), then the figures under a
//! decision rule ([`EvalReport::judge`]): the paper's (a face is fake when REAL is not the
//! highest) or a threshold on the fake score, 1 − p(REAL), which AUC, EER and AP rank.
//! Frame-level, video-level (a group's faces through `VideoTally`) and per-dataset figures;
//! [`report`] draws them.

mod figures;
pub mod report;
mod scored;

pub use figures::{DatasetMeans, EvalReport, Figures, NO_DATASET};
pub use scored::{Scored, ScoredFace, ScoredVideo};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation;
use sd2_models::analyzer::Judge;
use sd2_models::classifier::Verdict;
use sd2_models::taxonomy::DeepfakeType;

use crate::data::augment::AugmentConfig;
use crate::data::loader::{BatchStream, LoaderConfig, Sample};
use crate::data::manifest::{Manifest, Split};
use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::report::{Quiet, Report};
use crate::tokenizer::ClipTokenizer;
use crate::train::checkpoint::{self, CheckpointError, RunState};
use crate::train::step::{pixel_tensor, token_tensor};

/// Why an evaluation gives no figures.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("--batch must be at least 1")]
    NoBatch,
    #[error("{}: no rows in the {split:?} split", .manifest.display())]
    NoRows { manifest: PathBuf, split: Split },
    #[error(
        "{} line {line}: the model's probabilities are not finite: its weights are not (a run \
         that diverged?)",
        .manifest.display()
    )]
    NotFinite { manifest: PathBuf, line: u64 },
}

/// A trained model for inference (no autodiff, dropout off) and how it was trained.
pub fn load_trained(dir: &Path, device: &Device) -> Result<(Sd2Model, RunState), CheckpointError> {
    let state = checkpoint::read_state(dir)?;
    let model = checkpoint::load_model(dir, &state.config.model, device)?;
    Ok((model.valid(), state))
}

/// The probabilities of each face of a batch, in [`DeepfakeType::ALL`] order.
pub fn classify(
    model: &Sd2Model,
    text: Tensor<2>,
    samples: &[&Sample],
    side: usize,
) -> Vec<[f32; DeepfakeType::COUNT]> {
    let device = model.logit_scale.val().device();
    let f = model.image_features(pixel_tensor(samples, side, &device));
    let probs = activation::softmax(model.logits(f, text), 1);
    let v = probs
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 probabilities");
    v.chunks(DeepfakeType::COUNT)
        .map(|c| c.try_into().expect("five types"))
        .collect()
}

/// How evaluation reads images: faces per batch and decoding threads.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub batch: usize,
    pub workers: usize,
}

/// Evaluates `model` on the rows of `split` under the paper's decision rule.
pub fn evaluate(
    model: &Sd2Model,
    state: &RunState,
    manifest: Arc<Manifest>,
    split: Split,
    texts: (&TextLabels, &ClipTokenizer),
    reading: Reading,
) -> Result<EvalReport, EvalError> {
    let scored = score(model, state, manifest, split, texts, reading, &mut Quiet)?;
    Ok(EvalReport::judge(&scored, &Judge::default()))
}

/// The model's probabilities for every face of `split`, with the simple label of each type
/// from `labels`; `report` hears of every row skipped.
pub fn score(
    model: &Sd2Model,
    state: &RunState,
    manifest: Arc<Manifest>,
    split: Split,
    (labels, tok): (&TextLabels, &ClipTokenizer),
    Reading { batch, workers }: Reading,
    report: &mut dyn Report,
) -> Result<Scored, EvalError> {
    if batch == 0 {
        return Err(EvalError::NoBatch);
    }
    let rows = manifest.split(split);
    if rows.is_empty() {
        return Err(EvalError::NoRows {
            manifest: manifest.path.clone(),
            split,
        });
    }
    let device = model.logit_scale.val().device();
    let text = model.text_features(token_tensor(tok, &labels.simple(), &device));
    let loader = LoaderConfig {
        batch_size: batch,
        workers,
        prefetch: 2 * workers.max(1),
        augment: AugmentConfig::none(),
        recipe: state.config.crop,
        seed: 0,
    };
    let side = state.config.crop.input_size;
    let mut scored = Scored {
        datasets: manifest.datasets.clone(),
        groups: manifest.groups.clone(),
        ..Scored::default()
    };
    for b in BatchStream::new(manifest.clone(), Arc::new(rows), 0, 0, loader) {
        scored.skipped_rows += b.skipped.len();
        for s in &b.skipped {
            report.note(&format!("skipping {s}"));
        }
        if b.samples.is_empty() {
            continue;
        }
        let refs: Vec<&Sample> = b.samples.iter().collect();
        for (s, p) in refs.iter().zip(classify(model, text.clone(), &refs, side)) {
            let entry = &manifest.entries[s.row];
            if p.iter().any(|x| !x.is_finite()) {
                return Err(EvalError::NotFinite {
                    manifest: manifest.path.clone(),
                    line: entry.line as u64,
                });
            }
            scored.faces.push(ScoredFace {
                line: entry.line,
                truth: s.kind,
                verdict: Verdict { probabilities: p },
                dataset: entry.dataset,
                group: entry.group,
            });
        }
    }
    Ok(scored)
}
