//! The text tower, as Hugging Face's `CLIPTextTransformer`: causal attention, pooled at the
//! end-of-text token (the largest id of each sequence, as in OpenAI's CLIP).

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use super::config::TextConfig;
use super::encoder::{ClipEncoder, EncoderSpec};
use crate::lora::LoraConfig;

/// `CLIPTextEmbeddings`.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    pub embeddings: ClipTextEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
}

impl ClipTextTransformer {
    pub fn new(c: &TextConfig, eps: f64, lora: LoraConfig, device: &Device) -> Self {
        let d = c.hidden_size;
        ClipTextTransformer {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(c.vocab_size, d).init(device),
                position_embedding: EmbeddingConfig::new(c.max_position_embeddings, d).init(device),
            },
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
            final_layer_norm: LayerNormConfig::new(d).with_epsilon(eps).init(device),
        }
    }

    /// `ids`: `[batch, tokens]`, each row ending (at its largest id) with the end token.
    /// Returns the normed hidden state at that token: `[batch, width]`.
    ///
    /// Attention is causal, so tokens after the end token change nothing; callers may cut
    /// the padding.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let x = self.embeddings.token_embedding.forward(ids.clone()); // [b, t, d]
        let [_, _, d] = x.dims();
        let pos = self
            .embeddings
            .position_embedding
            .weight
            .val()
            .slice([0..t, 0..d])
            .unsqueeze::<3>();
        let mask = Tensor::<2, Bool>::tril_mask([t, t], 0, &device);
        let (x, _) = self.encoder.forward(x + pos, Some(mask));
        let eot = ids.argmax(1).reshape([b, 1, 1]).expand([b, 1, d]); // [b, 1, d]
        self.final_layer_norm
            .forward(x.gather(1, eot).reshape([b, d]))
    }
}
