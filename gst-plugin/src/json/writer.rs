//! Lines written by a thread of their own, so a slow disk delays the pipeline only when
//! the queue between them is full, and the caller learns how long it waited.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines queued before the streaming thread has to wait.
const QUEUE: usize = 256;

pub struct LineWriter {
    tx: SyncSender<String>,
    thread: JoinHandle<io::Result<()>>,
}

fn drain(rx: Receiver<String>, mut out: BufWriter<Box<dyn Write + Send>>) -> io::Result<()> {
    while let Ok(first) = rx.recv() {
        // Flush whenever the queue is empty, so readers of the file see each frame promptly.
        for line in std::iter::once(first).chain(rx.try_iter()) {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    out.flush()
}

impl LineWriter {
    /// Opens `location` (`-` is standard output) for writing, truncating a file.
    pub fn open(location: &str) -> io::Result<Self> {
        let sink: Box<dyn Write + Send> = if location == "-" {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(location)?)
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let out = BufWriter::new(sink);
        let thread = std::thread::Builder::new()
            .name("sd2json-writer".into())
            .spawn(move || drain(rx, out))?;
        Ok(LineWriter { tx, thread })
    }

    /// Queues a line. Returns how long the queue was full, or `None` when the writer has
    /// stopped (its error comes from [`finish`](Self::finish)).
    pub fn send(&self, line: String) -> Option<Duration> {
        match self.tx.try_send(line) {
            Ok(()) => Some(Duration::ZERO),
            Err(TrySendError::Full(line)) => {
                let start = Instant::now();
                self.tx.send(line).ok().map(|()| start.elapsed())
            }
            Err(TrySendError::Disconnected(_)) => None,
        }
    }

    /// Writes what is queued and closes the output.
    pub fn finish(self) -> io::Result<()> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_line_in_order() {
        let dir = std::env::temp_dir().join(format!("sd2json-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let w = LineWriter::open(path.to_str().unwrap()).unwrap();
        for i in 0..1000 {
            assert!(w.send(format!("{{\"n\":{i}}}")).is_some());
        }
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "{\"n\":999}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_location_that_cannot_be_created_fails_to_open() {
        assert!(LineWriter::open("/nonexistent-dir/out.jsonl").is_err());
    }
}
