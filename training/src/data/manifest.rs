//! The training manifest: one JSON object per line, one face image per object.
//!
//! ```json
//! {"image": "crops/df40/simswap/000/0007.png", "type": "FS", "dataset": "DF40", "method": "simswap",
//!  "split": "train", "group": "simswap/000", "face": "A young woman with …", "environment": "An indoor …"}
//! ```
//!
//! `image` (relative to the manifest's folder, or absolute) and `type` (`REAL`, `FS`, `FR`,
//! `EFS`, `FE`) are required. `split` is `train` (default), `val` or `test`; `group` is the
//! video or identity the image belongs to (for video-level metrics and leak-free splits;
//! default: the image path); `face` and `environment` are the VLM descriptions of §3 (rows
//! without them still train, the contrastive terms skip them). Other fields are kept for
//! reports and ignored otherwise. See `training/MANIFEST.md`.
//!
//! Opening a manifest reads each line once and keeps only its offset, type, split, dataset
//! and group, so millions of rows take a few bytes each; rows are parsed again when a batch
//! needs them. Lines that are not valid rows are reported and skipped, and so are lines longer
//! than [`MAX_ROW_BYTES`], which are never held whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sd2_models::taxonomy::DeepfakeType;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "val" | "valid" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(format!(
                "unknown split `{other}` (expected train, val or test)"
            )),
        }
    }
}

/// One manifest line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub image: String,
    #[serde(rename = "type")]
    pub kind: DeepfakeType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(default = "default_split")]
    pub split: Split,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

fn default_split() -> Split {
    Split::Train
}

impl Row {
    /// The group, defaulting to the image path.
    pub fn group_or_image(&self) -> &str {
        if self.group.is_empty() {
            &self.image
        } else {
            &self.group
        }
    }
}

/// What the index keeps of a row.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    offset: u64,
    len: u32,
    /// 1-based line number, for messages.
    pub line: u32,
    pub kind: DeepfakeType,
    pub split: Split,
    /// Index into [`Manifest::datasets`].
    pub dataset: u16,
    /// Index into [`Manifest::groups`].
    pub group: u32,
}

/// The longest line read as a row, its line break included: rows are a few hundred bytes.
pub const MAX_ROW_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read the manifest: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: no usable rows ({problems} lines skipped)")]
    Empty { path: PathBuf, problems: usize },
    #[error("{path}: more than {} lines", u32::MAX)]
    TooManyLines { path: PathBuf },
    #[error(
        "{path}: line {line}: a {}th dataset name; a manifest holds at most {} datasets",
        u16::MAX as usize + 2,
        u16::MAX as usize + 1
    )]
    TooManyDatasets { path: PathBuf, line: u32 },
}

/// Why a row indexed at open could not be read again.
#[derive(Debug, thiserror::Error)]
pub enum RowProblem {
    #[error("cannot read it again: {0}")]
    Reread(io::Error),
    #[error("{0}")]
    Json(serde_json::Error),
}

/// A row of the manifest at `path` that could not be read again (the file changed since it
/// was opened).
#[derive(Debug, thiserror::Error)]
#[error("{path}: line {line}: {problem}")]
pub struct RowError {
    pub path: PathBuf,
    pub line: u32,
    pub problem: RowProblem,
}

/// The 64-bit FNV-1a hash: stable across Rust versions and platforms, unlike std's hasher.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Reads the next line of `reader`, its line break included, into `line`, holding at most
/// `MAX_ROW_BYTES` of its bytes; every byte goes into `digest`. Returns the line's whole
/// length, 0 at the end of the file.
fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    digest: &mut Fnv1a,
) -> io::Result<usize> {
    line.clear();
    let mut total = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        digest.write(chunk);
        let room = MAX_ROW_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        total += n;
        if ends {
            return Ok(total);
        }
    }
}

