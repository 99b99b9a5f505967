//! Each SD² loss against values worked out by hand, and the switches of Eq. 6.

use burn::prelude::*;
use sd2_train::loss::{
    LossConfig, classification_loss, label_separation_loss, siglip_loss, total_loss,
};

fn t2(rows: &[&[f32]]) -> Tensor<2> {
    let n = rows[0].len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), n]), &Device::flex())
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn classification_loss_is_the_mean_cross_entropy_of_eq_3() {
    let logits = t2(&[&[2.0, 1.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 3.0, 0.0, 0.0]]);
    let targets = Tensor::<1, Int>::from_ints([0, 2], &Device::flex());
    let e = std::f64::consts::E;
    let first = -(e.powi(2) / (e.powi(2) + e + 3.0)).ln();
    let second = -(e.powi(3) / (e.powi(3) + 4.0)).ln();
    let got = scalar(classification_loss(logits, targets));
    assert!((got - (first + second) / 2.0).abs() < 1e-6, "{got}");
}

#[test]
fn separation_loss_is_the_squared_distance_of_label_similarities_from_identity() {
    // Unit x, unit y and their diagonal: four off-diagonal similarities of 1/√2, squared 1/2.
    let u = t2(&[&[1.0, 0.0], &[0.0, 1.0], &[1.0, 1.0]]);
    let got = scalar(label_separation_loss(u));
    assert!((got - 2.0).abs() < 1e-6, "{got}");
    // Orthogonal labels cost nothing, whatever their length.
    let got = scalar(label_separation_loss(t2(&[&[3.0, 0.0], &[0.0, 0.5]])));
    assert!(got.abs() < 1e-6);
}

#[test]
fn siglip_loss_is_eq_5_with_in_batch_negatives() {
    let f = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let v = t2(&[&[1.0, 0.0], &[1.0, 1.0]]);
    let device = Device::flex();
    let tau = Tensor::<1>::from_floats([2.0], &device);
    let bias = Tensor::<1>::from_floats([-1.0], &device);
    let c = std::f64::consts::FRAC_1_SQRT_2;
    // logits = 2·cos − 1: [[1, 2c−1], [−1, 2c−1]]; z = +1 on the diagonal.
    let terms = [
        sigmoid(1.0),
        sigmoid(-(2.0 * c - 1.0)),
        sigmoid(1.0),
        sigmoid(2.0 * c - 1.0),
    ];
    let want = -terms.iter().map(|p| p.ln()).sum::<f64>() / 2.0;
    let got = scalar(siglip_loss(f, v, tau, bias));
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn total_is_alpha_times_classification_plus_the_rest_and_switches_drop_terms() {
    let device = Device::flex();
    let one = |v: f32| Some(Tensor::<1>::from_floats([v], &device));
    let config = LossConfig::default();
    let l = total_loss(&config, one(1.0), one(0.5), one(0.25), one(0.125), &device);
    assert!((scalar(l.total) - (2.0 * 1.0 + 0.5 + 0.25 + 0.125)).abs() < 1e-6);
    assert_eq!(l.classification, Some(1.0));
    let l = total_loss(&config, one(1.0), None, one(0.25), None, &device);
    assert!((scalar(l.total) - 2.25).abs() < 1e-6);
    assert_eq!((l.separation, l.environment), (None, None));
}
