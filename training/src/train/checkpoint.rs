//! Checkpoints: `checkpoints/step-NNNNNNNN/` holds the model (`model.bpk`), the optimizer
//! (`optim.bpk`, AdamW moments keyed by the parameter ids the model file keeps) and
//! `state.json` (where the run is and how it was configured). A checkpoint is written into
//! a temporary folder and renamed into place, so a run killed while saving leaves the
//! previous checkpoint as the latest complete one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sd2_models::crop::CropRecipe;

use super::config::RunConfig;
use crate::clip::ClipConfig;
use crate::data::augment::AugmentConfig;
use crate::loss::LossConfig;
use crate::model::Sd2Config;
use crate::precision::Precision;

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimizer steps done.
    pub step: usize,
    /// The epoch of the next batch.
    pub epoch: usize,
    /// The next micro-batch of that epoch.
    pub batch: usize,
    /// Images trained on so far.
    pub images: u64,
    pub config: RunConfig,
    /// The manifest the run trains on, which a resumed run must see again (the data order
    /// is drawn over its rows). When a state has none, a resumed run takes the manifest it
    /// is given and records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestPrint>,
}

/// What identifies a manifest's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPrint {
    /// Usable rows, all splits.
    pub rows: usize,
    /// FNV-1a of the file's bytes.
    pub digest: u64,
}

impl RunState {
    /// The state of a model that was never trained: random weights of `clip`'s sizes, crops
    /// at its input size, nothing else set. What `sd2-bench` and the export tests export.
    pub fn untrained(clip: ClipConfig, vocab: PathBuf) -> Self {
        let crop = CropRecipe {
            input_size: clip.vision.image_size,
            ..CropRecipe::default()
        };
        RunState {
            step: 0,
            epoch: 0,
            batch: 0,
            images: 0,
            config: RunConfig {
                manifest: PathBuf::new(),
                image_root: None,
                clip_checkpoint: None,
                vocab,
                labels: None,
                labels_per_type: None,
                model: Sd2Config::new(clip),
                loss: LossConfig::default(),
                augment: AugmentConfig::none(),
                crop,
                learning_rate: 0.0,
                weight_decay: 0.0,
                warmup_steps: 0,
                micro_batch: 1,
                accumulation: 1,
                epochs: 1,
                max_steps: None,
                checkpoint_every: 1,
                keep_checkpoints: 1,
                seed: 0,
                workers: 1,
                devices: vec!["flex".into()],
                precision: Precision::F32,
            },
            manifest: None,
        }
    }
}

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// burn's recorder failed writing `what` (the model or the optimizer).
    #[error("saving {what}: {reason}")]
    Save { what: &'static str, reason: String },
    /// burn's recorder failed reading a file.
    #[error("{path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    checkpoints_dir(out).join(format!("step-{step:08}"))
}

/// Writes a checkpoint; `write_files` saves the model and optimizer into the folder given.
pub fn save(
    out: &Path,
    state: &RunState,
    write_files: impl FnOnce(&Path) -> Result<(), CheckpointError>,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    let dir = checkpoints_dir(out);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let final_dir = step_dir(out, state.step);
    let tmp = dir.join(format!(
        ".tmp-step-{:08}-{}",
        state.step,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_files(&tmp)?;
    // On disk before the folder is renamed into place, so that a power cut leaves no
    // complete-looking checkpoint with truncated weights.
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        // A handle that may write: Windows refuses to flush a read-only one.
        let path = entry.path();
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
            f.sync_all().map_err(io(&path))?;
        }
    }
    let state_file = tmp.join("state.json");
    let json = serde_json::to_string_pretty(state).map_err(|source| CheckpointError::State {
        path: state_file.clone(),
        source,
    })?;
    sd2_models::atomic_write::write_atomic(&state_file, json.as_bytes())
        .map_err(io(&state_file))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    if let Ok(f) = std::fs::File::open(&dir) {
        let _ = f.sync_all();
    }
    prune(out, keep);
    Ok(final_dir)
}

/// Removes what saves that a killed run left half done hold (`.tmp-step-N-PID`, a ViT-L/14
/// checkpoint's weights each), where the process that wrote them is gone. Only where that
/// can be known (Linux's /proc): elsewhere they stay.
pub fn remove_unfinished(out: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    for e in std::fs::read_dir(checkpoints_dir(out))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".tmp-step-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map(|(_, pid)| pid.to_owned())
        else {
            continue;
        };
        if !proc.join(&pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Renames checkpoint `dir`, which does not load, to `.damaged-step-N` beside it: out of
/// [`list`], [`latest`] and pruning, kept for a look.
pub fn set_aside(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let to = dir.with_file_name(format!(".damaged-{}", name.unwrap_or_default()));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::rename(dir, &to).map_err(io(dir))?;
    Ok(to)
}

/// Complete checkpoints, oldest first.
pub fn list(out: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(out))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path()
                .join("state.json")
                .exists()
                .then(|| (step, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// The newest complete checkpoint of the run in `out`.
pub fn latest(out: &Path) -> Option<PathBuf> {
    list(out).pop().map(|(_, p)| p)
}

fn prune(out: &Path, keep: usize) {
    let all = list(out);
    if all.len() > keep.max(1) {
        for (_, p) in &all[..all.len() - keep.max(1)] {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Reads a checkpoint's `state.json`.
pub fn read_state(dir: &Path) -> Result<RunState, CheckpointError> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|source| CheckpointError::State { path, source })
}

/// The model saved in checkpoint `dir`, built for `model` sizes on `device`. The file holds
/// every weight (the pretrained CLIP's too), so no CLIP checkpoint is read.
pub fn load_model(
    dir: &Path,
    model: &Sd2Config,
    device: &burn::prelude::Device,
) -> Result<crate::model::Sd2Model, CheckpointError> {
    use burn::module::Module;
    let path = dir.join("model.bpk");
    crate::model::Sd2Model::new(model, device)
        .try_load_file(&path)
        .map_err(|e| CheckpointError::Load {
            reason: format!("{e:?}"),
            path,
        })
}
