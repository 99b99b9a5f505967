//! Import of DeepfakeBench dataset JSON files into a manifest.
//!
//! A DeepfakeBench file is `{dataset: {label: {split: {video: {"label", "frames"}}}}}`;
//! FaceForensics++-family files nest the compression (`c23`, `c40`, `raw`) under the split.
//! Every frame becomes a manifest row: its path, the type of its label, the dataset, the
//! split, and `dataset/label/video` as its group. Types come from `data/deepfakebench_types.tsv`
//! (DeepfakeBench's labels and DF40's 40 methods) and the user's overrides; labels whose
//! type cannot be found are reported and their frames skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sd2_models::taxonomy::DeepfakeType;

use super::manifest::{Row, Split};

/// The shipped table.
pub const TYPES_TSV: &str = include_str!("../../data/deepfakebench_types.tsv");

/// Label and method names → type, case-insensitive.
#[derive(Clone, Debug)]
pub struct TypeTable(HashMap<String, DeepfakeType>);

impl TypeTable {
    pub fn shipped() -> Self {
        let mut map = HashMap::new();
        for line in TYPES_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let mut cols = line.split('\t');
            let (Some(name), Some(kind)) = (cols.next(), cols.next()) else {
                continue;
            };
            if let Ok(kind) = DeepfakeType::from_str(kind) {
                map.insert(name.to_ascii_lowercase(), kind);
            }
        }
        TypeTable(map)
    }

    /// Adds or replaces `name → type` (from `--type NAME=TYPE`).
    pub fn set(&mut self, name: &str, kind: DeepfakeType) {
        self.0.insert(name.to_ascii_lowercase(), kind);
    }

    /// The type of a frame: REAL for real labels, else the label, its method, or a folder of
    /// the frame's path.
    pub fn resolve(&self, label: &str, frame: &str) -> Option<DeepfakeType> {
        let lower = label.to_ascii_lowercase();
        if lower.ends_with("_real") || lower.ends_with("-real") || lower == "real" {
            return Some(DeepfakeType::Real);
        }
        if let Some(k) = self.0.get(&lower) {
            return Some(*k);
        }
        let method = lower
            .trim_end_matches("_fake")
            .trim_end_matches("_ff")
            .trim_end_matches("_cdf");
        if let Some(k) = self.0.get(method) {
            return Some(*k);
        }
        frame
            .replace('\\', "/")
            .split('/')
            .rev()
            .skip(1)
            .find_map(|part| self.0.get(&part.to_ascii_lowercase()).copied())
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub rows: Vec<Row>,
    /// Frames per label whose type is unknown.
    pub unknown: BTreeMap<String, usize>,
    pub videos: usize,
}

fn frames_of(video: &serde_json::Value) -> Vec<String> {
    video["frames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(|s| s.replace('\\', "/")))
                .collect()
        })
        .unwrap_or_default()
}

/// What went wrong reading a DeepfakeBench JSON file.
#[derive(Debug, thiserror::Error)]
pub enum DeepfakeBenchError {
    #[error("{path}: cannot read the DeepfakeBench file: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not JSON: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{path}: expected an object of datasets ({{dataset: {{label: {{split: …}}}}}})")]
    NotAnObject { path: PathBuf },
    #[error("{path}: `{dataset}` is not an object of labels")]
    NotLabels { path: PathBuf, dataset: String },
}

/// Reads one DeepfakeBench JSON file. `compression` picks the level where the file nests
/// one (`c23` by default in the CLI).
pub fn import(
    path: &Path,
    table: &TypeTable,
    compression: &str,
    report: &mut ImportReport,
) -> Result<(), DeepfakeBenchError> {
    let text = std::fs::read(path).map_err(|error| DeepfakeBenchError::Read {
        path: path.to_owned(),
        error,
    })?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|error| DeepfakeBenchError::Json {
            path: path.to_owned(),
            error,
        })?;
    let top = json
        .as_object()
        .ok_or_else(|| DeepfakeBenchError::NotAnObject {
            path: path.to_owned(),
        })?;
    for (dataset, labels) in top {
        let labels = labels
            .as_object()
            .ok_or_else(|| DeepfakeBenchError::NotLabels {
                path: path.to_owned(),
                dataset: dataset.clone(),
            })?;
        for (label, splits) in labels {
            let Some(splits) = splits.as_object() else {
                continue;
            };
            for (split_name, videos) in splits {
                let Ok(split) = Split::from_str(split_name) else {
                    continue;
                };
                let Some(mut videos) = videos.as_object() else {
                    continue;
                };
                // FaceForensics++ files nest the compression level here.
                if videos
                    .keys()
                    .any(|k| matches!(k.as_str(), "c23" | "c40" | "raw"))
                {
                    match videos.get(compression).and_then(|v| v.as_object()) {
                        Some(v) => videos = v,
                        None => continue,
                    }
                }
                for (video, info) in videos {
                    let frames = frames_of(info);
                    if frames.is_empty() {
                        continue;
                    }
                    report.videos += 1;
                    let row_label = info["label"].as_str().unwrap_or(label);
                    for frame in frames {
                        match table.resolve(row_label, &frame) {
                            Some(kind) => report.rows.push(Row {
                                image: frame,
                                kind,
                                dataset: dataset.clone(),
                                method: row_label.to_owned(),
                                split,
                                // FaceForensics++'s manipulations share their videos'
                                // keys (DF and F2F both have 000_003): a group is one
                                // label's video.
                                group: format!("{dataset}/{row_label}/{video}"),
                                face: None,
                                environment: None,
                            }),
                            None => *report.unknown.entry(row_label.to_owned()).or_default() += 1,
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_methods_and_paths_resolve_to_types() {
        let t = TypeTable::shipped();
        assert_eq!(t.resolve("FF-real", ""), Some(DeepfakeType::Real));
        assert_eq!(t.resolve("FF-F2F", ""), Some(DeepfakeType::FaceReenactment));
        assert_eq!(t.resolve("simswap_Fake", ""), Some(DeepfakeType::FaceSwap));
        assert_eq!(t.resolve("e4e_ff", ""), Some(DeepfakeType::FaceEditing));
        assert_eq!(
            t.resolve("StyleGAN3_Fake", ""),
            Some(DeepfakeType::EntireFaceSynthesis)
        );
        assert_eq!(
            t.resolve("DF40_train_Fake", "DF40_train/sadtalker/ff/000/001.png"),
            Some(DeepfakeType::FaceReenactment)
        );
        assert_eq!(t.resolve("mystery_Fake", "x/y/0.png"), None);
        // All 40 DF40 methods are in the table.
        let df40 = [
            "fsgan",
            "faceswap",
            "simswap",
            "inswap",
            "blendface",
            "uniface",
            "mobileswap",
            "e4s",
            "facedancer",
            "deepfacelab",
            "fomm",
            "facevid2vid",
            "wav2lip",
            "MRAA",
            "one_shot_free",
            "pirender",
            "tpsm",
            "lia",
            "danet",
            "sadtalker",
            "mcnet",
            "hyperreenact",
            "heygen",
            "VQGAN",
            "StyleGAN2",
            "StyleGAN3",
            "StyleGANXL",
            "sd2.1",
            "ddim",
            "rddm",
            "pixart",
            "DiT",
            "SiT",
            "MidJourney",
            "whichisreal",
            "CollabDiff",
            "e4e",
            "stargan",
            "starganv2",
            "styleclip",
        ];
        assert_eq!(df40.len(), 40);
        for m in df40 {
            assert!(t.resolve(&format!("{m}_Fake"), "").is_some(), "{m}");
        }
    }
}
