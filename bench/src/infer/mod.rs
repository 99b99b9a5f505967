//! `sd2-bench infer`: the SD² inference path beside its references, in one run.
//!
//!     sd2-bench infer                                  # this CPU, tiny preset
//!     sd2-bench infer --device cuda --preset vit-l-14  # a machine with an NVIDIA GPU
//!
//! 1. Builds the preset with random weights and exports it here: the standard graph (fp32,
//!    and fp16 on CUDA), the fused contrib-operator graph and the `sd2` graph of SD²'s own
//!    operators (fp32 on the CPU, fp16 on CUDA), and on CUDA the `sd2` graph in FP8,
//!    calibrated on crops of the sample faces.
//! 2. Times the encoder (crops per second) at each batch size through our ONNX Runtime path
//!    (`sd2_models::classifier::DeepfakeModel`, the model the Analyzer serves); on CUDA also
//!    the fused and `sd2` graphs with CUDA graphs captured per batch bucket
//!    (`cuda-graph=true`). An FP8 graph the GPU cannot run is left out, saying why.
//! 3. Times the references in the same run (`bench/references/reference_infer.py`, carried
//!    in the binary): ONNX Runtime's Python API on the same files, PyTorch eager with SDPA,
//!    and `torch.compile` on CUDA, when the Python given has them. A reference that cannot
//!    run is reported and left out; the rest of the run goes on.
//! 4. Times the full face path on synthetic 1080p frames holding the sample faces, as
//!    `sd2facedetect ! sd2deepfake` runs it: MTCNN, then the Analyzer (tracks, crops, the
//!    shared model, verdicts); crops per second and how many 25 fps streams it sustains
//!    analysing one frame a second. With `--streams 4,16`, also that many streams at once,
//!    each a thread, an MTCNN and an Analyzer of its own, the model shared.
//! 5. Compares each variant's logits with the standard fp32 graph's on the same inputs
//!    (on CUDA: how far fp16 moves them).
//!
//! The drift and the face path come first, then the timings one batch size at a time, in
//! the order given (`--batches 1,64,...`), each batch size's medians printed as it ends.
//! No batch size starts after `--deadline-s`. Prints one table with ratios at the end;
//! `--json FILE` is rewritten after every batch size, so a run that is killed still leaves
//! what it measured.
//!
//! With `--kernel-table`, it exports and prints one encoder layer's kernel table for each
//! variant instead ([`kernel_table`]; on CUDA under `CUDA_LAUNCH_BLOCKING=1`).

mod face_path;
mod kernel_table;
mod reference;
mod report;
mod timing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::onnx::{Model, Precision};
use sd2_models::paths;
use sd2_models::runtime::{Device as OrtDevice, RuntimeError, SessionConfig};
use sd2_train::clip::ClipConfig;
use sd2_train::export::calibrate::calibrate;
use sd2_train::export::{ExportInfo, Kernels, Variant, export, export_fp8};
use sd2_train::labels::TextLabels;
use sd2_train::model::Sd2Model;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::RunState;

use face_path::{FacePathSetup, face_path};
use reference::Reference;
use report::Report;
pub use timing::median;
use timing::{logit_drift, time_ours};

#[derive(clap::Args)]
pub struct InferArgs {
    /// cpu or cuda (needs ORT_DYLIB_PATH at ONNX Runtime's CUDA build).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// tiny, vit-b-16 or vit-l-14 (default: tiny on the CPU, vit-l-14 on CUDA).
    #[arg(long)]
    preset: Option<String>,
    /// Batch sizes, timed in this order (the table lists them in ascending order).
    /// A later `--batches` replaces an earlier one.
    #[arg(long, default_value = "1,8,32,64,128", value_delimiter = ',', action = clap::ArgAction::Set, num_args = 1)]
    batches: Vec<usize>,
    /// Iterations per timing.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Timings per path and batch size, taken in turn; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Frames of the face path (per stream).
    #[arg(long, default_value_t = 20)]
    frames: usize,
    /// Also time the face path with this many streams at once, each a thread, an MTCNN and
    /// an Analyzer of its own (as that many pipelines), the model shared (`--streams 4,16`).
    #[arg(long, value_delimiter = ',')]
    streams: Vec<usize>,
    /// Most faces in one run of the shared model on the face path (`sd2deepfake`'s
    /// `batch-size`).
    #[arg(long, default_value_t = 32)]
    face_batch: usize,
    /// Seconds from the start after which no further batch size is begun.
    #[arg(long)]
    deadline_s: Option<f64>,
    /// Python with onnxruntime (and PyTorch + transformers) for the references (default:
    /// $SD2_REFERENCE_PYTHON).
    #[arg(long)]
    reference_python: Option<String>,
    /// Where the exported models go (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Export the models (to --out) and stop.
    #[arg(long)]
    export_only: bool,
    /// Print one encoder layer's kernel table for each variant, at the first of --batches,
    /// and stop (on CUDA run it with CUDA_LAUNCH_BLOCKING=1, so a node's time is its
    /// kernels').
    #[arg(long)]
    kernel_table: bool,
}

