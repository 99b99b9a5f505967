//! `sd2-train`: make a training set, train SD², evaluate it.
//!
//!     sd2-train make-demo-set --out data/demo
//!     sd2-train fit --manifest data/demo/manifest.jsonl --out runs/demo --preset tiny
//!     sd2-train fit --out runs/demo --resume
//!     sd2-train eval --checkpoint runs/demo/checkpoints/step-00000300 --manifest data/demo/manifest.jsonl

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sd2_models::crop::CropRecipe;
use sd2_models::paths;
use sd2_train::clip::ClipConfig;
use sd2_train::clip::load::Checkpoint;
use sd2_train::data::augment::AugmentConfig;
use sd2_train::data::manifest::{Manifest, Split};
use sd2_train::data::synthetic;
use sd2_train::eval;
use sd2_train::labels::TextLabels;
use sd2_train::lora::LoraConfig;
use sd2_train::loss::LossConfig;
use sd2_train::model::Sd2Config;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::{self, RunConfig};

#[derive(Parser)]
#[command(
    name = "sd2-train",
    version,
    about = "Train, evaluate and export SD² deepfake detectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a small labelled set of face crops from the sample faces (real, and
    /// manipulations of each type made by our code): images and a manifest.
    MakeDemoSet(DemoSet),
    /// Train SD² on a manifest.
    Fit(Box<Fit>),
    /// Evaluate a checkpoint on a manifest split: AUC, ACC, EER, AP, frame- and video-level.
    Eval(Eval),
    /// Turn DeepfakeBench dataset JSON files (FaceForensics++, Celeb-DF, DFDC, DF40, ...)
    /// into a manifest, typing each label by the shipped table.
    ImportDeepfakebench(Import),
    /// Images per second of one optimisation step, beside PyTorch doing the same step.
    BenchStep(BenchStep),
    /// Write a checkpoint as the ONNX model the `sd2deepfake` element runs.
    Export(Export),
}

#[derive(Args)]
struct Export {
    /// A checkpoint folder (checkpoints/step-…) or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    out: PathBuf,
    /// Store weights and compute in float16 (input and outputs float16 too).
    #[arg(long)]
    fp16: bool,
    /// Use ONNX Runtime's fused contrib operators (MultiHeadAttention with flash attention
    /// on CUDA, SkipLayerNormalization, QuickGelu, BiasGelu); the default graph uses
    /// standard operators only and runs on any ONNX runtime.
    #[arg(long)]
    fused: bool,
    /// Name recorded in the model (and in every verdict the element attaches).
    #[arg(long, default_value = "sd2")]
    name: String,
    /// Version recorded in the model (default: the checkpoint's step).
    #[arg(long)]
    version: Option<String>,
}

#[derive(Args)]
struct BenchStep {
    #[arg(long, default_value = "tiny")]
    preset: String,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 16)]
    label_tokens: usize,
    #[arg(long, default_value_t = 40)]
    description_tokens: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Python with PyTorch and transformers for the reference (default: $SD2_REFERENCE_PYTHON).
    #[arg(long)]
    reference_python: Option<String>,
    /// flex, or cuda:N (this build needs the cuda feature for that).
    #[arg(long, default_value = "flex")]
    device: String,
    /// PyTorch's device for the reference: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    reference_device: String,
}

#[derive(Args)]
struct Import {
    /// DeepfakeBench dataset JSON files.
    #[arg(long = "json", required = true)]
    json: Vec<PathBuf>,
    /// Folder the frame paths in the JSON files start from (kept relative when unset).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The manifest to write.
    #[arg(long)]
    out: PathBuf,
    /// Compression level to take where a file has several.
    #[arg(long, default_value = "c23")]
    compression: String,
    /// Type of a label or method the table does not know (or a different one): LABEL=TYPE.
    #[arg(long = "type", value_name = "LABEL=TYPE")]
    types: Vec<String>,
}

#[derive(Args)]
struct DemoSet {
    /// Output folder (images/ and manifest.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// Crops of each manipulation type.
    #[arg(long, default_value_t = 160)]
    per_type: usize,
    /// REAL crops per manipulation type's count (4 makes real and fake equally common).
    #[arg(long, default_value_t = 1)]
    real_factor: usize,
    /// Side of the crops in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct Fit {
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
}

