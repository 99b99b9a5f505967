//! A file target: each message one line, appended; standard output with `-`. A message is
//! confirmed once written; the file is synced before the spool records that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use super::link::{Link, LinkError};
use super::record::Record;

enum Output {
    Stdout,
    File(File),
}

pub struct FileLink {
    destination: String,
    out: Output,
    confirmed: Vec<u64>,
}

impl FileLink {
    /// Opens `path` for appending (created when missing); `None` is standard output.
    pub fn open(path: Option<&Path>) -> Result<FileLink, LinkError> {
        let (destination, out) = match path {
            None => ("standard output".to_owned(), Output::Stdout),
            Some(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| LinkError::Unreachable {
                        destination: p.display().to_string(),
                        reason: e.to_string(),
                    })?;
                (p.display().to_string(), Output::File(f))
            }
        };
        Ok(FileLink {
            destination,
            out,
            confirmed: Vec::new(),
        })
    }

    fn failed(&self, e: io::Error) -> LinkError {
        LinkError::Unreachable {
            destination: self.destination.clone(),
            reason: e.to_string(),
        }
    }
}

impl Link for FileLink {
    fn window(&self) -> usize {
        1
    }

    fn send(&mut self, record: &Record) -> Result<(), LinkError> {
        let mut line = Vec::with_capacity(record.payload.len() + 1);
        line.extend_from_slice(&record.payload);
        line.push(b'\n');
        // One write, so that a line is never split by another writer of the file.
        let written = match &mut self.out {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Output::File(f) => f.write_all(&line),
        };
        written.map_err(|e| self.failed(e))?;
        self.confirmed.push(record.seq);
        Ok(())
    }

    fn poll(&mut self, _timeout: Duration, confirmed: &mut Vec<u64>) -> Result<(), LinkError> {
        confirmed.append(&mut self.confirmed);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), LinkError> {
        match &self.out {
            Output::Stdout => Ok(()),
            Output::File(f) => f.sync_data().map_err(|e| self.failed(e)),
        }
    }
}
