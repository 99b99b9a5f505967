//! What `sd2deepfake` keeps per face track, and how a verdict is smoothed over time.

use sd2_models::classifier::Verdict;

#[derive(Clone, Debug, Default)]
pub struct TrackState {
    /// The smoothed verdict and the frame it was last updated on.
    pub verdict: Option<(Verdict, u64)>,
    /// The frame the face was last sent to the model.
    pub scheduled: Option<u64>,
    /// Whether the track is judged fake (for alerts on the change).
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

/// Whether a face of this track goes to the model on `frame`: at first sight, then on
/// analysed frames once `reclassify` frames have passed.
pub fn due(state: &TrackState, frame: u64, analysed: bool, reclassify: u64) -> bool {
    match state.scheduled {
        None => true,
        Some(at) => analysed && frame - at >= reclassify,
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
        assert!(due(&s, 7, false, 3));
        s.scheduled = Some(7);
        assert!(!due(&s, 8, true, 3));
        assert!(!due(&s, 10, false, 3));
        assert!(due(&s, 10, true, 3));
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
