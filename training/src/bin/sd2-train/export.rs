//! `sd2-train export`: a checkpoint as the ONNX model the `sd2deepfake` element runs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sd2_models::onnx::Precision;
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
    Ok(())
}
