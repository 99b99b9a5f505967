//! Face tracks across frames: each face of a frame is matched to the track whose last box
//! overlaps it most (IoU above a threshold, greedily, best pairs first); unmatched faces
//! start new tracks, and tracks unseen for a while end.

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[derive(Clone, Debug)]
pub struct Track<T> {
    pub id: u64,
    pub bbox: [f32; 4],
    pub last_seen: u64,
    /// What the caller keeps per track (verdicts, alert state).
    pub state: T,
}

#[derive(Clone, Debug)]
pub struct Tracker<T> {
    pub tracks: Vec<Track<T>>,
    next_id: u64,
    /// Least IoU with a track's last box to continue it.
    pub min_iou: f32,
    /// Frames a track survives unseen.
    pub max_missed: u64,
}

impl<T: Default> Tracker<T> {
    pub fn new(min_iou: f32, max_missed: u64) -> Self {
        Tracker {
            tracks: Vec::new(),
            next_id: 1,
            min_iou,
            max_missed,
        }
    }

    /// Assigns each of `boxes` (seen on `frame`) to a track; returns the tracks' indices in
    /// `self.tracks`, one per box. Tracks unseen for more than `max_missed` frames end first.
    pub fn update(&mut self, frame: u64, boxes: &[[f32; 4]]) -> Vec<usize> {
        self.update_keeping(frame, boxes, |_| false)
    }

    /// [`update`](Self::update), where tracks whose state `keep` holds do not end however
    /// long they go unseen (a caller still waiting on them).
    pub fn update_keeping(
        &mut self,
        frame: u64,
        boxes: &[[f32; 4]],
        keep: impl Fn(&T) -> bool,
    ) -> Vec<usize> {
        let max_missed = self.max_missed;
        self.tracks
            .retain(|t| frame.saturating_sub(t.last_seen) <= max_missed || keep(&t.state));
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (b, bx) in boxes.iter().enumerate() {
            for (t, tr) in self.tracks.iter().enumerate() {
                let o = iou(bx, &tr.bbox);
                if o >= self.min_iou {
                    pairs.push((o, b, t));
                }
            }
        }
        pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
        let mut assigned: Vec<Option<usize>> = vec![None; boxes.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, b, t) in pairs {
            if assigned[b].is_none() && !taken[t] {
                assigned[b] = Some(t);
                taken[t] = true;
            }
        }
        assigned
            .into_iter()
            .zip(boxes)
            .map(|(a, bx)| {
                let t = a.unwrap_or_else(|| {
                    self.tracks.push(Track {
                        id: self.next_id,
                        bbox: *bx,
                        last_seen: frame,
                        state: T::default(),
                    });
                    self.next_id += 1;
                    self.tracks.len() - 1
                });
                self.tracks[t].bbox = *bx;
                self.tracks[t].last_seen = frame;
                t
            })
            .collect()
    }

    /// Forgets every track (a flush or a new stream).
    pub fn clear(&mut self) {
        self.tracks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_keep_their_ids_while_they_move_and_new_ones_get_new_ids() {
        let mut t: Tracker<()> = Tracker::new(0.3, 5);
        let a = t.update(0, &[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]);
        let ids0: Vec<u64> = a.iter().map(|&i| t.tracks[i].id).collect();
        assert_eq!(ids0, vec![1, 2]);
        // Moved a little, listed in the other order, plus a newcomer.
        let b = t.update(
            1,
            &[
                [52.0, 51.0, 62.0, 61.0],
                [1.0, 1.0, 11.0, 11.0],
                [100.0, 0.0, 110.0, 10.0],
            ],
        );
        let ids1: Vec<u64> = b.iter().map(|&i| t.tracks[i].id).collect();
        assert_eq!(ids1, vec![2, 1, 3]);
        // Unseen past max_missed: gone; the same place later is a new track.
        t.update(10, &[]);
        let c = t.update(11, &[[1.0, 1.0, 11.0, 11.0]]);
        assert_eq!(t.tracks[c[0]].id, 4);
        assert_eq!(
            iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]),
            50.0 / 150.0
        );
    }

    #[test]
    fn a_track_kept_by_its_state_outlives_its_absence() {
        let mut t: Tracker<bool> = Tracker::new(0.3, 2);
        let a = t.update(0, &[[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]);
        t.tracks[a[0]].state = true;
        t.update_keeping(10, &[], |&keep| keep);
        assert_eq!(t.tracks.iter().map(|t| t.id).collect::<Vec<_>>(), [1]);
        t.tracks[0].state = false;
        t.update_keeping(11, &[], |&keep| keep);
        assert!(t.tracks.is_empty());
    }
}
