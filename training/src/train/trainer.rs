//! The training loop: epochs of steps over the train split, each step some micro-batches
//! forward and backward (on every device), their gradients accumulated, then one
//! optimizer step, its metrics, and a checkpoint when one is due.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::{ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, ModuleOptimizer};
use burn::prelude::*;

use super::checkpoint::{self, CheckpointError, ManifestPrint, RunState};
use super::config::RunConfig;
use super::progress::{Progress, StepMetrics};
use super::resume::Start;
use super::step::{Forward, StepOutput, forward_backward};
use super::{FitError, FitSummary};
use crate::data::loader::{Batch, BatchStream, LoaderConfig, Sample, epoch_order};
use crate::data::manifest::{Manifest, Split};
use crate::data::rng::Rng;
use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::report::Report;
use crate::tokenizer::ClipTokenizer;

/// What a run trains on: the manifest's train rows, the text labels, the tokenizer.
pub struct TrainingData {
    manifest: Arc<Manifest>,
    rows: Vec<usize>,
    labels: TextLabels,
    tok: ClipTokenizer,
}

impl TrainingData {
    /// Opens what `config` names; the manifest's lines that do not read are reported.
    pub fn open(config: &RunConfig, report: &mut dyn Report) -> Result<Self, FitError> {
        let manifest = Manifest::open(&config.manifest, config.image_root.as_deref())?;
        if manifest.skipped > 0 {
            report.note(&format!(
                "{}: {} lines skipped:",
                manifest.path.display(),
                manifest.skipped
            ));
            for p in manifest.problems.iter().take(10) {
                report.note(&format!("  {p}"));
            }
        }
        let rows = manifest.split(Split::Train);
        if rows.is_empty() {
            return Err(FitError::NoTrainRows(manifest.path.clone()));
        }
        let tok = ClipTokenizer::from_vocab_file(&config.vocab)?;
        let labels = match &config.labels {
            Some(p) => TextLabels::from_file(p).map_err(|e| FitError::Labels(e.to_string()))?,
            None => TextLabels::default_labels(),
        };
        let labels = match config.labels_per_type {
            Some(n) => labels.first(n),
            None => labels,
        };
        Ok(TrainingData {
            manifest: Arc::new(manifest),
            rows,
            labels,
            tok,
        })
    }

    pub fn path(&self) -> &Path {
        &self.manifest.path
    }

    /// How many rows the train split has.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// What identifies the manifest's contents.
    pub fn print(&self) -> ManifestPrint {
        ManifestPrint {
            rows: self.manifest.entries.len(),
            digest: self.manifest.digest,
        }
    }
}

/// How a run's train rows divide into micro-batches and steps.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub batches_per_epoch: usize,
    /// Where the run ends: all epochs' steps, or `--max-steps`.
    pub total_steps: usize,
}

impl Schedule {
    /// `rows` train rows over `shards` devices.
    pub fn new(config: &RunConfig, rows: usize, shards: usize) -> Self {
        let batches_per_epoch = rows.div_ceil(config.micro_batch * shards);
        let steps_per_epoch = batches_per_epoch.div_ceil(config.accumulation);
        let total_steps = config
            .max_steps
            .unwrap_or(usize::MAX)
            .min(config.epochs * steps_per_epoch);
        Schedule {
            batches_per_epoch,
            total_steps,
        }
    }
}

/// What a step gathers from its micro-batches until the optimizer takes it.
#[derive(Default)]
struct StepSums {
    grads: GradientsAccumulator<Sd2Model>,
    micro_batches: usize,
    images: usize,
    skipped: usize,
    /// Sums and counts of the total loss and its four parts ([`StepOutput::losses`]).
    sums: [f64; 5],
    counts: [usize; 5],
}

impl StepSums {
    fn mean(&self, part: usize) -> Option<f64> {
        (self.counts[part] > 0).then(|| self.sums[part] / self.counts[part] as f64)
    }
}

/// What one pass over an epoch has read: images, and the first row it could not.
#[derive(Default)]
struct EpochPass {
    images: usize,
    first_skip: Option<String>,
}

