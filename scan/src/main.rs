//! `sd2-scan`: scans files, folders and globs of videos for deepfaked faces with an SD²
//! model (32 evenly spaced frames a video by default, as the paper evaluates) and prints a
//! table; `--json`, `--csv` and `--report DIR` (an HTML page with face thumbnails and
//! timelines) keep the results. See `sd2-scan --help`.

mod analyse;
mod cli;
mod frames;
mod inputs;
mod progress;
mod record;
mod report;
mod scan;
mod store;
mod table;
mod tally;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match scan::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sd2-scan: {e:#}");
            ExitCode::from(2)
        }
    }
}
