//! Detection metrics over fake scores (1 − p(REAL)) and binary labels (fake = true):
//! AUC, EER, AP, and accuracy of a decision.

/// Area under the ROC curve, with ties counted half (the Mann–Whitney statistic).
/// `None` when one class is absent or a score is not finite (NaN has no rank).
pub fn auc(scores: &[f64], fake: &[bool]) -> Option<f64> {
    if !finite(scores) {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let n_pos = fake.iter().filter(|&&f| f).count() as f64;
    let n_neg = fake.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(fake)
        .filter(|(_, f)| **f)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// The ROC curve: (false-positive rate, true-positive rate) from (0, 0), one point per
/// distinct score taken as the threshold, highest first, to (1, 1). Both classes must be
/// present.
pub fn roc_curve(scores: &[f64], fake: &[bool]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let n_pos = fake.iter().filter(|&&f| f).count() as f64;
    let n_neg = fake.len() as f64 - n_pos;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (k, &i) in idx.iter().enumerate() {
        if fake[i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        let last_of_tie = k + 1 == idx.len() || scores[idx[k + 1]] != scores[i];
        if last_of_tie {
            points.push((fp / n_neg, tp / n_pos));
        }
    }
    points
}

/// Equal error rate: where the false-positive and false-negative rates meet (linearly
/// interpolated between ROC points). `None` when one class is absent or a score is not
/// finite.
pub fn eer(scores: &[f64], fake: &[bool]) -> Option<f64> {
    let n_pos = fake.iter().filter(|&&f| f).count();
    if n_pos == 0 || n_pos == fake.len() || !finite(scores) {
        return None;
    }
    let pts = roc_curve(scores, fake);
    for w in pts.windows(2) {
        let (f0, t0) = w[0];
        let (f1, t1) = w[1];
        let (d0, d1) = (f0 - (1.0 - t0), f1 - (1.0 - t1));
        if d0 <= 0.0 && d1 >= 0.0 {
            let a = if d1 - d0 == 0.0 { 0.0 } else { -d0 / (d1 - d0) };
            return Some(f0 + a * (f1 - f0));
        }
    }
    None
}

/// Average precision of ranking fakes first (the step-wise sum over recall, as
/// scikit-learn's `average_precision_score`). `None` without fakes or when a score is not
/// finite.
pub fn average_precision(scores: &[f64], fake: &[bool]) -> Option<f64> {
    let n_pos = fake.iter().filter(|&&f| f).count() as f64;
    if n_pos == 0.0 || !finite(scores) {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    for (k, &i) in idx.iter().enumerate() {
        seen += 1.0;
        if fake[i] {
            tp += 1.0;
        }
        let last_of_tie = k + 1 == idx.len() || scores[idx[k + 1]] != scores[i];
        if last_of_tie {
            let recall = tp / n_pos;
            ap += (recall - last_recall) * (tp / seen);
            last_recall = recall;
        }
    }
    Some(ap)
}

/// The precision–recall curve: (recall, precision), one point per distinct score taken as
/// the threshold, highest first. Fakes must be present.
pub fn precision_recall_curve(scores: &[f64], fake: &[bool]) -> Vec<(f64, f64)> {
    let n_pos = fake.iter().filter(|&&f| f).count() as f64;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen) = (0.0, 0.0);
    let mut points = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        seen += 1.0;
        if fake[i] {
            tp += 1.0;
        }
        if k + 1 == idx.len() || scores[idx[k + 1]] != scores[i] {
            points.push((tp / n_pos, tp / seen));
        }
    }
    points
}

fn finite(scores: &[f64]) -> bool {
    scores.iter().all(|s| s.is_finite())
}

/// Fraction of predictions equal to the truth.
pub fn accuracy(predicted: &[bool], truth: &[bool]) -> f64 {
    let right = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / predicted.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_random_and_inverted_rankings() {
        let fake = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &fake), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &fake), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &fake), Some(0.5));
        assert_eq!(auc(&[0.5, 0.6], &[true, true]), None);
        assert_eq!(eer(&[0.1, 0.2, 0.8, 0.9], &fake), Some(0.0));
        assert_eq!(average_precision(&[0.1, 0.2, 0.8, 0.9], &fake), Some(1.0));
    }

    #[test]
    fn values_worked_out_by_hand() {
        // Scores 0.1 0.4 0.35 0.8 with labels 0 0 1 1 (scikit-learn's roc_auc_score example): AUC 0.75.
        let s = [0.1, 0.4, 0.35, 0.8];
        let f = [false, false, true, true];
        assert!((auc(&s, &f).unwrap() - 0.75).abs() < 1e-12);
        // Ranked: 0.8 (fake) 0.4 (real) 0.35 (fake) 0.1 (real): AP = 0.5·1 + 0.5·(2/3) = 0.8333.
        assert!((average_precision(&s, &f).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1); FPR = FNR = 0.5 at the second step.
        assert!((eer(&s, &f).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(
            accuracy(&[true, false, true], &[true, true, true]),
            2.0 / 3.0
        );
        let roc = [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)];
        assert_eq!(roc_curve(&s, &f), roc);
        let pr = [(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)];
        assert_eq!(precision_recall_curve(&s, &f), pr);
    }

    #[test]
    fn a_nan_score_has_no_rank_and_no_figure() {
        let fake = [false, true, false, true];
        let s = [0.1, f64::NAN, 0.2, 0.9];
        assert_eq!(auc(&s, &fake), None);
        assert_eq!(eer(&s, &fake), None);
        assert_eq!(average_precision(&s, &fake), None);
    }
}