#[derive(Args)]
struct Eval {
    /// A checkpoint folder (checkpoints/step-…) or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    manifest: PathBuf,
    #[arg(long)]
    image_root: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long)]
    workers: Option<usize>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run_config(f: &Fit) -> Result<RunConfig> {
    let manifest = f
        .manifest
        .clone()
        .context("--manifest is needed to start a run")?;
    let clip = match &f.clip {
        Some(p) => match Checkpoint::read(p)?.config {
            Some(c) => c,
            None => ClipConfig::preset(&f.preset)
                .with_context(|| format!("unknown preset {}", f.preset))?,
        },
        None => {
            ClipConfig::preset(&f.preset).with_context(|| format!("unknown preset {}", f.preset))?
        }
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
        workers: f.workers.unwrap_or_else(cores),
        devices: f.devices.clone(),
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
    let fit = Cli::command();
    let fit = fit.find_subcommand("fit").expect("the fit command");
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
        c.workers = f.workers.unwrap_or_else(cores);
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

fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Command::MakeDemoSet(d) => {
            let (photos, people) =
                synthetic::sample_photos(&paths::samples_dir(), &paths::model_dir().join("mtcnn"))
                    .map_err(anyhow::Error::msg)
                    .context(
                        "finding the faces in the sample photos (run scripts/setup.sh first)",
                    )?;
            let recipe = CropRecipe {
                input_size: d.size,
                ..CropRecipe::default()
            };
            let size = synthetic::SetSize {
                per_type: d.per_type,
                real_factor: d.real_factor,
            };
            let manifest = synthetic::write_set(&d.out, &photos, &people, &recipe, size, d.seed)?;
            println!(
                "wrote {} ({} crops of {} people)",
                manifest.display(),
                (4 + d.real_factor.max(1)) * d.per_type,
                people.len()
            );
        }
        Command::Fit(f) => {
            // The newest checkpoint whose state reads (fit falls back the same way).
            let run = f
                .resume
                .then(|| train::checkpoint::list(&f.out))
                .into_iter()
                .flatten()
                .rev()
                .find_map(|(_, dir)| train::checkpoint::read_state(&dir).ok());
            let config = match run {
                Some(state) => {
                    let given = matches.subcommand_matches("fit").expect("the fit command");
                    resumed_config(&f, given, state.config)?
                }
                None => run_config(&f)?,
            };
            let s = train::fit(config, &f.out, f.resume)?;
            println!(
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
            );
        }
        Command::ImportDeepfakebench(i) => {
            use sd2_train::data::deepfakebench::{ImportReport, TypeTable, import};
            let mut table = TypeTable::shipped();
            for t in &i.types {
                let (label, kind) = t
                    .split_once('=')
                    .with_context(|| format!("--type {t}: expected LABEL=TYPE"))?;
                table.set(label, kind.parse().map_err(anyhow::Error::msg)?);
            }
            let mut report = ImportReport::default();
            for j in &i.json {
                import(j, &table, &i.compression, &mut report).map_err(anyhow::Error::msg)?;
            }
            let mut text = String::new();
            for mut row in report.rows.iter().cloned() {
                if let Some(root) = &i.root {
                    row.image = root
                        .join(row.image.trim_start_matches("./"))
                        .display()
                        .to_string();
                }
                text.push_str(&serde_json::to_string(&row)?);
                text.push('\n');
            }
            sd2_models::atomic_write::write_atomic(&i.out, text.as_bytes())?;
            let mut per_type = [0usize; 5];
            for r in &report.rows {
                per_type[r.kind.index()] += 1;
            }
            println!(
                "wrote {} frames of {} videos to {} (REAL {}, FS {}, FR {}, EFS {}, FE {})",
                report.rows.len(),
                report.videos,
                i.out.display(),
                per_type[0],
                per_type[1],
                per_type[2],
                per_type[3],
                per_type[4]
            );
            for (label, n) in &report.unknown {
                eprintln!(
                    "skipped {n} frames of label `{label}`: its type is unknown (give it with --type {label}=FS|FR|EFS|FE|REAL)"
                );
            }
        }
        Command::Export(x) => {
            let dir = if x.checkpoint.join("state.json").exists() {
                x.checkpoint.clone()
            } else {
                train::checkpoint::latest(&x.checkpoint)
                    .with_context(|| format!("{}: no checkpoint here", x.checkpoint.display()))?
            };
            let device = burn::prelude::Device::flex();
            let (model, state) = eval::load_trained(&dir, &device)?;
            let labels = match &state.config.labels {
                Some(p) => TextLabels::from_file(p).map_err(anyhow::Error::msg)?,
                None => TextLabels::default_labels(),
            };
            let tok = ClipTokenizer::from_vocab_file(&state.config.vocab)?;
            let precision = if x.fp16 {
                sd2_models::onnx::Precision::F16
            } else {
                sd2_models::onnx::Precision::F32
            };
            let variant = sd2_train::export::Variant {
                precision,
                fused: x.fused,
            };
            let info = sd2_train::export::ExportInfo {
                model_name: x.name.clone(),
                model_version: x
                    .version
                    .clone()
                    .unwrap_or_else(|| format!("step-{}", state.step)),
            };
            sd2_train::export::export(&model, &state, &labels, &tok, variant, &info)
                .write(&x.out)
                .with_context(|| format!("writing {}", x.out.display()))?;
            println!(
                "wrote {} ({}, from {})",
                x.out.display(),
                if x.fp16 { "fp16" } else { "fp32" },
                dir.display()
            );
        }
        Command::BenchStep(b) => {
            let clip = ClipConfig::preset(&b.preset)
                .with_context(|| format!("unknown preset {}", b.preset))?;
            let config = Sd2Config::new(clip.clone());
            let shape = sd2_train::bench::BenchShape {
                batch: b.batch,
                label_tokens: b.label_tokens,
                description_tokens: b.description_tokens,
            };
            let device = sd2_train::train::devices::parse(&b.device).map_err(anyhow::Error::msg)?;
            println!(
                "training step, {} preset, batch {}, {} steps after {} warm-up",
                b.preset, b.batch, b.steps, b.warmup
            );
            let ours = sd2_train::bench::run(&config, shape, b.warmup, b.steps, &device);
            println!(
                "{:<28} {:>10.1} images/s",
                format!("sd2-train (burn, {})", b.device),
                ours
            );
            let python = b
                .reference_python
                .or_else(|| std::env::var("SD2_REFERENCE_PYTHON").ok());
            match python {
                None => println!(
                    "PyTorch reference not run: give --reference-python or set SD2_REFERENCE_PYTHON (scripts/reference-env.sh prints one)"
                ),
                Some(py) => {
                    let cfg = std::env::temp_dir()
                        .join(format!("sd2-bench-config-{}.json", std::process::id()));
                    std::fs::write(&cfg, serde_json::to_string(&clip)?)?;
                    let script = concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/benches/reference_train_step.py"
                    );
                    let out = std::process::Command::new(&py)
                        .arg(script)
                        .arg(&cfg)
                        .args(
                            [
                                b.batch,
                                b.label_tokens,
                                b.description_tokens,
                                b.warmup,
                                b.steps,
                            ]
                            .map(|v| v.to_string()),
                        )
                        .arg(&b.reference_device)
                        .output()?;
                    let _ = std::fs::remove_file(&cfg);
                    if !out.status.success() {
                        bail!(
                            "the PyTorch reference failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                    let reference = v["images_per_second"]
                        .as_f64()
                        .context("reference output")?;
                    println!(
                        "{:<28} {:>10.1} images/s",
                        format!("PyTorch ({}, {} threads)", b.reference_device, v["threads"]),
                        reference
                    );
                    println!(
                        "{:<28} {:>10.2}",
                        "ratio (ours / PyTorch)",
                        ours / reference
                    );
                }
            }
        }
        Command::Eval(e) => {
            let dir = if e.checkpoint.join("state.json").exists() {
                e.checkpoint.clone()
            } else {
                train::checkpoint::latest(&e.checkpoint)
                    .with_context(|| format!("{}: no checkpoint here", e.checkpoint.display()))?
            };
            let device = burn::prelude::Device::flex();
            let (model, state) = eval::load_trained(&dir, &device)?;
            let split: Split = e.split.parse().map_err(anyhow::Error::msg)?;
            let manifest = Arc::new(Manifest::open(&e.manifest, e.image_root.as_deref())?);
            let labels = match &state.config.labels {
                Some(p) => TextLabels::from_file(p).map_err(anyhow::Error::msg)?,
                None => TextLabels::default_labels(),
            };
            let tok = ClipTokenizer::from_vocab_file(&state.config.vocab)?;
            let reading = eval::Reading {
                batch: e.batch,
                workers: e.workers.unwrap_or_else(cores),
            };
            let r = eval::evaluate(&model, &state, manifest, split, (&labels, &tok), reading)?;
            let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.2}", 100.0 * v));
            println!(
                "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "", "count", "AUC", "ACC", "EER", "AP"
            );
            let line = |name: &str, f: &eval::Figures| {
                println!(
                    "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    name,
                    f.count,
                    pct(f.auc),
                    pct(Some(f.accuracy)),
                    pct(f.eer),
                    pct(f.average_precision)
                )
            };
            line("frames", &r.frame);
            line("videos", &r.video);
            for (d, f) in &r.per_dataset {
                line(d, f);
            }
            println!("type accuracy (5 classes): {:.2}%", 100.0 * r.type_accuracy);
            if let Some(p) = e.json {
                std::fs::write(&p, serde_json::to_string_pretty(&r)?)?;
            }
            if r.frame.count == 0 {
                bail!("no faces could be evaluated");
            }
        }
    }
    Ok(())
}
