//! The text labels of each type (paper Tables 11–15), from `data/text_labels.json` or a
//! file the user gives.

use std::path::Path;

use sd2_models::taxonomy::DeepfakeType;

/// The labels shipped with the trainer.
pub const DEFAULT_LABELS: &str = include_str!("../data/text_labels.json");

#[derive(Clone, Debug, PartialEq)]
pub struct TextLabels {
    /// Per type, in [`DeepfakeType::ALL`] order; the first of each is the simple label.
    pub sets: [Vec<String>; DeepfakeType::COUNT],
}

impl TextLabels {
    pub fn default_labels() -> Self {
        Self::parse(DEFAULT_LABELS).expect("the shipped labels parse")
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// `{"REAL": [...], "FS": [...], "FR": [...], "EFS": [...], "FE": [...]}`, each non-empty.
    pub fn parse(json: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let sets = DeepfakeType::ALL.map(|t| -> Result<Vec<String>, String> {
            let list: Vec<String> = serde_json::from_value(v[t.code()].clone())
                .map_err(|_| format!("`{}` must be a list of strings", t.code()))?;
            if list.is_empty() {
                return Err(format!("`{}` has no labels", t.code()));
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
        assert!(err.contains("`FE`"), "{err}");
    }
}