/// What the run measures on: the preset and the device.
struct Target {
    preset: String,
    clip: ClipConfig,
    cuda: bool,
    device: OrtDevice,
}

impl Target {
    fn from_args(args: &InferArgs) -> Result<Self> {
        let cuda = match args.device.as_str() {
            "cpu" => false,
            "cuda" => true,
            other => bail!("unknown device {other} (cpu or cuda)"),
        };
        let preset = args
            .preset
            .clone()
            .unwrap_or_else(|| if cuda { "vit-l-14" } else { "tiny" }.into());
        let clip =
            ClipConfig::preset(&preset).with_context(|| format!("unknown preset {preset}"))?;
        let device = if cuda {
            OrtDevice::Cuda
        } else {
            OrtDevice::Cpu
        };
        Ok(Target {
            preset,
            clip,
            cuda,
            device,
        })
    }
}

/// One of our rows: a variant's name, its file, and how it is loaded.
struct Ours {
    name: String,
    path: PathBuf,
    config: SessionConfig,
}

/// An exported variant: its row name, its file, whether it needs SD²'s operators (which
/// ONNX Runtime's Python API does not have), and the nodes of one encoder layer.
pub struct Exported {
    pub name: String,
    pub path: PathBuf,
    pub sd2: bool,
    pub layer: std::collections::HashMap<String, String>,
}

/// Builds the preset with random weights and writes each variant: the standard graph in
/// fp32 always; on CUDA fp16, the fused and the `sd2` graph in fp16 and the `sd2` graph in
/// FP8 (calibrated on crops of the sample faces); on the CPU the fused and `sd2` graphs in
/// fp32.
fn export_variants(target: &Target, dir: &Path) -> Result<Vec<Exported>> {
    let burn_device = Device::flex();
    burn_device.seed(0);
    let state = RunState::untrained(target.clip.clone(), paths::clip_vocab());
    let model = Sd2Model::new(&state.config.model, &burn_device).valid();
    let tok = ClipTokenizer::from_vocab_file(&state.config.vocab)?;
    let labels = TextLabels::default_labels();
    let info = ExportInfo {
        model_name: format!("bench-{}", target.preset),
        model_version: "random".into(),
    };
    let (f32, f16) = (Precision::F32, Precision::F16);
    let variants: &[(Precision, bool, Kernels)] = if target.cuda {
        &[
            (f32, false, Kernels::Ort),
            (f16, false, Kernels::Ort),
            (f16, true, Kernels::Ort),
            (f16, true, Kernels::Sd2),
        ]
    } else {
        &[
            (f32, false, Kernels::Ort),
            (f32, true, Kernels::Ort),
            (f32, true, Kernels::Sd2),
        ]
    };
    let mut files = Vec::new();
    for &(precision, fused, kernels) in variants {
        let precision_name = match precision {
            Precision::F32 => "fp32",
            Precision::F16 => "fp16",
        };
        let graph = match (kernels, fused) {
            (Kernels::Sd2, _) => "sd2",
            (Kernels::Ort, true) => "fused",
            (Kernels::Ort, false) => "standard",
        };
        let variant = Variant {
            precision,
            fused,
            kernels,
        };
        let m = export(&model, &state, &labels, &tok, variant, &info);
        files.push(write_variant(
            target,
            dir,
            &format!("{graph} {precision_name}"),
            m,
        )?);
    }
    if target.cuda {
        let recipe = state.config.crop;
        let c = calibrate(
            &model,
            &state,
            &labels,
            &tok,
            &sd2_models::samples::t1_crops(&recipe, 12)?,
        )?;
        let m = export_fp8(&model, &state, &labels, &tok, &c, &info);
        files.push(write_variant(target, dir, "sd2 fp8", m)?);
    }
    Ok(files)
}

