//! `sd2-train export`: a checkpoint as the ONNX model the `sd2deepfake` element runs.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use sd2_models::onnx::Precision;
use sd2_train::export::check::check;
use sd2_train::export::{ExportInfo, Variant, export};

use crate::trained;

#[derive(Args)]
pub struct Export {
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
    /// Then run N crops through the written file as `sd2deepfake` runs it (ONNX Runtime on
    /// the CPU) and through the checkpoint's model, and fail unless their logits agree
    /// (within 1e-4·τ in fp32, 1e-2·τ in fp16).
    #[arg(long, value_name = "N")]
    check: Option<usize>,
}

pub fn run(x: &Export) -> Result<()> {
    let t = trained::open(&x.checkpoint)?;
    let variant = Variant {
        precision: if x.fp16 {
            Precision::F16
        } else {
            Precision::F32
        },
        fused: x.fused,
    };
    let info = ExportInfo {
        model_name: x.name.clone(),
        model_version: x
            .version
            .clone()
            .unwrap_or_else(|| format!("step-{}", t.state.step)),
    };
    export(&t.model, &t.state, &t.labels, &t.tok, variant, &info)
        .write(&x.out)
        .with_context(|| format!("writing {}", x.out.display()))?;
    println!(
        "wrote {} ({}, from {})",
        x.out.display(),
        if x.fp16 { "fp16" } else { "fp32" },
        t.dir.display()
    );
    if let Some(n) = x.check.filter(|&n| n > 0) {
        let a = check(&t.model, &t.labels, &t.tok, &x.out, variant.precision, n)?;
        let line = format!(
            "{}: on {} crops its logits are within {:.1e}·τ of the checkpoint's (tolerance {:.0e}·τ)",
            x.out.display(),
            a.crops,
            a.worst,
            a.tolerance
        );
        if !a.holds() {
            bail!("{line}: the export does not compute what the model does");
        }
        println!("{line}");
    }
    Ok(())
}
