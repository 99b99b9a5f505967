//! The HTML report: `index.html`, and beside it `thumbs/` (the most suspicious face crops,
//! JPEG, cut while scanning) and `plots/` (one fake-score timeline per video, SVG). Plain
//! HTML and CSS, relative links, nothing loaded from elsewhere, so the folder can be copied
//! or mailed whole.

mod html;
mod plot;

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::record::ScanSettings;
use crate::table::Row;

pub const THUMBS: &str = "thumbs";
pub const PLOTS: &str = "plots";

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the thumbnail {path}: {source}")]
    Thumbnail {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("cannot draw the timeline of {video}: {reason}")]
    Plot { video: String, reason: String },
}

/// A name for a video's files in the report, stable across runs: its file name's letters
/// and digits, and a hash of its whole path (so two `clip.mp4` in different folders differ).
pub fn video_id(path: &str) -> String {
    let name = Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{slug}-{:016x}", fnv1a(path.as_bytes()))
}

/// FNV-1a, 64 bits: a hash whose value never changes between builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `image` as the `rank`-th thumbnail of the video at `path`; returns its path
/// relative to the report folder.
pub fn save_thumbnail(
    dir: &Path,
    path: &str,
    rank: usize,
    image: &RgbImage,
) -> Result<String, ReportError> {
    let relative = format!("{THUMBS}/{}-{rank}.jpg", video_id(path));
    let file = dir.join(&relative);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ReportError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 88)
        .encode_image(image)
        .map_err(|source| ReportError::Thumbnail {
            path: file.clone(),
            source,
        })?;
    write_atomically(&file, out.get_ref())?;
    Ok(relative)
}

/// Writes `bytes` to `path` through a temporary file, so a reader never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let part = path.with_extension("part");
    std::fs::write(&part, bytes)
        .and_then(|()| std::fs::rename(&part, path))
        .map_err(|source| ReportError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Writes `index.html` and the timelines for `rows` into `dir`; returns the page's path.
pub fn write(
    dir: &Path,
    rows: &[Row<'_>],
    settings: &ScanSettings,
    line: f64,
) -> Result<PathBuf, ReportError> {
    let plots = dir.join(PLOTS);
    std::fs::create_dir_all(&plots).map_err(|source| ReportError::Write {
        path: plots.clone(),
        source,
    })?;
    for row in rows {
        if let Some(rep) = row.record.report() {
            let svg =
                plot::timeline_svg(&rep.timeline, rep.duration_s, line).map_err(|reason| {
                    ReportError::Plot {
                        video: row.shown.to_owned(),
                        reason,
                    }
                })?;
            let file = plots.join(format!("{}.svg", video_id(&row.record.file.path)));
            write_atomically(&file, svg.as_bytes())?;
        }
    }
    let page = html::page(dir, rows, settings, line);
    let index = dir.join("index.html");
    write_atomically(&index, page.as_bytes())?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ids_are_safe_file_names_that_tell_same_named_files_apart() {
        let a = video_id("/videos/day 1/clip (final).mp4");
        let b = video_id("/videos/day 2/clip (final).mp4");
        assert!(a.starts_with("clip__final_-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, video_id("/videos/day 1/clip (final).mp4"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        // FNV-1a's published test value, so ids stay the same across builds.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
