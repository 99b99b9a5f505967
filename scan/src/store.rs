//! The JSON lines output: one record appended per video as it finishes, so that a scan
//! stopped half way loses nothing finished; a rerun reads it back and skips every file
//! scanned before with the same path, size, modification time and settings. Files that
//! could not be read are tried again. The last record of a path is the one that counts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::{FileId, Record, ScanSettings};

/// Why the output cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open {path} for reading and appending: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot append to {path}: {source}")]
    Append {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The output file, open for appending, with the records already in it.
pub struct Store {
    path: PathBuf,
    file: File,
    latest: HashMap<String, Record>,
}

impl Store {
    /// Opens (or creates) `path`; lines that are not records are reported in the returned
    /// warnings (each naming the file and line) and otherwise ignored.
    pub fn open(path: &Path) -> Result<(Store, Vec<String>), StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(open_error)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(open_error)?;
        let mut latest = HashMap::new();
        let mut warnings = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => {
                    latest.insert(r.file.path.clone(), r);
                }
                Err(e) => warnings.push(format!(
                    "{}:{}: not a scan record, ignored ({e})",
                    path.display(),
                    i + 1
                )),
            }
        }
        // A run killed while writing leaves a partial last line: end it, so the next
        // record starts on a line of its own.
        if !text.is_empty() && !text.ends_with('\n') {
            file.seek(SeekFrom::End(0)).map_err(open_error)?;
            file.write_all(b"\n").map_err(open_error)?;
        }
        let store = Store {
            path: path.to_owned(),
            file,
            latest,
        };
        Ok((store, warnings))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of a scan of `file` as it is now with `settings`, if there is one.
    pub fn scanned(&self, file: &FileId, settings: &ScanSettings) -> Option<&Record> {
        self.latest
            .get(&file.path)
            .filter(|r| r.file == *file && r.settings == *settings && r.report().is_some())
    }

    /// Appends `record` as one line and pushes it to the disk.
    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| StoreError::Append {
                path: self.path.clone(),
                source,
            })?;
        self.latest.insert(record.file.path.clone(), record.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::record::tests::sample;

    #[test]
    fn a_reopened_store_knows_what_was_scanned_with_which_file_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let r = sample();
        {
            let (mut store, warnings) = Store::open(&path).unwrap();
            assert!(warnings.is_empty());
            assert!(store.scanned(&r.file, &r.settings).is_none());
            store.append(&r).unwrap();
        }
        let (store, _) = Store::open(&path).unwrap();
        assert_eq!(store.scanned(&r.file, &r.settings), Some(&r));
        let touched = FileId {
            mtime_ns: r.file.mtime_ns + 1,
            ..r.file.clone()
        };
        assert!(store.scanned(&touched, &r.settings).is_none());
        let grown = FileId {
            size: r.file.size + 1,
            ..r.file.clone()
        };
        assert!(store.scanned(&grown, &r.settings).is_none());
        let other_model = ScanSettings {
            model: "/models/other.onnx".into(),
            ..r.settings.clone()
        };
        assert!(store.scanned(&r.file, &other_model).is_none());
    }

    #[test]
    fn errors_are_not_taken_as_scanned_and_the_last_record_of_a_path_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let r = sample();
        let failed = Record {
            outcome: Outcome::Error {
                error: "truncated".into(),
            },
            ..r.clone()
        };
        let (mut store, _) = Store::open(&path).unwrap();
        store.append(&r).unwrap();
        store.append(&failed).unwrap();
        drop(store);
        let (store, _) = Store::open(&path).unwrap();
        assert!(store.scanned(&r.file, &r.settings).is_none());
    }

    #[test]
    fn a_partial_last_line_is_reported_and_the_next_record_starts_on_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let r = sample();
        let full = serde_json::to_string(&r).unwrap();
        std::fs::write(&path, format!("{full}\n{}", &full[..40])).unwrap();
        let (mut store, warnings) = Store::open(&path).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("results.jsonl:2"), "{warnings:?}");
        assert!(store.scanned(&r.file, &r.settings).is_some());
        store.append(&r).unwrap();
        drop(store);
        let (_, warnings) = Store::open(&path).unwrap();
        assert_eq!(
            warnings.len(),
            1,
            "only the partial line is bad: {warnings:?}"
        );
    }
}
