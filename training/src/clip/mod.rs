//! OpenAI CLIP (Radford et al., 2021) in burn: both towers and their projections, with
//! parameter names that follow Hugging Face's `CLIPModel`, so a checkpoint loads without a
//! renaming table (see [`load`]).

pub mod config;
pub mod encoder;
pub mod load;
pub mod text;
pub mod vision;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

pub use config::{ClipConfig, TextConfig, VisionConfig};
use text::ClipTextTransformer;
use vision::{ClipVisionTransformer, VisionOutput};

use crate::lora::LoraConfig;
use crate::precision;

/// `CLIPModel` without its `logit_scale` (SD² keeps its own, see `model.rs`).
#[derive(Module, Debug)]
pub struct ClipModel {
    pub text_model: ClipTextTransformer,
    pub vision_model: ClipVisionTransformer,
    pub visual_projection: Linear,
    pub text_projection: Linear,
}

impl ClipModel {
    pub fn new(c: &ClipConfig, lora: LoraConfig, device: &Device) -> Self {
        ClipModel {
            text_model: ClipTextTransformer::new(&c.text, c.layer_norm_eps, lora, device),
            vision_model: ClipVisionTransformer::new(&c.vision, c.layer_norm_eps, lora, device),
            visual_projection: LinearConfig::new(c.vision.hidden_size, c.projection_dim)
                .with_bias(false)
                .init(device),
            text_projection: LinearConfig::new(c.text.hidden_size, c.projection_dim)
                .with_bias(false)
                .init(device),
        }
    }

    /// The image tower's outputs and the projected image embedding `[batch, projection]`.
    pub fn encode_image(&self, pixels: Tensor<4>) -> (VisionOutput, Tensor<2>) {
        let out = self.vision_model.forward(pixels);
        let embeds = precision::linear(&self.visual_projection, out.pooled.clone());
        (out, embeds)
    }

    /// The projected text embedding `[batch, projection]`.
    pub fn encode_text(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        precision::linear(&self.text_projection, self.text_model.forward(ids))
    }
}
