//! `sd2-train fit`: the training run (§5.1): AdamW over LoRA, CLAM, the adapter, τ and b,
//! gradient accumulation to the effective batch, data-parallel devices, checkpoints every
//! N steps and `--resume` from the last one with the same optimizer state and data position.

pub mod checkpoint;
pub mod config;
pub mod devices;
pub mod progress;
pub mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use burn::module::ParamGroup;
use burn::module::{ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::clip::load::Checkpoint;
use crate::data::loader::{BatchStream, LoaderConfig, Sample, epoch_order};
use crate::data::manifest::{Manifest, Split};
use crate::data::rng::Rng;
use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::tokenizer::ClipTokenizer;
use checkpoint::{ManifestPrint, RunState};
pub use config::RunConfig;
use progress::{Progress, StepMetrics};
use step::{ForwardRng, forward_backward};

/// Touches every parameter once in a fixed order, so lazily initialised weights are drawn
/// from the seeded generator in the same order on every run.
struct Materialise;

impl ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let _ = p.val();
    }
}

/// Builds the model of `config` on `device`: seeded initial weights, the pretrained CLIP
/// when one is given, CLIP frozen.
pub fn build_model(config: &RunConfig, device: &Device) -> Result<Sd2Model> {
    device.seed(config.seed);
    let model = Sd2Model::new(&config.model, device);
    model.visit(&mut Materialise);
    let mut model = model;
    if let Some(path) = &config.clip_checkpoint {
        let ckpt = Checkpoint::read(path)?;
        if let Some(c) = &ckpt.config
            && c != &config.model.clip
        {
            bail!(
                "{}: the checkpoint is a CLIP of other sizes ({c:?}) than the model asked for ({:?})",
                path.display(),
                config.model.clip
            );
        }
        model.clip = model.clip.load_checkpoint(&ckpt)?;
    }
    Ok(model.freeze_clip())
}

fn optimizer(config: &RunConfig) -> ModuleOptimizer {
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

/// Learning rate of step `step` (0-based): linear warm-up, then constant.
fn learning_rate(config: &RunConfig, step: usize) -> f64 {
    if step < config.warmup_steps {
        config.learning_rate * (step + 1) as f64 / config.warmup_steps as f64
    } else {
        config.learning_rate
    }
}

/// What a finished run reports.
#[derive(Debug)]
pub struct FitSummary {
    pub steps: usize,
    pub images: u64,
    pub checkpoint: PathBuf,
    pub skipped_rows: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
}

/// A checkpoint loaded to continue from.
struct Resumed {
    dir: PathBuf,
    state: RunState,
    model: Sd2Model,
    opt: ModuleOptimizer,
}

/// Loads checkpoint `dir` to continue it as `config` on `main`. `Ok(Err(_))`: the checkpoint
/// is unreadable (an earlier one may do); `Err(_)`: `config` is not its run.
fn load_checkpoint(
    dir: &Path,
    config: &RunConfig,
    main: &Device,
) -> Result<Result<Resumed, String>> {
    let state = match checkpoint::read_state(dir) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    if !config.continues(&state.config) {
        bail!(
            "{}: the settings given are not the ones this run started with (only when it stops, \
             how it saves, decoding threads, which devices, and where the manifest, images and \
             vocabulary are may change; the run's are in its state.json)",
            dir.display()
        );
    }
    // The checkpoint holds the whole model: the pretrained CLIP file is not needed.
    main.seed(config.seed);
    let model = match checkpoint::load_model(dir, &config.model, main) {
        Ok(m) => m.freeze_clip(),
        Err(e) => return Ok(Err(format!("{e:#}"))),
    };
    let optim = dir.join("optim.bpk");
    let opt = match optimizer(config).load(&optim) {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("{}: {e:?}", optim.display()))),
    };
    Ok(Ok(Resumed {
        dir: dir.to_owned(),
        state: RunState {
            config: config.clone(),
            ..state
        },
        model,
        opt,
    }))
}

