//! Opens a local HTML page in headless Chromium, saves a PNG screenshot, and lists what
//! failed (broken images, script errors, failed requests); exits 1 when anything did.
//!
//!     cargo run --release -p sd2-e2e --example screenshot -- PAGE.html OUT.png [WIDTHxHEIGHT] [--full-page]

use std::path::PathBuf;
use std::process::ExitCode;

use sd2_e2e::browser::{Options, check_page};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options::default();
    let mut paths = Vec::new();
    for a in &args {
        if a == "--full-page" {
            options.full_page = true;
        } else if let Some((w, h)) = a.split_once('x').filter(|_| !a.contains('.')) {
            match (w.parse(), h.parse()) {
                (Ok(w), Ok(h)) => (options.width, options.height) = (w, h),
                _ => {
                    eprintln!("screenshot: {a} is not WIDTHxHEIGHT");
                    return ExitCode::from(2);
                }
            }
        } else {
            paths.push(PathBuf::from(a));
        }
    }
    let [page, out] = paths.as_slice() else {
        eprintln!("usage: screenshot PAGE.html OUT.png [WIDTHxHEIGHT] [--full-page]");
        return ExitCode::from(2);
    };
    match check_page(page, out, &options) {
        Ok(check) => {
            eprintln!(
                "{}: {} images loaded; screenshot in {}",
                page.display(),
                check.images_loaded.len(),
                out.display()
            );
            let problems = check.problems();
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("screenshot: {e}");
            ExitCode::from(2)
        }
    }
}
