//! `sd2-bench`: SD²'s inference path and training step, each beside its reference in the
//! same run. What it times is the code users run: the Analyzer that `sd2deepfake` is
//! plumbing over, and the trainer's step.
//!
//!     sd2-bench infer [--device cuda --preset vit-l-14]   # the encoder and the face path
//!     sd2-bench step [--preset vit-l-14 --device cuda:0]   # one optimisation step
//!
//! Tables and ratios go to stdout, progress to stderr.

mod infer;
mod step;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sd2-bench",
    version,
    about = "SD²'s inference path and training step beside their references, in one run",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The encoder at each batch size and the whole face path, beside ONNX Runtime's
    /// Python API and PyTorch on the same model.
    Infer(Box<infer::InferArgs>),
    /// Images per second of one optimisation step, beside PyTorch doing the same step.
    Step(step::StepArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Infer(a) => infer::run(*a),
        Command::Step(s) => step::run(&s),
    }
}
