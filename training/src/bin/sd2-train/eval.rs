//! `sd2-train eval`: a checkpoint on a manifest split, as a table on stdout (and JSON with
//! `--json`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use sd2_train::data::manifest::{Manifest, Split};
use sd2_train::eval::{self, Figures, Reading};

use crate::report::Stderr;
use crate::trained;

#[derive(Args)]
pub struct Eval {
    /// A checkpoint folder (checkpoints/step-…) or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    manifest: PathBuf,
    #[arg(long)]
    image_root: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long)]
    workers: Option<usize>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn run(e: &Eval) -> Result<()> {
    let t = trained::open(&e.checkpoint)?;
    let split: Split = e.split.parse().map_err(anyhow::Error::msg)?;
    let manifest = Arc::new(Manifest::open(&e.manifest, e.image_root.as_deref())?);
    let reading = Reading {
        batch: e.batch,
        workers: e.workers.unwrap_or_else(crate::cores),
    };
    let texts = (&t.labels, &t.tok);
    let mut report = Stderr::new();
    let r = eval::evaluate_reporting(
        &t.model,
        &t.state,
        manifest,
        split,
        texts,
        reading,
        &mut report,
    )?;
    let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.2}", 100.0 * v));
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "count", "AUC", "ACC", "EER", "AP"
    );
    let line = |name: &str, f: &Figures| {
        println!(
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
            name,
            f.count,
            pct(f.auc),
            pct(Some(f.accuracy)),
            pct(f.eer),
            pct(f.average_precision)
        )
    };
    line("frames", &r.frame);
    line("videos", &r.video);
    for (d, f) in &r.per_dataset {
        line(d, f);
    }
    println!("type accuracy (5 classes): {:.2}%", 100.0 * r.type_accuracy);
    if let Some(p) = &e.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)?;
    }
    if r.frame.count == 0 {
        bail!("no faces could be evaluated");
    }
    Ok(())
}