/// Writes `m` as the variant `name`, keeping the nodes of one encoder layer.
fn write_variant(target: &Target, dir: &Path, name: &str, m: Model) -> Result<Exported> {
    let path = dir.join(format!(
        "sd2-{}-{}.onnx",
        target.preset,
        name.replace(' ', "-")
    ));
    let proto = m.into_proto();
    let layer = proto
        .graph
        .as_ref()
        .map(kernel_table::layer_nodes)
        .unwrap_or_default();
    let sd2 = name.starts_with("sd2");
    sd2_models::atomic_write::write_atomic(&path, &prost::Message::encode_to_vec(&proto))?;
    Ok(Exported {
        name: name.into(),
        path,
        sd2,
        layer,
    })
}

/// Our rows: every exported file as the Analyzer loads it, and on CUDA the fused and `sd2`
/// graphs once more with CUDA graphs over fixed batch buckets (the last row is FP8's when
/// the GPU runs it).
fn our_paths(files: &[Exported], cuda: bool) -> Vec<Ours> {
    let mut ours: Vec<Ours> = files
        .iter()
        .map(|f| Ours {
            name: f.name.clone(),
            path: f.path.clone(),
            config: SessionConfig::default(),
        })
        .collect();
    if cuda {
        for f in files.iter().filter(|f| !f.name.starts_with("standard")) {
            ours.push(Ours {
                name: format!("{} + CUDA graphs", f.name),
                path: f.path.clone(),
                config: SessionConfig {
                    cuda_graph: true,
                    ..SessionConfig::default()
                },
            });
        }
    }
    ours
}

