//! One stream's analysis: face tracks, which faces go to the model on which frame, the
//! smoothing of each track's verdicts, the decision rule with its hysteresis, alerts, the
//! frame verdict and the frames skipped.

use crate::classifier::Verdict;
use crate::taxonomy::DeepfakeType;
use crate::tracker::Tracker;

use super::decision::{Judge, label};
use super::track::{TrackState, smooth};

/// Least overlap (IoU) of a face with a track's last box to continue the track.
const TRACK_MIN_IOU: f32 = 0.3;
/// Frames a track survives unseen (unless its face is still with the model).
const TRACK_MAX_MISSED: u64 = 25;

/// How a stream is analysed; every field may change between frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalyzerSettings {
    pub judge: Judge,
    /// Weight of a track's past verdict when a new one arrives (0: the latest only).
    pub smoothing: f32,
    /// Tracked faces go to the model only on every Nth frame (new faces at first sight).
    pub inference_interval: u32,
    /// A tracked face goes to the model again once this many frames have passed.
    pub reclassify_interval: u32,
    /// The most frames that can be planned and not yet completed ahead of one: a track
    /// whose face is with the model outlives its absence that long.
    pub max_pending: u64,
}

impl Default for AnalyzerSettings {
    fn default() -> Self {
        AnalyzerSettings {
            judge: Judge::default(),
            smoothing: 0.5,
            inference_interval: 1,
            reclassify_interval: 1,
            max_pending: 64,
        }
    }
}

/// A face of a frame, matched to its track.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedFace {
    pub track: u64,
    /// Pixel box `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Goes to the model on this frame.
    pub due: bool,
}

/// A frame's faces, matched to tracks, before the frame is admitted.
#[derive(Clone, Debug)]
pub struct Observation {
    frame: u64,
    size: (u32, u32),
    faces: Vec<PlannedFace>,
}

impl Observation {
    /// Whether any face is due for the model (only such a frame can be skipped).
    pub fn needs_model(&self) -> bool {
        self.faces.iter().any(|f| f.due)
    }
}

/// A frame admitted for analysis: which faces go to the model.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The frame's index since the stream started or was last reset.
    pub frame: u64,
    /// Width and height in pixels.
    pub size: (u32, u32),
    pub faces: Vec<PlannedFace>,
    /// Passed unanalysed (the caller had no room for it): no face goes to the model.
    pub skipped: bool,
    /// The first skipped frame after one that was not: a run of skips is reported once.
    pub starts_skip_run: bool,
}

impl Plan {
    pub fn due_faces(&self) -> usize {
        self.faces.iter().filter(|f| f.due).count()
    }
}

/// What a face is judged, from its track's smoothed verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judged {
    /// The smoothed probabilities.
    pub verdict: Verdict,
    pub fake: bool,
    /// REAL, or the most likely manipulation of a fake face.
    pub label: DeepfakeType,
    /// Frames since the verdict was last updated.
    pub frames_ago: u64,
    /// As fresh as the schedule wants: false on a skipped frame, and for a face that was
    /// due but whose crop or batch failed.
    pub current: bool,
}

impl Judged {
    /// The probability of the label.
    pub fn confidence(&self) -> f32 {
        self.verdict.probabilities[self.label.index()]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceOutcome {
    pub track: u64,
    pub bbox: [f32; 4],
    /// None while the track has no verdict (first seen on a skipped frame, or its first
    /// classification failed).
    pub judged: Option<Judged>,
}

/// A frame's verdict: fake when any face is judged fake.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameVerdict {
    pub fake: bool,
    /// The highest fake score of the faces with a verdict (0 without).
    pub fake_score: f32,
    /// The label of the fake face with the highest fake score, REAL when none is fake.
    pub label: DeepfakeType,
    pub faces: usize,
    pub fake_faces: usize,
    /// Faces with a verdict.
    pub analysed_faces: usize,
    pub skipped: bool,
}

/// A track that turned fake.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alert {
    pub track: u64,
    /// The most likely manipulation.
    pub fake_type: DeepfakeType,
    pub fake_score: f32,
    /// The probability of `fake_type`.
    pub confidence: f32,
    /// Pixel box.
    pub bbox: [f32; 4],
    /// The frame's width and height.
    pub size: (u32, u32),
}

impl Alert {
    /// The box in `[0, 1]` of the frame.
    pub fn normalised_box(&self) -> [f64; 4] {
        normalise(self.bbox, self.size)
    }
}

