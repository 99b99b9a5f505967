//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sd2_models::analyzer::{Decision, Judge};
use sd2_models::paths;

use crate::analyse::{AnalyseOptions, Sampling};

/// Scans videos for deepfaked faces with an SD² model and prints a table: one row per video
/// with its verdict (the mean of every analysed face's probabilities, judged like a face),
/// fake score (1 − that mean p(REAL)), type (REAL, or the likeliest manipulation of a fake
/// video), distinct faces seen and frames analysed. Progress goes to stderr.
#[derive(Parser, Debug)]
#[command(name = "sd2-scan", version)]
pub struct Cli {
    /// Video files, folders (searched at any depth for video files) or glob patterns.
    #[arg(required = true, value_name = "VIDEO|FOLDER|GLOB")]
    pub inputs: Vec<String>,

    /// The SD² model (from `sd2-train export`); the demo model by default.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Analyse this many frames per video, evenly spaced (the paper's protocol: 32).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub frames: u32,

    /// Analyse at most this many frames a second instead.
    #[arg(long, value_name = "F", conflicts_with_all = ["every_frame", "frames"], value_parser = parse_rate)]
    pub fps: Option<f64>,

    /// Analyse every frame.
    #[arg(long, conflicts_with = "frames")]
    pub every_frame: bool,

    /// How a face, a frame and a video are judged fake: argmax (a manipulation more probable
    /// than REAL: the paper's rule) or threshold (fake score above --threshold).
    #[arg(long, default_value = "argmax", value_parser = parse_decision)]
    pub decision: Decision,

    /// The fake score above which --decision threshold judges fake.
    #[arg(long, default_value_t = 0.5, value_parser = parse_unit)]
    pub threshold: f32,

    /// Videos analysed at once; they share one loaded model, which batches their faces.
    #[arg(long, short, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,

    /// Where the models run: cpu, cuda or auto.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda", "auto"])]
    pub device: String,

    /// Append one JSON line per video to FILE as each finishes; a rerun skips the files
    /// already there (same path, size, modification time and settings). Default with
    /// --report: DIR/results.jsonl.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write the results as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Write an HTML report to DIR (index.html, face thumbnails, timeline plots).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,

    /// Face thumbnails per video in the report: the most suspicious faces.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub thumbnails: usize,

    /// Print no table.
    #[arg(long, short)]
    pub quiet: bool,

    /// Exit with status 1 when any file could not be scanned (by default only when none was).
    #[arg(long)]
    pub strict: bool,

    /// Give a video up when it makes no progress for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub stall_timeout: u64,
}

fn parse_decision(s: &str) -> Result<Decision, String> {
    s.parse()
        .map_err(|e: sd2_models::analyzer::UnknownDecision| e.to_string())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1000.0 => Ok(v),
        _ => Err(format!("{s} is not a frame rate (above 0, at most 1000)")),
    }
}

fn parse_unit(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s} is not a number between 0 and 1")),
    }
}

impl Cli {
    pub fn sampling(&self) -> Sampling {
        match (self.fps, self.every_frame) {
            (Some(f), _) => Sampling::PerSecond(f),
            (None, true) => Sampling::Every,
            (None, false) => Sampling::PerVideo(self.frames),
        }
    }

    pub fn model(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(|| paths::model_dir().join("sd2-demo.onnx"))
    }

    pub fn judge(&self) -> Judge {
        Judge {
            decision: self.decision,
            threshold: self.threshold,
            hysteresis: 0.0,
        }
    }

    /// The JSON lines output, if any.
    pub fn json_output(&self) -> Option<PathBuf> {
        self.json
            .clone()
            .or_else(|| self.report.as_ref().map(|d| d.join("results.jsonl")))
    }

    pub fn analyse_options(&self, model: PathBuf) -> AnalyseOptions {
        AnalyseOptions {
            model,
            sampling: self.sampling(),
            judge: self.judge(),
            device: self.device.clone(),
            thumbnails: if self.report.is_some() {
                self.thumbnails
            } else {
                0
            },
            stall: Duration::from_secs(self.stall_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sd2-scan").chain(args.iter().copied()))
    }

    #[test]
    fn the_papers_protocol_is_the_default_and_one_sampling_rule_may_replace_it() {
        let c = parse(&["videos/"]).unwrap();
        assert_eq!(c.sampling(), Sampling::PerVideo(32));
        assert_eq!(c.judge().decision, Decision::Argmax);
        assert_eq!(c.jobs, 2);
        assert_eq!(
            parse(&["v", "--fps", "2"]).unwrap().sampling(),
            Sampling::PerSecond(2.0)
        );
        assert_eq!(
            parse(&["v", "--every-frame"]).unwrap().sampling(),
            Sampling::Every
        );
        assert_eq!(
            parse(&["v", "--frames", "8"]).unwrap().sampling(),
            Sampling::PerVideo(8)
        );
        assert!(parse(&["v", "--fps", "2", "--every-frame"]).is_err());
        assert!(parse(&["v", "--fps", "2", "--frames", "8"]).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_what_was_expected() {
        let e = parse(&["v", "--decision", "median"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("median") && e.contains("argmax"), "{e}");
        let e = parse(&["v", "--threshold", "1.5"]).unwrap_err().to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        assert!(parse(&["v", "--jobs", "0"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn the_report_folder_holds_the_json_lines_unless_a_file_is_named() {
        let c = parse(&["v", "--report", "out"]).unwrap();
        assert_eq!(c.json_output(), Some(PathBuf::from("out/results.jsonl")));
        let c = parse(&["v", "--report", "out", "--json", "r.jsonl"]).unwrap();
        assert_eq!(c.json_output(), Some(PathBuf::from("r.jsonl")));
        assert_eq!(parse(&["v"]).unwrap().json_output(), None);
    }
}
