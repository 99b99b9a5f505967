//! What a long command tells the person running it while it runs: the library says it
//! through [`Report`], and the binaries decide where it goes (`sd2-train` prints it to
//! stderr, keeping stdout for its results).

/// Receives what a command has to say while it runs.
pub trait Report {
    /// A message to read: a row skipped, a checkpoint set aside, where a run resumes.
    fn note(&mut self, message: &str);

    /// The progress line of a training step; `last`: the run's last step. Each line
    /// supersedes the one before, so a reporter may show only some of them.
    fn progress(&mut self, line: &str, last: bool) {
        if last {
            self.note(line);
        }
    }
}

/// A report that goes nowhere, for callers that only want the result.
pub struct Quiet;

impl Report for Quiet {
    fn note(&mut self, _: &str) {}
}

/// Collects the notes, in order.
impl Report for Vec<String> {
    fn note(&mut self, message: &str) {
        self.push(message.to_owned());
    }
}
