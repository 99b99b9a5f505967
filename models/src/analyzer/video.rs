//! A video's verdict from its faces: the mean of their probabilities (every face of every
//! analysed frame), judged by the same rule as a face. `sd2-train eval` judges a manifest
//! group (a video) this way, and `sd2-scan` a file.

use crate::classifier::Verdict;
use crate::taxonomy::DeepfakeType;

use super::decision::{Judge, label};

/// The faces of a video seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VideoTally {
    sum: [f64; DeepfakeType::COUNT],
    faces: usize,
}

/// What a video is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoVerdict {
    /// The mean probabilities of its faces.
    pub verdict: Verdict,
    pub fake: bool,
    /// REAL, or the most likely manipulation of a fake video.
    pub label: DeepfakeType,
    pub faces: usize,
}

impl VideoVerdict {
    /// 1 − the mean p(REAL).
    pub fn fake_score(&self) -> f32 {
        self.verdict.fake_score()
    }
}

impl VideoTally {
    pub fn add(&mut self, v: &Verdict) {
        for (s, p) in self.sum.iter_mut().zip(v.probabilities) {
            *s += p as f64;
        }
        self.faces += 1;
    }

    pub fn faces(&self) -> usize {
        self.faces
    }

    /// The video's verdict under `judge`; `None` before any face.
    pub fn judge(&self, judge: &Judge) -> Option<VideoVerdict> {
        if self.faces == 0 {
            return None;
        }
        let verdict = Verdict {
            probabilities: self.sum.map(|s| (s / self.faces as f64) as f32),
        };
        let fake = judge.is_fake_alone(&verdict);
        Some(VideoVerdict {
            verdict,
            fake,
            label: label(&verdict, fake),
            faces: self.faces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::Decision;

    #[test]
    fn a_video_is_judged_on_the_mean_of_its_faces() {
        let mut t = VideoTally::default();
        assert_eq!(t.judge(&Judge::default()), None);
        t.add(&Verdict {
            probabilities: [0.9, 0.1, 0.0, 0.0, 0.0],
        });
        t.add(&Verdict {
            probabilities: [0.1, 0.0, 0.9, 0.0, 0.0],
        });
        t.add(&Verdict {
            probabilities: [0.2, 0.0, 0.8, 0.0, 0.0],
        });
        let v = t.judge(&Judge::default()).unwrap();
        assert_eq!(v.faces, 3);
        assert!((v.verdict.probabilities[0] - 0.4).abs() < 1e-6);
        assert!(v.fake, "FR 0.567 > REAL 0.4");
        assert_eq!(v.label, DeepfakeType::FaceReenactment);
        let strict = Judge {
            decision: Decision::Threshold,
            threshold: 0.7,
            hysteresis: 0.0,
        };
        let v = t.judge(&strict).unwrap();
        assert!(
            !v.fake && v.label == DeepfakeType::Real,
            "fake score 0.6 ≤ 0.7"
        );
    }
}
