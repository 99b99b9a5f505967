//! When a face is fake, and what it is labelled.
//!
//! The paper's rule (§5.1, Testing Details) calls a face real when REAL's probability is
//! the highest and fake otherwise; operators who tune a threshold may call it fake when its
//! fake score (1 − p(REAL)) passes the threshold instead. Either way a face's label agrees
//! with the judgement: REAL for a real face, its most likely manipulation for a fake one.

use std::fmt;
use std::str::FromStr;

use crate::classifier::Verdict;
use crate::taxonomy::DeepfakeType;

/// Which rule judges a face fake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Fake when a manipulation is more probable than REAL (ties are REAL): the paper's rule.
    #[default]
    Argmax,
    /// Fake when the fake score is above the threshold.
    Threshold,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Argmax => "argmax",
            Decision::Threshold => "threshold",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decision rule that is neither `argmax` nor `threshold`.
#[derive(Debug, thiserror::Error)]
#[error("unknown decision rule `{0}`: expected argmax or threshold")]
pub struct UnknownDecision(pub String);

impl FromStr for Decision {
    type Err = UnknownDecision;
    fn from_str(s: &str) -> Result<Self, UnknownDecision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "argmax" => Ok(Decision::Argmax),
            "threshold" => Ok(Decision::Threshold),
            _ => Err(UnknownDecision(s.to_owned())),
        }
    }
}

/// A decision rule with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judge {
    pub decision: Decision,
    /// The fake score a face must pass under [`Decision::Threshold`].
    pub threshold: f32,
    /// How far back past the rule's boundary a face already judged fake must go to be
    /// judged real again: under `threshold` its fake score must fall to `threshold −
    /// hysteresis`; under `argmax` p(REAL) must exceed the likeliest manipulation's
    /// probability by `hysteresis`.
    pub hysteresis: f32,
}

impl Default for Judge {
    fn default() -> Self {
        Judge {
            decision: Decision::Argmax,
            threshold: 0.5,
            hysteresis: 0.1,
        }
    }
}

impl Judge {
    /// Whether `v` is fake, for a face judged fake before (`was_fake`) or not.
    pub fn is_fake(&self, v: &Verdict, was_fake: bool) -> bool {
        let slack = if was_fake { self.hysteresis } else { 0.0 };
        match self.decision {
            Decision::Argmax => {
                let fake = v.probabilities[v.most_likely_fake().index()];
                fake - v.probabilities[DeepfakeType::Real.index()] > -slack
            }
            Decision::Threshold => v.fake_score() > self.threshold - slack,
        }
    }

    /// Whether `v` is fake on its own (no history): the rule `eval` applies to a face.
    pub fn is_fake_alone(&self, v: &Verdict) -> bool {
        self.is_fake(v, false)
    }
}

/// The label of a face judged `fake`: its most likely manipulation, or REAL.
pub fn label(v: &Verdict, fake: bool) -> DeepfakeType {
    if fake {
        v.most_likely_fake()
    } else {
        DeepfakeType::Real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: [f32; 5]) -> Verdict {
        Verdict { probabilities: p }
    }

    #[test]
    fn a_face_whose_highest_probability_is_real_is_real_under_argmax_and_fake_past_the_threshold() {
        let face = v([0.45, 0.20, 0.15, 0.10, 0.10]);
        let argmax = Judge::default();
        assert!(!argmax.is_fake_alone(&face));
        assert_eq!(label(&face, false), DeepfakeType::Real);
        let threshold = Judge {
            decision: Decision::Threshold,
            ..Judge::default()
        };
        assert!(threshold.is_fake_alone(&face), "fake score 0.55 > 0.5");
        assert_eq!(label(&face, true), DeepfakeType::FaceSwap);
    }

    #[test]
    fn ties_with_real_are_real() {
        let face = v([0.4, 0.4, 0.1, 0.05, 0.05]);
        assert!(!Judge::default().is_fake_alone(&face));
        assert!(Judge::default().is_fake_alone(&v([0.39, 0.41, 0.1, 0.05, 0.05])));
    }

    #[test]
    fn a_fake_face_turns_real_only_past_the_hysteresis_under_either_rule() {
        let argmax = Judge {
            hysteresis: 0.1,
            ..Judge::default()
        };
        // REAL ahead by 0.05: real for a new face, still fake for a fake one.
        let close = v([0.45, 0.40, 0.05, 0.05, 0.05]);
        assert!(!argmax.is_fake(&close, false));
        assert!(argmax.is_fake(&close, true));
        let clear = v([0.60, 0.30, 0.05, 0.03, 0.02]);
        assert!(!argmax.is_fake(&clear, true));
        let threshold = Judge {
            decision: Decision::Threshold,
            threshold: 0.5,
            hysteresis: 0.1,
        };
        let score_045 = v([0.55, 0.45, 0.0, 0.0, 0.0]);
        assert!(!threshold.is_fake(&score_045, false));
        assert!(threshold.is_fake(&score_045, true));
        assert!(!threshold.is_fake(&v([0.65, 0.35, 0.0, 0.0, 0.0]), true));
    }

    #[test]
    fn rules_parse_by_name() {
        assert_eq!("argmax".parse::<Decision>().unwrap(), Decision::Argmax);
        assert_eq!(
            " Threshold".parse::<Decision>().unwrap(),
            Decision::Threshold
        );
        let e = "median".parse::<Decision>().unwrap_err().to_string();
        assert!(e.contains("median") && e.contains("argmax"), "{e}");
    }
}
