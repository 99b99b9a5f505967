//! What a video's analysed frames add up to: the video's verdict (the mean of every face's
//! probabilities, judged by the face's rule: [`VideoTally`]), the fake-score timeline, the
//! peak frame, the frames judged fake, and each face's most suspicious moment.
//!
//! A frame's fake score is its most suspicious face's (1 − p(REAL)); a frame is fake when
//! any of its faces is, each judged on its own frame.
//!
//! The most suspicious faces are those judged fake on the most frames, then those with the
//! highest fake score: a face judged fake again and again matters more than one that spikes
//! once (small faces in the background, a detection that is no face).

use std::collections::HashMap;

use sd2_models::analyzer::{Judge, VideoTally, VideoVerdict, label};
use sd2_models::classifier::Verdict;
use sd2_models::taxonomy::DeepfakeType;
use serde::{Deserialize, Serialize};

/// A classified face on an analysed frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceSeen {
    /// The tracker's id: the same person across frames.
    pub track: u64,
    pub verdict: Verdict,
    /// The face box in frame pixels: x, y, width, height.
    pub rect: [u32; 4],
}

/// One analysed frame on the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FramePoint {
    /// Seconds from the start of the video.
    pub t: f64,
    /// The frame's fake score; absent on a frame without a classified face.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f32>,
    pub faces: usize,
    pub fake: bool,
}

/// A face at its most suspicious frame, with what `crop` cut from that frame.
#[derive(Clone, Debug)]
pub struct Peak<C> {
    pub track: u64,
    /// Frames the face was classified on, and judged fake on.
    pub frames: usize,
    pub fake_frames: usize,
    pub time_s: f64,
    pub verdict: Verdict,
    pub fake: bool,
    pub label: DeepfakeType,
    pub rect: [u32; 4],
    pub crop: Option<C>,
}

/// The frames of a video seen so far.
pub struct VideoAccumulator<C> {
    judge: Judge,
    tally: VideoTally,
    peaks: HashMap<u64, Peak<C>>,
    timeline: Vec<FramePoint>,
}

/// A video's analysis.
#[derive(Clone, Debug)]
pub struct VideoSummary<C> {
    /// `None` when no face was classified.
    pub verdict: Option<VideoVerdict>,
    /// Distinct faces (tracks).
    pub faces: usize,
    /// Face verdicts averaged into the video's verdict (a face on each frame it is on).
    pub face_verdicts: usize,
    pub frames: usize,
    /// The most suspicious frame: its time and fake score.
    pub peak_frame: Option<(f64, f32)>,
    pub fake_frames: usize,
    pub timeline: Vec<FramePoint>,
    /// The most suspicious faces, one per track: most frames judged fake first, then
    /// highest fake score.
    pub suspicious: Vec<Peak<C>>,
}

impl<C> VideoAccumulator<C> {
    pub fn new(judge: Judge) -> Self {
        VideoAccumulator {
            judge,
            tally: VideoTally::default(),
            peaks: HashMap::new(),
            timeline: Vec::new(),
        }
    }

    /// Adds a frame at `time_s` with its classified `faces`; `crop` is asked for the face's
    /// picture only when the face is more suspicious than its track has been so far.
    pub fn add_frame(
        &mut self,
        time_s: f64,
        faces: &[FaceSeen],
        mut crop: impl FnMut(&FaceSeen) -> Option<C>,
    ) {
        let mut score: Option<f32> = None;
        let mut fake = false;
        for face in faces {
            self.tally.add(&face.verdict);
            let s = face.verdict.fake_score();
            let face_fake = self.judge.is_fake_alone(&face.verdict);
            score = Some(score.map_or(s, |b| b.max(s)));
            fake |= face_fake;
            let (frames, fake_frames) = self
                .peaks
                .get(&face.track)
                .map_or((0, 0), |p| (p.frames, p.fake_frames));
            let (frames, fake_frames) = (frames + 1, fake_frames + usize::from(face_fake));
            match self.peaks.get_mut(&face.track) {
                Some(p) if s <= p.verdict.fake_score() => {
                    (p.frames, p.fake_frames) = (frames, fake_frames);
                }
                _ => {
                    let peak = Peak {
                        track: face.track,
                        frames,
                        fake_frames,
                        time_s,
                        verdict: face.verdict,
                        fake: face_fake,
                        label: label(&face.verdict, face_fake),
                        rect: face.rect,
                        crop: crop(face),
                    };
                    self.peaks.insert(face.track, peak);
                }
            }
        }
        self.timeline.push(FramePoint {
            t: time_s,
            score,
            faces: faces.len(),
            fake,
        });
    }

    pub fn frames(&self) -> usize {
        self.timeline.len()
    }

