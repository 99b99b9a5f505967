//! Pretrained CLIP weights from a path the user gives.
//!
//! Two layouts are read:
//! - Hugging Face (`openai/clip-vit-large-patch14`): a directory with `config.json` and
//!   `model.safetensors` or `pytorch_model.bin`, or one of those files;
//! - OpenAI / open_clip state dicts (`visual.conv1.weight`, fused
//!   `attn.in_proj_weight`, `[width, projection]` projections), as `.pt`/`.bin`/`.safetensors`,
//!   converted here to Hugging Face names.
//!
//! Weights are assigned by name; every tensor the model needs must be present with its
//! shape, or loading fails listing the first problems.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use sd2_models::state_dict::{HostTensor, StateDict, StateDictError};

use super::ClipModel;
use super::config::{ClipConfig, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error(
        "{path}: no model.safetensors, pytorch_model.bin, open_clip_pytorch_model.bin or \
         open_clip_model.safetensors in this directory"
    )]
    NoWeights { path: PathBuf },
    #[error(transparent)]
    StateDict(#[from] StateDictError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: tensor `{name}` has shape {shape:?}; expected {expected}")]
    Shape {
        path: PathBuf,
        name: String,
        shape: Vec<usize>,
        expected: &'static str,
    },
    #[error(
        "{config}: describes a CLIP of {parameters} parameters, but {checkpoint} holds only \
         {held} values: this config does not belong to these weights"
    )]
    ConfigTooLarge {
        config: PathBuf,
        checkpoint: PathBuf,
        parameters: u64,
        held: u64,
    },
    #[error("{path} does not fit this CLIP model: {}", .problems.join("; "))]
    Mismatch {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A checkpoint's tensors under Hugging Face names, and its config when it has one.
pub struct Checkpoint {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, HostTensor>,
    pub config: Option<ClipConfig>,
}

impl Checkpoint {
    /// Reads a checkpoint file or Hugging Face directory. A `config.json` beside the weights
    /// is refused, and sizes read off the shapes are dropped, when they make more parameters
    /// than the weights hold: such a model could not load them, and building it would take
    /// memory the file does not bound.
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let (file, config_json) = if path.is_dir() {
            let file = [
                "model.safetensors",
                "pytorch_model.bin",
                "open_clip_pytorch_model.bin",
                "open_clip_model.safetensors",
            ]
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.exists())
            .ok_or_else(|| LoadError::NoWeights {
                path: path.to_owned(),
            })?;
            (file, Some(path.join("config.json")).filter(|p| p.exists()))
        } else if path.exists() {
            (path.to_owned(), None)
        } else {
            return Err(LoadError::NotFound {
                path: path.to_owned(),
            });
        };
        let sd = if file.extension().is_some_and(|e| e == "safetensors") {
            StateDict::load_safetensors(&file)
        } else {
            StateDict::load_pytorch(&file)
        }?;
        let tensors = to_hf_names(&file, sd.tensors)?;
        let held = values_held(&tensors);
        let config = match config_json {
            Some(p) => {
                let config = ClipConfig::read_hf(&p)?;
                let parameters = config.parameter_count().unwrap_or(u64::MAX);
                if parameters > held {
                    return Err(LoadError::ConfigTooLarge {
                        config: p,
                        checkpoint: file,
                        parameters,
                        held,
                    });
                }
                Some(config)
            }
            None => infer_config(&tensors).filter(|c| {
                c.parameter_count()
                    .is_some_and(|parameters| parameters <= held)
            }),
        };
        Ok(Checkpoint {
            path: file,
            tensors,
            config,
        })
    }
}

/// How many values the tensors hold together.
fn values_held(tensors: &BTreeMap<String, HostTensor>) -> u64 {
    tensors
        .values()
        .fold(0u64, |n, t| n.saturating_add(t.data.len() as u64))
}

