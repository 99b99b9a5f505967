//! The image tower, as Hugging Face's `CLIPVisionTransformer`.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::config::VisionConfig;
use super::encoder::{ClipEncoder, EncoderSpec};
use crate::lora::LoraConfig;

/// `CLIPVisionEmbeddings`: patches, the class token and learned positions.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    pub class_embedding: Param<Tensor<1>>,
    pub patch_embedding: Conv2d,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    pub embeddings: ClipVisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    pub encoder: ClipEncoder,
    pub post_layernorm: LayerNorm,
}

/// What the image tower gives.
pub struct VisionOutput {
    /// `post_layernorm` of the last layer's class token: `[batch, width]`.
    pub pooled: Tensor<2>,
    /// The class token after each layer, before any norm: `[batch, layers, width]`.
    pub layer_cls: Tensor<3>,
}

impl ClipVisionTransformer {
    pub fn new(c: &VisionConfig, eps: f64, lora: LoraConfig, device: &Device) -> Self {
        let d = c.hidden_size;
        ClipVisionTransformer {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                }
                .init([d], device),
                patch_embedding: Conv2dConfig::new([3, d], [c.patch_size, c.patch_size])
                    .with_stride([c.patch_size, c.patch_size])
                    .with_bias(false)
                    .init(device),
                position_embedding: EmbeddingConfig::new(c.num_positions(), d).init(device),
            },
            pre_layrnorm: LayerNormConfig::new(d).with_epsilon(eps).init(device),
            encoder: ClipEncoder::new(
                EncoderSpec {
                    width: d,
                    intermediate: c.intermediate_size,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    eps,
                },
                lora,
                device,
            ),
            post_layernorm: LayerNormConfig::new(d).with_epsilon(eps).init(device),
        }
    }

    /// `pixels`: normalised images `[batch, 3, size, size]`.
    pub fn forward(&self, pixels: Tensor<4>) -> VisionOutput {
        let [b, _, _, _] = pixels.dims();
        let patches = self.embeddings.patch_embedding.forward(pixels); // [b, d, g, g]
        let [_, d, g1, g2] = patches.dims();
        let patches = patches.reshape([b, d, g1 * g2]).swap_dims(1, 2); // [b, n, d]
        let cls = self
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, patches], 1); // [b, n + 1, d]
        let t = g1 * g2 + 1;
        let pos = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .slice([0..t, 0..d])
            .unsqueeze::<3>();
        let x = self.pre_layrnorm.forward(x + pos);
        let (last, layers) = self.encoder.forward(x, None);
        let cls_of = |y: Tensor<3>| y.slice([0..b, 0..1, 0..d]);
        let layer_cls = Tensor::cat(layers.into_iter().map(cls_of).collect(), 1); // [b, L, d]
        let pooled = self.post_layernorm.forward(cls_of(last).reshape([b, d]));
        VisionOutput { pooled, layer_cls }
    }
}