/// A pixel box as fractions of a `size` frame.
pub fn normalise(b: [f32; 4], (w, h): (u32, u32)) -> [f64; 4] {
    let (w, h) = (w.max(1) as f64, h.max(1) as f64);
    [
        b[0] as f64 / w,
        b[1] as f64 / h,
        b[2] as f64 / w,
        b[3] as f64 / h,
    ]
}

#[derive(Clone, Debug)]
pub struct FrameOutcome {
    pub frame: u64,
    /// One per face of the plan, in its order.
    pub faces: Vec<FaceOutcome>,
    pub verdict: FrameVerdict,
    pub alerts: Vec<Alert>,
}

/// One stream's analysis state. Frames are [observed](Self::observe) and
/// [planned](Self::plan) in stream order; their faces are classified (see
/// [`Batch`](super::Batch)) and the frames [completed](Self::complete) in the same order.
#[derive(Debug)]
pub struct Analyzer {
    pub settings: AnalyzerSettings,
    tracker: Tracker<TrackState>,
    frame: u64,
    skipped: u64,
    skipping: bool,
    failures: u64,
}

impl Analyzer {
    pub fn new(settings: AnalyzerSettings) -> Self {
        Analyzer {
            settings,
            tracker: Tracker::new(TRACK_MIN_IOU, TRACK_MAX_MISSED),
            frame: 0,
            skipped: 0,
            skipping: false,
            failures: 0,
        }
    }

    /// Matches the faces of the next frame (pixel boxes in a `size` frame) to tracks and
    /// says which are due for the model.
    pub fn observe(&mut self, boxes: &[[f32; 4]], size: (u32, u32)) -> Observation {
        let frame = self.frame;
        self.frame += 1;
        let waits = self.settings.max_pending + 1;
        let tracks = self
            .tracker
            .update_keeping(frame, boxes, |s: &TrackState| s.pending(frame, waits));
        let analysed = frame.is_multiple_of(self.settings.inference_interval.max(1) as u64);
        let reclassify = self.settings.reclassify_interval.max(1) as u64;
        let faces = boxes
            .iter()
            .zip(tracks)
            .map(|(b, t)| {
                let track = &self.tracker.tracks[t];
                PlannedFace {
                    track: track.id,
                    bbox: *b,
                    due: track.state.due(frame, analysed, reclassify),
                }
            })
            .collect();
        Observation { frame, size, faces }
    }

    /// Admits an observed frame: `skip` passes it unanalysed (when it needs the model; a
    /// frame that does not is never skipped). The faces that go to the model are marked sent.
    pub fn plan(&mut self, observed: Observation, skip: bool) -> Plan {
        let skipped = skip && observed.needs_model();
        let Observation {
            frame,
            size,
            mut faces,
        } = observed;
        for face in &mut faces {
            face.due &= !skipped;
            if face.due
                && let Some(t) = self.tracker.tracks.iter_mut().find(|t| t.id == face.track)
            {
                t.state.scheduled = Some(frame);
            }
        }
        let starts_skip_run = skipped && !self.skipping;
        self.skipping = skipped;
        if skipped {
            self.skipped += 1;
        }
        Plan {
            frame,
            size,
            faces,
            skipped,
            starts_skip_run,
        }
    }

