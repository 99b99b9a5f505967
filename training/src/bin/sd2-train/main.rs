//! `sd2-train`: make a training set, train SD², evaluate it, export it. One module per
//! command; what a command says while it runs goes to stderr ([`report`]), its results to
//! stdout.
//!
//!     sd2-train make-demo-set --out data/demo
//!     sd2-train fit --manifest data/demo/manifest.jsonl --out runs/demo --preset tiny
//!     sd2-train fit --out runs/demo --resume
//!     sd2-train eval --checkpoint runs/demo/checkpoints/step-00000300 --manifest data/demo/manifest.jsonl --report eval/
//!     sd2-train export --checkpoint runs/demo --out demo.onnx

mod demo_set;
mod eval;
mod export;
mod fit;
mod import;
mod report;
mod trained;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    MakeDemoSet(demo_set::DemoSet),
    /// Train SD² on a manifest.
    Fit(Box<fit::Fit>),
    /// Evaluate a checkpoint on a manifest split: AUC, ACC, EER, AP, frame- and video-level,
    /// under the paper's decision rule or a threshold; --report DIR draws plots and tables.
    Eval(eval::Eval),
    /// Turn DeepfakeBench dataset JSON files (FaceForensics++, Celeb-DF, DFDC, DF40, ...)
    /// into a manifest, typing each label by the shipped table.
    ImportDeepfakebench(import::Import),
    /// Write a checkpoint as the ONNX model the `sd2deepfake` element runs.
    Export(export::Export),
}

/// The cores this process may use: decoding threads when none are asked for.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    match Cli::from_arg_matches(&matches)?.command {
        Command::MakeDemoSet(d) => demo_set::run(&d),
        Command::Fit(f) => {
            let given = matches.subcommand_matches("fit").expect("the fit command");
            fit::run(&f, given)
        }
        Command::Eval(e) => eval::run(&e),
        Command::ImportDeepfakebench(i) => import::run(&i),
        Command::Export(x) => export::run(&x),
    }
}
