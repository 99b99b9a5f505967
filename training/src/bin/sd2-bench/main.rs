//! `sd2-bench`: the SD² inference path beside its references, in one run.
//!
//!     sd2-bench                                  # this CPU, tiny preset
//!     sd2-bench --device cuda --preset vit-l-14  # a machine with an NVIDIA GPU
//!
//! 1. Builds the preset with random weights and exports it here: the standard graph (fp32,
//!    and fp16 on CUDA) and the fused contrib-operator graph (fp32 on the CPU, fp16 on CUDA).
//! 2. Times the encoder (crops per second) at each batch size through our ONNX Runtime path
//!    (`sd2_models::classifier::DeepfakeModel`, as `sd2deepfake` runs it); on CUDA also the
//!    fused fp16 graph with CUDA graphs captured per batch bucket (`cuda-graph=true`).
//! 3. Times the references in the same run (`training/benches/reference_infer.py`, carried
//!    in the binary): ONNX Runtime's Python API on the same files, PyTorch eager with SDPA,
//!    and `torch.compile` on CUDA, when the Python given has them. A reference that cannot
//!    run is reported and left out; the rest of the run goes on.
//! 4. Times the full face path on synthetic 1080p frames holding the sample faces: MTCNN,
//!    crop, classify; crops per second and how many 25 fps streams it sustains analysing
//!    one frame a second. With `--streams 4,16`, also that many streams at once, each a
//!    thread and an MTCNN of its own, the classifier shared.
//! 5. Compares each variant's logits with the standard fp32 graph's on the same inputs
//!    (on CUDA: how far fp16 moves them).
//!
//! The drift and the face path come first, then the timings one batch size at a time, in
//! the order given (`--batches 1,64,...`), each batch size's medians printed as it ends.
//! No batch size starts after `--deadline-s`: on a lent GPU the run must end in its slot.
//! Prints one table with ratios at the end; `--json FILE` is rewritten after every batch
//! size, so a run that is killed still leaves what it measured.

mod reference;
mod report;
mod timing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Parser;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::onnx::Precision;
use sd2_models::paths;
use sd2_models::runtime::{Device as OrtDevice, SessionConfig};
use sd2_train::clip::ClipConfig;
use sd2_train::export::{ExportInfo, Variant, export};
use sd2_train::labels::TextLabels;
use sd2_train::model::Sd2Model;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::RunState;

use reference::Reference;
use report::Report;
use timing::{face_path, logit_drift, median, time_ours};

#[derive(Parser)]
#[command(
    name = "sd2-bench",
    about = "SD² inference beside its references, one run",
    args_override_self = true
)]
struct Args {
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
    /// Also time the face path with this many streams at once, each a thread and an MTCNN
    /// of its own (as that many sd2facedetect elements), the classifier shared: how many
    /// streams one machine serves (`--streams 4,16`).
    #[arg(long, value_delimiter = ',')]
    streams: Vec<usize>,
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
}

fn state(clip: ClipConfig) -> RunState {
    RunState::untrained(clip, paths::clip_vocab())
}

