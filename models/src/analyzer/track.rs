//! What the Analyzer keeps per face track, when a tracked face goes to the model, and how
//! its verdicts are smoothed over time.

use crate::classifier::Verdict;

#[derive(Clone, Debug, Default)]
pub struct TrackState {
    /// The smoothed verdict and the frame it was last updated on.
    pub verdict: Option<(Verdict, u64)>,
    /// The frame the face was last sent to the model.
    pub scheduled: Option<u64>,
    /// Whether the track is judged fake (an alert goes out when it turns fake).
    pub fake: bool,
}

impl TrackState {
    /// Whether a face of the track sent to the model on or before `frame` has not come back,
    /// for at most `waits` frames after it was sent.
    pub fn pending(&self, frame: u64, waits: u64) -> bool {
        match self.scheduled {
            Some(s) => {
                self.verdict.is_none_or(|(_, at)| at < s) && frame.saturating_sub(s) <= waits
            }
            None => false,
        }
    }

    /// Whether a face of this track goes to the model on `frame`: at first sight, then on
    /// analysed frames once `reclassify` frames have passed since it last went.
    pub fn due(&self, frame: u64, analysed: bool, reclassify: u64) -> bool {
        match self.scheduled {
            None => true,
            Some(at) => analysed && frame.saturating_sub(at) >= reclassify,
        }
    }
}

/// Blends a new verdict into the track's: `smoothing` is the weight of the past.
pub fn smooth(old: Option<&Verdict>, new: &Verdict, smoothing: f32) -> Verdict {
    match old {
        None => *new,
        Some(o) => Verdict {
            probabilities: std::array::from_fn(|i| {
                smoothing * o.probabilities[i] + (1.0 - smoothing) * new.probabilities[i]
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_weights_the_past() {
        let a = Verdict {
            probabilities: [1.0, 0.0, 0.0, 0.0, 0.0],
        };
        let b = Verdict {
            probabilities: [0.0, 1.0, 0.0, 0.0, 0.0],
        };
        assert_eq!(smooth(None, &b, 0.5), b);
        let s = smooth(Some(&a), &b, 0.75);
        assert_eq!(s.probabilities[..2], [0.75, 0.25]);
        assert_eq!(smooth(Some(&a), &b, 0.0), b);
    }

    #[test]
    fn faces_are_classified_at_first_sight_then_every_interval() {
        let mut s = TrackState::default();
        assert!(s.due(7, false, 3));
        s.scheduled = Some(7);
        assert!(!s.due(8, true, 3));
        assert!(!s.due(10, false, 3));
        assert!(s.due(10, true, 3));
    }

    #[test]
    fn a_track_is_pending_until_its_last_face_sent_comes_back() {
        let v = Verdict {
            probabilities: [1.0, 0.0, 0.0, 0.0, 0.0],
        };
        let mut s = TrackState::default();
        assert!(!s.pending(5, 10), "never sent");
        s.scheduled = Some(5);
        assert!(s.pending(9, 10));
        s.verdict = Some((v, 3));
        assert!(s.pending(9, 10), "an older verdict");
        assert!(!s.pending(16, 10), "gave up waiting");
        s.verdict = Some((v, 5));
        assert!(!s.pending(9, 10));
    }
}
