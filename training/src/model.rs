//! SD² (paper §4, Fig. 3): CLIP's two towers with LoRA, CLAM and the adapter on the image
//! side, and the learnable scale τ and SigLIP bias b the losses share.

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clam::{Adapter, Clam};
use crate::clip::{ClipConfig, ClipModel};
use crate::lora::LoraConfig;

/// τ = exp(logit_scale) starts at 1 / 0.07, as in CLIP (§4.2), and is capped at 100.
pub const LOGIT_SCALE_INIT: f64 = 2.659_260_036_932_778; // ln(1 / 0.07)
const TAU_MAX: f64 = 100.0;

/// The architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sd2Config {
    pub clip: ClipConfig,
    pub lora: LoraConfig,
    /// CLAM and the adapter (§4.1); without them the image feature is CLIP's embedding.
    pub clam: bool,
    pub clam_heads: usize,
    pub adapter_hidden: usize,
}

impl Sd2Config {
    /// The paper's architecture on `clip`: LoRA r=8, α=32, dropout 0.1, CLAM with the image
    /// tower's head count, an adapter as wide as the embedding.
    pub fn new(clip: ClipConfig) -> Self {
        Sd2Config {
            lora: LoraConfig::default(),
            clam: true,
            clam_heads: clip.vision.num_attention_heads,
            adapter_hidden: clip.projection_dim,
            clip,
        }
    }
}

#[derive(Module, Debug)]
pub struct Sd2Model {
    pub clip: ClipModel,
    pub clam: Option<Clam>,
    pub adapter: Option<Adapter>,
    /// log τ.
    pub logit_scale: Param<Tensor<1>>,
    /// The SigLIP bias b, starting at −τ (§4.3).
    pub logit_bias: Param<Tensor<1>>,
}

/// Whether a parameter trains: LoRA factors, CLAM, the adapter, τ and b. CLIP's own
/// weights stay frozen.
pub fn is_trainable(path: &str) -> bool {
    path.contains("lora_")
        || path.starts_with("clam")
        || path.starts_with("adapter")
        || path == "logit_scale"
        || path == "logit_bias"
}

struct Freeze {
    stack: Vec<String>,
}

impl ModuleMapper for Freeze {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.stack.push(name.to_owned());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.set_require_grad(is_trainable(&self.stack.join(".")))
    }
}

fn normalise(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// Cosine similarities of every row of `a` with every row of `b`: `[a_rows, b_rows]`.
pub fn cosine_matrix(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    normalise(a).matmul(normalise(b).transpose())
}

impl Sd2Model {
    pub fn new(config: &Sd2Config, device: &Device) -> Self {
        let c = &config.clip;
        let (clam, adapter) = if config.clam {
            (
                Some(Clam::new(c.vision.hidden_size, config.clam_heads, device)),
                Some(Adapter::new(
                    c.vision.hidden_size + c.projection_dim,
                    config.adapter_hidden,
                    c.projection_dim,
                    device,
                )),
            )
        } else {
            (None, None)
        };
        Sd2Model {
            clip: ClipModel::new(c, config.lora, device),
            clam,
            adapter,
            logit_scale: Param::from_tensor(Tensor::from_floats([LOGIT_SCALE_INIT as f32], device)),
            logit_bias: Param::from_tensor(Tensor::from_floats(
                [-LOGIT_SCALE_INIT.exp() as f32],
                device,
            )),
        }
    }

    /// Makes only LoRA, CLAM, the adapter, τ and b trainable.
    pub fn freeze_clip(self) -> Self {
        self.map(&mut Freeze { stack: Vec::new() })
    }

    /// The image feature `f` (Eq. 2, or CLIP's embedding without CLAM): `[batch, projection]`.
    pub fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        let (vision, embeds) = self.clip.encode_image(pixels);
        match (&self.clam, &self.adapter) {
            (Some(clam), Some(adapter)) => adapter.forward(clam.forward(vision.layer_cls), embeds),
            _ => embeds,
        }
    }

    /// Text embeddings `u` or `v`: `[texts, projection]`.
    pub fn text_features(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.clip.encode_text(ids)
    }

    /// τ, capped at 100: `[1]`.
    pub fn tau(&self) -> Tensor<1> {
        self.logit_scale.val().exp().clamp_max(TAU_MAX)
    }

    /// τ · sim(f, u): `[images, texts]` (the logits of Eq. 3).
    pub fn logits(&self, f: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
        cosine_matrix(f, u) * self.tau().unsqueeze::<2>()
    }
}