/// Strips wrapper prefixes (`module.`, `model.`, `state_dict.`) and converts the OpenAI
/// layout to Hugging Face names.
fn to_hf_names(
    file: &Path,
    tensors: BTreeMap<String, HostTensor>,
) -> Result<BTreeMap<String, HostTensor>, LoadError> {
    let strip = |k: &str| -> String {
        let mut k = k;
        for p in ["state_dict.", "module.", "model.", "clip."] {
            if let Some(rest) = k.strip_prefix(p) {
                k = rest;
            }
        }
        k.to_owned()
    };
    let tensors: BTreeMap<String, HostTensor> =
        tensors.into_iter().map(|(k, v)| (strip(&k), v)).collect();
    if !tensors.contains_key("visual.conv1.weight") {
        return Ok(tensors);
    }
    let mut out = BTreeMap::new();
    for (k, v) in tensors {
        let shape = v.shape.clone();
        let converted = openai_to_hf(&k, v).map_err(|expected| LoadError::Shape {
            path: file.to_owned(),
            name: k.clone(),
            shape,
            expected,
        })?;
        out.extend(converted);
    }
    Ok(out)
}

/// One OpenAI / open_clip tensor as Hugging Face tensors (none for buffers we do not use),
/// or what its shape should have been.
fn openai_to_hf(key: &str, t: HostTensor) -> Result<Vec<(String, HostTensor)>, &'static str> {
    if let Some(rest) = key.strip_prefix("visual.transformer.resblocks.") {
        return block(rest, "vision_model", t);
    }
    if let Some(rest) = key.strip_prefix("transformer.resblocks.") {
        return block(rest, "text_model", t);
    }
    let name = match key {
        "visual.class_embedding" => "vision_model.embeddings.class_embedding",
        "visual.positional_embedding" => "vision_model.embeddings.position_embedding.weight",
        "visual.conv1.weight" => "vision_model.embeddings.patch_embedding.weight",
        "visual.ln_pre.weight" => "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.bias" => "vision_model.pre_layrnorm.bias",
        "visual.ln_post.weight" => "vision_model.post_layernorm.weight",
        "visual.ln_post.bias" => "vision_model.post_layernorm.bias",
        "visual.proj" => return projection("visual_projection.weight", t),
        "token_embedding.weight" => "text_model.embeddings.token_embedding.weight",
        "positional_embedding" => "text_model.embeddings.position_embedding.weight",
        "ln_final.weight" => "text_model.final_layer_norm.weight",
        "ln_final.bias" => "text_model.final_layer_norm.bias",
        "text_projection" => return projection("text_projection.weight", t),
        "logit_scale" => "logit_scale",
        _ => return Ok(Vec::new()),
    };
    Ok(vec![(name.to_owned(), t)])
}

/// OpenAI's `[width, projection]` projection as Hugging Face's `[projection, width]`.
fn projection(name: &str, t: HostTensor) -> Result<Vec<(String, HostTensor)>, &'static str> {
    if t.shape.len() != 2 {
        return Err("a 2-D [width, projection] matrix");
    }
    Ok(vec![(name.to_owned(), t.transposed())])
}

/// A tensor of residual block `rest` (`"{i}.attn.in_proj_weight"`, …) of `tower`; the fused
/// attention projection is split into its query, key and value thirds.
fn block(
    rest: &str,
    tower: &str,
    t: HostTensor,
) -> Result<Vec<(String, HostTensor)>, &'static str> {
    let Some((i, rest)) = rest.split_once('.') else {
        return Ok(Vec::new());
    };
    let p = format!("{tower}.encoder.layers.{i}");
    let name = match rest {
        "attn.in_proj_weight" | "attn.in_proj_bias" => return split_qkv(&p, rest, &t),
        "attn.out_proj.weight" => "self_attn.out_proj.weight",
        "attn.out_proj.bias" => "self_attn.out_proj.bias",
        "ln_1.weight" => "layer_norm1.weight",
        "ln_1.bias" => "layer_norm1.bias",
        "ln_2.weight" => "layer_norm2.weight",
        "ln_2.bias" => "layer_norm2.bias",
        "mlp.c_fc.weight" => "mlp.fc1.weight",
        "mlp.c_fc.bias" => "mlp.fc1.bias",
        "mlp.c_proj.weight" => "mlp.fc2.weight",
        "mlp.c_proj.bias" => "mlp.fc2.bias",
        _ => return Ok(Vec::new()),
    };
    Ok(vec![(format!("{p}.{name}"), t)])
}

