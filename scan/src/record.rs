//! One JSON line per video: which file (path, size, modification time), how it was scanned,
//! and what was found or why it could not be read.

use std::path::Path;
use std::time::UNIX_EPOCH;

use sd2_models::taxonomy::DeepfakeType;
use serde::{Deserialize, Serialize};

use crate::tally::FramePoint;

/// A file as it was when scanned: a rerun skips it while all three are unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// The absolute path.
    pub path: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
}

impl FileId {
    /// The file at the absolute `path`, as it is now.
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Ok(FileId {
            path: path.to_string_lossy().into_owned(),
            size: meta.len(),
            mtime_ns,
        })
    }
}

/// How videos were scanned: a rerun with other settings scans them again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanSettings {
    /// The SD² model file (absolute path).
    pub model: String,
    /// Which frames: `32 per video`, `2 per second` or `every frame`.
    pub sampling: String,
    /// `argmax` (the paper's rule) or `threshold`.
    pub decision: String,
    pub threshold: f32,
}

/// The five probabilities, named by type.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct Probabilities {
    pub REAL: f32,
    pub FS: f32,
    pub FR: f32,
    pub EFS: f32,
    pub FE: f32,
}

impl From<[f32; DeepfakeType::COUNT]> for Probabilities {
    fn from(p: [f32; DeepfakeType::COUNT]) -> Self {
        Probabilities {
            REAL: p[0],
            FS: p[1],
            FR: p[2],
            EFS: p[3],
            FE: p[4],
        }
    }
}

/// A video's verdict: the mean of its faces' probabilities, judged by the face's rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoVerdictRecord {
    pub fake: bool,
    /// REAL for a real video, its most likely manipulation for a fake one.
    pub label: DeepfakeType,
    /// 1 − the mean p(REAL).
    pub fake_score: f32,
    pub probabilities: Probabilities,
}

/// A face at its most suspicious frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuspiciousFace {
    pub track_id: u64,
    /// Analysed frames the face is on, and those it was judged fake on.
    pub frames: usize,
    pub fake_frames: usize,
    /// The most suspicious frame: when, its fake score, judgement and label.
    pub time_s: f64,
    pub fake_score: f32,
    pub fake: bool,
    pub label: DeepfakeType,
    /// x, y, width, height in frame pixels.
    pub rect: [u32; 4],
    /// The crop, relative to the report folder; absent without `--report`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thumbnail: Option<String>,
}

/// What a scanned video holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoReport {
    /// Absent when no face was classified.
    pub verdict: Option<VideoVerdictRecord>,
    /// Distinct faces (tracks).
    pub faces: usize,
    /// Face verdicts averaged into the verdict.
    pub face_verdicts: usize,
    pub frames_analysed: usize,
    pub duration_s: Option<f64>,
    /// The most suspicious frame's fake score, and when it is.
    pub peak_frame_score: Option<f32>,
    pub peak_frame_time_s: Option<f64>,
    /// Frames with at least one face judged fake.
    pub fake_frames: usize,
    pub suspicious_faces: Vec<SuspiciousFace>,
    pub timeline: Vec<FramePoint>,
    /// Wall-clock seconds the scan took.
    pub scan_seconds: f64,
}

/// Scanned, or why not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Scanned(Box<VideoReport>),
    Error { error: String },
}

/// One line of the output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub file: FileId,
    pub settings: ScanSettings,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Record {
    pub fn report(&self) -> Option<&VideoReport> {
        match &self.outcome {
            Outcome::Scanned(r) => Some(r),
            Outcome::Error { .. } => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Error { error } => Some(error),
            Outcome::Scanned(_) => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Record {
        Record {
            file: FileId {
                path: "/videos/a clip.mp4".into(),
                size: 1234,
                mtime_ns: 1_700_000_000_123_456_789,
            },
            settings: ScanSettings {
                model: "/models/sd2.onnx".into(),
                sampling: "32 per video".into(),
                decision: "argmax".into(),
                threshold: 0.5,
            },
            outcome: Outcome::Scanned(Box::new(VideoReport {
                verdict: Some(VideoVerdictRecord {
                    fake: true,
                    label: DeepfakeType::FaceSwap,
                    fake_score: 0.6,
                    probabilities: [0.4, 0.5, 0.05, 0.03, 0.02].into(),
                }),
                faces: 1,
                face_verdicts: 2,
                frames_analysed: 2,
                duration_s: Some(1.0),
                peak_frame_score: Some(0.7),
                peak_frame_time_s: Some(0.5),
                fake_frames: 1,
                suspicious_faces: vec![],
                timeline: vec![],
                scan_seconds: 0.5,
            })),
        }
    }

    #[test]
    fn a_record_is_one_flat_json_object_that_reads_back() {
        let r = sample();
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/videos/a clip.mp4");
        assert_eq!(v["status"], "scanned");
        assert_eq!(v["verdict"]["label"], "FS");
        assert_eq!(
            v["verdict"]["probabilities"]["REAL"].as_f64().unwrap() as f32,
            0.4
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);

        let e = Record {
            outcome: Outcome::Error {
                error: "not a video".into(),
            },
            ..r
        };
        let line = serde_json::to_string(&e).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["error"].as_str()),
            (Some("error"), Some("not a video"))
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), e);
    }
}
