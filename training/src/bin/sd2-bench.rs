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
//! 3. Times the references in the same run (`training/benches/reference_infer.py`): ONNX
//!    Runtime's Python API on the same files, PyTorch eager with SDPA, and `torch.compile`
//!    on CUDA, when the Python given has them.
//! 4. Times the full face path on synthetic 1080p frames holding the sample faces: MTCNN,
//!    crop, classify; crops per second and how many 25 fps streams it sustains analysing
//!    one frame a second.
//!
//! 5. Compares each variant's logits with the standard fp32 graph's on the same inputs
//!    (on CUDA: how far fp16 moves them).
//!
//! Prints one table with ratios; `--json FILE` also writes the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Parser;
use sd2_models::classifier::DeepfakeModel;
use sd2_models::image::RgbImage;
use sd2_models::mtcnn::{Mtcnn, MtcnnConfig};
use sd2_models::onnx::Precision;
use sd2_models::paths;
use sd2_models::runtime::{Device as OrtDevice, SessionConfig};
use sd2_train::clip::ClipConfig;
use sd2_train::export::{ExportInfo, Variant, export};
use sd2_train::labels::TextLabels;
use sd2_train::model::Sd2Model;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::RunState;

#[derive(Parser)]
#[command(
    name = "sd2-bench",
    about = "SD² inference beside its references, one run"
)]
struct Args {
    /// cpu or cuda (needs ORT_DYLIB_PATH at ONNX Runtime's CUDA build).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// tiny, vit-b-16 or vit-l-14 (default: tiny on the CPU, vit-l-14 on CUDA).
    #[arg(long)]
    preset: Option<String>,
    #[arg(long, default_value = "1,8,32,64,128", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Iterations per timing.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Timings per path and batch size, taken in turn; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Frames of the face path.
    #[arg(long, default_value_t = 20)]
    frames: usize,
    /// Python with onnxruntime (and PyTorch + transformers) for the references (default:
    /// $SD2_REFERENCE_PYTHON).
    #[arg(long)]
    reference_python: Option<String>,
    /// Where the exported models go (default: a temporary folder).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
}

fn state(clip: ClipConfig) -> RunState {
    RunState::untrained(clip, paths::clip_vocab())
}

/// Seconds per iteration of our path on one batch size.
fn time_ours(model: &mut DeepfakeModel, batch: usize, iterations: usize) -> Result<f64> {
    let x = pattern(model, batch);
    model.classify(&x)?;
    let start = Instant::now();
    for _ in 0..iterations {
        model.classify(&x)?;
    }
    Ok(start.elapsed().as_secs_f64() / iterations as f64)
}

/// `batch` inputs of a fixed pattern, the same for every path.
fn pattern(model: &DeepfakeModel, batch: usize) -> Vec<f32> {
    (0..batch * model.input_len())
        .map(|i| ((i * 7919 % 255) as f32 - 127.0) / 64.0)
        .collect()
}

/// How far each model's logits are from the first's on the same 16 inputs: the largest
/// difference over the first's largest logit magnitude (fp16 against fp32 on CUDA).
fn logit_drift(models: &mut [DeepfakeModel]) -> Result<Vec<f64>> {
    let x = pattern(&models[0], 16);
    let reference = models[0].logits(&x)?.concat();
    let scale = reference
        .iter()
        .fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    models
        .iter_mut()
        .map(|m| {
            let l = m.logits(&x)?.concat();
            let d = l
                .iter()
                .zip(&reference)
                .fold(0f32, |d, (a, b)| d.max((a - b).abs()));
            Ok((d / scale) as f64)
        })
        .collect()
}

/// The reference server (`benches/reference_infer.py`).
struct Reference {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Reference {
    fn start(python: &str, config: &Path, device: &str) -> Result<Self> {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reference_infer.py");
        let mut child = std::process::Command::new(python)
            .arg(script)
            .arg(config)
            .arg(device)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {python}"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        match stdout.next() {
            Some(Ok(l)) if l == "ready" => Ok(Reference {
                child,
                stdin,
                stdout,
            }),
            other => bail!("the reference did not start: {other:?}"),
        }
    }