    /// The summary, keeping the `keep` most suspicious faces.
    pub fn finish(self, keep: usize) -> VideoSummary<C> {
        let peak_frame = self
            .timeline
            .iter()
            .filter_map(|p| p.score.map(|s| (p.t, s)))
            .fold(None, |best: Option<(f64, f32)>, (t, s)| match best {
                Some((_, b)) if b >= s => best,
                _ => Some((t, s)),
            });
        let mut suspicious: Vec<Peak<C>> = self.peaks.into_values().collect();
        let faces = suspicious.len();
        suspicious.sort_by(|a, b| {
            b.fake_frames
                .cmp(&a.fake_frames)
                .then(b.verdict.fake_score().total_cmp(&a.verdict.fake_score()))
                .then(a.time_s.total_cmp(&b.time_s))
                .then(a.track.cmp(&b.track))
        });
        suspicious.truncate(keep);
        VideoSummary {
            verdict: self.tally.judge(&self.judge),
            faces,
            face_verdicts: self.tally.faces(),
            frames: self.timeline.len(),
            peak_frame,
            fake_frames: self.timeline.iter().filter(|p| p.fake).count(),
            timeline: self.timeline,
            suspicious,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sd2_models::analyzer::Decision;

    fn face(track: u64, p: [f32; 5]) -> FaceSeen {
        FaceSeen {
            track,
            verdict: Verdict { probabilities: p },
            rect: [10 * track as u32, 0, 10, 10],
        }
    }

    const REALISH: [f32; 5] = [0.8, 0.1, 0.05, 0.03, 0.02];
    const SWAPPED: [f32; 5] = [0.2, 0.7, 0.05, 0.03, 0.02];

    #[test]
    fn the_video_verdict_is_the_mean_of_every_face_judged_like_a_face() {
        let mut acc = VideoAccumulator::<()>::new(Judge::default());
        acc.add_frame(0.0, &[face(1, REALISH), face(2, REALISH)], |_| None);
        acc.add_frame(1.0, &[face(1, REALISH), face(2, SWAPPED)], |_| None);
        let s = acc.finish(10);
        let v = s.verdict.unwrap();
        // p(REAL) = (0.8 · 3 + 0.2) / 4 = 0.65: real under argmax, though one frame is fake.
        assert!((v.verdict.probabilities[0] - 0.65).abs() < 1e-6);
        assert!(!v.fake);
        assert_eq!(s.face_verdicts, 4);
        assert_eq!(s.faces, 2);
        assert_eq!(s.frames, 2);
        assert_eq!(s.fake_frames, 1);
        assert_eq!(s.peak_frame, Some((1.0, 0.8)));
        let strict = Judge {
            decision: Decision::Threshold,
            threshold: 0.3,
            hysteresis: 0.0,
        };
        let mut acc = VideoAccumulator::<()>::new(strict);
        acc.add_frame(0.0, &[face(1, REALISH), face(2, SWAPPED)], |_| None);
        let v = acc.finish(10).verdict.unwrap();
        assert!(v.fake, "fake score 0.5 > 0.3");
        assert_eq!(v.label, DeepfakeType::FaceSwap);
    }

    #[test]
    fn a_face_judged_fake_on_many_frames_ranks_above_one_that_spikes_once() {
        const SPIKE: [f32; 5] = [0.02, 0.9, 0.04, 0.02, 0.02];
        let mut acc = VideoAccumulator::<()>::new(Judge::default());
        acc.add_frame(0.0, &[face(1, SWAPPED), face(2, SPIKE)], |_| None);
        acc.add_frame(1.0, &[face(1, SWAPPED), face(2, REALISH)], |_| None);
        acc.add_frame(2.0, &[face(1, REALISH), face(3, REALISH)], |_| None);
        let s = acc.finish(10);
        let order: Vec<(u64, usize, usize)> = s
            .suspicious
            .iter()
            .map(|p| (p.track, p.fake_frames, p.frames))
            .collect();
        assert_eq!(order, [(1, 2, 3), (2, 1, 2), (3, 0, 1)]);
        assert!(s.suspicious[1].verdict.fake_score() > s.suspicious[0].verdict.fake_score());
    }

    #[test]
    fn each_face_keeps_its_most_suspicious_moment_and_the_most_suspicious_come_first() {
        let mut acc = VideoAccumulator::new(Judge::default());
        let mut crops = 0;
        let mut cut = |f: &FaceSeen| {
            crops += 1;
            Some(f.track)
        };
        acc.add_frame(0.0, &[face(1, REALISH), face(2, REALISH)], &mut cut);
        acc.add_frame(1.0, &[face(1, REALISH), face(2, SWAPPED)], &mut cut);
        acc.add_frame(2.0, &[face(1, [0.7, 0.2, 0.05, 0.03, 0.02])], &mut cut);
        // Crops are cut for a track's first face and each time it becomes more suspicious.
        assert_eq!(crops, 4);
        let s = acc.finish(10);
        assert_eq!(s.suspicious.len(), 2);
        let first = &s.suspicious[0];
        assert_eq!((first.track, first.time_s, first.crop), (2, 1.0, Some(2)));
        assert!(first.fake && first.label == DeepfakeType::FaceSwap);
        assert_eq!((s.suspicious[1].track, s.suspicious[1].time_s), (1, 2.0));
        assert!(!s.suspicious[1].fake);
        let mut acc = VideoAccumulator::<()>::new(Judge::default());
        acc.add_frame(0.0, &[face(1, REALISH), face(2, SWAPPED)], |_| None);
        assert_eq!(acc.finish(1).suspicious.len(), 1);
    }

    #[test]
    fn frames_without_faces_are_on_the_timeline_without_a_score() {
        let mut acc = VideoAccumulator::<()>::new(Judge::default());
        acc.add_frame(0.0, &[], |_| None);
        assert_eq!(acc.frames(), 1);
        let s = acc.finish(6);
        assert!(s.verdict.is_none());
        assert_eq!(s.peak_frame, None);
        assert_eq!(
            s.timeline,
            vec![FramePoint {
                t: 0.0,
                score: None,
                faces: 0,
                fake: false
            }]
        );
    }
}