/// Loads each of our rows; a variant the device cannot run (FP8 below compute capability
/// 8.9) is left out, with why in `notes`.
fn load_ours(
    ours: Vec<Ours>,
    device: OrtDevice,
    notes: &mut Vec<String>,
) -> Result<(Vec<Ours>, Vec<DeepfakeModel>)> {
    let (mut kept, mut models) = (Vec::new(), Vec::new());
    for o in ours {
        match DeepfakeModel::load(&o.path, device, o.config) {
            Ok(m) => {
                kept.push(o);
                models.push(m);
            }
            Err(e @ RuntimeError::Unmet { .. }) => {
                notes.push(format!("ours, {} not run: {e}", o.name));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((kept, models))
}

/// Prints one encoder layer's kernel table for each variant the device runs.
fn kernel_tables(args: &InferArgs, target: &Target, files: &[Exported]) -> Result<()> {
    let batch = args.batches.first().copied().unwrap_or(64);
    for f in files {
        if target.cuda && f.sd2 {
            let runnable = match sd2_models::kernels::cuda::available() {
                Err(missing) => Err(missing.to_string()),
                Ok(g) if f.name.contains("fp8") && !g.has_fp8() => Err(format!(
                    "FP8 needs compute capability 8.9, this GPU's is {}.{}",
                    g.major, g.minor
                )),
                Ok(_) => Ok(()),
            };
            if let Err(why) = runnable {
                println!("kernels of {}: not run: {why}", f.name);
                continue;
            }
        }
        match kernel_table::profile(&f.name, &f.path, &f.layer, target.cuda, batch, args.rounds) {
            Ok(t) => t.print(),
            Err(e) => println!("kernels of {}: not run: {e:#}", f.name),
        }
    }
    Ok(())
}

/// What the run has found so far about its own paths: CUDA graphs or pinned memory not
/// used (graphs can also be turned off by a failed run), and paths that failed.
fn status_notes(
    ours: &[Ours],
    models: &[DeepfakeModel],
    paths: &[(String, Option<String>)],
    failed: &[Option<String>],
) -> Vec<String> {
    let mut notes = Vec::new();
    for (o, m) in ours.iter().zip(models) {
        let name = &o.name;
        if o.config.cuda_graph && !m.cuda_graph() {
            notes.push(format!(
                "ours, {name}: CUDA graphs not used: {}",
                m.cuda_graph_off().unwrap_or("unknown")
            ));
        }
        let (staging, tried) = m.staging();
        if !tried.is_empty() {
            let how = staging.map_or("on the CPU".to_string(), |s| format!("staged {s:?}"));
            notes.push(format!("ours, {name}: runs {how}; {}", tried.join("; ")));
        }
        if let Some(why) = m.pageable_reason() {
            notes.push(format!(
                "ours, {name}: host tensors pageable, not pinned: {why}"
            ));
        }
    }
    for ((name, _), f) in paths.iter().zip(failed) {
        if let Some(e) = f {
            notes.push(format!("{name} not run: {e}"));
        }
    }
    notes
}

/// The face path with our best variant: one stream with MTCNN's default sessions, one with
/// them held the other way, and `--streams` streams at once.
fn time_face_paths(
    args: &InferArgs,
    target: &Target,
    best: &Ours,
    report: &mut Report,
) -> Result<()> {
    eprintln!("timing the face path on 1080p frames ({})", best.name);
    let setup = |shape_sessions| FacePathSetup {
        model: &best.path,
        device: target.device,
        cuda_graph: best.config.cuda_graph,
        batch_size: args.face_batch,
        shape_sessions,
    };
    let face = face_path(setup(None), args.frames, 1)?;
    eprintln!("face path: {face}");
    let other = face_path(setup(Some(!face.per_shape)), args.frames, 1)?;
    eprintln!("face path: {other}");
    report.face = Some(face);
    report.face_other = Some(other);
    for &n in args.streams.iter().filter(|&&n| n > 1) {
        match face_path(setup(None), args.frames, n) {
            Ok(f) => {
                eprintln!("face path, {f}");
                report.face_streams.push(f);
            }
            Err(e) => report.notes.push(format!(
                "face path with {n} streams at once not timed: {e:#}"
            )),
        }
    }
    Ok(())
}

/// The reference server, when a Python is given and starts; why not in the notes.
fn start_reference(
    args: &InferArgs,
    target: &Target,
    dir: &Path,
    report: &mut Report,
) -> Result<Option<Reference>> {
    let python = args
        .reference_python
        .clone()
        .or_else(|| std::env::var("SD2_REFERENCE_PYTHON").ok());
    let Some(py) = python else {
        report
            .notes
            .push("references not run: give --reference-python or set SD2_REFERENCE_PYTHON".into());
        return Ok(None);
    };
    let cfg = dir.join("clip-config.json");
    std::fs::write(&cfg, serde_json::to_string(&target.clip)?)?;
    match Reference::start(&py, dir, &cfg, &args.device) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            report.notes.push(format!("references not run: {e:#}"));
            Ok(None)
        }
    }
}

/// Every timed path: (row name, the reference's command or `None` for ours). ONNX
/// Runtime's Python API runs every file but the `sd2` graphs, whose operators are ours.
fn timed_paths(
    ours: &[Ours],
    files: &[Exported],
    references: bool,
    cuda: bool,
) -> Vec<(String, Option<String>)> {
    let mut paths: Vec<(String, Option<String>)> = ours
        .iter()
        .map(|o| (format!("ours, {}", o.name), None))
        .collect();
    if references {
        for f in files.iter().filter(|f| !f.sd2) {
            paths.push((
                format!("ORT Python, {}", f.name),
                Some(format!("ort {}", f.path.display())),
            ));
        }
        paths.push(("PyTorch eager + SDPA".into(), Some("torch eager".into())));
        if cuda {
            paths.push((
                "PyTorch compile + SDPA".into(),
                Some("torch compile".into()),
            ));
        }
    }
    paths
}

/// The paths being timed and what each has gathered.
struct Timings<'a> {
    ours: &'a [Ours],
    models: Vec<DeepfakeModel>,
    reference: Option<Reference>,
    paths: Vec<(String, Option<String>)>,
    samples: Vec<BTreeMap<usize, Vec<f64>>>,
    failed: Vec<Option<String>>,
}

