//! A channel's counters. They outlive the channel's pipelines, so a reconnection does not
//! reset them (Prometheus counters only grow).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::histogram::{Histogram, LATENCY_BOUNDS};

/// Frames entering `sd2deepfake` remembered at once: more than its queue ever holds.
const MAX_PENDING: usize = 4096;

#[derive(Debug)]
pub struct ChannelStats {
    /// Frames that left the analysis.
    pub frames: AtomicU64,
    /// Frames with at least one face classified on that frame.
    pub analysed_frames: AtomicU64,
    /// Faces classified (one per classification).
    pub faces: AtomicU64,
    /// Classifications that judged the face fake.
    pub fake_faces: AtomicU64,
    pub alerts: AtomicU64,
    /// Frames `sd2deepfake` let pass unanalysed because its queue was full.
    pub skipped_frames: AtomicU64,
    pub reconnects: AtomicU64,
    pub evidence_written: AtomicU64,
    /// Evidence not written: the writer was behind, or a write failed.
    pub evidence_failed: AtomicU64,
    /// How far behind the clock the last frame left the analysis, in microseconds.
    pub lag_us: AtomicI64,
    /// Frames per second of the stream, in thousandths (0 until known).
    pub framerate_milli: AtomicU64,
    /// The inference interval in use (0 until the stream's caps are known).
    pub interval: AtomicU32,
    latency: Mutex<Histogram>,
    /// Frames inside `sd2deepfake`: their timestamp and when they went in.
    pending: Mutex<VecDeque<(Option<u64>, Instant)>>,
    publish: Mutex<PublishTotals>,
}

/// `sd2publish`'s counters, which restart with each pipeline, summed over them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishTotals {
    /// Confirmed by the destination, over the pipelines that ended.
    pub published: u64,
    /// Lost, over the pipelines that ended.
    pub dropped: u64,
    /// Messages in the spool when last read.
    pub backlog: u64,
}

impl Default for ChannelStats {
    fn default() -> Self {
        ChannelStats {
            frames: AtomicU64::new(0),
            analysed_frames: AtomicU64::new(0),
            faces: AtomicU64::new(0),
            fake_faces: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            skipped_frames: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            evidence_written: AtomicU64::new(0),
            evidence_failed: AtomicU64::new(0),
            lag_us: AtomicI64::new(0),
            framerate_milli: AtomicU64::new(0),
            interval: AtomicU32::new(0),
            latency: Mutex::new(Histogram::new(&LATENCY_BOUNDS)),
            pending: Mutex::new(VecDeque::new()),
            publish: Mutex::new(PublishTotals::default()),
        }
    }
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl ChannelStats {
    /// A frame stamped `pts` enters `sd2deepfake`.
    pub fn entered(&self, pts: Option<u64>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() == MAX_PENDING {
            p.pop_front();
        }
        p.push_back((pts, Instant::now()));
    }

    /// A frame stamped `pts` leaves `sd2deepfake`: how long it spent inside, when it was
    /// seen entering. Frames leave in order, so older entries are frames it dropped.
    pub fn left(&self, pts: Option<u64>) -> Option<f64> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let at = p.iter().position(|(t, _)| *t == pts)?;
        let (_, since) = p.drain(..=at).next_back()?;
        Some(since.elapsed().as_secs_f64())
    }

    /// Forgets the frames inside (a flush or a new pipeline).
    pub fn forget_pending(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn observe_latency(&self, seconds: f64) {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(seconds);
    }

    pub fn latency(&self) -> Histogram {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish_totals(&self) -> PublishTotals {
        *self.publish.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what a pipeline's `sd2publish` says now; `ended` adds its counts to the
    /// totals (the pipeline is going away).
    pub fn publish_read(
        &self,
        published: u64,
        dropped: u64,
        backlog: u64,
        ended: bool,
    ) -> PublishTotals {
        let mut t = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        t.backlog = backlog;
        let now = PublishTotals {
            published: t.published + published,
            dropped: t.dropped + dropped,
            backlog,
        };
        if ended {
            *t = now;
        }
        now
    }

    pub fn lag_seconds(&self) -> f64 {
        self.lag_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    pub fn framerate(&self) -> Option<f64> {
        let f = self.framerate_milli.load(Ordering::Relaxed);
        (f > 0).then(|| f as f64 / 1000.0)
    }

    pub fn interval(&self) -> Option<u32> {
        let n = self.interval.load(Ordering::Relaxed);
        (n > 0).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_leaving_is_matched_to_its_entry_and_older_entries_are_dropped() {
        let s = ChannelStats::default();
        s.entered(Some(0));
        s.entered(Some(40));
        s.entered(Some(80));
        assert!(s.left(Some(40)).is_some());
        assert_eq!(
            s.left(Some(0)),
            None,
            "an entry before a frame that left is gone"
        );
        assert!(s.left(Some(80)).is_some());
        assert_eq!(s.left(Some(120)), None);
    }

    #[test]
    fn publish_counts_add_up_over_pipelines() {
        let s = ChannelStats::default();
        s.publish_read(10, 1, 3, true);
        let now = s.publish_read(4, 0, 2, false);
        assert_eq!(
            now,
            PublishTotals {
                published: 14,
                dropped: 1,
                backlog: 2
            }
        );
        assert_eq!(s.publish_totals().published, 10);
        assert_eq!(s.publish_totals().backlog, 2);
    }
}
