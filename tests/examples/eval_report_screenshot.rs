//! What Chromium shows of an evaluation report, as a PNG, after the same check as the
//! tests (every image loaded, no script or request failed):
//!
//!     cargo run --release -p sd2-e2e --example eval-report-screenshot -- REPORT/index.html OUT.png [WIDTH HEIGHT]

#[path = "../chromium/mod.rs"]
mod chromium;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = |i: usize, default: u32| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (Some(page), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: eval-report-screenshot REPORT/index.html OUT.png [WIDTH HEIGHT]");
        return ExitCode::from(2);
    };
    match chromium::check_page(
        Path::new(page),
        Path::new(out),
        (size(2, 1280), size(3, 1000)),
    ) {
        Ok(c) if c.problems().is_empty() => {
            eprintln!(
                "wrote {out}: \"{}\", {} images loaded",
                c.title,
                c.images_loaded.len()
            );
            ExitCode::SUCCESS
        }
        Ok(c) => {
            eprintln!("{page}: {}", c.problems().join("; "));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{page}: {e}");
            ExitCode::FAILURE
        }
    }
}
