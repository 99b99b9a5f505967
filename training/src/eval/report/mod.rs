//! `sd2-train eval --report DIR`: the evaluation as files a person reads.
//!
//! - `roc`, `pr`: ROC and precision–recall curves, frame and video level;
//! - `confusion`: the five types, true against the label under the rule, as a heatmap;
//! - `scores`: histograms of the fake score of real and of fake faces;
//!
//! each as `.svg` and `.png`; `report.md` (the tables in Markdown), `eval.json` (what
//! `--json` writes), `faces.jsonl` (every face's probabilities and judgement) and
//! `index.html`, which shows them all with relative links only and nothing external.

mod html;
mod plots;
mod tables;

use std::path::{Path, PathBuf};

use sd2_models::analyzer::{Decision, Judge, label};
use sd2_models::taxonomy::DeepfakeType;

pub use plots::SIZE;
pub use tables::{Table, percent, tables};

use self::plots::{Curve, Plot};
use super::{EvalReport, Scored};
use crate::metrics::{precision_recall_curve, roc_curve};

/// Bins of the fake-score histograms, over [0, 1].
pub const BINS: usize = 20;

/// Why a report was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: cannot write the report: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot draw the plot: {reason}", .path.display())]
    Plot { path: PathBuf, reason: String },
    #[error("the DejaVu Sans font shipped with the `dejavu` crate could not be read")]
    Font,
}

/// What was evaluated, for the report's heading.
#[derive(Clone, Debug)]
pub struct About {
    /// The model's name in the per-dataset table (the paper's "Methods" column).
    pub method: String,
    pub checkpoint: String,
    pub manifest: String,
    pub split: String,
}

/// One plot of the report: its files' stem and what it shows.
pub struct Figure {
    pub stem: &'static str,
    pub caption: String,
}

