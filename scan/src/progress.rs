//! Progress on stderr: a bar per video being scanned and one for the whole scan, drawn only
//! when stderr is a terminal; log lines printed above them.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Per-file bars count in thousandths of the video's duration.
const FILE_STEPS: u64 = 1000;

pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
}

impl Progress {
    /// Bars for a scan of `total` videos.
    pub fn new(total: usize) -> Self {
        // Hidden by indicatif itself when stderr is not a terminal.
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>32} [{bar:30}] {pos}/{len} videos, {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        overall.set_prefix("all");
        Progress { multi, overall }
    }

    /// A bar for one video, above the overall one.
    pub fn file(&self, name: &str) -> ProgressBar {
        let bar = self
            .multi
            .insert_before(&self.overall, ProgressBar::new(FILE_STEPS));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>32} [{bar:30}] {percent:>3}% {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(tail(name, 32));
        bar
    }

    /// Moves `bar` to `fraction` of its video with `frames` analysed.
    pub fn update(bar: &ProgressBar, fraction: Option<f64>, frames: usize) {
        if let Some(f) = fraction {
            bar.set_position((f.clamp(0.0, 1.0) * FILE_STEPS as f64) as u64);
        }
        bar.set_message(format!("{frames} frames"));
    }

    /// Removes `bar` and counts its video done.
    pub fn done(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(bar);
        self.overall.inc(1);
    }

    /// A line on stderr, above the bars.
    pub fn log(&self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

/// The last `n` characters of `s`, marked with `…` when cut.
fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_owned();
    }
    let kept: String = s.chars().skip(count - (n - 1)).collect();
    format!("…{kept}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(tail("short.mp4", 32), "short.mp4");
        let t = tail("/a/very/long/folder/name/with/a/clip-0001.mp4", 16);
        assert_eq!(t, "…a/clip-0001.mp4");
        assert_eq!(t.chars().count(), 16);
    }
}