impl Timings<'_> {
    /// Times every path in turn, `rounds` times at batch size `b`: the machine's speed
    /// drifts, and alternating keeps the comparison fair.
    fn batch(&mut self, b: usize, args: &InferArgs) {
        for _ in 0..args.rounds {
            for k in 0..self.paths.len() {
                if self.failed[k].is_some() {
                    continue;
                }
                let t = match &self.paths[k].1 {
                    None => time_ours(&mut self.models[k], b, args.iterations)
                        .map_err(|e| e.to_string()),
                    Some(c) => self
                        .reference
                        .as_mut()
                        .expect("started")
                        .time(&format!("{c} {b} {}", args.iterations)),
                };
                match t {
                    Ok(t) => self.samples[k].entry(b).or_default().push(b as f64 / t),
                    Err(e) => {
                        eprintln!("{}: {e}", self.paths[k].0);
                        self.failed[k] = Some(e);
                    }
                }
            }
        }
    }

    /// What the run found about its paths.
    fn status(&self) -> Vec<String> {
        status_notes(self.ours, &self.models, &self.paths, &self.failed)
    }

    /// Each path's medians so far, and what the run found about its paths.
    fn update(&self, report: &mut Report) {
        report.rows = self
            .paths
            .iter()
            .zip(&self.samples)
            .map(|((name, _), s)| {
                let medians = s.iter().map(|(&b, v)| (b, median(v.clone()))).collect();
                (name.clone(), medians)
            })
            .collect();
        report.status = self.status();
    }
}

/// Times each batch size in the order given, stopping at `--deadline-s`; the JSON is
/// rewritten after each one.
fn time_batches(
    args: &InferArgs,
    started: Instant,
    t: &mut Timings<'_>,
    report: &mut Report,
) -> Result<()> {
    let mut timed = 0;
    for &b in &args.batches {
        let at = started.elapsed().as_secs_f64();
        if let Some(limit) = args.deadline_s
            && at > limit
        {
            report.notes.push(format!(
                "batch sizes {:?} not timed: {at:.0} s had passed, beyond --deadline-s {limit}",
                &args.batches[timed..]
            ));
            break;
        }
        eprintln!("timing batch {b} (at {at:.0} s)");
        t.batch(b, args);
        timed += 1;
        t.update(report);
        for (name, row) in &report.rows {
            if let Some(v) = row.get(&b) {
                eprintln!("  b{b} {name}: {v:.1} crops/s");
            }
        }
        if let Some(p) = &args.json {
            report.write_json(p)?;
        }
    }
    report.complete = timed == args.batches.len();
    Ok(())
}

pub fn run(args: InferArgs) -> Result<()> {
    let started = Instant::now();
    let target = Target::from_args(&args)?;
    // Without --out the exports go to a temporary folder, removed when the program ends,
    // on an error too (a ViT-L/14 run writes 2.4 GB there).
    let temp = tempfile::Builder::new().prefix("sd2-bench-").tempdir()?;
    let dir = args.out.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "building {} with random weights and exporting it to {}",
        target.preset,
        dir.display()
    );
    let files = export_variants(&target, &dir)?;
    eprintln!("exported in {:.0} s", started.elapsed().as_secs_f64());
    if args.export_only {
        return Ok(());
    }
    if args.kernel_table {
        return kernel_tables(&args, &target, &files);
    }
    let mut report = Report {
        preset: target.preset.clone(),
        device: args.device.clone(),
        rounds: args.rounds,
        iterations: args.iterations,
        files: files.iter().map(|f| f.name.clone()).collect(),
        ..Report::default()
    };
    let (ours, mut models) = load_ours(
        our_paths(&files, target.cuda),
        target.device,
        &mut report.notes,
    )?;
    let drift = logit_drift(&mut models)?;
    report.drift = ours.iter().map(|o| o.name.clone()).zip(drift).collect();
    eprintln!("models loaded at {:.0} s", started.elapsed().as_secs_f64());
    // The face path first: it is short, and a run cut short keeps it.
    // The face path runs the variant a user runs on the device: on CUDA the last (sd2's
    // operators with CUDA graphs, in FP8 where the GPU has it), on the CPU the standard
    // graph (the fastest there; BENCHMARKS.md).
    let variant = if target.cuda {
        ours.last()
    } else {
        ours.first()
    };
    time_face_paths(&args, &target, variant.expect("a variant"), &mut report)?;
    report.status = status_notes(&ours, &models, &[], &[]);
    if let Some(p) = &args.json {
        report.write_json(p)?;
    }
    let reference = start_reference(&args, &target, &dir, &mut report)?;
    let paths = timed_paths(&ours, &files, reference.is_some(), target.cuda);
    let n = paths.len();
    let mut timings = Timings {
        ours: &ours,
        models,
        reference,
        paths,
        samples: vec![BTreeMap::new(); n],
        failed: vec![None; n],
    };
    time_batches(&args, started, &mut timings, &mut report)?;
    report.status = timings.status();
    drop(timings);
    report.print();
    if let Some(p) = &args.json {
        report.write_json(p)?;
    }
    Ok(())
}