    /// Seconds per iteration, or why not.
    fn time(&mut self, command: &str) -> Result<f64, String> {
        use std::io::Write;
        writeln!(self.stdin, "{command}").map_err(|e| e.to_string())?;
        let line = self
            .stdout
            .next()
            .ok_or("the reference ended")?
            .map_err(|e| e.to_string())?;
        line.parse::<f64>().map_err(|_| line)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Frames and crops per second of detect + crop + classify on 1080p frames.
fn face_path(
    model: &Path,
    device: OrtDevice,
    config: SessionConfig,
    frames: usize,
) -> Result<(f64, f64)> {
    let samples = paths::samples_dir();
    let imgs: Vec<RgbImage> = ["astronaut.png", "t1.jpg"]
        .iter()
        .map(|f| RgbImage::open(&samples.join(f)).map(|i| i.letterboxed(1920, 1080, 96)))
        .collect::<Result<_, _>>()
        .context("sample faces (run scripts/setup.sh)")?;
    let mut mtcnn = Mtcnn::load(
        &paths::model_dir().join("mtcnn"),
        device,
        SessionConfig::default(),
        MtcnnConfig::default(),
    )?;
    let mut sd2 = DeepfakeModel::load(model, device, config)?;
    let per = sd2.input_len();
    let mut crops = 0;
    let start = Instant::now();
    for i in 0..frames {
        let img = &imgs[i % imgs.len()];
        let faces = mtcnn.detect(img.view())?;
        let mut inputs = vec![0.0; faces.len() * per];
        for (f, chunk) in faces.iter().zip(inputs.chunks_mut(per)) {
            sd2.prepare(img.view(), f.bbox, chunk);
        }
        crops += sd2.classify(&inputs)?.len();
    }
    let s = start.elapsed().as_secs_f64();
    Ok((frames as f64 / s, crops as f64 / s))
}

fn main() -> Result<()> {
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

    // Every path is timed in turn, `rounds` times per batch size, and the median kept: the
    // machine's speed drifts, and alternating keeps the comparison fair.
    let python = args
        .reference_python
        .clone()
        .or_else(|| std::env::var("SD2_REFERENCE_PYTHON").ok());
    let mut reference_note = String::new();
    let mut reference = match &python {
        Some(py) => {
            let cfg = dir.join("clip-config.json");
            std::fs::write(&cfg, serde_json::to_string(&clip)?)?;
            Some(Reference::start(py, &cfg, &args.device)?)
        }
        None => {
            reference_note =
                "references not run: give --reference-python or set SD2_REFERENCE_PYTHON".into();
            None
        }
    };
    // Our rows: every exported file as sd2deepfake loads it, and on CUDA the last (fused fp16)
    // once more with CUDA graphs over fixed batch buckets.
    let mut ours: Vec<(String, &Path, SessionConfig)> = files
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
    let drift = logit_drift(&mut models)?;
    let mut samples: Vec<BTreeMap<usize, Vec<f64>>> = vec![BTreeMap::new(); paths.len()];
    let mut failed: Vec<Option<String>> = vec![None; paths.len()];
    for &b in &args.batches {
        eprintln!("timing batch {b}");
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
                    Err(e) => failed[k] = Some(e),
                }
            }
        }
    }
    drop(reference);
    // After the timings: graphs may also be turned off by a run that failed.
    for ((name, _, config), m) in ours.iter().zip(&models) {
        if config.cuda_graph && !m.cuda_graph() {
            reference_note.push_str(&format!(
                "ours, {name}: CUDA graphs not used: {}\n",
                m.cuda_graph_off().unwrap_or("unknown")
            ));
        }
        if let Some(why) = m.pageable_reason() {
            reference_note.push_str(&format!(
                "ours, {name}: host tensors pageable, not pinned: {why}\n"
            ));
        }
    }
    drop(models);
    let table: Vec<(String, BTreeMap<usize, f64>)> = paths
        .iter()
        .zip(samples)
        .map(|((name, _), s)| {
            (
                name.clone(),
                s.into_iter().map(|(b, v)| (b, median(v))).collect(),
            )
        })
        .collect();
    for ((name, _), f) in paths.iter().zip(&failed) {
        if let Some(e) = f {
            reference_note.push_str(&format!("{name} not run: {e}\n"));
        }
    }
    let (best_name, best_path, best_config) = ours.last().expect("a variant");
    let best_ours = format!("ours, {best_name}");
    eprintln!("timing the face path on 1080p frames");
    let (fps, crops) = face_path(best_path, device, *best_config, args.frames)?;

    println!(
        "sd2-bench: {preset}, device {}; crops per second, median of {} alternating timings of {} iterations",
        args.device, args.rounds, args.iterations
    );
    print!("{:<34}", "path");
    for b in &args.batches {
        print!("{:>10}", format!("b{b}"));
    }
    println!();
    for (name, row) in &table {
        print!("{name:<34}");
        for b in &args.batches {
            print!(
                "{:>10}",
                row.get(b).map_or("-".into(), |v| format!("{v:.1}"))
            );
        }
        println!();
    }
    let get = |n: &str| {
        table
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, r)| r.clone())
    };
    let ratio_row = |label: String, a: &BTreeMap<usize, f64>, c: &BTreeMap<usize, f64>| {
        print!("{label:<34}");
        for b in &args.batches {
            let r = a.get(b).zip(c.get(b)).map(|(x, y)| x / y);
            print!("{:>10}", r.map_or("-".into(), |v| format!("{v:.2}")));
        }
        println!();
    };
    for (n, _) in &files {
        if let (Some(a), Some(c)) = (get(&format!("ours, {n}")), get(&format!("ORT Python, {n}"))) {
            ratio_row(format!("ours / ORT Python, {n}"), &a, &c);
        }
    }
    if let Some(a) = get(&best_ours) {
        for name in ["PyTorch eager + SDPA", "PyTorch compile + SDPA"] {
            if let Some(c) = get(name) {
                ratio_row(
                    format!("{} / {name}", best_ours.trim_start_matches("ours, ")),
                    &a,
                    &c,
                );
            }
        }
    }
    let first = &ours[0].0;
    for ((name, _, _), d) in ours.iter().zip(&drift).skip(1) {
        println!("logits of {name} vs {first}: {d:.1e} of the largest logit (16 inputs)");
    }
    let b1 = get(&best_ours).and_then(|r| r.get(&1).copied());
    if let Some(v) = b1 {
        println!("batch-1 latency ({best_ours}): {:.2} ms", 1000.0 / v);
    }
    println!(
        "face path (MTCNN + crop + classify, 1080p, {} frames): {fps:.2} frames/s, {crops:.1} crops/s, sustains {:.0} streams of 25 fps analysed at 1 frame/s",
        args.frames,
        fps.floor()
    );
    if !reference_note.is_empty() {
        println!("{reference_note}");
    }
    if let Some(p) = &args.json {
        let rows: BTreeMap<String, BTreeMap<usize, f64>> = table.into_iter().collect();
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({
                "preset": preset,
                "device": args.device,
                "crops_per_second": rows,
                "logit_drift": ours.iter().zip(&drift).map(|((n, _, _), d)| (n.clone(), *d)).collect::<BTreeMap<_, _>>(),
                "face_path": {"frames_per_second": fps, "crops_per_second": crops},
            }))?,
        )?;
    }
    Ok(())
}