/// The fused `[3 × width, …]` attention projection `rest` of layer `p` as three tensors.
fn split_qkv(
    p: &str,
    rest: &str,
    t: &HostTensor,
) -> Result<Vec<(String, HostTensor)>, &'static str> {
    let suffix = if rest.ends_with("weight") {
        "weight"
    } else {
        "bias"
    };
    let shape = match t.shape[..] {
        [rows, cols] if rows.is_multiple_of(3) => vec![rows / 3, cols],
        [rows] if rows.is_multiple_of(3) => vec![rows / 3],
        _ => return Err("[3 × width, width] or [3 × width] (query, key and value stacked)"),
    };
    let third = t.data.len() / 3;
    Ok(["q_proj", "k_proj", "v_proj"]
        .iter()
        .enumerate()
        .map(|(j, proj)| {
            let data = t.data[j * third..(j + 1) * third].to_vec();
            (
                format!("{p}.self_attn.{proj}.{suffix}"),
                HostTensor::new(shape.clone(), data),
            )
        })
        .collect())
}

/// The towers' sizes read off the tensors' shapes, for OpenAI's widths only: a tensor's
/// shape does not give the head count (open_clip's ViT-H/14 is 1,280 wide with 16 heads,
/// not 20) nor the activation (its LAION models use GELU, not QuickGELU). Any other model
/// needs its `config.json` or a preset. Shapes that do not fit a CLIP give none.
fn infer_config(t: &BTreeMap<String, HostTensor>) -> Option<ClipConfig> {
    // OpenAI's CLIPs: 64-wide heads, QuickGELU.
    let heads = |width: usize, known: &[usize]| known.contains(&width).then_some(width / 64);
    let dim = |k: &str, i: usize| t.get(k).and_then(|t| t.shape.get(i).copied());
    let count = |prefix: &str| {
        (0..)
            .take_while(|i| {
                t.contains_key(&format!("{prefix}.encoder.layers.{i}.layer_norm1.weight"))
            })
            .count()
    };
    let conv = "vision_model.embeddings.patch_embedding.weight";
    let tok = "text_model.embeddings.token_embedding.weight";
    let (width, patch) = (dim(conv, 0)?, dim(conv, 2)?);
    let positions = dim("vision_model.embeddings.position_embedding.weight", 0)?;
    let grid = (positions.checked_sub(1)? as f64).sqrt().round() as usize;
    let config = ClipConfig {
        vision: super::VisionConfig {
            hidden_size: width,
            intermediate_size: dim("vision_model.encoder.layers.0.mlp.fc1.weight", 0)?,
            num_hidden_layers: count("vision_model"),
            num_attention_heads: heads(width, &[768, 1024])?,
            image_size: grid.checked_mul(patch)?,
            patch_size: patch,
        },
        text: super::TextConfig {
            hidden_size: dim(tok, 1)?,
            intermediate_size: dim("text_model.encoder.layers.0.mlp.fc1.weight", 0)?,
            num_hidden_layers: count("text_model"),
            num_attention_heads: heads(dim(tok, 1)?, &[512, 768])?,
            vocab_size: dim(tok, 0)?,
            max_position_embeddings: dim("text_model.embeddings.position_embedding.weight", 0)?,
        },
        projection_dim: dim("visual_projection.weight", 0)?,
        layer_norm_eps: 1e-5,
    };
    config.validate().ok().map(|()| config)
}

/// The checkpoint name of a model parameter and whether its storage is transposed
/// (burn's `Linear` keeps `[in, out]`, PyTorch `[out, in]`). `None` for parameters that
/// are not CLIP's (LoRA factors).
fn checkpoint_name(path: &str, rank: usize) -> Option<(String, bool)> {
    if path.contains("lora_") {
        return None;
    }
    let mut name = path.replace(".base.", ".");
    if let Some(p) = name.strip_suffix(".gamma") {
        name = format!("{p}.weight");
    } else if let Some(p) = name.strip_suffix(".beta") {
        name = format!("{p}.bias");
    }
    let linear_weight = rank == 2 && name.ends_with(".weight") && !name.contains("embedding");
    Some((name, linear_weight))
}

struct Assign<'a> {
    stack: Vec<String>,
    tensors: &'a BTreeMap<String, HostTensor>,
    used: HashSet<String>,
    problems: Vec<String>,
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.stack.join(".");
        let Some((name, transposed)) = checkpoint_name(&path, D) else {
            return param;
        };
        let want: Vec<usize> = param.lazy_shape().to_vec();
        let torch_shape: Vec<usize> = if transposed {
            want.iter().rev().copied().collect()
        } else {
            want.clone()
        };
        let Some(t) = self.tensors.get(&name) else {
            self.problems.push(format!(
                "`{name}` is missing (expected shape {torch_shape:?})"
            ));
            return param;
        };
        if t.shape != torch_shape {
            self.problems.push(format!(
                "`{name}` has shape {:?}, expected {torch_shape:?}",
                t.shape
            ));
            return param;
        }
        self.used.insert(name);
        let data = if transposed {
            t.transposed().data
        } else {
            t.data.clone()
        };
        let device = param.lazy_device();
        param.map(|_| Tensor::from_data(TensorData::new(data, want), &device))
    }
}

