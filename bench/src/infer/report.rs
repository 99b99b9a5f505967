//! `sd2-bench`'s figures: the table with its ratios, and the JSON written after every
//! batch size, so that a run cut short still leaves what it measured.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::face_path::FacePath;

#[derive(Default)]
pub struct Report {
    pub preset: String,
    pub device: String,
    pub rounds: usize,
    pub iterations: usize,
    /// Crops per second: path → batch size → median.
    pub rows: Vec<(String, BTreeMap<usize, f64>)>,
    /// Our variants' names, standard fp32 first, and each one's logit drift from it.
    pub drift: Vec<(String, f64)>,
    /// The exported files' variant names (`standard fp32`, …), for the ORT Python ratios.
    pub files: Vec<String>,
    /// The face path, MTCNN's sessions as the device's default.
    pub face: Option<FacePath>,
    /// The same with MTCNN's sessions held the other way (see `SessionConfig::shape_sessions`).
    pub face_other: Option<FacePath>,
    /// The face path with several streams at once (`--streams`).
    pub face_streams: Vec<FacePath>,
    /// What the run decided: references not started, batch sizes not timed.
    pub notes: Vec<String>,
    /// What the run found about its paths, renewed after each batch size.
    pub status: Vec<String>,
    /// Whether every batch size asked for was timed.
    pub complete: bool,
}

impl Report {
    fn row(&self, name: &str) -> Option<&BTreeMap<usize, f64>> {
        self.rows
            .iter()
            .find(|(n, r)| n == name && !r.is_empty())
            .map(|(_, r)| r)
    }

    /// Our variants with their rows of crops per second, in export order.
    fn ours(&self) -> impl Iterator<Item = (&str, &BTreeMap<usize, f64>)> {
        self.drift
            .iter()
            .filter_map(|(n, _)| Some((n.as_str(), self.row(&format!("ours, {n}"))?)))
    }

    /// Our variant with the most crops per second at `batch`, and that figure (ties to the
    /// earlier, simpler variant).
    fn fastest_at(&self, batch: usize) -> Option<(&str, f64)> {
        self.ours()
            .filter_map(|(n, r)| Some((n, *r.get(&batch)?)))
            .fold(None, |best, (n, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((n, v)),
            })
    }

    /// Our fastest variant at the largest batch size every variant reached.
    fn best(&self) -> Option<&str> {
        let common = self
            .ours()
            .map(|(_, r)| r.keys().next_back().copied().unwrap_or(0))
            .min()?;
        self.fastest_at(common).map(|(n, _)| n)
    }

    fn batches(&self) -> Vec<usize> {
        let mut b: Vec<usize> = self
            .rows
            .iter()
            .flat_map(|(_, r)| r.keys().copied())
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    }

