//! Resume or start: the newest checkpoint of the run folder that loads, or a new model.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;

use super::FitError;
use super::checkpoint::{self, ManifestPrint, RunState};
use super::config::RunConfig;
use crate::clip::load::Checkpoint;
use crate::model::Sd2Model;
use crate::report::Report;

/// Where a run starts from: a checkpoint's state, model and optimizer, or new ones.
pub struct Start {
    pub state: RunState,
    pub model: Sd2Model,
    pub opt: ModuleOptimizer,
    /// The checkpoint resumed, if one was.
    pub from: Option<PathBuf>,
}

/// Why a checkpoint was not resumed from.
enum NotResumed {
    /// Its files do not load; an older checkpoint may.
    Damaged(String),
    /// The settings given are not its run's.
    OtherRun,
}

/// The newest of the `saved` checkpoints that loads, as `config` on `main`; the ones after
/// it that do not load are set aside (`.damaged-step-N`), so that pruning keeps the
/// checkpoints this run writes and `checkpoint::latest` does not pick them again. Without
/// one: a new run, unless `resume` was asked for and checkpoints there are.
pub fn resume_or_start(
    out: &Path,
    saved: &[(usize, PathBuf)],
    resume: bool,
    config: &RunConfig,
    main: &Device,
    report: &mut dyn Report,
) -> Result<Start, FitError> {
    let mut damaged = Vec::new();
    for (_, dir) in saved.iter().rev() {
        match load(dir, config, main) {
            Ok(start) => {
                for dir in damaged {
                    let to = checkpoint::set_aside(dir)?;
                    report.note(&format!("{}: set aside as {}", dir.display(), to.display()));
                }
                return Ok(start);
            }
            Err(NotResumed::OtherRun) => return Err(FitError::NotThisRun(dir.clone())),
            Err(NotResumed::Damaged(why)) => {
                report.note(&format!(
                    "{}: cannot be resumed from ({why}); trying the one before",
                    dir.display()
                ));
                damaged.push(dir);
            }
        }
    }
    let checkpoints = checkpoint::checkpoints_dir(out);
    if resume && !saved.is_empty() {
        return Err(FitError::NoLoadableCheckpoint {
            count: saved.len(),
            dir: checkpoints,
        });
    }
    if resume {
        report.note(&format!(
            "no checkpoint in {} to resume from: starting a new run",
            checkpoints.display()
        ));
    }
    Ok(Start {
        state: RunState {
            step: 0,
            epoch: 0,
            batch: 0,
            images: 0,
            config: config.clone(),
            manifest: None,
        },
        model: build_model(config, main)?,
        opt: optimizer(config),
        from: None,
    })
}

/// Checkpoint `dir` loaded to continue as `config` on `main`.
fn load(dir: &Path, config: &RunConfig, main: &Device) -> Result<Start, NotResumed> {
    let damaged = |e: &dyn std::fmt::Display| NotResumed::Damaged(e.to_string());
    let state = checkpoint::read_state(dir).map_err(|e| damaged(&e))?;
    if !config.continues(&state.config) {
        return Err(NotResumed::OtherRun);
    }
    // The checkpoint holds the whole model: the pretrained CLIP file is not needed.
    main.seed(config.seed);
    let model = checkpoint::load_model(dir, &config.model, main).map_err(|e| damaged(&e))?;
    let optim = dir.join("optim.bpk");
    let opt = optimizer(config)
        .load(&optim)
        .map_err(|e| NotResumed::Damaged(format!("{}: {e:?}", optim.display())))?;
    Ok(Start {
        state: RunState {
            config: config.clone(),
            ..state
        },
        model: model.freeze_clip(),
        opt,
        from: Some(dir.to_owned()),
    })
}

impl Start {
    /// Records the manifest the run trains on, or, for a run that recorded one, checks
    /// that it is the same: the data order is drawn over its rows.
    pub fn check_manifest(&mut self, path: &Path, print: ManifestPrint) -> Result<(), FitError> {
        match self.state.manifest {
            Some(was) if was != print => Err(FitError::OtherManifest {
                path: path.to_owned(),
                was,
                now: print,
            }),
            _ => {
                self.state.manifest = Some(print);
                Ok(())
            }
        }
    }

    /// Whether the run has reached its end: every step or every epoch done.
    pub fn finished(&self, total_steps: usize) -> bool {
        self.state.step >= total_steps || self.state.epoch >= self.state.config.epochs
    }
}

/// Touches every parameter once in a fixed order, so lazily initialised weights are drawn
/// from the seeded generator in the same order on every run.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let _ = p.val();
    }
}

/// The model of `config` on `device`: seeded initial weights, the pretrained CLIP when one
/// is given, CLIP frozen.
pub fn build_model(config: &RunConfig, device: &Device) -> Result<Sd2Model, FitError> {
    device.seed(config.seed);
    let mut model = Sd2Model::new(&config.model, device);
    model.visit(&mut Materialise);
    if let Some(path) = &config.clip_checkpoint {
        let ckpt = Checkpoint::read(path)?;
        if let Some(c) = &ckpt.config
            && c != &config.model.clip
        {
            return Err(FitError::ClipSizes {
                path: path.clone(),
                found: Box::new(c.clone()),
                wanted: Box::new(config.model.clip.clone()),
            });
        }
        model.clip = model.clip.load_checkpoint(&ckpt)?;
    }
    Ok(model.freeze_clip())
}

/// AdamW (β 0.9, 0.999, ε 1e-8) with `config`'s weight decay, none on τ and b.
pub fn optimizer(config: &RunConfig) -> ModuleOptimizer {
    let adamw = |wd: f64| {
        AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .with_weight_decay(wd as f32)
    };
    adamw(config.weight_decay).init().with_group(
        ParamGroup::from_any_predicates(vec!["logit_scale", "logit_bias"]),
        adamw(0.0).build(),
        None,
    )
}
