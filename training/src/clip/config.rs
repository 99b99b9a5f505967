//! Sizes of the CLIP towers, with named presets.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is wrong with a CLIP config's fields or sizes.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("`{key}`: expected a non-negative integer")]
    Missing { key: String },
    #[error("`{key}` is {found}; this implementation is OpenAI CLIP's quick_gelu")]
    Activation { key: String, found: String },
    #[error("`{key}` is 0; every size must be at least 1")]
    Zero { key: &'static str },
    #[error("image size {image_size} is not a multiple of the patch size {patch_size}")]
    Patches {
        image_size: usize,
        patch_size: usize,
    },
    #[error("{tower} width {width} is not divisible by {heads} heads")]
    Heads {
        tower: &'static str,
        width: usize,
        heads: usize,
    },
    #[error("`layer_norm_eps` is {eps}; it must be a positive number")]
    Epsilon { eps: f64 },
    #[error("these sizes make more than 2^64 parameters")]
    Overflow,
}

/// What went wrong reading a Hugging Face `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the CLIP config: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: the CLIP config is not JSON: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid {
        path: PathBuf,
        problem: ConfigProblem,
    },
}

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

    /// Reads a Hugging Face `config.json` (`CLIPConfig`) with [`from_hf_json`](Self::from_hf_json).
    pub fn read_hf(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let json: serde_json::Value =
            serde_json::from_slice(&text).map_err(|error| ConfigError::Json {
                path: path.to_owned(),
                error,
            })?;
        Self::from_hf_json(&json).map_err(|problem| ConfigError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// Reads the towers' sizes from a Hugging Face `config.json` (`CLIPConfig`).
    pub fn from_hf_json(json: &serde_json::Value) -> Result<Self, ConfigProblem> {
        let get = |section: &str, key: &str| -> Result<usize, ConfigProblem> {
            json[section][key]
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| ConfigProblem::Missing {
                    key: format!("{section}.{key}"),
                })
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
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| ConfigProblem::Missing {
                    key: "projection_dim".into(),
                })?,
            layer_norm_eps: json["vision_config"]["layer_norm_eps"]
                .as_f64()
                .unwrap_or(1e-5),
        };
        for tower in ["vision_config", "text_config"] {
            if let Some(a) = json[tower]["hidden_act"]
                .as_str()
                .filter(|a| *a != "quick_gelu")
            {
                return Err(ConfigProblem::Activation {
                    key: format!("{tower}.hidden_act"),
                    found: a.to_owned(),
                });
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes fit together: none is 0, patches tile the image, heads split
    /// each width, the epsilon is positive and the parameters can be counted.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let v = &self.vision;
        let t = &self.text;
        let sizes = [
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.vocab_size", t.vocab_size),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("projection_dim", self.projection_dim),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, size)| *size == 0) {
            return Err(ConfigProblem::Zero { key });
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(ConfigProblem::Patches {
                image_size: v.image_size,
                patch_size: v.patch_size,
            });
        }
        for (tower, width, heads) in [
            ("vision", v.hidden_size, v.num_attention_heads),
            ("text", t.hidden_size, t.num_attention_heads),
        ] {
            if !width.is_multiple_of(heads) {
                return Err(ConfigProblem::Heads {
                    tower,
                    width,
                    heads,
                });
            }
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(ConfigProblem::Epsilon {
                eps: self.layer_norm_eps,
            });
        }
        self.parameter_count().ok_or(ConfigProblem::Overflow)?;
        Ok(())
    }

    /// How many values the CLIP parameters of these sizes hold (Hugging Face's `CLIPModel`
    /// without `logit_scale`), or `None` past `u64`.
    pub fn parameter_count(&self) -> Option<u64> {
        let n = |v: usize| u64::try_from(v).ok();
        let mul = |a: u64, b: u64| a.checked_mul(b);
        let add = |a: u64, b: u64| a.checked_add(b);
        // Attention (four square projections with biases), the MLP, two layer norms.
        let layers = |width: usize, inner: usize, count: usize| -> Option<u64> {
            let (w, i) = (n(width)?, n(inner)?);
            let attention = mul(4, add(mul(w, w)?, w)?)?;
            let mlp = add(add(mul(2, mul(w, i)?)?, i)?, w)?;
            mul(n(count)?, add(add(attention, mlp)?, mul(4, w)?)?)
        };
        let (v, t) = (&self.vision, &self.text);
        let vw = n(v.hidden_size)?;
        let patch = mul(mul(3, vw)?, mul(n(v.patch_size)?, n(v.patch_size)?)?)?;
        let grid = n(v.grid())?;
        let positions = add(mul(grid, grid)?, 1)?;
        // Patch embedding, class embedding, positions, the pre- and post-layer norms.
        let vision_embeddings = add(patch, mul(vw, add(positions, 5)?)?)?;
        let vision = add(
            vision_embeddings,
            layers(v.hidden_size, v.intermediate_size, v.num_hidden_layers)?,
        )?;
        let tw = n(t.hidden_size)?;
        // Token and position embeddings, the final layer norm.
        let text_embeddings = mul(
            tw,
            add(add(n(t.vocab_size)?, n(t.max_position_embeddings)?)?, 2)?,
        )?;
        let text = add(
            text_embeddings,
            layers(t.hidden_size, t.intermediate_size, t.num_hidden_layers)?,
        )?;
        let projections = mul(n(self.projection_dim)?, add(vw, tw)?)?;
        add(add(vision, text)?, projections)
    }
}
