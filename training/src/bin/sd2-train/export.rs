//! `sd2-train export`: a checkpoint as the ONNX model the `sd2deepfake` element runs.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use sd2_models::onnx::Precision;
use sd2_train::data::manifest::Manifest;
use sd2_train::export::calibrate::{self, calibrate, manifest_faces};
use sd2_train::export::check::check as check_parity;
use sd2_train::export::drift::drift;
use sd2_train::export::{ExportInfo, Kernels, Variant, export, export_fp8};

use crate::trained::{self, Trained};

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
    /// `sd2`: the fused graph with SD²'s own operators (com.sd2: a GEMM with its bias in
    /// the epilogue, bias + QuickGELU in one pass), which this project's sessions register;
    /// on CUDA they need NVRTC (scripts/setup.sh --gpu).
    #[arg(long, value_enum, default_value = "ort")]
    kernels: KernelsArg,
    /// The encoder's GEMMs in FP8 (E4M3) with per-tensor scales from --calibrate, the rest
    /// in fp16 (implies --kernels sd2): for GPUs of compute capability 8.9 or newer.
    #[arg(long, requires = "calibrate")]
    fp8: bool,
    /// A manifest whose faces set the FP8 scales (each activation's largest magnitude).
    #[arg(long, value_name = "MANIFEST", requires = "fp8")]
    calibrate: Option<PathBuf>,
    /// Faces of the calibration manifest used, evenly spaced over it.
    #[arg(long, default_value_t = 512)]
    calibration_faces: usize,
    /// After writing, compare the file's verdicts with the checkpoint's fp32 standard graph
    /// on this manifest's faces, and print the drift as one JSON line (what FP8 costs).
    #[arg(long, value_name = "MANIFEST")]
    drift: Option<PathBuf>,
    /// Faces of the --drift manifest used, evenly spaced over it.
    #[arg(long, default_value_t = 4096)]
    drift_faces: usize,
    /// Name recorded in the model (and in every verdict the element attaches).
    #[arg(long, default_value = "sd2")]
    name: String,
    /// Version recorded in the model (default: the checkpoint's step).
    #[arg(long)]
    version: Option<String>,
    /// Then run N crops through the written file as `sd2deepfake` runs it (ONNX Runtime on
    /// the CPU) and through the checkpoint's model, and fail unless their logits agree
    /// (within 1e-4·τ in fp32, 1e-2·τ in fp16).
    /// FP8 files are measured with --drift instead: their bound is the detector's accuracy.
    #[arg(long, value_name = "N", conflicts_with = "fp8")]
    check: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum KernelsArg {
    /// ONNX Runtime's operators only.
    Ort,
    /// SD²'s own operators (com.sd2) where ONNX Runtime has no fused kernel.
    Sd2,
}

/// The normalised faces of `manifest` for `t`'s crop recipe, or an error naming it.
fn faces(t: &Trained, manifest: &std::path::Path, limit: usize) -> Result<Vec<f32>> {
    let m = Manifest::open(manifest, None)?;
    let (pixels, used, skipped) = manifest_faces(&m, t.state.config.crop, limit);
    for s in skipped.iter().take(5) {
        eprintln!("skipped {s}");
    }
    if used.is_empty() {
        bail!("{}: no face could be read", manifest.display());
    }
    eprintln!("{} faces of {}", used.len(), manifest.display());
    Ok(pixels)
}

pub fn run(x: &Export) -> Result<()> {
    let t = trained::open(&x.checkpoint)?;
    let info = ExportInfo {
        model_name: x.name.clone(),
        model_version: x
            .version
            .clone()
            .unwrap_or_else(|| format!("step-{}", t.state.step)),
    };
    let kernels = match (x.kernels, x.fp8) {
        (KernelsArg::Sd2, _) | (_, true) => Kernels::Sd2,
        (KernelsArg::Ort, false) => Kernels::Ort,
    };
    let variant = Variant {
        precision: if x.fp16 || x.fp8 {
            Precision::F16
        } else {
            Precision::F32
        },
        fused: x.fused || kernels == Kernels::Sd2,
        kernels,
    };
    let model = match &x.calibrate {
        Some(manifest) if x.fp8 => {
            let pixels = faces(&t, manifest, x.calibration_faces)?;
            let c = calibrate(&t.model, &t.state, &t.labels, &t.tok, &pixels)?;
            eprintln!("{}", calibrate::describe(&info, &c));
            export_fp8(&t.model, &t.state, &t.labels, &t.tok, &c, &info)
        }
        _ => export(&t.model, &t.state, &t.labels, &t.tok, variant, &info),
    };
    model
        .write(&x.out)
        .with_context(|| format!("writing {}", x.out.display()))?;
    let what = match (x.fp8, x.fp16) {
        (true, _) => "fp8",
        (false, true) => "fp16",
        (false, false) => "fp32",
    };
    eprintln!(
        "wrote {} ({what}, {} graph, from {})",
        x.out.display(),
        match kernels {
            Kernels::Sd2 => "sd2",
            Kernels::Ort if variant.fused => "fused",
            Kernels::Ort => "standard",
        },
        t.dir.display()
    );
    if let Some(n) = x.check.filter(|&n| n > 0) {
        let a = check_parity(&t.model, &t.labels, &t.tok, &x.out, variant.precision, n)?;
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
    if let Some(manifest) = &x.drift {
        drift_line(&t, &info, x, manifest)?;
    }
    Ok(())
}

/// Prints, as one JSON line, how far the written file's verdicts are from the fp32
/// standard graph's on `manifest`'s faces.
fn drift_line(
    t: &Trained,
    info: &ExportInfo,
    x: &Export,
    manifest: &std::path::Path,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let reference = dir.path().join("fp32-standard.onnx");
    let variant = Variant {
        precision: Precision::F32,
        fused: false,
        kernels: Kernels::Ort,
    };
    export(&t.model, &t.state, &t.labels, &t.tok, variant, info).write(&reference)?;
    let pixels = faces(t, manifest, x.drift_faces)?;
    let d = drift(&reference, &x.out, &pixels)?;
    let line = serde_json::json!({
        "file": x.out,
        "reference": "fp32 standard graph of the same checkpoint",
        "manifest": manifest,
        "drift": d,
    });
    println!("{line}");
    Ok(())
}