    /// Completes a planned frame with the model's verdicts on its due faces (`fresh`, one
    /// per face of the plan; `None` for a face not classified). A verdict whose track has
    /// ended since still counts for the face.
    pub fn complete(&mut self, plan: &Plan, fresh: &[Option<Verdict>]) -> FrameOutcome {
        let judge = self.settings.judge;
        let mut verdict = FrameVerdict {
            fake: false,
            fake_score: 0.0,
            label: DeepfakeType::Real,
            faces: plan.faces.len(),
            fake_faces: 0,
            analysed_faces: 0,
            skipped: plan.skipped,
        };
        let mut alerts = Vec::new();
        let mut most_suspicious_fake = f32::NEG_INFINITY;
        let mut faces = Vec::with_capacity(plan.faces.len());
        for (i, face) in plan.faces.iter().enumerate() {
            let fresh = fresh.get(i).copied().flatten().filter(|_| face.due);
            let current = !plan.skipped && (fresh.is_some() || !face.due);
            let track = self.tracker.tracks.iter_mut().find(|t| t.id == face.track);
            let known = match track {
                Some(t) => {
                    if let Some(v) = fresh {
                        let old = t.state.verdict.as_ref().map(|(v, _)| v);
                        t.state.verdict =
                            Some((smooth(old, &v, self.settings.smoothing), plan.frame));
                    }
                    t.state
                        .verdict
                        .map(|(v, at)| (v, at, t.state.fake, Some(t)))
                }
                None => fresh.map(|v| (v, plan.frame, false, None)),
            };
            let Some((v, at, was_fake, track)) = known else {
                faces.push(FaceOutcome {
                    track: face.track,
                    bbox: face.bbox,
                    judged: None,
                });
                continue;
            };
            let fake = judge.is_fake(&v, was_fake);
            if let Some(t) = track {
                t.state.fake = fake;
            }
            let judged = Judged {
                verdict: v,
                fake,
                label: label(&v, fake),
                frames_ago: plan.frame.saturating_sub(at),
                current,
            };
            let score = v.fake_score();
            verdict.analysed_faces += 1;
            verdict.fake_score = verdict.fake_score.max(score);
            if fake {
                verdict.fake_faces += 1;
                if score > most_suspicious_fake {
                    most_suspicious_fake = score;
                    verdict.label = judged.label;
                }
                if !was_fake {
                    alerts.push(Alert {
                        track: face.track,
                        fake_type: judged.label,
                        fake_score: score,
                        confidence: judged.confidence(),
                        bbox: face.bbox,
                        size: plan.size,
                    });
                }
            }
            faces.push(FaceOutcome {
                track: face.track,
                bbox: face.bbox,
                judged: Some(judged),
            });
        }
        verdict.fake = verdict.fake_faces > 0;
        FrameOutcome {
            frame: plan.frame,
            faces,
            verdict,
            alerts,
        }
    }

    /// Forgets the tracks and starts counting frames again (a flush or a new stream); the
    /// skip and failure counts stay.
    pub fn reset(&mut self) {
        self.tracker.clear();
        self.frame = 0;
        self.skipping = false;
    }

    /// Counts a batch that failed.
    pub fn record_failure(&mut self) {
        self.failures += 1;
    }