/// An opened manifest.
pub struct Manifest {
    pub path: PathBuf,
    root: PathBuf,
    pub entries: Vec<Entry>,
    pub datasets: Vec<String>,
    pub groups: Vec<String>,
    /// Lines skipped, with why (the first 100).
    pub problems: Vec<String>,
    pub skipped: usize,
    /// FNV-1a of the file's bytes: what a resumed run checks it trains on the same rows.
    pub digest: u64,
    file: Mutex<File>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .field("rows", &self.entries.len())
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// Indexes `path`. Images are resolved against its folder unless `image_root` is given.
    pub fn open(path: &Path, image_root: Option<&Path>) -> Result<Self, ManifestError> {
        let err = |reason: String| ManifestError::Read {
            path: path.to_owned(),
            reason,
        };
        let file = File::open(path).map_err(|e| err(e.to_string()))?;
        let mut reader =
            BufReader::with_capacity(1 << 20, file.try_clone().map_err(|e| err(e.to_string()))?);
        let mut entries = Vec::new();
        let (mut datasets, mut dataset_ids) = (Vec::new(), HashMap::new());
        let (mut groups, mut group_ids) = (Vec::new(), HashMap::new());
        let mut problems = Vec::new();
        let mut skipped = 0;
        let mut skip = |problem: String| {
            skipped += 1;
            if problems.len() < 100 {
                problems.push(problem);
            }
        };
        let mut offset = 0u64;
        // Bytes, not a String: a line that is not UTF-8 is one bad row, not a bad file. Room
        // for the longest row once, so that a longer line is never held whole.
        let mut line = Vec::with_capacity(MAX_ROW_BYTES);
        let mut number = 0u32;
        let mut digest = Fnv1a::default();
        loop {
            let n =
                read_line(&mut reader, &mut line, &mut digest).map_err(|e| err(e.to_string()))?;
            if n == 0 {
                break;
            }
            number = number
                .checked_add(1)
                .ok_or_else(|| ManifestError::TooManyLines {
                    path: path.to_owned(),
                })?;
            let line_start = offset;
            offset += n as u64;
            if n > MAX_ROW_BYTES {
                skip(format!(
                    "line {number}: {n} bytes, more than a row may have ({MAX_ROW_BYTES})"
                ));
                continue;
            }
            // Editors on Windows begin UTF-8 files with a byte-order mark: not part of a row.
            let body = match line.strip_prefix(b"\xEF\xBB\xBF") {
                Some(rest) if number == 1 => rest,
                _ => &line[..],
            };
            let start = line_start + (n - body.len()) as u64;
            let text = body.trim_ascii();
            if text.is_empty() || text.starts_with(b"#") {
                continue;
            }
            match serde_json::from_slice::<Row>(text) {
                Ok(row) if !row.image.is_empty() => {
                    let intern =
                        |name: &str, list: &mut Vec<String>, ids: &mut HashMap<String, usize>| {
                            *ids.entry(name.to_owned()).or_insert_with(|| {
                                list.push(name.to_owned());
                                list.len() - 1
                            })
                        };
                    let dataset = intern(&row.dataset, &mut datasets, &mut dataset_ids);
                    let dataset =
                        u16::try_from(dataset).map_err(|_| ManifestError::TooManyDatasets {
                            path: path.to_owned(),
                            line: number,
                        })?;
                    // Fewer groups than lines, whose count fits a u32.
                    let group = intern(row.group_or_image(), &mut groups, &mut group_ids) as u32;
                    entries.push(Entry {
                        offset: start,
                        // At most MAX_ROW_BYTES.
                        len: body.len() as u32,
                        line: number,
                        kind: row.kind,
                        split: row.split,
                        dataset,
                        group,
                    });
                }
                Ok(_) => skip(format!("line {number}: `image` is empty")),
                Err(e) => skip(format!("line {number}: {e}")),
            }
        }
        if entries.is_empty() {
            return Err(ManifestError::Empty {
                path: path.to_owned(),
                problems: skipped,
            });
        }
        let root = image_root
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());
        Ok(Manifest {
            path: path.to_owned(),
            root,
            entries,
            datasets,
            groups,
            problems,
            skipped,
            digest: digest.0,
            file: Mutex::new(file),
        })
    }

    /// Indices of the rows of `split`.
    pub fn split(&self, split: Split) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].split == split)
            .collect()
    }

    /// Row `i`, parsed again from the file.
    pub fn row(&self, i: usize) -> Result<Row, RowError> {
        let e = self.entries[i];
        let error = |problem: RowProblem| RowError {
            path: self.path.clone(),
            line: e.line,
            problem,
        };
        let mut buf = vec![0u8; e.len as usize];
        {
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.seek(SeekFrom::Start(e.offset))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|err| error(RowProblem::Reread(err)))?;
        }
        serde_json::from_slice(&buf).map_err(|err| error(RowProblem::Json(err)))
    }

    /// Where a row's image is.
    pub fn image_path(&self, row: &Row) -> PathBuf {
        let p = Path::new(&row.image);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut text = concat!(
            "{\"image\": \"a.png\", \"type\": \"REAL\", \"split\": \"train\", \"group\": \"v1\"}\n",
            "not json at all\n",
            "{\"image\": \"b.png\", \"type\": \"DEEPFAKE\"}\n",
            "\n",
            "{\"image\": \"c.png\", \"type\": \"FS\", \"split\": \"test\", \"face\": \"a face\", \"dataset\": \"DF40\"}\n",
        )
        .as_bytes()
        .to_vec();
        // A line that is not UTF-8.
        text.extend_from_slice(b"{\"image\": \"\xff.png\", \"type\": \"REAL\"}\n");
        std::fs::write(&path, text).unwrap();
        let m = Manifest::open(&path, None).unwrap();
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.skipped, 3);
        assert!(m.problems[2].starts_with("line 6:"), "{:?}", m.problems);
        assert!(m.problems[0].starts_with("line 2:"), "{:?}", m.problems);
        assert!(
            m.problems[1].starts_with("line 3:") && m.problems[1].contains("DEEPFAKE"),
            "{:?}",
            m.problems
        );
        assert_eq!(m.split(Split::Test), vec![1]);
        let row = m.row(1).unwrap();
        assert_eq!(row.kind, DeepfakeType::FaceSwap);
        assert_eq!(row.face.as_deref(), Some("a face"));
        assert_eq!(m.image_path(&row), dir.path().join("c.png"));
        assert_eq!(m.groups[m.entries[1].group as usize], "c.png");
        assert_eq!(m.datasets[m.entries[1].dataset as usize], "DF40");
    }

    #[test]
    fn a_manifest_without_rows_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(
            Manifest::open(&path, None)
                .unwrap_err()
                .to_string()
                .contains("no usable rows (1 lines skipped)")
        );
    }

    #[test]
    fn a_byte_order_mark_does_not_cost_the_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let rows = "{\"image\": \"a.png\", \"type\": \"FE\"}\n{\"image\": \"b.png\", \"type\": \"REAL\"}\n";
        std::fs::write(&path, format!("\u{feff}{rows}")).unwrap();
        let m = Manifest::open(&path, None).unwrap();
        assert_eq!((m.entries.len(), m.skipped), (2, 0), "{:?}", m.problems);
        assert_eq!(m.row(0).unwrap().image, "a.png");
        assert_eq!(m.row(1).unwrap().image, "b.png");
        // The digest follows the bytes.
        let plain = dir.path().join("plain.jsonl");
        std::fs::write(&plain, rows).unwrap();
        assert_ne!(Manifest::open(&plain, None).unwrap().digest, m.digest);
        std::fs::write(&path, rows).unwrap();
        assert_eq!(
            Manifest::open(&path, None).unwrap().digest,
            Manifest::open(&plain, None).unwrap().digest
        );
    }
}