/// A run in progress.
pub struct Trainer<'a> {
    config: RunConfig,
    out: &'a Path,
    devices: Vec<Device>,
    data: TrainingData,
    schedule: Schedule,
    loader: LoaderConfig,
    state: RunState,
    model: Sd2Model,
    opt: ModuleOptimizer,
    /// With several devices, a copy of the model on each; remade after every optimizer
    /// step, the only time the weights change.
    replicas: Vec<Sd2Model>,
    progress: Progress,
    report: &'a mut dyn Report,
    last_checkpoint: Option<PathBuf>,
    images_since_save: usize,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    skipped_rows: usize,
}

impl<'a> Trainer<'a> {
    pub fn new(
        out: &'a Path,
        devices: Vec<Device>,
        data: TrainingData,
        schedule: Schedule,
        start: Start,
        report: &'a mut dyn Report,
    ) -> Result<Self, FitError> {
        let config = start.state.config.clone();
        let metrics = |error| FitError::Metrics {
            path: out.join("metrics.jsonl"),
            error,
        };
        let progress =
            Progress::new(out, start.state.step, schedule.total_steps).map_err(metrics)?;
        let loader = LoaderConfig {
            batch_size: config.micro_batch * devices.len(),
            workers: config.workers,
            prefetch: 2 * config.workers.max(1),
            augment: config.augment,
            recipe: config.crop,
            seed: config.seed,
        };
        let mut trainer = Trainer {
            config,
            out,
            devices,
            data,
            schedule,
            loader,
            state: start.state,
            model: start.model,
            opt: start.opt,
            replicas: Vec::new(),
            progress,
            report,
            last_checkpoint: start.from,
            images_since_save: 0,
            first_loss: None,
            last_loss: None,
            skipped_rows: 0,
        };
        trainer.replicate();
        Ok(trainer)
    }

    /// Whether the run has steps left.
    pub fn running(&self) -> bool {
        self.state.step < self.schedule.total_steps && self.state.epoch < self.config.epochs
    }

    /// Trains on the rest of the current epoch, or until the run's last step.
    pub fn epoch(&mut self) -> Result<(), FitError> {
        let epoch = self.state.epoch as u64;
        let order = Arc::new(epoch_order(&self.data.rows, self.config.seed, epoch));
        let stream = BatchStream::new(
            self.data.manifest.clone(),
            order,
            epoch,
            self.state.batch,
            self.loader.clone(),
        );
        let (mut sums, mut pass) = (StepSums::default(), EpochPass::default());
        for batch in stream {
            self.micro_batch(&batch, &mut sums, &mut pass)?;
            self.state.batch = batch.index + 1;
            let end_of_epoch = self.state.batch == self.schedule.batches_per_epoch;
            if end_of_epoch && pass.images == 0 {
                return Err(FitError::NoImageRead {
                    manifest: self.data.path().to_owned(),
                    first: pass.first_skip,
                });
            }
            if sums.micro_batches < self.config.accumulation && !end_of_epoch {
                continue;
            }
            self.step(std::mem::take(&mut sums), end_of_epoch)?;
            if self.state.step >= self.schedule.total_steps || end_of_epoch {
                break;
            }
        }
        Ok(())
    }

