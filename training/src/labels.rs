//! The text labels of each type (paper Tables 11–15), from `data/text_labels.json` or a
//! file the user gives.

use std::path::{Path, PathBuf};

use sd2_models::taxonomy::DeepfakeType;

/// The labels shipped with the trainer.
pub const DEFAULT_LABELS: &str = include_str!("../data/text_labels.json");

/// What is wrong with a text-label file's contents.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelsProblem {
    #[error("not JSON: {reason}")]
    NotJson { reason: String },
    #[error("expected an object of label lists by type (REAL, FS, FR, EFS, FE), found {found}")]
    NotAnObject { found: &'static str },
    #[error("`{code}` must be a list of strings")]
    NotAList { code: &'static str },
    #[error("`{code}` has no labels")]
    Empty { code: &'static str },
}

/// What went wrong reading a text-label file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{path}: cannot read the text labels: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid {
        path: PathBuf,
        problem: LabelsProblem,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TextLabels {
    /// Per type, in [`DeepfakeType::ALL`] order; the first of each is the simple label.
    pub sets: [Vec<String>; DeepfakeType::COUNT],
}

impl TextLabels {
    pub fn default_labels() -> Self {
        Self::parse(DEFAULT_LABELS).expect("the shipped labels parse")
    }

    pub fn from_file(path: &Path) -> Result<Self, LabelsError> {
        let text = std::fs::read(path).map_err(|error| LabelsError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse_bytes(&text).map_err(|problem| LabelsError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// `{"REAL": [...], "FS": [...], "FR": [...], "EFS": [...], "FE": [...]}`, each non-empty.
    pub fn parse(json: &str) -> Result<Self, LabelsProblem> {
        Self::parse_bytes(json.as_bytes())
    }

    fn parse_bytes(json: &[u8]) -> Result<Self, LabelsProblem> {
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| LabelsProblem::NotJson {
                reason: e.to_string(),
            })?;
        let found = match &v {
            serde_json::Value::Object(_) => None,
            serde_json::Value::Null => Some("null"),
            serde_json::Value::Bool(_) => Some("a boolean"),
            serde_json::Value::Number(_) => Some("a number"),
            serde_json::Value::String(_) => Some("a string"),
            serde_json::Value::Array(_) => Some("a list"),
        };
        if let Some(found) = found {
            return Err(LabelsProblem::NotAnObject { found });
        }
        let sets = DeepfakeType::ALL.map(|t| -> Result<Vec<String>, LabelsProblem> {
            let code = t.code();
            let list: Vec<String> = serde_json::from_value(v[code].clone())
                .map_err(|_| LabelsProblem::NotAList { code })?;
            if list.is_empty() {
                return Err(LabelsProblem::Empty { code });
            }
            Ok(list)
        });
        let [a, b, c, d, e] = sets;
        Ok(TextLabels {
            sets: [a?, b?, c?, d?, e?],
        })
    }

    /// Only the first `n` labels of each type (at least the simple one).
    pub fn first(mut self, n: usize) -> Self {
        for s in &mut self.sets {
            s.truncate(n.max(1));
        }
        self
    }

    /// The simple label of each type, used at test time (§5.1).
    pub fn simple(&self) -> [String; DeepfakeType::COUNT] {
        self.sets.clone().map(|s| s[0].clone())
    }

    /// One label per type, chosen by `pick(type index, number of labels)`.
    pub fn sample(
        &self,
        mut pick: impl FnMut(usize, usize) -> usize,
    ) -> [String; DeepfakeType::COUNT] {
        std::array::from_fn(|i| {
            self.sets[i][pick(i, self.sets[i].len()) % self.sets[i].len()].clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_labels_are_the_papers() {
        let l = TextLabels::default_labels();
        let sizes: Vec<usize> = l.sets.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![30, 29, 25, 22, 28]);
        assert_eq!(l.simple()[1], "a photo of a face swapping.");
        assert_eq!(l.sample(|i, _| i)[2], l.sets[2][2]);
    }

    #[test]
    fn a_label_file_missing_a_type_is_refused() {
        let err = TextLabels::parse(r#"{"REAL": ["x"], "FS": ["y"], "FR": ["z"], "EFS": ["w"]}"#)
            .unwrap_err();
        assert_eq!(err, LabelsProblem::NotAList { code: "FE" });
        assert_eq!(err.to_string(), "`FE` must be a list of strings");
    }
}
