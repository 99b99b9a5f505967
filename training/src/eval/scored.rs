//! What the model said of each face of a split, before any decision rule: the input of
//! the figures ([`super::EvalReport`]) and of the report's plots.

use std::collections::BTreeMap;

use sd2_models::analyzer::VideoTally;
use sd2_models::classifier::Verdict;
use sd2_models::taxonomy::DeepfakeType;

/// One evaluated face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredFace {
    /// The 1-based manifest line of its row.
    pub line: u32,
    /// What the manifest says it is.
    pub truth: DeepfakeType,
    /// The model's probabilities.
    pub verdict: Verdict,
    /// Index into [`Scored::datasets`].
    pub dataset: u16,
    /// Index into [`Scored::groups`].
    pub group: u32,
}

impl ScoredFace {
    /// 1 − p(REAL), in f64 for the metrics.
    pub fn fake_score(&self) -> f64 {
        1.0 - self.verdict.probabilities[DeepfakeType::Real.index()] as f64
    }
}

/// The faces of a split as the model saw them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scored {
    /// In manifest order.
    pub faces: Vec<ScoredFace>,
    /// Dataset names, as the manifest names them (the empty name for rows without one).
    pub datasets: Vec<String>,
    /// Group names (a video, or an identity).
    pub groups: Vec<String>,
    /// Rows whose image could not be read.
    pub skipped_rows: usize,
}

/// A video: the faces of one group that are all real or all fake.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredVideo {
    /// Index into [`Scored::groups`].
    pub group: u32,
    /// Whether its faces are fakes.
    pub fake: bool,
    pub tally: VideoTally,
}

impl Scored {
    /// The videos: a group's real faces make one, its fake faces another (a group that is an
    /// identity may hold both). Ordered by group, real first.
    pub fn videos(&self) -> Vec<ScoredVideo> {
        let mut videos: BTreeMap<(u32, bool), VideoTally> = BTreeMap::new();
        for f in &self.faces {
            videos
                .entry((f.group, f.truth.is_fake()))
                .or_default()
                .add(&f.verdict);
        }
        videos
            .into_iter()
            .map(|((group, fake), tally)| ScoredVideo { group, fake, tally })
            .collect()
    }

    /// The name of the dataset of `face`.
    pub fn dataset_of(&self, face: &ScoredFace) -> &str {
        &self.datasets[face.dataset as usize]
    }
}
