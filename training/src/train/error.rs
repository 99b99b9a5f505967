//! Why `fit` stops, told apart: a refusal to start, a checkpoint that does not fit the run,
//! data that cannot be read, training that diverged.

use std::path::PathBuf;

use super::checkpoint::{CheckpointError, ManifestPrint};
use super::config::ConfigError;
use super::devices::DeviceError;
use crate::clip::ClipConfig;
use crate::clip::load::LoadError;
use crate::data::manifest::ManifestError;
use crate::tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(
        "{} holds a run already (its newest checkpoint: {}, step {step}): pass --resume to \
         continue it, or give a new run another --out",
        .out.display(),
        .newest.display()
    )]
    RunExists {
        out: PathBuf,
        newest: PathBuf,
        step: usize,
    },
    #[error("creating {}: {error}", .path.display())]
    CreateOut {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no device to train on")]
    NoDevice,
    #[error(
        "{}: the settings given are not the ones this run started with (only when it stops, \
         how it saves, decoding threads, which devices, and where the manifest, images and \
         vocabulary are may change; the run's are in its state.json)",
        .0.display()
    )]
    NotThisRun(PathBuf),
    #[error("none of the {count} checkpoints in {} could be loaded", .dir.display())]
    NoLoadableCheckpoint { count: usize, dir: PathBuf },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "{}: the checkpoint is a CLIP of other sizes ({found:?}) than the model asked for ({wanted:?})",
        .path.display()
    )]
    ClipSizes {
        path: PathBuf,
        found: Box<ClipConfig>,
        wanted: Box<ClipConfig>,
    },
    #[error(transparent)]
    Clip(#[from] LoadError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{}: no rows in the train split", .0.display())]
    NoTrainRows(PathBuf),
    #[error(
        "{}: not the manifest this run started with ({} rows, digest {:016x}; this one: {} \
         rows, digest {:016x}); the data order is drawn over its rows, so a resumed run needs \
         the same file",
        .path.display(),
        .was.rows,
        .was.digest,
        .now.rows,
        .now.digest
    )]
    OtherManifest {
        path: PathBuf,
        was: ManifestPrint,
        now: ManifestPrint,
    },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The text labels file does not read.
    #[error("{0}")]
    Labels(String),
    #[error(
        "step {step}: the loss is {loss} (epoch {epoch}, micro-batch {batch}): training \
         diverged; nothing of this step was saved{}. Try a lower --lr (this run's: {lr:e})",
        .last_checkpoint
            .as_ref()
            .map(|c| format!(", and {} is the last checkpoint", c.display()))
            .unwrap_or_default()
    )]
    Diverged {
        step: usize,
        loss: f32,
        epoch: usize,
        batch: usize,
        last_checkpoint: Option<PathBuf>,
        lr: f64,
    },
    #[error(
        "{}: not one image of the train split could be read (the first: {}); is \
         --image-root right?",
        .manifest.display(),
        .first.as_deref().unwrap_or("none skipped")
    )]
    NoImageRead {
        manifest: PathBuf,
        first: Option<String>,
    },
    #[error(
        "step {0}: the weights are no longer finite: training diverged; nothing of this step \
         was saved. Try a lower --lr"
    )]
    NonFiniteWeights(usize),
    #[error("{}: {error}", .path.display())]
    Metrics {
        path: PathBuf,
        error: std::io::Error,
    },
}
