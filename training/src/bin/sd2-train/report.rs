//! Where `sd2-train` says what happens while a command runs: stderr, stdout keeping the
//! command's results. On a terminal the progress line is redrawn in place and notes are
//! written above it; elsewhere (a log) a progress line at most every 10 seconds, and the last.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use sd2_train::report::Report;

/// Between two progress lines written to a file or a pipe.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Stderr {
    terminal: bool,
    last_progress: Option<Instant>,
}

impl Stderr {
    pub fn new() -> Self {
        Stderr {
            terminal: std::io::stderr().is_terminal(),
            last_progress: None,
        }
    }
}

impl Report for Stderr {
    fn note(&mut self, message: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{message}");
    }

    fn progress(&mut self, line: &str, last: bool) {
        let every = if self.terminal {
            Duration::ZERO
        } else {
            LOG_EVERY
        };
        let due = self.last_progress.is_none_or(|t| t.elapsed() >= every);
        if !due && !last {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
            if last {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
        self.last_progress = Some(Instant::now());
    }
}
