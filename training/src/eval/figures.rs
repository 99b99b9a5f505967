//! The figures of an evaluation under a decision rule ([`Judge`]): ACC counts the faces (or
//! videos) the rule judges rightly; AUC, EER and AP rank the fake score (1 − p(REAL)), which
//! no rule changes. A video is judged by [`VideoTally`](sd2_models::analyzer::VideoTally)
//! (the mean of its faces' probabilities, under the face's rule). The type accuracy and the
//! confusion matrix use the label that agrees with the judgement: REAL for a face judged
//! real, its likeliest manipulation for one judged fake.

use std::collections::BTreeMap;

use sd2_models::analyzer::{Decision, Judge, label};
use sd2_models::taxonomy::DeepfakeType;
use serde::{Serialize, Serializer};

use super::scored::Scored;
use crate::metrics::{accuracy, auc, average_precision, eer};

/// The name per-dataset figures give rows without a dataset.
pub const NO_DATASET: &str = "(no dataset)";

/// Detection figures of a set of faces or videos.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub count: usize,
    /// `None` when the set lacks real or fake items.
    pub auc: Option<f64>,
    /// Under the report's decision rule.
    pub accuracy: f64,
    pub eer: Option<f64>,
    pub average_precision: Option<f64>,
}

impl Figures {
    /// Figures of items with these fake scores, truths (fake = true) and judgements.
    pub fn of(scores: &[f64], fake: &[bool], judged_fake: &[bool]) -> Figures {
        Figures {
            count: scores.len(),
            auc: auc(scores, fake),
            accuracy: accuracy(judged_fake, fake),
            eer: eer(scores, fake),
            average_precision: average_precision(scores, fake),
        }
    }
}

/// The mean of each figure over the datasets that have it (the paper's mAUC, Tables 2–3);
/// `None` when no dataset has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DatasetMeans {
    pub datasets: usize,
    pub auc: Option<f64>,
    pub accuracy: Option<f64>,
    pub eer: Option<f64>,
    pub average_precision: Option<f64>,
}

impl DatasetMeans {
    fn of<'a>(figures: impl Iterator<Item = &'a Figures> + Clone) -> DatasetMeans {
        let mean = |pick: &dyn Fn(&Figures) -> Option<f64>| {
            let v: Vec<f64> = figures.clone().filter_map(pick).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        DatasetMeans {
            datasets: figures.clone().count(),
            auc: mean(&|f| f.auc),
            accuracy: mean(&|f| Some(f.accuracy)),
            eer: mean(&|f| f.eer),
            average_precision: mean(&|f| f.average_precision),
        }
    }
}

/// What `sd2-train eval` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// The rule that judged faces and videos: `argmax` (the paper's) or `threshold`.
    #[serde(serialize_with = "decision_name")]
    pub decision: Decision,
    /// The fake score a face must pass under `threshold` (unused under `argmax`).
    pub threshold: f32,
    pub frame: Figures,
    pub video: Figures,
    /// Frame-level figures of each dataset, by name.
    pub per_dataset: BTreeMap<String, Figures>,
    /// The mean of the per-dataset figures.
    pub dataset_mean: DatasetMeans,
    /// Accuracy over the five types, with the label that agrees with the judgement.
    pub type_accuracy: f64,
    /// Rows: true type; columns: the label under the rule.
    pub confusion: [[usize; DeepfakeType::COUNT]; DeepfakeType::COUNT],
    pub skipped_rows: usize,
}

fn decision_name<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.name())
}