impl ClipModel {
    /// Assigns the checkpoint's tensors to the model's CLIP parameters (not LoRA).
    pub fn load_checkpoint(self, ckpt: &Checkpoint) -> Result<Self, LoadError> {
        let mut assign = Assign {
            stack: Vec::new(),
            tensors: &ckpt.tensors,
            used: HashSet::new(),
            problems: Vec::new(),
        };
        let model = self.map(&mut assign);
        let mut problems = assign.problems;
        if problems.is_empty() {
            return Ok(model);
        }
        if problems.len() > 8 {
            let more = problems.len() - 8;
            problems.truncate(8);
            problems.push(format!("and {more} more"));
        }
        Err(LoadError::Mismatch {
            path: ckpt.path.clone(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_paths_map_to_hugging_face_names() {
        assert_eq!(
            checkpoint_name(
                "vision_model.encoder.layers.3.self_attn.q_proj.base.weight",
                2
            ),
            Some((
                "vision_model.encoder.layers.3.self_attn.q_proj.weight".into(),
                true
            ))
        );
        assert_eq!(
            checkpoint_name("text_model.final_layer_norm.gamma", 1),
            Some(("text_model.final_layer_norm.weight".into(), false))
        );
        assert_eq!(
            checkpoint_name("text_model.embeddings.token_embedding.weight", 2),
            Some(("text_model.embeddings.token_embedding.weight".into(), false))
        );
        assert_eq!(
            checkpoint_name("vision_model.encoder.layers.0.self_attn.k_proj.lora_a", 2),
            None
        );
    }

    #[test]
    fn fused_openai_attention_is_split_into_three_projections() {
        let t = HostTensor::new(vec![6, 2], (0..12).map(|v| v as f32).collect());
        let out = openai_to_hf("visual.transformer.resblocks.1.attn.in_proj_weight", t).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[1].0,
            "vision_model.encoder.layers.1.self_attn.k_proj.weight"
        );
        assert_eq!(out[1].1, HostTensor::new(vec![2, 2], vec![4., 5., 6., 7.]));
        let proj = openai_to_hf(
            "text_projection",
            HostTensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
        )
        .unwrap();
        assert_eq!(proj[0].1.shape, vec![3, 2]);
    }

    #[test]
    fn only_openai_widths_give_a_config_from_shapes_alone() {
        // Shapes only: the data is never read.
        let at = |shape: Vec<usize>| HostTensor {
            shape,
            data: Vec::new(),
        };
        let tensors = |vision: usize, text: usize| -> BTreeMap<String, HostTensor> {
            [
                (
                    "vision_model.embeddings.patch_embedding.weight",
                    vec![vision, 3, 14, 14],
                ),
                (
                    "vision_model.embeddings.position_embedding.weight",
                    vec![257, vision],
                ),
                (
                    "vision_model.encoder.layers.0.layer_norm1.weight",
                    vec![vision],
                ),
                (
                    "vision_model.encoder.layers.0.mlp.fc1.weight",
                    vec![4 * vision, vision],
                ),
                (
                    "text_model.embeddings.token_embedding.weight",
                    vec![49408, text],
                ),
                (
                    "text_model.embeddings.position_embedding.weight",
                    vec![77, text],
                ),
                ("text_model.encoder.layers.0.layer_norm1.weight", vec![text]),
                (
                    "text_model.encoder.layers.0.mlp.fc1.weight",
                    vec![4 * text, text],
                ),
                ("visual_projection.weight", vec![768, vision]),
            ]
            .into_iter()
            .map(|(k, s)| (k.to_owned(), at(s)))
            .collect()
        };
        let l14 = infer_config(&tensors(1024, 768)).expect("ViT-L/14's widths");
        assert_eq!(
            (l14.vision.num_attention_heads, l14.text.num_attention_heads),
            (16, 12)
        );
        // open_clip's ViT-H/14: 16 heads of 80, which its shapes do not tell.
        assert!(infer_config(&tensors(1280, 1024)).is_none());
    }
}