    /// One micro-batch forward and backward, its gradients and losses added to `sums`.
    fn micro_batch(
        &mut self,
        batch: &Batch,
        sums: &mut StepSums,
        pass: &mut EpochPass,
    ) -> Result<(), FitError> {
        for s in &batch.skipped {
            self.report.note(&format!("skipping {s}"));
        }
        if pass.first_skip.is_none() {
            pass.first_skip = batch.skipped.first().cloned();
        }
        sums.skipped += batch.skipped.len();
        sums.micro_batches += 1;
        if batch.samples.is_empty() {
            return Ok(());
        }
        for o in self.forward_backward(batch) {
            let total = o.losses.total.into_scalar::<f32>();
            if !total.is_finite() {
                // Stepping on it would make every weight NaN, and the next checkpoints
                // would replace the good ones.
                return Err(FitError::Diverged {
                    step: self.state.step + 1,
                    loss: total,
                    epoch: self.state.epoch + 1,
                    batch: batch.index + 1,
                    last_checkpoint: self.last_checkpoint.clone(),
                    lr: self.config.learning_rate,
                });
            }
            sums.grads.accumulate(&self.model, o.grads);
            let parts = [
                Some(total),
                o.losses.classification,
                o.losses.separation,
                o.losses.face,
                o.losses.environment,
            ];
            for (k, v) in parts.into_iter().enumerate() {
                if let Some(v) = v {
                    sums.sums[k] += v as f64;
                    sums.counts[k] += 1;
                }
            }
        }
        sums.images += batch.samples.len();
        pass.images += batch.samples.len();
        Ok(())
    }

