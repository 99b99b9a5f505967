//! `sd2-train eval`: a trained model on a manifest split, as the paper evaluates (§5.1):
//! logits against the simple label of each type; a face is fake when REAL is not the
//! highest; its fake score (for AUC, EER, AP) is 1 − p(REAL). Frame-level, video-level
//! (mean fake score of a group) and per-dataset figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation;
use sd2_models::classifier::Verdict;
use sd2_models::taxonomy::DeepfakeType;
use serde::Serialize;

use crate::data::augment::AugmentConfig;
use crate::data::loader::{BatchStream, LoaderConfig, Sample};
use crate::data::manifest::{Manifest, Split};
use crate::labels::TextLabels;
use crate::metrics::{accuracy, auc, average_precision, eer};
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

#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub count: usize,
    pub auc: Option<f64>,
    pub accuracy: f64,
    pub eer: Option<f64>,
    pub average_precision: Option<f64>,
}

fn figures(scores: &[f64], fake: &[bool], predicted_fake: &[bool]) -> Figures {
    Figures {
        count: scores.len(),
        auc: auc(scores, fake),
        accuracy: accuracy(predicted_fake, fake),
        eer: eer(scores, fake),
        average_precision: average_precision(scores, fake),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub frame: Figures,
    pub video: Figures,
    pub per_dataset: BTreeMap<String, Figures>,
    /// Accuracy over the five types.
    pub type_accuracy: f64,
    /// Rows: true type; columns: predicted type.
    pub confusion: [[usize; DeepfakeType::COUNT]; DeepfakeType::COUNT],
    pub skipped_rows: usize,
}

/// Per-face outputs of the model on a batch: (probabilities, predicted type).
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

/// Evaluates `model` on the rows of `split`, with the simple label of each type from `labels`.
/// The rows it skips are counted in the report; [`evaluate_reporting`] also names each.
pub fn evaluate(
    model: &Sd2Model,
    state: &RunState,
    manifest: Arc<Manifest>,
    split: Split,
    texts: (&TextLabels, &ClipTokenizer),
    reading: Reading,
) -> Result<EvalReport, EvalError> {
    evaluate_reporting(model, state, manifest, split, texts, reading, &mut Quiet)
}

/// [`evaluate`], telling `report` of every row it skips.
pub fn evaluate_reporting(
    model: &Sd2Model,
    state: &RunState,
    manifest: Arc<Manifest>,
    split: Split,
    (labels, tok): (&TextLabels, &ClipTokenizer),
    Reading { batch, workers }: Reading,
    report: &mut dyn Report,
) -> Result<EvalReport, EvalError> {
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
    let (mut scores, mut fake, mut predicted, mut kinds, mut rows_seen) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut confusion = [[0usize; DeepfakeType::COUNT]; DeepfakeType::COUNT];
    let mut skipped = 0;
    for b in BatchStream::new(manifest.clone(), Arc::new(rows), 0, 0, loader) {
        skipped += b.skipped.len();
        for s in &b.skipped {
            report.note(&format!("skipping {s}"));
        }
        if b.samples.is_empty() {
            continue;
        }
        let refs: Vec<&Sample> = b.samples.iter().collect();
        for (s, p) in refs.iter().zip(classify(model, text.clone(), &refs, side)) {
            if p.iter().any(|x| !x.is_finite()) {
                return Err(EvalError::NotFinite {
                    manifest: manifest.path.clone(),
                    line: manifest.entries[s.row].line as u64,
                });
            }
            let best = Verdict { probabilities: p }.label().index();
            let score = 1.0 - p[0] as f64;
            scores.push(score);
            fake.push(s.kind.is_fake());
            // Fake when the fake score passes 0.5, as sd2deepfake's default threshold judges
            // (and as the video level below does); the type is the most likely one.
            predicted.push(score > 0.5);
            kinds.push(best == s.kind.index());
            confusion[s.kind.index()][best] += 1;
            rows_seen.push(s.row);
        }
    }
    let frame = figures(&scores, &fake, &predicted);
    // Video level: the mean fake score of each group's real and of its fake images (a group
    // that is an identity may hold both).
    let mut groups: BTreeMap<(u32, bool), (f64, usize, bool)> = BTreeMap::new();
    for (i, &row) in rows_seen.iter().enumerate() {
        let g = groups
            .entry((manifest.entries[row].group, fake[i]))
            .or_insert((0.0, 0, fake[i]));
        g.0 += scores[i];
        g.1 += 1;
    }
    let vs: Vec<f64> = groups.values().map(|g| g.0 / g.1 as f64).collect();
    let vf: Vec<bool> = groups.values().map(|g| g.2).collect();
    let vp: Vec<bool> = vs.iter().map(|&s| s > 0.5).collect();
    let video = figures(&vs, &vf, &vp);
    let mut per_dataset = BTreeMap::new();
    for (d, name) in manifest.datasets.iter().enumerate() {
        let idx: Vec<usize> = (0..rows_seen.len())
            .filter(|&i| manifest.entries[rows_seen[i]].dataset as usize == d)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let pick_b = |v: &[bool]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
        per_dataset.insert(
            name.clone(),
            figures(&pick(&scores), &pick_b(&fake), &pick_b(&predicted)),
        );
    }
    Ok(EvalReport {
        frame,
        video,
        per_dataset,
        type_accuracy: kinds.iter().filter(|&&k| k).count() as f64 / kinds.len().max(1) as f64,
        confusion,
        skipped_rows: skipped,
    })
}
