//! The three SD² objectives (paper §4.2–4.4), one function each.

use burn::prelude::*;
use burn::tensor::activation;
use serde::{Deserialize, Serialize};

use crate::model::cosine_matrix;

/// Eq. 3: cross-entropy of the image–label logits `τ·sim(f_i, u_c)` (`[batch, 5]`)
/// against each image's type, averaged over the batch.
pub fn classification_loss(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let log_p = activation::log_softmax(logits, 1);
    log_p.gather(1, targets.reshape([b, 1])).neg().mean()
}

/// Eq. 4: `‖sim(u, uᵀ) − I‖²_F` over the label embeddings `u` (`[5, dim]`).
pub fn label_separation_loss(u: Tensor<2>) -> Tensor<1> {
    let [n, _] = u.dims();
    let device = u.device();
    let sim = cosine_matrix(u.clone(), u);
    (sim - Tensor::eye(n, &device)).powf_scalar(2.0).sum()
}

/// One term of Eq. 5, SigLIP (Zhai et al., 2023): image `i` and description `j` are a
/// positive pair when `i == j`, every other pair in the batch is negative;
/// `−1/|B| Σᵢ Σⱼ log σ(zᵢⱼ (τ·sim(fᵢ, vⱼ) + b))`.
pub fn siglip_loss(f: Tensor<2>, v: Tensor<2>, tau: Tensor<1>, bias: Tensor<1>) -> Tensor<1> {
    let [b, n] = [f.dims()[0], v.dims()[0]];
    let device = f.device();
    let logits = cosine_matrix(f, v) * tau.unsqueeze::<2>() + bias.unsqueeze::<2>();
    // z = +1 on the diagonal, −1 elsewhere.
    let z = Tensor::<2>::eye(b.max(n), &device)
        .slice([0..b, 0..n])
        .mul_scalar(2.0)
        .sub_scalar(1.0);
    activation::log_sigmoid(z * logits)
        .sum()
        .neg()
        .div_scalar(b as f64)
}

/// Which terms train, and α (Eq. 6). Every row of the paper's Table 5 ablation is a
/// combination of these switches and the model's `clam` flag.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub alpha: f64,
    pub classification: bool,
    pub separation: bool,
    pub face_contrastive: bool,
    pub environment_contrastive: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            alpha: 2.0,
            classification: true,
            separation: true,
            face_contrastive: true,
            environment_contrastive: true,
        }
    }
}

/// A batch's loss and its parts (`None` where a term is off or had no samples).
pub struct Losses {
    pub total: Tensor<1>,
    pub classification: Option<f32>,
    pub separation: Option<f32>,
    pub face: Option<f32>,
    pub environment: Option<f32>,
}

/// Eq. 6: `α·L_C + L_S + L_D`, from the terms that are on and have samples.
pub fn total_loss(
    config: &LossConfig,
    classification: Option<Tensor<1>>,
    separation: Option<Tensor<1>>,
    face: Option<Tensor<1>>,
    environment: Option<Tensor<1>>,
    device: &Device,
) -> Losses {
    let value = |t: &Option<Tensor<1>>| t.as_ref().map(|t| t.clone().into_scalar::<f32>());
    let parts = Losses {
        total: Tensor::zeros([1], device),
        classification: value(&classification),
        separation: value(&separation),
        face: value(&face),
        environment: value(&environment),
    };
    let mut total = Tensor::<1>::zeros([1], device);
    if let Some(c) = classification {
        total = total + c.mul_scalar(config.alpha);
    }
    for t in [separation, face, environment].into_iter().flatten() {
        total = total + t;
    }
    Losses { total, ..parts }
}
