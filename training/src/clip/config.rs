//! Sizes of the CLIP towers, with named presets.

use serde::{Deserialize, Serialize};

/// The image tower (Hugging Face `CLIPVisionConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
}

/// The text tower (Hugging Face `CLIPTextConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
}

/// Both towers and the shared embedding width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    pub vision: VisionConfig,
    pub text: TextConfig,
    pub projection_dim: usize,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    /// Patches per image side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens: one per patch and the class token.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

impl ClipConfig {
    /// OpenAI CLIP ViT-L/14 (`openai/clip-vit-large-patch14`), the backbone of SD².
    pub fn vit_l_14() -> Self {
        ClipConfig {
            vision: VisionConfig {
                hidden_size: 1024,
                intermediate_size: 4096,
                num_hidden_layers: 24,
                num_attention_heads: 16,
                image_size: 224,
                patch_size: 14,
            },
            text: TextConfig {
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                vocab_size: 49408,
                max_position_embeddings: 77,
            },
            projection_dim: 768,
            layer_norm_eps: 1e-5,
        }
    }

    /// OpenAI CLIP ViT-B/16, for experiments that need less memory.
    pub fn vit_b_16() -> Self {
        ClipConfig {
            vision: VisionConfig {
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 12,
                num_attention_heads: 12,
                image_size: 224,
                patch_size: 16,
            },
            text: TextConfig {
                hidden_size: 512,
                intermediate_size: 2048,
                num_hidden_layers: 12,
                num_attention_heads: 8,
                vocab_size: 49408,
                max_position_embeddings: 77,
            },
            projection_dim: 512,
            layer_norm_eps: 1e-5,
        }
    }

    /// A small model for tests and for the demo detector: 64-pixel faces, 8-pixel patches.
    pub fn tiny() -> Self {
        ClipConfig {
            vision: VisionConfig {
                hidden_size: 64,
                intermediate_size: 256,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                image_size: 64,
                patch_size: 8,
            },
            text: TextConfig {
                hidden_size: 64,
                intermediate_size: 256,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                vocab_size: 49408,
                max_position_embeddings: 77,
            },
            projection_dim: 64,
            layer_norm_eps: 1e-5,
        }
    }

    /// A preset by name: `tiny`, `vit-b-16` or `vit-l-14`.
    pub fn preset(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['/', '_'], "-").as_str() {
            "tiny" => Some(Self::tiny()),
            "vit-b-16" => Some(Self::vit_b_16()),
            "vit-l-14" => Some(Self::vit_l_14()),
            _ => None,
        }
    }

    /// Reads the towers' sizes from a Hugging Face `config.json` (`CLIPConfig`).
    pub fn from_hf_json(json: &serde_json::Value) -> Result<Self, String> {
        let get = |section: &str, key: &str| -> Result<usize, String> {
            json[section][key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("config.json has no integer {section}.{key}"))
        };
        let config = ClipConfig {
            vision: VisionConfig {
                hidden_size: get("vision_config", "hidden_size")?,
                intermediate_size: get("vision_config", "intermediate_size")?,
                num_hidden_layers: get("vision_config", "num_hidden_layers")?,
                num_attention_heads: get("vision_config", "num_attention_heads")?,
                image_size: get("vision_config", "image_size")?,
                patch_size: get("vision_config", "patch_size")?,
            },
            text: TextConfig {
                hidden_size: get("text_config", "hidden_size")?,
                intermediate_size: get("text_config", "intermediate_size")?,
                num_hidden_layers: get("text_config", "num_hidden_layers")?,
                num_attention_heads: get("text_config", "num_attention_heads")?,
                vocab_size: get("text_config", "vocab_size")?,
                max_position_embeddings: get("text_config", "max_position_embeddings")?,
            },
            projection_dim: json["projection_dim"]
                .as_u64()
                .ok_or("config.json has no projection_dim")? as usize,
            layer_norm_eps: json["vision_config"]["layer_norm_eps"]
                .as_f64()
                .unwrap_or(1e-5),
        };
        for (tower, act) in [
            ("vision_config", "hidden_act"),
            ("text_config", "hidden_act"),
        ] {
            if let Some(a) = json[tower][act].as_str().filter(|a| *a != "quick_gelu") {
                return Err(format!(
                    "{tower}.{act} is {a}; this implementation is OpenAI CLIP's quick_gelu"
                ));
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<(), String> {
        let v = &self.vision;
        let t = &self.text;
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "image size {} is not a multiple of the patch size {}",
                v.image_size, v.patch_size
            ));
        }
        if v.num_attention_heads == 0 || !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(format!(
                "vision width {} is not divisible by {} heads",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if t.num_attention_heads == 0 || !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(format!(
                "text width {} is not divisible by {} heads",
                t.hidden_size, t.num_attention_heads
            ));
        }
        Ok(())
    }
}