/// Writes the report of `scored`, judged as `report` says, into `dir` (made if missing);
/// returns the files written.
pub fn write(
    dir: &Path,
    scored: &Scored,
    report: &EvalReport,
    about: &About,
) -> Result<Vec<PathBuf>, ReportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReportError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    let mut figures = Vec::new();
    for (stem, plot, caption) in plots(scored, report) {
        written.extend(plots::save(&plot, dir, stem)?);
        figures.push(Figure { stem, caption });
    }
    let tables = tables(report, &about.method);
    let files: [(&str, String); 4] = [
        ("report.md", markdown(about, report, &tables, &figures)),
        (
            "eval.json",
            serde_json::to_string_pretty(report).expect("figures serialise") + "\n",
        ),
        ("faces.jsonl", faces_jsonl(scored, report)),
        ("index.html", html::page(about, report, &tables, &figures)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// The judge `report` was made under (faces and videos are judged alone: no hysteresis).
fn judge_of(report: &EvalReport) -> Judge {
    Judge {
        decision: report.decision,
        threshold: report.threshold,
        hysteresis: 0.0,
    }
}

/// How the report names its rule.
pub fn rule(report: &EvalReport) -> String {
    match report.decision {
        Decision::Argmax => {
            "argmax (the paper's rule: fake when a manipulation is more probable than REAL)".into()
        }
        Decision::Threshold => format!(
            "threshold (fake when the fake score, 1 − p(REAL), is above {})",
            report.threshold
        ),
    }
}

fn plots(scored: &Scored, report: &EvalReport) -> Vec<(&'static str, Plot, String)> {
    let frame_scores: Vec<f64> = scored.faces.iter().map(|f| f.fake_score()).collect();
    let frame_fake: Vec<bool> = scored.faces.iter().map(|f| f.truth.is_fake()).collect();
    let judge = judge_of(report);
    let videos: Vec<(f64, bool)> = scored
        .videos()
        .iter()
        .filter_map(|v| Some((v.tally.judge(&judge)?.verdict, v.fake)))
        .map(|(v, fake)| (1.0 - v.probabilities[0] as f64, fake))
        .collect();
    let video_scores: Vec<f64> = videos.iter().map(|v| v.0).collect();
    let video_fake: Vec<bool> = videos.iter().map(|v| v.1).collect();
    let levels = [
        ("frames", &frame_scores, &frame_fake, &report.frame, false),
        ("videos", &video_scores, &video_fake, &report.video, true),
    ];
    let curve = |name: &str, points, video| Curve {
        name: name.to_owned(),
        points,
        video,
    };
    let roc = levels
        .iter()
        .filter_map(|(name, s, f, fig, video)| {
            let auc = fig.auc?;
            let label = format!("{name} (AUC {})", percent(Some(auc)));
            Some(curve(&label, roc_curve(s, f), *video))
        })
        .collect();
    let pr = levels
        .iter()
        .filter_map(|(name, s, f, fig, video)| {
            let ap = fig.average_precision?;
            let mut points = precision_recall_curve(s, f);
            points.insert(0, (0.0, points.first()?.1));
            let label = format!("{name} (AP {})", percent(Some(ap)));
            Some(curve(&label, points, *video))
        })
        .collect();
    let (real, fake) = histograms(scored);
    let by_rule = match report.decision {
        Decision::Argmax => "argmax".to_owned(),
        Decision::Threshold => format!("threshold {}", report.threshold),
    };
    vec![
        (
            "roc",
            Plot::Curves {
                title: "ROC".into(),
                x: "false-positive rate (real faces called fake)",
                y: "true-positive rate (fakes found)",
                curves: roc,
                roc: true,
            },
            "ROC curves of the fake score, frame and video level.".into(),
        ),
        (
            "pr",
            Plot::Curves {
                title: "Precision–recall".into(),
                x: "recall (fakes found)",
                y: "precision (fake calls that are fakes)",
                curves: pr,
                roc: false,
            },
            "Precision–recall curves of the fake score, frame and video level.".into(),
        ),
        (
            "confusion",
            Plot::Confusion {
                title: format!("Types under {by_rule}"),
                counts: report.confusion,
            },
            "Faces by true type (rows) and label under the rule (columns); the shade is the \
             row's share."
                .into(),
        ),
        (
            "scores",
            Plot::Histogram {
                title: "Fake scores".into(),
                real,
                fake,
                threshold: (report.decision == Decision::Threshold).then_some(report.threshold),
            },
            format!(
                "The fake score of real and of fake faces, each as shares of its class, in {BINS} \
                 bins."
            ),
        ),
    ]
}

/// The share of real and of fake faces in each of [`BINS`] fake-score bins.
fn histograms(scored: &Scored) -> (Vec<f64>, Vec<f64>) {
    let mut counts = [vec![0usize; BINS], vec![0usize; BINS]];
    for f in &scored.faces {
        let bin = ((f.fake_score() * BINS as f64) as usize).min(BINS - 1);
        counts[f.truth.is_fake() as usize][bin] += 1;
    }
    let [real, fake] = counts.map(|c| {
        let total = c.iter().sum::<usize>().max(1) as f64;
        c.iter().map(|&n| n as f64 / total).collect()
    });
    (real, fake)
}

fn markdown(about: &About, report: &EvalReport, tables: &[Table], figures: &[Figure]) -> String {
    let mut out = format!(
        "# Evaluation of {}\n\n- checkpoint: `{}`\n- manifest: `{}`, split `{}`\n- decision: {}\n\
         - rows skipped (unreadable images): {}\n\n",
        about.method,
        about.checkpoint,
        about.manifest,
        about.split,
        rule(report),
        report.skipped_rows
    );
    for t in tables {
        out += &t.markdown();
        out += "\n";
    }
    out += "## Plots\n\n";
    for f in figures {
        out += &format!("![{}]({}.svg)\n\n", f.caption, f.stem);
    }
    out
}

fn faces_jsonl(scored: &Scored, report: &EvalReport) -> String {
    let judge = judge_of(report);
    let mut out = String::new();
    for f in &scored.faces {
        let fake = judge.is_fake_alone(&f.verdict);
        let mut line = serde_json::json!({
            "line": f.line,
            "dataset": scored.dataset_of(f),
            "group": scored.groups[f.group as usize],
            "type": f.truth.code(),
        });
        for (t, p) in DeepfakeType::ALL.iter().zip(f.verdict.probabilities) {
            line[t.code()] = p.into();
        }
        line["fake_score"] = f.fake_score().into();
        line["fake"] = fake.into();
        line["label"] = label(&f.verdict, fake).code().into();
        out += &line.to_string();
        out.push('\n');
    }
    out
}

/// `s` with the characters HTML gives meaning to escaped.
pub use html_escape::encode_quoted_attribute as escape_html;