    /// Forward and backward over `batch`, split among the devices, each share's loss
    /// weighted by its size; the gradients on the main device.
    fn forward_backward(&self, batch: &Batch) -> Vec<StepOutput> {
        let (config, shards) = (&self.config, self.devices.len());
        let mut rng = Rng::keyed(
            config.seed,
            &[self.state.epoch as u64, batch.index as u64, 0x1AB],
        );
        let labels = self.data.labels.sample(|_, n| rng.below(n));
        // Dropout masks follow the seed, the batch's position and the shard, so a resumed
        // run draws the same ones.
        let (epoch, index) = (self.state.epoch as u64, batch.index as u64);
        let forward = |shard: usize| Forward {
            dropout_seed: if shards == 1 {
                Rng::keyed(config.seed, &[epoch, index, 0xD50])
            } else {
                Rng::keyed(config.seed, &[epoch, index, shard as u64, 0xD50])
            }
            .next_u64(),
            precision: config.precision,
        };
        let refs: Vec<&Sample> = batch.samples.iter().collect();
        let share = 1.0 / config.accumulation as f64;
        let (tok, loss, side) = (&self.data.tok, &config.loss, config.crop.input_size);
        if shards == 1 {
            let o = forward_backward(
                &self.model,
                &refs,
                &labels,
                tok,
                loss,
                side,
                share,
                forward(0),
            );
            return vec![o];
        }
        let chunk = refs.len().div_ceil(shards);
        let main = &self.devices[0];
        std::thread::scope(|scope| {
            let handles: Vec<_> = refs
                .chunks(chunk)
                .zip(&self.replicas)
                .enumerate()
                .map(|(shard, (part, m))| {
                    let weight = share * part.len() as f64 / refs.len() as f64;
                    let (labels, forward) = (&labels, forward(shard));
                    scope.spawn(move || {
                        let mut o =
                            forward_backward(m, part, labels, tok, loss, side, weight, forward);
                        o.grads = o.grads.to_device(main, m);
                        o
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a training thread panicked"))
                .collect()
        })
    }

    /// The optimizer step over what `sums` gathered, its metrics, and a checkpoint when
    /// one is due.
    fn step(&mut self, sums: StepSums, end_of_epoch: bool) -> Result<(), FitError> {
        let mut sums = sums;
        let lr = learning_rate(&self.config, self.state.step);
        let grads = sums.grads.grads();
        // A step whose images were all unreadable has no gradient; AdamW would still move
        // the weights (momentum, weight decay), so it is not taken.
        if sums.images > 0 {
            // The optimizer takes the model by value; the clone shares every tensor.
            self.model = self.opt.step(lr, self.model.clone(), grads);
            self.replicate();
        }
        self.state.step += 1;
        self.state.images += sums.images as u64;
        if end_of_epoch {
            self.state.epoch += 1;
            self.state.batch = 0;
        }
        let loss = sums.mean(0).unwrap_or(f64::NAN);
        self.first_loss.get_or_insert(loss);
        self.last_loss = Some(loss);
        self.skipped_rows += sums.skipped;
        self.record(&sums, loss, lr)?;
        self.images_since_save += sums.images;
        let due = self
            .state
            .step
            .is_multiple_of(self.config.checkpoint_every.max(1))
            || self.state.step == self.schedule.total_steps;
        // A checkpoint holds training: with no image read since the last one (a volume
        // gone, a wrong --image-root), saving would only move the data position past rows
        // never trained on, and prune the checkpoints before.
        if due && self.images_since_save > 0 {
            self.last_checkpoint = Some(self.save()?);
            self.images_since_save = 0;
        }
        Ok(())
    }

    /// The step's line in `metrics.jsonl`, and its progress line.
    fn record(&mut self, sums: &StepSums, loss: f64, lr: f64) -> Result<(), FitError> {
        let metrics = StepMetrics {
            step: self.state.step,
            epoch: self.state.epoch.min(self.config.epochs - 1),
            loss,
            classification: sums.mean(1),
            separation: sums.mean(2),
            face: sums.mean(3),
            environment: sums.mean(4),
            tau: self.model.tau().into_scalar::<f32>() as f64,
            learning_rate: lr,
            images: sums.images,
            skipped: sums.skipped,
            ..StepMetrics::default()
        };
        let line = self
            .progress
            .step(metrics)
            .map_err(|error| FitError::Metrics {
                path: self.progress.path().to_owned(),
                error,
            })?;
        let last = self.state.step == self.schedule.total_steps;
        self.report.progress(&line, last);
        Ok(())
    }

    fn replicate(&mut self) {
        self.replicas = if self.devices.len() > 1 {
            let model = &self.model;
            self.devices.iter().map(|d| model.clone().fork(d)).collect()
        } else {
            Vec::new()
        };
    }

    /// Saves a checkpoint of where the run is, its weights checked finite first: NaN
    /// weights would replace the good checkpoints as they are pruned.
    fn save(&self) -> Result<PathBuf, FitError> {
        if !finite_weights(&self.model) {
            return Err(FitError::NonFiniteWeights(self.state.step));
        }
        let files = |dir: &Path| {
            let model = self.model.clone();
            model
                .save_file(dir.join("model.bpk"))
                .map_err(not_saved("the model"))?;
            self.opt
                .save(dir.join("optim.bpk"))
                .map_err(not_saved("the optimizer"))
        };
        let keep = self.config.keep_checkpoints;
        Ok(checkpoint::save(self.out, &self.state, files, keep)?)
    }

    /// The run's summary, after a last checkpoint if what it trained since the last one
    /// is not saved.
    pub fn finish(self) -> Result<FitSummary, FitError> {
        let checkpoint = match &self.last_checkpoint {
            Some(c) if checkpoint::read_state(c).is_ok_and(|s| s.step == self.state.step) => {
                c.clone()
            }
            // Nothing trained since it: the last checkpoint stands.
            Some(c) if self.images_since_save == 0 => c.clone(),
            _ => self.save()?,
        };
        Ok(FitSummary {
            steps: self.state.step,
            images: self.state.images,
            checkpoint,
            skipped_rows: self.skipped_rows,
            first_loss: self.first_loss,
            last_loss: self.last_loss,
        })
    }
}

/// The error of burn's recorder failing to save `what`.
fn not_saved<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> CheckpointError {
    move |e| CheckpointError::Save {
        what,
        reason: format!("{e:?}"),
    }
}

/// The learning rate of step `step` (0-based): linear warm-up, then constant.
fn learning_rate(config: &RunConfig, step: usize) -> f64 {
    if step < config.warmup_steps {
        config.learning_rate * (step + 1) as f64 / config.warmup_steps as f64
    } else {
        config.learning_rate
    }
}

/// Whether every weight is finite (a NaN or an infinity makes its tensor's sum one too).
fn finite_weights(model: &Sd2Model) -> bool {
    struct Finite(bool);
    impl ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if self.0 {
                self.0 = p.val().sum().into_scalar::<f32>().is_finite();
            }
        }
    }
    let mut v = Finite(true);
    model.visit(&mut v);
    v.0
}
