//! `sd2-bench step`: images per second of the trainer's optimisation step beside PyTorch
//! doing the same step (`bench/references/reference_train_step.py`, carried in the binary),
//! timed in turn for `--rounds` rounds; the medians and their ratio are printed.

mod run;

use anyhow::{Context, Result, bail};
use sd2_train::clip::ClipConfig;
use sd2_train::model::Sd2Config;
use sd2_train::precision::Precision;

use crate::infer::median;
use run::BenchShape;

/// The reference's source, carried in the binary: a `sd2-bench` copied to another machine
/// finds no checkout at the path it was built in.
const REFERENCE: &str = include_str!("../../references/reference_train_step.py");

#[derive(clap::Args)]
pub struct StepArgs {
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
    /// Timings of each side, taken in turn; the medians are compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Python with PyTorch and transformers for the reference (default: $SD2_REFERENCE_PYTHON).
    #[arg(long)]
    reference_python: Option<String>,
    /// flex, or cuda:N (this build needs the cuda feature for that).
    #[arg(long, default_value = "flex")]
    device: String,
    /// PyTorch's device for the reference: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    reference_device: String,
    /// CPU threads of each side (ours: rayon's pool, which burn's flex backend computes on;
    /// PyTorch: torch.set_num_threads); every core when unset. One thread each is the
    /// comparison that other work on the machine disturbs least.
    #[arg(long)]
    threads: Option<usize>,
    /// The matrix products of both sides in f32, or in bf16 with the rest in f32 (ours:
    /// `fit --precision bf16`; PyTorch: torch.autocast).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
}

/// One side's medians over the rounds.
struct Side {
    images_per_second: f64,
    /// The most device memory held at once: ours, the memory pool after the steps (which
    /// keeps what they reserved); PyTorch's, `torch.cuda.max_memory_reserved()`. None on
    /// the CPU.
    peak_bytes: Option<u64>,
}

pub fn run(b: &StepArgs) -> Result<()> {
    if b.steps == 0 || b.rounds == 0 {
        bail!("--steps and --rounds must be at least 1");
    }
    let clip =
        ClipConfig::preset(&b.preset).with_context(|| format!("unknown preset {}", b.preset))?;
    let config = Sd2Config::new(clip.clone());
    let shape = BenchShape {
        batch: b.batch,
        label_tokens: b.label_tokens,
        description_tokens: b.description_tokens,
    };
    if let Some(n) = b.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("sizing the thread pool for --threads")?;
    }
    let device = sd2_train::train::devices::parse(&b.device)?;
    sd2_train::train::devices::check_precision(&b.device, &device, b.precision)?;
    let mut python = b
        .reference_python
        .clone()
        .or_else(|| std::env::var("SD2_REFERENCE_PYTHON").ok());
    let mut not_run = String::from(
        "give --reference-python or set SD2_REFERENCE_PYTHON (scripts/reference-env.sh prints one)",
    );
    eprintln!(
        "training step, {} preset, batch {}, {}, {} rounds of {} steps after {} warm-up",
        b.preset,
        b.batch,
        precision_name(b.precision),
        b.rounds,
        b.steps,
        b.warmup
    );
    let (mut ours, mut theirs, mut threads) = (Vec::new(), Vec::new(), None);
    for round in 0..b.rounds {
        let t = run::run(&config, shape, b.warmup, b.steps, &device, b.precision);
        eprintln!(
            "round {}: ours {:.1} images/s",
            round + 1,
            t.images_per_second
        );
        ours.push(t);
        if let Some(py) = &python {
            // A reference that cannot run is reported; ours is still measured.
            match reference(b, &clip, py) {
                Ok((side, t)) => {
                    eprintln!(
                        "round {}: PyTorch {:.1} images/s",
                        round + 1,
                        side.images_per_second
                    );
                    theirs.push(side);
                    threads = Some(t);
                }
                Err(e) => {
                    not_run = format!("{e:#}");
                    python = None;
                    theirs.clear();
                }
            }
        }
    }
    let ours = Side {
        images_per_second: median(ours.iter().map(|t| t.images_per_second).collect()),
        peak_bytes: ours.iter().filter_map(|t| t.peak_reserved).max(),
    };
    println!(
        "training step, {} preset, batch {}, {}; images per second, median of {} rounds of {} steps",
        b.preset,
        b.batch,
        precision_name(b.precision),
        b.rounds,
        b.steps
    );
    print_row(&format!("sd2-train (burn, {})", b.device), &ours);
    if theirs.is_empty() {
        println!("PyTorch reference not run: {not_run}");
        return Ok(());
    }
    let theirs = Side {
        images_per_second: median(theirs.iter().map(|s| s.images_per_second).collect()),
        peak_bytes: theirs.iter().filter_map(|s| s.peak_bytes).max(),
    };
    let threads = threads.unwrap_or_default();
    let label = match b.reference_device.as_str() {
        "cpu" => format!("PyTorch (cpu, {threads} threads)"),
        other => format!("PyTorch eager ({other})"),
    };
    print_row(&label, &theirs);
    println!(
        "{:<32} {:>10.2}",
        "ratio (ours / PyTorch)",
        ours.images_per_second / theirs.images_per_second
    );
    Ok(())
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "fp32",
        Precision::Bf16 => "bf16 mixed precision",
    }
}

/// A side's row: images per second, and its peak device memory where it has one.
fn print_row(label: &str, side: &Side) {
    match side.peak_bytes {
        Some(bytes) => println!(
            "{label:<32} {:>10.1}   peak device memory {:.1} GiB",
            side.images_per_second,
            bytes as f64 / (1u64 << 30) as f64
        ),
        None => println!("{label:<32} {:>10.1}", side.images_per_second),
    }
}

/// Images per second and peak memory of the reference run by `py`, and its threads.
fn reference(b: &StepArgs, clip: &ClipConfig, py: &str) -> Result<(Side, serde_json::Value)> {
    let dir = tempfile::Builder::new()
        .prefix("sd2-bench-step-")
        .tempdir()?;
    let cfg = dir.path().join("clip-config.json");
    std::fs::write(&cfg, serde_json::to_string(clip)?)?;
    let script = dir.path().join("reference_train_step.py");
    std::fs::write(&script, REFERENCE)?;
    let out = std::process::Command::new(py)
        .arg(&script)
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
        .arg(b.threads.map_or("0".into(), |n| n.to_string()))
        .arg(match b.precision {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
        })
        .output()
        .with_context(|| format!("starting {py}"))?;
    if !out.status.success() {
        bail!(
            "the PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let side = Side {
        images_per_second: v["images_per_second"]
            .as_f64()
            .context("reference output")?,
        peak_bytes: v["peak_reserved_bytes"].as_u64(),
    };
    Ok((side, v["threads"].clone()))
}
