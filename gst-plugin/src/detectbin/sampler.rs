//! Which decoded frames go on to analysis: all of them, at most `sample-fps` a second, or
//! `frames-per-video` evenly spaced over the stream (the paper evaluates 32 per video).

/// Where a frame stamped `pts` lies in the stream, which the duration measures: by the
/// pad's time `segment` when there is one, since a stream's timestamps need not start at
/// zero (MPEG-TS, a cut recording). `None` outside the segment.
pub fn stream_position(
    segment: Option<&gst::FormattedSegment<gst::ClockTime>>,
    pts: gst::ClockTime,
) -> Option<gst::ClockTime> {
    match segment {
        Some(s) => s.to_stream_time(pts),
        None => Some(pts),
    }
}

/// The sampling rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    All,
    /// At most this many frames a second (the first frame of each `1 / fps` slot).
    PerSecond(f64),
    /// This many frames, at `k · duration / count` for `k` in `0..count`.
    PerVideo(u32),
}

/// Decides frame by frame.
#[derive(Clone, Debug)]
pub struct Sampler {
    rule: Sampling,
    /// The next slot (per second) or target index (per video) to fill.
    next: u64,
}

impl Sampler {
    pub fn new(rule: Sampling) -> Self {
        Sampler { rule, next: 0 }
    }

    pub fn reset(&mut self) {
        self.next = 0;
    }

    /// Whether the frame at `pts` (nanoseconds from the stream's start) is kept; `duration`
    /// gives the stream's length when known, asked only by `PerVideo`.
    pub fn keep(&mut self, pts: Option<u64>, duration: impl FnOnce() -> Option<u64>) -> bool {
        let Some(pts) = pts else {
            return !matches!(self.rule, Sampling::PerVideo(_));
        };
        match self.rule {
            Sampling::All => true,
            Sampling::PerSecond(fps) => {
                let slot = (pts as f64 * fps / 1e9).floor() as u64;
                if slot >= self.next {
                    self.next = slot + 1;
                    true
                } else {
                    false
                }
            }
            Sampling::PerVideo(count) => {
                let Some(d) = duration().filter(|d| *d > 0) else {
                    return true;
                };
                let count = count.max(1) as u64;
                if self.next >= count {
                    return false;
                }
                let target = |k: u64| (k as u128 * d as u128 / count as u128) as u64;
                if pts < target(self.next) {
                    return false;
                }
                // Skip targets this frame has passed, so a coarse stream still yields frames.
                while self.next < count && pts >= target(self.next) {
                    self.next += 1;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn per_second_keeps_the_first_frame_of_each_slot() {
        let mut s = Sampler::new(Sampling::PerSecond(2.0));
        let kept: Vec<u64> = (0..25u64)
            .map(|i| i * 40 * MS)
            .filter(|&t| s.keep(Some(t), || None))
            .collect();
        assert_eq!(kept, vec![0, 520 * MS]);
    }

    #[test]
    fn per_video_spreads_frames_over_the_duration() {
        // 10 s at 25 fps, 32 frames wanted: one every 312.5 ms.
        let mut s = Sampler::new(Sampling::PerVideo(32));
        let kept: Vec<u64> = (0..250u64)
            .map(|i| i * 40 * MS)
            .filter(|&t| s.keep(Some(t), || Some(10_000 * MS)))
            .collect();
        assert_eq!(kept.len(), 32);
        assert_eq!(kept[0], 0);
        assert_eq!(kept[1], 320 * MS);
        assert!(kept[31] >= 9_680 * MS);
        // Without a duration (a live stream) every frame goes on.
        let mut live = Sampler::new(Sampling::PerVideo(32));
        assert!((0..5).all(|i| live.keep(Some(i * 40 * MS), || None)));
    }

    #[test]
    fn positions_count_from_the_segment_not_from_the_timestamps() {
        gst::init().unwrap();
        let hour = gst::ClockTime::from_seconds(3600);
        // A recording cut an hour in: its frames are stamped from 3600 s, its stream time
        // starts at zero.
        let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
        segment.set_start(hour);
        segment.set_time(gst::ClockTime::ZERO);
        let at = |s: u64| stream_position(Some(&segment), hour + gst::ClockTime::from_seconds(s));
        assert_eq!(at(0), Some(gst::ClockTime::ZERO));
        assert_eq!(at(6), Some(gst::ClockTime::from_seconds(6)));
        assert_eq!(
            stream_position(Some(&segment), gst::ClockTime::from_seconds(5)),
            None
        );
        assert_eq!(stream_position(None, hour), Some(hour));

        // Sampling 4 of a 12 s stream over those positions takes the frames at 0, 3, 6, 9 s.
        let mut s = Sampler::new(Sampling::PerVideo(4));
        let kept: Vec<u64> = (0..12 * 25u64)
            .filter(|i| {
                let pts = hour + gst::ClockTime::from_mseconds(i * 40);
                let pos = stream_position(Some(&segment), pts).map(|t| t.nseconds());
                s.keep(pos, || Some(12_000 * MS))
            })
            .map(|i| i * 40)
            .collect();
        assert_eq!(kept, [0, 3000, 6000, 9000]);
    }
}
