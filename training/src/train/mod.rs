//! `sd2-train fit`: the training run (§5.1): AdamW over LoRA, CLAM, the adapter, τ and b,
//! gradient accumulation to the effective batch, data-parallel devices, checkpoints every
//! N steps and `--resume` from the last one with the same optimizer state and data position.
//!
//! [`fit`] reads as its steps: the run folder, resume or start ([`resume`]), the data, then
//! the [`trainer`]'s epochs of steps, and the last save.

pub mod checkpoint;
pub mod config;
pub mod devices;
mod error;
pub mod progress;
mod resume;
pub mod step;
mod trainer;

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::report::Report;
pub use config::RunConfig;
pub use error::FitError;
pub use resume::build_model;
use trainer::{Schedule, Trainer, TrainingData};

/// What a run that trained reports.
#[derive(Debug)]
pub struct FitSummary {
    pub steps: usize,
    pub images: u64,
    pub checkpoint: PathBuf,
    pub skipped_rows: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
}

/// How a `fit` ended.
#[derive(Debug)]
pub enum FitOutcome {
    Trained(FitSummary),
    /// `--resume` of a run whose newest checkpoint is at the run's end (every epoch, or
    /// `--max-steps`): nothing to train.
    AlreadyFinished {
        checkpoint: PathBuf,
        step: usize,
    },
}

/// Trains; with `resume`, continues from the newest checkpoint in `out` that loads (an older
/// one when the newest is damaged), with `config`'s settings where they may differ from the
/// run's ([`RunConfig::continues`]). Without `resume`, `out` must hold no checkpoints.
/// What happens on the way is told to `report`.
pub fn fit(
    config: RunConfig,
    out: &Path,
    resume: bool,
    report: &mut dyn Report,
) -> Result<FitOutcome, FitError> {
    let saved = open_run_folder(out, resume)?;
    config.validate()?;
    let devices = config
        .devices
        .iter()
        .map(|d| devices::parse(d))
        .collect::<Result<Vec<Device>, _>>()?;
    for (name, device) in config.devices.iter().zip(&devices) {
        devices::check_precision(name, device, config.precision)?;
    }
    let main = devices.first().ok_or(FitError::NoDevice)?;
    let mut start = resume::resume_or_start(out, &saved, resume, &config, main, report)?;
    let data = TrainingData::open(&config, report)?;
    start.check_manifest(data.path(), data.print())?;
    let schedule = Schedule::new(&config, data.rows(), devices.len());
    if let Some(dir) = &start.from {
        let s = &start.state;
        if start.finished(schedule.total_steps) {
            let (checkpoint, step) = (dir.clone(), s.step);
            return Ok(FitOutcome::AlreadyFinished { checkpoint, step });
        }
        report.note(&format!(
            "resuming from {} (step {}, epoch {}, batch {})",
            dir.display(),
            s.step,
            s.epoch + 1,
            s.batch
        ));
    }
    let mut trainer = Trainer::new(out, devices, data, schedule, start, report)?;
    while trainer.running() {
        trainer.epoch()?;
    }
    Ok(FitOutcome::Trained(trainer.finish()?))
}

/// Makes the run folder `out` and returns its checkpoints, oldest first. A new run
/// (`!resume`) is refused where checkpoints are: it would replace them. Saves that a killed
/// process left half written are removed.
fn open_run_folder(out: &Path, resume: bool) -> Result<Vec<(usize, PathBuf)>, FitError> {
    std::fs::create_dir_all(out).map_err(|error| FitError::CreateOut {
        path: out.to_owned(),
        error,
    })?;
    let saved = checkpoint::list(out);
    if !resume && let Some((step, newest)) = saved.last() {
        return Err(FitError::RunExists {
            out: out.to_owned(),
            newest: newest.clone(),
            step: *step,
        });
    }
    checkpoint::remove_unfinished(out);
    Ok(saved)
}