    /// Prints the table, its ratios, the drift, the latency, the face path and the notes.
    pub fn print(&self) {
        let batches = self.batches();
        println!(
            "sd2-bench: {}, device {}; crops per second, median of {} alternating timings of {} iterations",
            self.preset, self.device, self.rounds, self.iterations
        );
        let line = |label: &str, cells: Vec<Option<String>>| {
            print!("{label:<40}");
            for c in cells {
                print!("{:>10}", c.unwrap_or_else(|| "-".into()));
            }
            println!();
        };
        line(
            "path",
            batches.iter().map(|b| Some(format!("b{b}"))).collect(),
        );
        // A path that never ran has no row; the notes say why.
        for (name, row) in self.rows.iter().filter(|(_, r)| !r.is_empty()) {
            let cells = batches
                .iter()
                .map(|b| row.get(b).map(|v| format!("{v:.1}")))
                .collect();
            line(name, cells);
        }
        let ratio = |label: String, a: &BTreeMap<usize, f64>, c: &BTreeMap<usize, f64>| {
            let cells = batches
                .iter()
                .map(|b| a.get(b).zip(c.get(b)).map(|(x, y)| format!("{:.2}", x / y)))
                .collect();
            line(&label, cells);
        };
        for n in &self.files {
            if let (Some(a), Some(c)) = (
                self.row(&format!("ours, {n}")),
                self.row(&format!("ORT Python, {n}")),
            ) {
                ratio(format!("ours / ORT Python, {n}"), a, c);
            }
        }
        // Every GPU variant beside torch.compile (the comparison), the best beside
        // eager too.
        if let Some(c) = self.row("PyTorch compile + SDPA") {
            for (name, _) in self
                .drift
                .iter()
                .filter(|(n, _)| Some(n.as_str()) != self.best())
            {
                if let Some(a) = self.row(&format!("ours, {name}")) {
                    ratio(format!("{name} / PyTorch compile"), a, c);
                }
            }
        }
        if let Some(best) = self.best()
            && let Some(a) = self.row(&format!("ours, {best}"))
        {
            for name in ["PyTorch eager + SDPA", "PyTorch compile + SDPA"] {
                if let Some(c) = self.row(name) {
                    ratio(format!("{best} / {name}"), a, c);
                }
            }
        }
        // The lowest batch-1 latency of our variants.
        let fastest = self.fastest_at(1);
        if let Some((name, v)) = fastest {
            println!("batch-1 latency (ours, {name}): {:.2} ms", 1000.0 / v);
        }
        if let Some((first, _)) = self.drift.first() {
            for (name, d) in self.drift.iter().skip(1) {
                println!("logits of {name} vs {first}: {d:.1e} of the largest logit (16 inputs)");
            }
        }
        if let Some(f) = self.face {
            println!(
                "face path (MTCNN + crop + classify, 1080p, {} frames): {f}; {}",
                f.frames,
                sustains(&f),
            );
            if let Some(o) = self.face_other {
                println!(
                    "face path with {}: {o}; the default ({}) runs at {:.2}× its frames/s",
                    o.sessions(),
                    f.sessions(),
                    f.frames_per_second / o.frames_per_second
                );
            }
        }
        for f in &self.face_streams {
            println!("face path, {f}; {}", sustains(f));
        }
        for n in self.notes.iter().chain(&self.status) {
            println!("{n}");
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        let rows: BTreeMap<&str, &BTreeMap<usize, f64>> =
            self.rows.iter().map(|(n, r)| (n.as_str(), r)).collect();
        let drift: BTreeMap<&str, f64> = self.drift.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let face = |f: FacePath| {
            serde_json::json!({
                "mtcnn_sessions": if f.per_shape { "per shape" } else { "per network" },
                "streams": f.streams,
                "frames": f.frames,
                "frames_per_second": f.frames_per_second,
                "crops_per_second": f.crops_per_second,
                "ms_per_frame": {"mtcnn": f.detect_ms, "crop": f.crop_ms, "classify": f.classify_ms},
            })
        };
        let doc = serde_json::json!({
            "preset": self.preset,
            "device": self.device,
            "complete": self.complete,
            "crops_per_second": rows,
            "logit_drift": drift,
            "face_path": self.face.map(face),
            "face_path_other_sessions": self.face_other.map(face),
            "face_path_streams": self.face_streams.iter().copied().map(face).collect::<Vec<_>>(),
            "notes": self.notes.iter().chain(&self.status).collect::<Vec<_>>(),
        });
        // Written aside and renamed: a run killed while writing leaves the last whole file.
        let part = path.with_extension("json.part");
        std::fs::write(&part, serde_json::to_string_pretty(&doc)?)?;
        std::fs::rename(&part, path)?;
        Ok(())
    }
}

/// How many 25 fps streams `f` keeps up with when each is analysed at one frame a second.
fn sustains(f: &FacePath) -> String {
    format!(
        "sustains {:.0} streams of 25 fps analysed at 1 frame/s",
        f.frames_per_second.floor()
    )
}