    /// Frames skipped since the analyzer was made.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Batches that failed since the analyzer was made.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Tracks alive now.
    pub fn tracks(&self) -> usize {
        self.tracker.tracks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::Decision;

    const SIZE: (u32, u32) = (640, 480);
    const FACE: [f32; 4] = [100.0, 100.0, 200.0, 220.0];
    const REAL: Verdict = Verdict {
        probabilities: [0.9, 0.04, 0.03, 0.02, 0.01],
    };
    const SWAP: Verdict = Verdict {
        probabilities: [0.1, 0.8, 0.05, 0.03, 0.02],
    };

    fn analyzer(f: impl FnOnce(&mut AnalyzerSettings)) -> Analyzer {
        let mut s = AnalyzerSettings {
            smoothing: 0.0,
            ..AnalyzerSettings::default()
        };
        f(&mut s);
        Analyzer::new(s)
    }

    /// One frame with `boxes`, its due faces given `v`.
    fn frame(a: &mut Analyzer, boxes: &[[f32; 4]], v: Verdict) -> FrameOutcome {
        let seen = a.observe(boxes, SIZE);
        let plan = a.plan(seen, false);
        let fresh: Vec<_> = plan.faces.iter().map(|f| f.due.then_some(v)).collect();
        a.complete(&plan, &fresh)
    }

    #[test]
    fn a_track_that_turns_fake_raises_one_alert_and_turns_real_only_past_the_hysteresis() {
        let mut a = analyzer(|s| s.judge.hysteresis = 0.2);
        assert!(frame(&mut a, &[FACE], REAL).alerts.is_empty());
        let turned = frame(&mut a, &[FACE], SWAP);
        assert_eq!(turned.alerts.len(), 1);
        let alert = turned.alerts[0];
        assert_eq!(alert.track, 1);
        assert_eq!(alert.fake_type, DeepfakeType::FaceSwap);
        assert_eq!(alert.normalised_box()[0], 100.0 / 640.0);
        assert!(turned.verdict.fake);
        assert_eq!(turned.verdict.label, DeepfakeType::FaceSwap);
        // Still fake: no second alert.
        assert!(frame(&mut a, &[FACE], SWAP).alerts.is_empty());
        // REAL ahead by 0.1 only: within the hysteresis, still fake and labelled so.
        let wavering = Verdict {
            probabilities: [0.5, 0.4, 0.05, 0.03, 0.02],
        };
        let held = frame(&mut a, &[FACE], wavering);
        let judged = held.faces[0].judged.unwrap();
        assert!(judged.fake && held.alerts.is_empty());
        assert_eq!(judged.label, DeepfakeType::FaceSwap);
        assert!((judged.confidence() - 0.4).abs() < 1e-6);
        // Past it: real, and a later turn alerts again.
        let back = frame(&mut a, &[FACE], REAL);
        assert!(!back.verdict.fake);
        assert_eq!(back.faces[0].judged.unwrap().label, DeepfakeType::Real);
        assert_eq!(frame(&mut a, &[FACE], SWAP).alerts.len(), 1);
    }

    #[test]
    fn the_decision_rule_decides_a_face_whose_highest_probability_is_real() {
        let face = Verdict {
            probabilities: [0.45, 0.20, 0.15, 0.10, 0.10],
        };
        let mut argmax = analyzer(|_| {});
        let out = frame(&mut argmax, &[FACE], face);
        let j = out.faces[0].judged.unwrap();
        assert!(!j.fake && !out.verdict.fake && out.alerts.is_empty());
        assert_eq!(j.label, DeepfakeType::Real);
        assert!((out.verdict.fake_score - 0.55).abs() < 1e-6);
        assert_eq!(out.verdict.label, DeepfakeType::Real);

        let mut threshold = analyzer(|s| s.judge.decision = Decision::Threshold);
        let out = frame(&mut threshold, &[FACE], face);
        let j = out.faces[0].judged.unwrap();
        assert!(j.fake && out.verdict.fake);
        assert_eq!(
            j.label,
            DeepfakeType::FaceSwap,
            "a fake face is never labelled REAL"
        );
        assert_eq!(out.alerts[0].fake_type, DeepfakeType::FaceSwap);
        assert_eq!(out.verdict.label, DeepfakeType::FaceSwap);
    }

    #[test]
    fn the_frame_is_labelled_by_its_most_suspicious_fake_face() {
        // The first face has the higher fake score but is real under argmax.
        let real_but_suspicious = Verdict {
            probabilities: [0.40, 0.15, 0.15, 0.15, 0.15],
        };
        let edited = Verdict {
            probabilities: [0.42, 0.01, 0.01, 0.01, 0.55],
        };
        let mut a = analyzer(|_| {});
        let seen = a.observe(&[FACE, [300.0, 100.0, 400.0, 220.0]], SIZE);
        let plan = a.plan(seen, false);
        let out = a.complete(&plan, &[Some(real_but_suspicious), Some(edited)]);
        assert!(out.verdict.fake);
        assert_eq!(out.verdict.fake_faces, 1);
        assert_eq!(out.verdict.label, DeepfakeType::FaceEditing);
        assert!((out.verdict.fake_score - 0.60).abs() < 1e-6);
    }

    #[test]
    fn a_verdict_that_returns_after_its_track_ended_still_counts() {
        let mut a = analyzer(|s| s.max_pending = 2);
        let seen = a.observe(&[FACE], SIZE);
        let late = a.plan(seen, false);
        // The face is gone for longer than a track survives while its verdict is away.
        for _ in 0..TRACK_MAX_MISSED + 5 {
            let seen = a.observe(&[], SIZE);
            let plan = a.plan(seen, false);
            a.complete(&plan, &[]);
        }
        assert_eq!(a.tracks(), 0, "the track ended");
        let out = a.complete(&late, &[Some(SWAP)]);
        let j = out.faces[0].judged.expect("the late verdict is the face's");
        assert!(j.fake && j.current);
        assert_eq!(out.alerts.len(), 1);
    }

    #[test]
    fn a_track_whose_face_is_with_the_model_outlives_its_absence() {
        let mut a = analyzer(|s| s.max_pending = 100);
        let seen = a.observe(&[FACE], SIZE);
        let waiting = a.plan(seen, false);
        for _ in 0..TRACK_MAX_MISSED + 5 {
            let seen = a.observe(&[], SIZE);
            a.plan(seen, false);
        }
        assert_eq!(a.tracks(), 1);
        // Back before its verdict: the same track, one alert for both frames.
        let seen = a.observe(&[FACE], SIZE);
        let back = a.plan(seen, false);
        assert_eq!(back.faces[0].track, 1);
        assert_eq!(a.complete(&waiting, &[Some(SWAP)]).alerts.len(), 1);
        assert!(a.complete(&back, &[Some(SWAP)]).alerts.is_empty());
    }

    #[test]
    fn skipped_frames_carry_the_last_verdict_unanalysed_and_a_run_is_reported_once() {
        let mut a = analyzer(|_| {});
        frame(&mut a, &[FACE], SWAP);
        let mut starts = Vec::new();
        for _ in 0..3 {
            let seen = a.observe(&[FACE], SIZE);
            assert!(seen.needs_model());
            let plan = a.plan(seen, true);
            assert!(plan.skipped && plan.due_faces() == 0);
            starts.push(plan.starts_skip_run);
            let out = a.complete(&plan, &[Some(REAL)]);
            let j = out.faces[0].judged.unwrap();
            assert!(
                !j.current && j.fake,
                "the track's last verdict, not the ignored one"
            );
            assert!(out.verdict.skipped);
        }
        assert_eq!(starts, [true, false, false]);
        assert_eq!(a.skipped(), 3);
        frame(&mut a, &[FACE], REAL);
        let seen = a.observe(&[FACE], SIZE);
        assert!(
            a.plan(seen, true).starts_skip_run,
            "a new run after an analysed frame"
        );
        // A face first seen on a skipped frame has no verdict.
        let mut b = analyzer(|_| {});
        let seen = b.observe(&[FACE], SIZE);
        let plan = b.plan(seen, true);
        assert_eq!(b.complete(&plan, &[]).faces[0].judged, None);
    }

    #[test]
    fn frames_without_due_faces_are_never_skipped() {
        let mut a = analyzer(|s| s.reclassify_interval = 10);
        frame(&mut a, &[FACE], REAL);
        let seen = a.observe(&[FACE], SIZE);
        assert!(!seen.needs_model());
        let plan = a.plan(seen, true);
        assert!(!plan.skipped);
        assert!(a.complete(&plan, &[]).faces[0].judged.unwrap().current);
        assert_eq!(a.skipped(), 0);
    }

    #[test]
    fn faces_go_to_the_model_at_first_sight_then_on_the_reclassify_and_inference_schedule() {
        let due = |a: &mut Analyzer, n: usize| -> Vec<u64> {
            (0..n)
                .filter_map(|_| {
                    let out = frame(a, &[FACE], REAL);
                    (out.faces[0].judged.unwrap().frames_ago == 0).then_some(out.frame)
                })
                .collect()
        };
        let mut a = analyzer(|s| s.reclassify_interval = 3);
        assert_eq!(due(&mut a, 8), [0, 3, 6]);
        let mut b = analyzer(|s| {
            s.reclassify_interval = 1;
            s.inference_interval = 4;
        });
        assert_eq!(due(&mut b, 9), [0, 4, 8]);
        // A face appearing off the schedule goes at first sight.
        let mut c = analyzer(|s| s.inference_interval = 4);
        frame(&mut c, &[], REAL);
        assert_eq!(due(&mut c, 5), [1, 4]);
    }

    #[test]
    fn a_failed_classification_leaves_the_face_unanalysed_with_its_tracks_last_verdict() {
        let mut a = analyzer(|_| {});
        frame(&mut a, &[FACE], SWAP);
        let seen = a.observe(&[FACE], SIZE);
        let plan = a.plan(seen, false);
        let j = a.complete(&plan, &[None]).faces[0].judged.unwrap();
        assert!(!j.current && j.fake);
        assert_eq!(j.frames_ago, 1);
    }

    #[test]
    fn smoothing_blends_a_tracks_verdicts() {
        let mut a = analyzer(|s| s.smoothing = 0.5);
        frame(&mut a, &[FACE], REAL);
        let j = frame(&mut a, &[FACE], SWAP).faces[0].judged.unwrap();
        assert!((j.verdict.probabilities[0] - 0.5).abs() < 1e-6);
        assert!((j.verdict.probabilities[1] - 0.42).abs() < 1e-6);
    }

    #[test]
    fn a_reset_forgets_the_tracks() {
        let mut a = analyzer(|_| {});
        frame(&mut a, &[FACE], SWAP);
        a.reset();
        let out = frame(&mut a, &[FACE], SWAP);
        assert_eq!(out.frame, 0);
        assert_eq!(out.faces[0].track, 2, "a new track");
        assert_eq!(out.alerts.len(), 1);
    }
}
