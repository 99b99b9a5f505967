//! Non-maximum suppression as the reference MTCNN does it.
//!
//! Stages one and two use torchvision's `nms` (IoU, areas without the `+1`); stage three
//! uses facenet-pytorch's `nms_numpy` with the `Min` overlap (intersection over the smaller
//! area, areas with the `+1`). Both keep a box when its overlap with every higher-scoring
//! kept box is at most the threshold, and return indices by decreasing score.

/// Box corners `[x1, y1, x2, y2]`.
pub type Corners = [f32; 4];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union, `(x2 - x1) · (y2 - y1)` areas (torchvision).
    Union,
    /// Intersection over the smaller area, `(x2 - x1 + 1) · (y2 - y1 + 1)` areas.
    Min,
}

fn overlap(a: &Corners, b: &Corners, kind: Overlap) -> f32 {
    let one = if kind == Overlap::Min { 1.0 } else { 0.0 };
    let area = |r: &Corners| (r[2] - r[0] + one) * (r[3] - r[1] + one);
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + one).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + one).max(0.0);
    let inter = w * h;
    match kind {
        Overlap::Union => inter / (area(a) + area(b) - inter),
        Overlap::Min => inter / area(a).min(area(b)),
    }
}

/// Greedy NMS; returns the kept indices by decreasing score.
pub fn nms(boxes: &[Corners], scores: &[f32], threshold: f32, kind: Overlap) -> Vec<usize> {
    debug_assert_eq!(boxes.len(), scores.len());
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[pos + 1..] {
            // A NaN overlap (two empty boxes) compares false and suppresses nothing, as in the reference.
            if !suppressed[j] && overlap(&boxes[i], &boxes[j], kind) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_of_overlapping_boxes_and_all_disjoint_ones() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],
            [20.0, 20.0, 30.0, 30.0],
        ];
        let scores = [0.8, 0.9, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Union), vec![1, 2]);
        // IoU of the first two is 81/119 = 0.68: kept apart at a 0.7 threshold.
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Union), vec![1, 0, 2]);
    }

    #[test]
    fn min_overlap_suppresses_a_box_inside_another() {
        // A small box inside a large one: IoU is low, but intersection over the smaller area is 1.
        let boxes = [[0.0, 0.0, 99.0, 99.0], [10.0, 10.0, 19.0, 19.0]];
        let scores = [0.95, 0.99];
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Union), vec![1, 0]);
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Min), vec![1]);
        assert!((overlap(&boxes[0], &boxes[1], Overlap::Min) - 1.0).abs() < 1e-6);
    }
}
