//! `sd2-train fit`: a new run from the flags, or `--resume` of the run in `--out` with
//! the flags that may change.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use sd2_models::crop::CropRecipe;
use sd2_models::paths;
use sd2_train::clip::ClipConfig;
use sd2_train::clip::load::Checkpoint;
use sd2_train::data::augment::AugmentConfig;
use sd2_train::lora::LoraConfig;
use sd2_train::loss::LossConfig;
use sd2_train::model::Sd2Config;
use sd2_train::precision::Precision;
use sd2_train::report::Report;
use sd2_train::train::{self, FitOutcome, RunConfig};

use crate::report::Stderr;

#[derive(Args)]
pub struct Fit {
    /// Training manifest (JSON lines; see training/MANIFEST.md).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Folder the manifest's relative image paths start from (default: the manifest's folder).
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// Run folder: checkpoints/, metrics.jsonl.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the newest checkpoint in --out, with its settings: of the others, only
    /// --manifest, --image-root, --vocab (the same files moved), --epochs, --max-steps,
    /// --checkpoint-every, --keep-checkpoints, --workers and --devices (as many) may be given.
    /// A run at its end already says so and trains nothing.
    #[arg(long)]
    resume: bool,
    /// Pretrained CLIP: a Hugging Face folder (config.json + model.safetensors) or a
    /// safetensors / PyTorch file in the Hugging Face or OpenAI layout.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Architecture when --clip has no config.json: tiny, vit-b-16, vit-l-14.
    #[arg(long, default_value = "vit-l-14")]
    preset: String,
    /// CLIP BPE vocabulary.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Text labels per type (JSON; default: the paper's, Tables 11–15).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Sample from the first N labels of each type only (default: all of them). Use 1 when
    /// training from random weights, whose text tower does not know that the labels of a
    /// type mean the same.
    #[arg(long)]
    labels_per_type: Option<usize>,
    #[arg(long, default_value_t = 5e-7)]
    lr: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    /// Images per forward pass and device.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Forward passes per optimizer step (paper: batch 32 × 32 = 1,024).
    #[arg(long, default_value_t = 32)]
    accumulation: usize,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, default_value_t = 500)]
    checkpoint_every: usize,
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image decoding threads (default: the cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Devices, comma-separated: flex (CPU), cuda:0, cuda:1, ... Several train data-parallel.
    #[arg(long, default_value = "flex", value_delimiter = ',')]
    devices: Vec<String>,
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    #[arg(long, default_value_t = 0.1)]
    lora_dropout: f64,
    /// Train without CLAM and the adapter (Table 5, first row).
    #[arg(long)]
    no_clam: bool,
    /// α of Eq. 6.
    #[arg(long, default_value_t = 2.0)]
    alpha: f64,
    #[arg(long)]
    no_classification: bool,
    #[arg(long)]
    no_separation: bool,
    #[arg(long)]
    no_face_contrastive: bool,
    #[arg(long)]
    no_environment_contrastive: bool,
    #[arg(long)]
    no_augment: bool,
    /// Face crop side as a multiple of the box's longer side.
    #[arg(long, default_value_t = 1.3)]
    crop_scale: f32,
    /// The forward pass's matrix products in f32, or in bf16 with the weights, norms,
    /// activations and losses in f32 (mixed precision; on GPUs).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
}

/// `given`: the command line's matches of `fit`, which say which flags were given.
pub fn run(f: &Fit, given: &ArgMatches) -> Result<()> {
    // The newest checkpoint whose state reads (fit falls back the same way).
    let run = f
        .resume
        .then(|| train::checkpoint::list(&f.out))
        .into_iter()
        .flatten()
        .rev()
        .find_map(|(_, dir)| train::checkpoint::read_state(&dir).ok());
    let config = match run {
        Some(state) => resumed_config(f, given, state.config)?,
        None => run_config(f)?,
    };
    let mut report = Stderr::new();
    match train::fit(config, &f.out, f.resume, &mut report)? {
        FitOutcome::AlreadyFinished { checkpoint, step } => report.note(&format!(
            "{}: the run is finished (step {step}); nothing to train. To train on, resume \
             with more --epochs or --max-steps",
            checkpoint.display()
        )),
        FitOutcome::Trained(s) => println!(
            "trained {} steps on {} images; loss {:.4} -> {:.4}; checkpoint {}{}",
            s.steps,
            s.images,
            s.first_loss.unwrap_or(f64::NAN),
            s.last_loss.unwrap_or(f64::NAN),
            s.checkpoint.display(),
            if s.skipped_rows > 0 {
                format!("; {} rows skipped", s.skipped_rows)
            } else {
                String::new()
            }
        ),
    }
    Ok(())
}

