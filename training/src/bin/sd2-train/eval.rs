//! `sd2-train eval`: a checkpoint on a manifest split under a decision rule, as a table on
//! stdout; `--json` writes the figures as JSON, `--report DIR` plots, tables and a page.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use sd2_models::analyzer::{Decision, Judge};
use sd2_train::data::manifest::{Manifest, Split};
use sd2_train::eval::report::{self, About, percent};
use sd2_train::eval::{self, EvalReport, Figures, Reading};
use sd2_train::report::Report;

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
    /// When a face (or a video, on its faces' mean probabilities) is fake: argmax (the
    /// paper's rule: a manipulation more probable than REAL) or threshold (its fake score,
    /// 1 − p(REAL), above --threshold). ACC, the type accuracy and the confusion matrix
    /// follow it; AUC, EER and AP rank the fake score under either.
    #[arg(long, default_value = "argmax")]
    decision: Decision,
    /// The fake score a face must pass under --decision threshold.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Also write the figures as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write a report into this folder: ROC and precision–recall curves, the confusion
    /// heatmap, fake-score histograms (SVG and PNG), report.md and index.html.
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(e: &Eval) -> Result<()> {
    if !(0.0..=1.0).contains(&e.threshold) {
        bail!("--threshold {} is not a fake score (0 to 1)", e.threshold);
    }
    let t = trained::open(&e.checkpoint)?;
    let split: Split = e.split.parse().map_err(anyhow::Error::msg)?;
    let manifest = Arc::new(Manifest::open(&e.manifest, e.image_root.as_deref())?);
    let reading = Reading {
        batch: e.batch,
        workers: e.workers.unwrap_or_else(crate::cores),
    };
    let texts = (&t.labels, &t.tok);
    let mut log = Stderr::new();
    let scored = eval::score(
        &t.model, &t.state, manifest, split, texts, reading, &mut log,
    )?;
    let judge = Judge {
        decision: e.decision,
        threshold: e.threshold,
        ..Judge::default()
    };
    let r = EvalReport::judge(&scored, &judge);
    print_table(&r);
    if let Some(p) = &e.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(dir) = &e.report {
        let about = About {
            method: method_name(&t),
            checkpoint: t.dir.display().to_string(),
            manifest: e.manifest.display().to_string(),
            split: e.split.clone(),
        };
        report::write(dir, &scored, &r, &about)?;
        log.note(&format!(
            "wrote the report: {}",
            dir.join("index.html").display()
        ));
    }
    if r.frame.count == 0 {
        bail!("no faces could be evaluated");
    }
    Ok(())
}

/// The model as the per-dataset table names it: its run folder and step.
fn method_name(t: &trained::Trained) -> String {
    // A checkpoint lives in RUN/checkpoints/step-…
    let run = t
        .dir
        .parent()
        .and_then(|c| c.parent())
        .and_then(|r| r.file_name());
    match run {
        Some(run) => format!("SD² {} step {}", run.to_string_lossy(), t.state.step),
        None => format!("SD² step {}", t.state.step),
    }
}

fn print_table(r: &EvalReport) {
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "count", "AUC", "ACC", "EER", "AP"
    );
    let line = |name: &str, f: &Figures| {
        println!(
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
            name,
            f.count,
            percent(f.auc),
            percent(Some(f.accuracy)),
            percent(f.eer),
            percent(f.average_precision)
        )
    };
    line("frames", &r.frame);
    line("videos", &r.video);
    for (d, f) in &r.per_dataset {
        line(d, f);
    }
    println!(
        "type accuracy (5 classes): {}%",
        percent(Some(r.type_accuracy))
    );
    println!("decision: {}", report::rule(r));
}
