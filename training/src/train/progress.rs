//! What a run says while it trains: a line per step (loss components, throughput, ETA)
//! for the run's [`Report`](crate::report::Report), and the same as JSON in
//! `metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct StepMetrics {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<f64>,
    pub tau: f64,
    pub learning_rate: f64,
    pub images: usize,
    pub images_per_second: f64,
    pub skipped: usize,
    pub elapsed_seconds: f64,
}

pub struct Progress {
    metrics: File,
    path: PathBuf,
    start: Instant,
    images_since_start: u64,
    total_steps: usize,
    first_step: usize,
}

fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Progress {
    /// Appends to `out/metrics.jsonl` (a resumed run continues the file).
    pub fn new(out: &Path, first_step: usize, total_steps: usize) -> std::io::Result<Self> {
        let path = out.join("metrics.jsonl");
        // A resumed run redoes the steps after its checkpoint (a new run, all of them):
        // forget what an earlier process logged for them, so each step has one line.
        if let Ok(text) = std::fs::read_to_string(&path) {
            let logged = |line: &str| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
            };
            let kept: String = text
                .lines()
                .filter(|l| logged(l).is_some_and(|s| s as usize <= first_step))
                .map(|l| format!("{l}\n"))
                .collect();
            if kept != text {
                sd2_models::atomic_write::write_atomic(&path, kept.as_bytes())?;
            }
        }
        let metrics = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Progress {
            metrics,
            path,
            start: Instant::now(),
            images_since_start: 0,
            total_steps,
            first_step,
        })
    }

    /// `metrics.jsonl`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a finished step; returns its progress line.
    pub fn step(&mut self, mut m: StepMetrics) -> std::io::Result<String> {
        self.images_since_start += m.images as u64;
        let elapsed = self.start.elapsed().as_secs_f64();
        m.elapsed_seconds = elapsed;
        m.images_per_second = self.images_since_start as f64 / elapsed.max(1e-9);
        writeln!(
            self.metrics,
            "{}",
            serde_json::to_string(&m).expect("metrics serialise")
        )?;
        let done = m.step - self.first_step;
        let eta = elapsed / done.max(1) as f64 * self.total_steps.saturating_sub(m.step) as f64;
        let part =
            |name: &str, v: Option<f64>| v.map(|v| format!(" {name} {v:.4}")).unwrap_or_default();
        Ok(format!(
            "step {}/{} | epoch {} | loss {:.4} ({}{}{}{} ) | τ {:.2} | {:.1} img/s | ETA {}",
            m.step,
            self.total_steps,
            m.epoch + 1,
            m.loss,
            part("C", m.classification),
            part("S", m.separation),
            part("Df", m.face),
            part("De", m.environment),
            m.tau,
            m.images_per_second,
            duration(eta),
        ))
    }
}