/// What the run has found so far about its own paths: CUDA graphs or pinned memory not
/// used (graphs can also be turned off by a failed run), and paths that failed.
fn status_notes(
    ours: &[(String, &std::path::Path, SessionConfig)],
    models: &[DeepfakeModel],
    paths: &[(String, Option<String>)],
    failed: &[Option<String>],
) -> Vec<String> {
    let mut notes = Vec::new();
    for ((name, _, config), m) in ours.iter().zip(models) {
        if config.cuda_graph && !m.cuda_graph() {
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

fn main() -> Result<()> {
    let started = Instant::now();
    let args = Args::parse();
    let cuda = match args.device.as_str() {
        "cpu" => false,
        "cuda" => true,
        other => bail!("unknown device {other} (cpu or cuda)"),
    };
    let preset = args
        .preset
        .clone()
        .unwrap_or_else(|| if cuda { "vit-l-14" } else { "tiny" }.into());
    let clip = ClipConfig::preset(&preset).with_context(|| format!("unknown preset {preset}"))?;
    let device = if cuda {
        OrtDevice::Cuda
    } else {
        OrtDevice::Cpu
    };
    // Without --out the exports go to a temporary folder, removed when the program ends,
    // on an error too (a ViT-L/14 run writes 2.4 GB there).
    let temp = tempfile::Builder::new().prefix("sd2-bench-").tempdir()?;
    let dir = args.out.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;

    eprintln!(
        "building {preset} with random weights and exporting it to {}",
        dir.display()
    );
    let burn_device = Device::flex();
    burn_device.seed(0);
    let st = state(clip.clone());
    let model = Sd2Model::new(&st.config.model, &burn_device).valid();
    let tok = ClipTokenizer::from_vocab_file(&st.config.vocab)?;
    let labels = TextLabels::default_labels();
    let info = ExportInfo {
        model_name: format!("bench-{preset}"),
        model_version: "random".into(),
    };
    // The standard graph in fp32 always; on CUDA fp16 and the fused graph in fp16, on the
    // CPU the fused graph in fp32.
    let variants: &[(Precision, bool)] = if cuda {
        &[
            (Precision::F32, false),
            (Precision::F16, false),
            (Precision::F16, true),
        ]
    } else {
        &[(Precision::F32, false), (Precision::F32, true)]
    };
    let mut files = Vec::new();
    for &(precision, fused) in variants {
        let name = format!(
            "{} {}",
            if fused { "fused" } else { "standard" },
            match precision {
                Precision::F32 => "fp32",
                Precision::F16 => "fp16",
            }
        );
        let path = dir.join(format!("sd2-{preset}-{}.onnx", name.replace(' ', "-")));
        let variant = Variant { precision, fused };
        export(&model, &st, &labels, &tok, variant, &info).write(&path)?;
        files.push((name, path));
    }
    drop(model);
    eprintln!("exported in {:.0} s", started.elapsed().as_secs_f64());
    if args.export_only {
        return Ok(());
    }

    let mut report = Report {
        preset: preset.clone(),
        device: args.device.clone(),
        rounds: args.rounds,
        iterations: args.iterations,
        files: files.iter().map(|(n, _)| n.clone()).collect(),
        ..Report::default()
    };
    // Our rows: every exported file as sd2deepfake loads it, and on CUDA the last (fused fp16)
    // once more with CUDA graphs over fixed batch buckets.
    let mut ours: Vec<(String, &std::path::Path, SessionConfig)> = files
        .iter()
        .map(|(n, p)| (n.to_string(), p.as_path(), SessionConfig::default()))
        .collect();
    let (last_name, last_path) = files.last().expect("a variant");
    if cuda {
        let graphs = SessionConfig {
            cuda_graph: true,
            ..SessionConfig::default()
        };
        ours.push((
            format!("{last_name} + CUDA graphs"),
            last_path.as_path(),
            graphs,
        ));
    }
    let mut models: Vec<DeepfakeModel> = ours
        .iter()
        .map(|(_, p, config)| DeepfakeModel::load(p, device, *config))
        .collect::<Result<_, _>>()?;
    let drift = logit_drift(&mut models)?;
    report.drift = ours.iter().map(|(n, _, _)| n.clone()).zip(drift).collect();
    eprintln!("models loaded at {:.0} s", started.elapsed().as_secs_f64());

    // The face path first: it is short, and a run cut short keeps it.
    let best_name = &ours.last().expect("a variant").0;
    eprintln!("timing the face path on 1080p frames ({best_name})");
    let best = models.last_mut().expect("a variant");
    let face = face_path(best, device, args.frames, None, 1)?;
    eprintln!("face path: {face}");
    // And with MTCNN's sessions held the other way, for the ratio between the two.
    let other = face_path(best, device, args.frames, Some(!face.per_shape), 1)?;
    eprintln!("face path: {other}");
    report.face = Some(face);
    report.face_other = Some(other);
    for &n in args.streams.iter().filter(|&&n| n > 1) {
        match face_path(best, device, args.frames, None, n) {
            Ok(f) => {
                eprintln!("face path, {f}");
                report.face_streams.push(f);
            }
            Err(e) => report.notes.push(format!(
                "face path with {n} streams at once not timed: {e:#}"
            )),
        }
    }
    report.status = status_notes(&ours, &models, &[], &[]);
    if let Some(p) = &args.json {
        report.write_json(p)?;
    }

    let python = args
        .reference_python
        .clone()
        .or_else(|| std::env::var("SD2_REFERENCE_PYTHON").ok());
    let mut reference = match &python {
        Some(py) => {
            let cfg = dir.join("clip-config.json");
            std::fs::write(&cfg, serde_json::to_string(&clip)?)?;
            match Reference::start(py, &dir, &cfg, &args.device) {
                Ok(r) => Some(r),
                Err(e) => {
                    report.notes.push(format!("references not run: {e:#}"));
                    None
                }
            }
        }
        None => {
            report.notes.push(
                "references not run: give --reference-python or set SD2_REFERENCE_PYTHON".into(),
            );
            None
        }
    };
    let mut paths: Vec<(String, Option<String>)> = ours
        .iter()
        .map(|(n, _, _)| (format!("ours, {n}"), None))
        .collect();
    if reference.is_some() {
        for (n, p) in &files {
            paths.push((
                format!("ORT Python, {n}"),
                Some(format!("ort {}", p.display())),
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

    // Every path is timed in turn, `rounds` times per batch size, and the median kept: the
    // machine's speed drifts, and alternating keeps the comparison fair.
    let mut samples: Vec<BTreeMap<usize, Vec<f64>>> = vec![BTreeMap::new(); paths.len()];
    let mut failed: Vec<Option<String>> = vec![None; paths.len()];
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
        for _ in 0..args.rounds {
            for (k, (_, command)) in paths.iter().enumerate() {
                if failed[k].is_some() {
                    continue;
                }
                let t = match command {
                    None => {
                        time_ours(&mut models[k], b, args.iterations).map_err(|e| e.to_string())
                    }
                    Some(c) => reference
                        .as_mut()
                        .expect("started")
                        .time(&format!("{c} {b} {}", args.iterations)),
                };
                match t {
                    Ok(t) => samples[k].entry(b).or_default().push(b as f64 / t),
                    Err(e) => {
                        eprintln!("{}: {e}", paths[k].0);
                        failed[k] = Some(e);
                    }
                }
            }
        }
        timed += 1;
        report.rows = paths
            .iter()
            .zip(&samples)
            .map(|((name, _), s)| {
                let medians = s.iter().map(|(&b, v)| (b, median(v.clone()))).collect();
                (name.clone(), medians)
            })
            .collect();
        for (name, row) in &report.rows {
            if let Some(v) = row.get(&b) {
                eprintln!("  b{b} {name}: {v:.1} crops/s");
            }
        }
        report.status = status_notes(&ours, &models, &paths, &failed);
        if let Some(p) = &args.json {
            report.write_json(p)?;
        }
    }
    drop(reference);
    report.complete = timed == args.batches.len();
    report.status = status_notes(&ours, &models, &paths, &failed);
    drop(models);
    report.print();
    if let Some(p) = &args.json {
        report.write_json(p)?;
    }
    Ok(())
}