impl EvalReport {
    /// The figures of `scored` under `judge` (its hysteresis plays no part: every face and
    /// video is judged alone).
    pub fn judge(scored: &Scored, judge: &Judge) -> EvalReport {
        let faces = &scored.faces;
        let scores: Vec<f64> = faces.iter().map(|f| f.fake_score()).collect();
        let fake: Vec<bool> = faces.iter().map(|f| f.truth.is_fake()).collect();
        let judged: Vec<bool> = faces
            .iter()
            .map(|f| judge.is_fake_alone(&f.verdict))
            .collect();
        let mut confusion = [[0usize; DeepfakeType::COUNT]; DeepfakeType::COUNT];
        for (f, &j) in faces.iter().zip(&judged) {
            confusion[f.truth.index()][label(&f.verdict, j).index()] += 1;
        }
        let right: usize = (0..DeepfakeType::COUNT).map(|t| confusion[t][t]).sum();

        let videos: Vec<_> = scored
            .videos()
            .into_iter()
            .filter_map(|v| Some((v.fake, v.tally.judge(judge)?)))
            .collect();
        let video_scores: Vec<f64> = videos
            .iter()
            .map(|(_, v)| 1.0 - v.verdict.probabilities[DeepfakeType::Real.index()] as f64)
            .collect();
        let video_fake: Vec<bool> = videos.iter().map(|(f, _)| *f).collect();
        let video_judged: Vec<bool> = videos.iter().map(|(_, v)| v.fake).collect();

        let mut per_dataset = BTreeMap::new();
        for (d, name) in scored.datasets.iter().enumerate() {
            let idx: Vec<usize> = (0..faces.len())
                .filter(|&i| faces[i].dataset as usize == d)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
            let pick_b = |v: &[bool]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
            let name = if name.is_empty() { NO_DATASET } else { name };
            per_dataset.insert(
                name.to_owned(),
                Figures::of(&pick(&scores), &pick_b(&fake), &pick_b(&judged)),
            );
        }
        EvalReport {
            decision: judge.decision,
            threshold: judge.threshold,
            frame: Figures::of(&scores, &fake, &judged),
            video: Figures::of(&video_scores, &video_fake, &video_judged),
            dataset_mean: DatasetMeans::of(per_dataset.values()),
            per_dataset,
            type_accuracy: right as f64 / faces.len().max(1) as f64,
            confusion,
            skipped_rows: scored.skipped_rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use sd2_models::classifier::Verdict;

    use super::*;
    use crate::eval::scored::ScoredFace;

    fn face(truth: DeepfakeType, p: [f32; 5], group: u32, dataset: u16) -> ScoredFace {
        ScoredFace {
            line: 0,
            truth,
            verdict: Verdict { probabilities: p },
            dataset,
            group,
        }
    }

    fn threshold(t: f32) -> Judge {
        Judge {
            decision: Decision::Threshold,
            threshold: t,
            ..Judge::default()
        }
    }

    /// Real faces whose REAL is the highest probability although their fake score is 0.6,
    /// and fake faces the model gets right under either rule.
    fn real_ahead_but_fake_score_high() -> Scored {
        use DeepfakeType::*;
        let torn = [0.4, 0.15, 0.15, 0.15, 0.15];
        Scored {
            faces: vec![
                face(Real, torn, 0, 0),
                face(Real, torn, 0, 0),
                face(Real, torn, 1, 0),
                face(FaceSwap, [0.1, 0.7, 0.1, 0.05, 0.05], 2, 0),
                face(FaceEditing, [0.2, 0.1, 0.1, 0.1, 0.5], 2, 0),
            ],
            datasets: vec!["demo".into()],
            groups: vec!["a".into(), "b".into(), "c".into()],
            skipped_rows: 0,
        }
    }

    #[test]
    fn a_real_face_ahead_of_every_manipulation_is_right_under_argmax_and_wrong_past_a_threshold_of_half()
     {
        let scored = real_ahead_but_fake_score_high();
        let paper = EvalReport::judge(&scored, &Judge::default());
        assert_eq!(paper.frame.accuracy, 1.0);
        assert_eq!(paper.video.accuracy, 1.0);
        assert_eq!(paper.type_accuracy, 1.0);
        let tuned = EvalReport::judge(&scored, &threshold(0.5));
        assert_eq!(
            tuned.frame.accuracy,
            2.0 / 5.0,
            "the three real faces are fake"
        );
        assert_eq!(tuned.video.accuracy, 1.0 / 3.0, "both real videos are fake");
        // A real face judged fake is labelled its likeliest manipulation (FS, the first of
        // four equal ones), so the confusion matrix's REAL row moves to FS.
        assert_eq!(tuned.confusion[0], [0, 3, 0, 0, 0]);
        assert_eq!(paper.confusion[0], [3, 0, 0, 0, 0]);
        assert_eq!(tuned.type_accuracy, 2.0 / 5.0);
        // Rankings do not depend on the rule.
        assert_eq!(paper.frame.auc, tuned.frame.auc);
        assert_eq!(paper.frame.auc, Some(1.0));
    }

    #[test]
    fn the_report_names_its_rule_and_threshold() {
        let scored = real_ahead_but_fake_score_high();
        let json = |j: &Judge| serde_json::to_value(EvalReport::judge(&scored, j)).unwrap();
        let paper = json(&Judge::default());
        assert_eq!(paper["decision"], "argmax");
        assert_eq!(paper["threshold"], 0.5);
        let tuned = json(&threshold(0.65));
        assert_eq!(tuned["decision"], "threshold");
        assert_eq!(tuned["threshold"].as_f64().unwrap() as f32, 0.65);
        assert_eq!(tuned["frame"]["accuracy"], 1.0, "0.6 does not pass 0.65");
    }

    #[test]
    fn a_video_is_judged_on_its_faces_mean_probabilities_and_scored_by_its_mean_fake_score() {
        use DeepfakeType::*;
        // One fake video: one face clearly fake, two leaning REAL. The mean is REAL 0.5 > FR 0.4.
        let scored = Scored {
            faces: vec![
                face(FaceReenactment, [0.1, 0.0, 0.9, 0.0, 0.0], 0, 0),
                face(FaceReenactment, [0.7, 0.0, 0.3, 0.0, 0.0], 0, 0),
                face(FaceReenactment, [0.7, 0.0, 0.0, 0.3, 0.0], 0, 0),
                face(Real, [0.9, 0.1, 0.0, 0.0, 0.0], 1, 0),
            ],
            datasets: vec!["demo".into()],
            groups: vec!["fake-video".into(), "real-video".into()],
            skipped_rows: 0,
        };
        let r = EvalReport::judge(&scored, &Judge::default());
        assert_eq!(r.video.count, 2);
        assert_eq!(r.video.accuracy, 0.5, "the fake video is judged real");
        assert_eq!(
            r.frame.accuracy, 0.5,
            "one fake face of three, and the real one"
        );
        // Fake scores 0.5 (fake video) and 0.1 (real video): the ranking is right.
        assert_eq!(r.video.auc, Some(1.0));
        let past_04 = EvalReport::judge(&scored, &threshold(0.4));
        assert_eq!(
            past_04.video.accuracy, 1.0,
            "mean fake score 0.5 passes 0.4"
        );
    }

    #[test]
    fn datasets_get_their_own_figures_and_the_mean_skips_those_without_one() {
        use DeepfakeType::*;
        let scored = Scored {
            faces: vec![
                face(Real, [0.9, 0.1, 0.0, 0.0, 0.0], 0, 0),
                face(FaceSwap, [0.2, 0.8, 0.0, 0.0, 0.0], 1, 0),
                face(FaceSwap, [0.6, 0.4, 0.0, 0.0, 0.0], 2, 1),
            ],
            datasets: vec!["both".into(), String::new()],
            groups: vec!["a".into(), "b".into(), "c".into()],
            skipped_rows: 0,
        };
        let r = EvalReport::judge(&scored, &Judge::default());
        assert_eq!(r.per_dataset["both"].auc, Some(1.0));
        assert_eq!(r.per_dataset[NO_DATASET].auc, None, "fakes only");
        assert_eq!(r.per_dataset[NO_DATASET].accuracy, 0.0);
        assert_eq!(r.dataset_mean.datasets, 2);
        assert_eq!(r.dataset_mean.auc, Some(1.0));
        assert_eq!(r.dataset_mean.accuracy, Some(0.5));
    }
}