/// Trains; with `resume`, continues from the newest checkpoint in `out` that loads (an older
/// one when the newest is damaged), with `config`'s settings where they may differ from the
/// run's ([`RunConfig::continues`]). Without `resume`, `out` must hold no checkpoints.
pub fn fit(config: RunConfig, out: &Path, resume: bool) -> Result<FitSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let saved = checkpoint::list(out);
    if !resume && let Some((step, dir)) = saved.last() {
        bail!(
            "{} holds a run already (its newest checkpoint: {}, step {step}): pass --resume to \
             continue it, or give a new run another --out",
            out.display(),
            dir.display()
        );
    }
    checkpoint::remove_unfinished(out);
    config.validate().map_err(anyhow::Error::msg)?;
    let devices: Vec<Device> = config
        .devices
        .iter()
        .map(|d| devices::parse(d).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    if devices.is_empty() {
        bail!("no device to train on");
    }
    let main = devices[0].clone();
    let (mut resumed, mut damaged) = (None, Vec::new());
    for (_, dir) in saved.iter().rev() {
        match load_checkpoint(dir, &config, &main)? {
            Ok(r) => {
                resumed = Some(r);
                break;
            }
            Err(why) => {
                eprintln!(
                    "{}: cannot be resumed from ({why}); trying the one before",
                    dir.display()
                );
                damaged.push(dir);
            }
        }
    }
    if resumed.is_some() {
        // Set aside, so that pruning keeps the checkpoints this run writes and `latest`
        // does not pick them again.
        for dir in damaged {
            match checkpoint::set_aside(dir) {
                Ok(to) => eprintln!("{}: set aside as {}", dir.display(), to.display()),
                Err(e) => bail!("{e}"),
            }
        }
    }
    if resume && resumed.is_none() {
        if !saved.is_empty() {
            bail!(
                "none of the {} checkpoints in {} could be loaded",
                saved.len(),
                checkpoint::checkpoints_dir(out).display()
            );
        }
        eprintln!(
            "no checkpoint in {} to resume from: starting a new run",
            checkpoint::checkpoints_dir(out).display()
        );
    }
    let (mut state, mut model, mut opt, resume_from) = match resumed {
        Some(r) => {
            eprintln!(
                "resuming from {} (step {}, epoch {}, batch {})",
                r.dir.display(),
                r.state.step,
                r.state.epoch + 1,
                r.state.batch
            );
            (r.state, r.model, r.opt, Some(r.dir))
        }
        None => (
            RunState {
                step: 0,
                epoch: 0,
                batch: 0,
                images: 0,
                config: config.clone(),
                manifest: None,
            },
            build_model(&config, &main)?,
            optimizer(&config),
            None,
        ),
    };

    let manifest = Arc::new(Manifest::open(
        &config.manifest,
        config.image_root.as_deref(),
    )?);
    if manifest.skipped > 0 {
        eprintln!(
            "{}: {} lines skipped:",
            manifest.path.display(),
            manifest.skipped
        );
        for p in manifest.problems.iter().take(10) {
            eprintln!("  {p}");
        }
    }
    let rows = manifest.split(Split::Train);
    if rows.is_empty() {
        bail!("{}: no rows in the train split", manifest.path.display());
    }
    let print = ManifestPrint {
        rows: manifest.entries.len(),
        digest: manifest.digest,
    };
    match state.manifest {
        Some(was) if was != print => bail!(
            "{}: not the manifest this run started with ({} rows, digest {:016x}; this one: {} \
             rows, digest {:016x}); the data order is drawn over its rows, so a resumed run needs \
             the same file",
            manifest.path.display(),
            was.rows,
            was.digest,
            print.rows,
            print.digest
        ),
        _ => state.manifest = Some(print),
    }
    let tok = ClipTokenizer::from_vocab_file(&config.vocab)?;
    let labels = match &config.labels {
        Some(p) => TextLabels::from_file(p).map_err(anyhow::Error::msg)?,
        None => TextLabels::default_labels(),
    };
    let labels = match config.labels_per_type {
        Some(n) => labels.first(n),
        None => labels,
    };
    let shards = devices.len();
    let loader_batch = config.micro_batch * shards;
    let batches_per_epoch = rows.len().div_ceil(loader_batch);
    let steps_per_epoch = batches_per_epoch.div_ceil(config.accumulation);
    let total_steps = config
        .max_steps
        .unwrap_or(usize::MAX)
        .min(config.epochs * steps_per_epoch);
    let loader = LoaderConfig {
        batch_size: loader_batch,
        workers: config.workers,
        prefetch: 2 * config.workers.max(1),
        augment: config.augment,
        recipe: config.crop,
        seed: config.seed,
    };
    let side = config.crop.input_size;
    let mut progress = Progress::new(out, state.step, total_steps)?;
    let (mut first_loss, mut last_loss, mut skipped_rows) = (None, None, 0);
    let mut last_checkpoint = resume_from.clone();
    let mut images_since_save = 0usize;
    // With several devices, a copy of the model on each; remade after every optimizer step,
    // the only time the weights change.
    let replicate = |model: &Sd2Model| -> Vec<Sd2Model> {
        if shards > 1 {
            devices.iter().map(|d| model.clone().fork(d)).collect()
        } else {
            Vec::new()
        }
    };
    let mut replicas = replicate(&model);
    let rng_turns = std::sync::Mutex::new(());

    'epochs: while state.step < total_steps && state.epoch < config.epochs {
        let order = Arc::new(epoch_order(&rows, config.seed, state.epoch as u64));
        let stream = BatchStream::new(
            manifest.clone(),
            order,
            state.epoch as u64,
            state.batch,
            loader.clone(),
        );
        let mut acc = GradientsAccumulator::new();
        let (mut micro, mut images, mut skipped, mut sums, mut counts) =
            (0, 0usize, 0usize, [0f64; 5], [0usize; 5]);
        // What this pass over the epoch read, and the first row it could not.
        let (mut epoch_images, mut first_skip) = (0, None);
        for batch in stream {
            for s in &batch.skipped {
                progress.note(&format!("skipping {s}"));
            }
            if first_skip.is_none() {
                first_skip = batch.skipped.first().cloned();
            }
            skipped += batch.skipped.len();
            let mut rng = Rng::keyed(
                config.seed,
                &[state.epoch as u64, batch.index as u64, 0x1AB],
            );
            let label_set = labels.sample(|_, n| rng.below(n));
            if !batch.samples.is_empty() {
                // Dropout masks follow the seed, the batch's position and the shard, so a
                // resumed run draws the same ones.
                let (epoch, index) = (state.epoch as u64, batch.index as u64);
                let rng = |shard: usize| ForwardRng {
                    lock: &rng_turns,
                    seed: if shards == 1 {
                        Rng::keyed(config.seed, &[epoch, index, 0xD50])
                    } else {
                        Rng::keyed(config.seed, &[epoch, index, shard as u64, 0xD50])
                    }
                    .next_u64(),
                };
                let refs: Vec<&Sample> = batch.samples.iter().collect();
                let share = 1.0 / config.accumulation as f64;
                let outputs = if shards == 1 {
                    vec![forward_backward(
                        &model,
                        &refs,
                        &label_set,
                        &tok,
                        &config.loss,
                        side,
                        share,
                        rng(0),
                    )]
                } else {
                    let chunk = refs.len().div_ceil(shards);
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = refs
                            .chunks(chunk)
                            .zip(&replicas)
                            .enumerate()
                            .map(|(shard, (part, m))| {
                                let weight = share * part.len() as f64 / refs.len() as f64;
                                let (label_set, tok, loss, main) =
                                    (&label_set, &tok, &config.loss, &main);
                                let rng = rng(shard);
                                scope.spawn(move || {
                                    let mut o = forward_backward(
                                        m, part, label_set, tok, loss, side, weight, rng,
                                    );
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
                };
                for o in outputs {
                    let total = o.losses.total.into_scalar::<f32>();
                    if !total.is_finite() {
                        // Stepping on it would make every weight NaN, and the next
                        // checkpoints would replace the good ones.
                        bail!(
                            "step {}: the loss is {total} (epoch {}, micro-batch {}): training \
                             diverged; nothing of this step was saved{}. Try a lower --lr \
                             (this run's: {:e})",
                            state.step + 1,
                            state.epoch + 1,
                            batch.index + 1,
                            last_checkpoint
                                .as_ref()
                                .map(|c: &PathBuf| format!(
                                    ", and {} is the last checkpoint",
                                    c.display()
                                ))
                                .unwrap_or_default(),
                            config.learning_rate
                        );
                    }
                    acc.accumulate(&model, o.grads);
                    let parts = [
                        Some(total),
                        o.losses.classification,
                        o.losses.separation,
                        o.losses.face,
                        o.losses.environment,
                    ];
                    for (k, v) in parts.into_iter().enumerate() {
                        if let Some(v) = v {
                            sums[k] += v as f64;
                            counts[k] += 1;
                        }
                    }
                }
                images += refs.len();
                epoch_images += refs.len();
            }
            micro += 1;
            state.batch = batch.index + 1;
            let end_of_epoch = state.batch == batches_per_epoch;
            if end_of_epoch && epoch_images == 0 {
                bail!(
                    "{}: not one image of the train split could be read (the first: {}); is \
                     --image-root right?",
                    manifest.path.display(),
                    first_skip.as_deref().unwrap_or("none skipped")
                );
            }
            if micro < config.accumulation && !end_of_epoch {
                continue;
            }
            let lr = learning_rate(&config, state.step);
            let grads: GradientsParams = acc.grads();
            // A step whose images were all unreadable has no gradient; AdamW would still
            // move the weights (momentum, weight decay), so it is not taken.
            if images > 0 {
                model = opt.step(lr, model, grads);
                replicas = replicate(&model);
            }
            state.step += 1;
            state.images += images as u64;
            if end_of_epoch {
                state.epoch += 1;
                state.batch = 0;
            }
            let mean = |k: usize| (counts[k] > 0).then(|| sums[k] / counts[k] as f64);
            let loss = mean(0).unwrap_or(f64::NAN);
            first_loss.get_or_insert(loss);
            last_loss = Some(loss);
            skipped_rows += skipped;
            progress.step(StepMetrics {
                step: state.step,
                epoch: state.epoch.min(config.epochs - 1),
                loss,
                classification: mean(1),
                separation: mean(2),
                face: mean(3),
                environment: mean(4),
                tau: model.tau().into_scalar::<f32>() as f64,
                learning_rate: lr,
                images,
                skipped,
                ..StepMetrics::default()
            })?;
            images_since_save += images;
            (micro, images, skipped, sums, counts) = (0, 0, 0, [0.0; 5], [0; 5]);
            let due = state.step % config.checkpoint_every.max(1) == 0 || state.step == total_steps;
            // A checkpoint holds training: with no image read since the last one (a volume
            // gone, a wrong --image-root), saving would only move the data position past
            // rows never trained on, and prune the checkpoints before.
            if due && images_since_save > 0 {
                last_checkpoint = Some(save(&model, &opt, out, &state, config.keep_checkpoints)?);
                images_since_save = 0;
            }
            if state.step >= total_steps {
                break 'epochs;
            }
            if end_of_epoch {
                break;
            }
        }
    }
    let checkpoint = match last_checkpoint {
        Some(c) if checkpoint::read_state(&c).is_ok_and(|s| s.step == state.step) => c,
        // Nothing trained since it: the last checkpoint stands.
        Some(c) if images_since_save == 0 => c,
        _ => save(&model, &opt, out, &state, config.keep_checkpoints)?,
    };
    Ok(FitSummary {
        steps: state.step,
        images: state.images,
        checkpoint,
        skipped_rows,
        first_loss,
        last_loss,
    })
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

fn save(
    model: &Sd2Model,
    opt: &ModuleOptimizer,
    out: &Path,
    state: &RunState,
    keep: usize,
) -> Result<PathBuf> {
    // NaN weights would replace the good checkpoints as they are pruned.
    if !finite_weights(model) {
        bail!(
            "step {}: the weights are no longer finite: training diverged; nothing of this step \
             was saved. Try a lower --lr",
            state.step
        );
    }
    checkpoint::save(
        out,
        state,
        |dir| {
            model
                .clone()
                .save_file(dir.join("model.bpk"))
                .map_err(|e| format!("saving the model: {e:?}"))?;
            opt.save(dir.join("optim.bpk"))
                .map_err(|e| format!("saving the optimizer: {e:?}"))
        },
        keep,
    )
    .map_err(anyhow::Error::msg)
}