/// The settings of a new run.
fn run_config(f: &Fit) -> Result<RunConfig> {
    let manifest = f
        .manifest
        .clone()
        .context("--manifest is needed to start a run")?;
    let preset =
        || ClipConfig::preset(&f.preset).with_context(|| format!("unknown preset {}", f.preset));
    let clip = match &f.clip {
        Some(p) => match Checkpoint::read(p)?.config {
            Some(c) => c,
            None => preset()?,
        },
        None => preset()?,
    };
    let mut model = Sd2Config::new(clip.clone());
    model.lora = LoraConfig {
        rank: f.lora_rank,
        alpha: f.lora_alpha,
        dropout: f.lora_dropout,
    };
    model.clam = !f.no_clam;
    Ok(RunConfig {
        manifest,
        image_root: f.image_root.clone(),
        clip_checkpoint: f.clip.clone(),
        vocab: f.vocab.clone().unwrap_or_else(paths::clip_vocab),
        labels: f.labels.clone(),
        labels_per_type: f.labels_per_type,
        model,
        loss: LossConfig {
            alpha: f.alpha,
            classification: !f.no_classification,
            separation: !f.no_separation,
            face_contrastive: !f.no_face_contrastive,
            environment_contrastive: !f.no_environment_contrastive,
        },
        augment: if f.no_augment {
            AugmentConfig::none()
        } else {
            AugmentConfig::default()
        },
        crop: CropRecipe {
            input_size: clip.vision.image_size,
            scale: f.crop_scale,
            ..CropRecipe::default()
        },
        learning_rate: f.lr,
        weight_decay: f.weight_decay,
        warmup_steps: f.warmup_steps,
        micro_batch: f.batch,
        accumulation: f.accumulation.max(1),
        epochs: f.epochs,
        max_steps: f.max_steps,
        checkpoint_every: f.checkpoint_every,
        keep_checkpoints: f.keep_checkpoints,
        seed: f.seed,
        workers: f.workers.unwrap_or_else(crate::cores),
        devices: f.devices.clone(),
        precision: f.precision,
    })
}

/// Flags of `fit` that a resumed run may change ([`RunConfig::continues`]), after the two
/// that say which run.
const RESUMABLE: [&str; 11] = [
    "out",
    "resume",
    "manifest",
    "image_root",
    "vocab",
    "epochs",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "workers",
    "devices",
];

/// `run`, the settings of the run to resume, with the flags given on the command line
/// (`given`) that may change; the others are refused by name rather than ignored.
fn resumed_config(f: &Fit, given: &ArgMatches, run: RunConfig) -> Result<RunConfig> {
    let mut c = run;
    let explicit = |id: &str| given.value_source(id) == Some(ValueSource::CommandLine);
    let flag = |id: &str| format!("--{}", id.replace('_', "-"));
    let fit = Fit::augment_args(clap::Command::new("fit"));
    let refused: Vec<String> = fit
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| explicit(id) && !RESUMABLE.contains(id))
        .map(flag)
        .collect();
    if !refused.is_empty() {
        let may: Vec<String> = RESUMABLE[2..].iter().map(|id| flag(id)).collect();
        bail!(
            "{} would change what the run in {} computes: --resume continues it with the settings \
             it started with (only {} may change). Leave them out, or start a new run with \
             another --out",
            refused.join(", "),
            f.out.display(),
            may.join(", ")
        );
    }
    if let Some(m) = f.manifest.clone().filter(|_| explicit("manifest")) {
        c.manifest = m;
    }
    if explicit("image_root") {
        c.image_root = f.image_root.clone();
    }
    if let Some(v) = f.vocab.clone().filter(|_| explicit("vocab")) {
        c.vocab = v;
    }
    if explicit("epochs") {
        c.epochs = f.epochs;
    }
    if explicit("max_steps") {
        c.max_steps = f.max_steps;
    }
    if explicit("checkpoint_every") {
        c.checkpoint_every = f.checkpoint_every;
    }
    if explicit("keep_checkpoints") {
        c.keep_checkpoints = f.keep_checkpoints;
    }
    if explicit("workers") {
        c.workers = f.workers.unwrap_or_else(crate::cores);
    }
    if explicit("devices") {
        if f.devices.len() != c.devices.len() {
            bail!(
                "--devices: the run in {} divides each batch among {} device(s); a resumed run \
                 needs as many (given: {})",
                f.out.display(),
                c.devices.len(),
                f.devices.len()
            );
        }
        c.devices = f.devices.clone();
    }
    Ok(c)
}
