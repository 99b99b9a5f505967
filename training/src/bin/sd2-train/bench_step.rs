//! `sd2-train bench-step`: images per second of a training step, beside PyTorch doing the
//! same step.

use anyhow::{Context, Result, bail};
use clap::Args;
use sd2_train::clip::ClipConfig;
use sd2_train::model::Sd2Config;

#[derive(Args)]
pub struct BenchStep {
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

pub fn run(b: &BenchStep) -> Result<()> {
    let clip =
        ClipConfig::preset(&b.preset).with_context(|| format!("unknown preset {}", b.preset))?;
    let config = Sd2Config::new(clip.clone());
    let shape = sd2_train::bench::BenchShape {
        batch: b.batch,
        label_tokens: b.label_tokens,
        description_tokens: b.description_tokens,
    };
    let device = sd2_train::train::devices::parse(&b.device)?;
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
        .clone()
        .or_else(|| std::env::var("SD2_REFERENCE_PYTHON").ok());
    let Some(py) = python else {
        println!(
            "PyTorch reference not run: give --reference-python or set SD2_REFERENCE_PYTHON (scripts/reference-env.sh prints one)"
        );
        return Ok(());
    };
    let (reference, threads) = reference(b, &clip, &py)?;
    println!(
        "{:<28} {:>10.1} images/s",
        format!("PyTorch ({}, {threads} threads)", b.reference_device),
        reference
    );
    println!(
        "{:<28} {:>10.2}",
        "ratio (ours / PyTorch)",
        ours / reference
    );
    Ok(())
}

/// Images per second of `benches/reference_train_step.py` run by `py`, and its threads.
fn reference(b: &BenchStep, clip: &ClipConfig, py: &str) -> Result<(f64, serde_json::Value)> {
    let cfg = std::env::temp_dir().join(format!("sd2-bench-config-{}.json", std::process::id()));
    std::fs::write(&cfg, serde_json::to_string(clip)?)?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/reference_train_step.py"
    );
    let out = std::process::Command::new(py)
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
    Ok((reference, v["threads"].clone()))
}
