//! `sd2-train export`: the SD² inference graph as ONNX, written with our ONNX writer
//! (burn cannot export attention or LayerNorm).
//!
//! The graph is the image side only: the vision tower with LoRA merged into its weights,
//! CLAM and the adapter, then the cosine head against the five simple labels' embeddings
//! (computed here by the text tower and baked in as a constant) times τ (paper §5.1):
//!
//! - input `pixel_values` `[N, 3, S, S]`, normalised with the crop recipe;
//! - outputs `logits` `[N, 5]` (REAL, FS, FR, EFS, FE) and `embedding` `[N, E]` (the
//!   unit-length image feature).
//!
//! `metadata_props` carry what the element needs to prepare faces as training did: the
//! crop recipe (`input_size`, `crop_scale`, `mean`, `std`, `crop_filter`), `type_names`,
//! `model_name`, `model_version`, `labels` and `tau`.

mod graph;

use burn::prelude::*;
use sd2_models::onnx::{Attr, Dim, Model, Precision};
use sd2_models::taxonomy::DeepfakeType;

use crate::clip::encoder::ClipAttention;
use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::tokenizer::ClipTokenizer;
use crate::train::checkpoint::RunState;
use crate::train::step::token_tensor;
use graph::Builder;

/// The values of a tensor.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 values")
}

fn attention_weights(a: &ClipAttention) -> [(Vec<f32>, Vec<f32>); 4] {
    [&a.q_proj, &a.k_proj, &a.v_proj, &a.out_proj].map(|p| {
        let b = p
            .base
            .bias
            .as_ref()
            .map(|b| values(b.val()))
            .unwrap_or_default();
        (values(p.merged_weight()), b)
    })
}

fn attention(b: &mut Builder, x: &str, name: &str, a: &ClipAttention, width: usize) -> String {
    let [q, k, v, o] = attention_weights(a);
    b.attention(
        x,
        name,
        a.num_heads,
        width,
        (&q.0, &q.1),
        (&k.0, &k.1),
        (&v.0, &v.1),
        (&o.0, &o.1),
    )
}

/// Descriptive metadata for the exported file.
#[derive(Clone, Debug)]
pub struct ExportInfo {
    pub model_name: String,
    pub model_version: String,
}

/// Which graph to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub precision: Precision,
    /// ONNX Runtime's fused contrib operators (`com.microsoft` `MultiHeadAttention`,
    /// `SkipLayerNormalization`, `QuickGelu`, `BiasGelu`) instead of standard operators
    /// only. The standard graph runs anywhere; the fused one on ONNX Runtime.
    pub fused: bool,
}

/// The patch embedding, `[N, 3, S, S]` → `[N, grid², D]`: a convolution whose stride is
/// its kernel. In fp16, the precision of the GPU graphs, it is written as what it
/// computes: the image cut into patches (Reshape, Transpose), each flattened and
/// multiplied by the kernel. With cuDNN 9, ONNX Runtime's CUDA Conv builds new cuDNN
/// plans whenever the batch size differs from the previous run's, which a live queue's
/// batches do all the time; a MatMul keeps no such state. In fp32, the CPU's precision,
/// it stays a Conv, which ONNX Runtime's CPU provider runs a little faster.
fn patch_embedding(
    b: &mut Builder,
    x: &str,
    vm: &crate::clip::vision::ClipVisionTransformer,
    d: usize,
    patch: usize,
    grid: usize,
) -> String {
    let conv = vm.embeddings.patch_embedding.weight.val(); // [D, 3, P, P]
    let (g, p) = (grid as i64, patch as i64);
    let k = 3 * patch * patch;
    if b.precision == Precision::F16 {
        let w = values(conv.reshape([d, k]).transpose());
        let w = b.weight("patch_embedding.weight", &[k, d], &w);
        let cut = b.shape("patches_cut", &[0, 3, g, p, g, p]);
        let patches = b.g.node("Reshape", &[x, &cut], vec![]);
        let patches = b.g.node(
            "Transpose",
            &[&patches],
            vec![Attr::Ints("perm", vec![0, 2, 4, 1, 3, 5])],
        );
        let flat = b.shape("patches_shape", &[0, g * g, k as i64]);
        let patches = b.g.node("Reshape", &[&patches, &flat], vec![]);
        return b.g.node("MatMul", &[&patches, &w], vec![]);
    }
    let w = b.weight(
        "patch_embedding.weight",
        &[d, 3, patch, patch],
        &values(conv),
    );
    let patches = b.g.node(
        "Conv",
        &[x, &w],
        vec![
            Attr::Ints("kernel_shape", vec![p; 2]),
            Attr::Ints("strides", vec![p; 2]),
        ],
    );
    let flat = b.shape("patches_shape", &[0, d as i64, g * g]);
    let patches = b.g.node("Reshape", &[&patches, &flat], vec![]);
    b.g.node(
        "Transpose",
        &[&patches],
        vec![Attr::Ints("perm", vec![0, 2, 1])],
    )
}

/// The ONNX model of `model`'s image side at `precision`.
pub fn export(
    model: &Sd2Model,
    state: &RunState,
    labels: &TextLabels,
    tok: &ClipTokenizer,
    variant: Variant,
    info: &ExportInfo,
) -> Model {
    let precision = variant.precision;
    let config = &state.config.model;
    let c = &config.clip;
    let (d, p) = (c.vision.hidden_size, c.projection_dim);
    let (s, patch) = (c.vision.image_size, c.vision.patch_size);
    let grid = s / patch;
    let device = model.logit_scale.val().device();
    let simple = labels.simple();
    let u = model.text_features(token_tensor(tok, &simple, &device));
    let u = crate::model::cosine_matrix(Tensor::eye(p, &device), u); // [P, 5]: normalised labels, transposed
    let tau = model.tau().into_scalar::<f32>();

    let mut b = Builder {
        g: sd2_models::onnx::Graph::new("sd2"),
        precision,
        eps: c.layer_norm_eps as f32,
    };
    let io = b.io_type();
    let x = b.g.input(
        "pixel_values",
        io,
        &[
            "N".into(),
            3.into(),
            Dim::Fixed(s as i64),
            Dim::Fixed(s as i64),
        ],
    );
    let vm = &model.clip.vision_model;

    // Patches, class token, positions (CLIPVisionEmbeddings).
    let patches = patch_embedding(&mut b, &x, vm, d, patch, grid);
    let cls = b.weight(
        "class_embedding",
        &[1, 1, d],
        &values(vm.embeddings.class_embedding.val()),
    );
    // One class token per face, of the batch's size (`Builder::batch_sized` over the first
    // patch token); the same Slice then takes each layer's class token.
    let (cls_start, cls_end, cls_axis) = (
        b.g.int64s("cls_start", &[1], &[0]),
        b.g.int64s("cls_end", &[1], &[1]),
        b.g.int64s("cls_axis", &[1], &[1]),
    );
    let cls = b.batch_sized(&patches, [&cls_start, &cls_end, &cls_axis], "cls", &cls);
    let tokens =
        b.g.node("Concat", &[&cls, &patches], vec![Attr::Int("axis", 1)]);
    let t = grid * grid + 1;
    let pos = values(
        vm.embeddings
            .position_embedding
            .weight
            .val()
            .slice([0..t, 0..d]),
    );
    let pos = b.weight("position_embedding", &[1, t, d], &pos);
    let xs = b.g.node("Add", &[&tokens, &pos], vec![]);
    let ln = |m: &burn::nn::LayerNorm| {
        (
            values(m.gamma.val()),
            m.beta.as_ref().map(|b| values(b.val())).unwrap_or_default(),
        )
    };
    let (g0, b0) = ln(&vm.pre_layrnorm);
    let mut xs = b.layer_norm(&xs, "pre_layrnorm", &g0, &b0);

    // The encoder, collecting each layer's class token.
    let mut layer_cls = Vec::new();
    let inter = c.vision.intermediate_size;
    let bias_of = |l: &burn::nn::Linear| values(l.bias.as_ref().expect("bias").val());
    if variant.fused {
        // LayerNorm → attention → SkipLayerNorm (residual, out_proj bias, LN2) → MLP →
        // SkipLayerNorm (residual, fc2 bias, next LN1): each residual sum comes out of the
        // SkipLayerNormalization that also normalises it.
        let layers = &vm.encoder.layers;
        let lanes = b.bias_lanes(&xs);
        let (g1, b1) = ln(&layers[0].layer_norm1);
        let mut h = b.layer_norm(&xs, "layers.0.layer_norm1", &g1, &b1);
        for (i, layer) in layers.iter().enumerate() {
            let name = format!("layers.{i}");
            let [q, k, v, o] = attention_weights(&layer.self_attn);
            let heads = layer.self_attn.num_heads;
            let (a, out_bias) = b.attention_fused(
                &h,
                &format!("{name}.self_attn"),
                heads,
                d,
                (&q.0, &q.1),
                &k.0,
                (&v.0, &v.1),
                (&o.0, &o.1),
            );
            let (g2, b2) = ln(&layer.layer_norm2);
            let (h2, mid) =
                b.skip_layer_norm(&a, &xs, &format!("{name}.layer_norm2"), &g2, &b2, &out_bias);
            let m = b.linear_quick_gelu(
                &h2,
                &lanes,
                &format!("{name}.mlp.fc1"),
                &values(layer.mlp.fc1.weight.val()),
                [d, inter],
                &bias_of(&layer.mlp.fc1),
            );
            let w2 = b.weight(
                &format!("{name}.mlp.fc2.weight"),
                &[inter, d],
                &values(layer.mlp.fc2.weight.val()),
            );
            let f = b.g.node("MatMul", &[&m, &w2], vec![]);
            if let Some(next) = layers.get(i + 1) {
                let (gn, bn) = ln(&next.layer_norm1);
                let (hn, sum) = b.skip_layer_norm(
                    &f,
                    &mid,
                    &format!("layers.{}.layer_norm1", i + 1),
                    &gn,
                    &bn,
                    &bias_of(&layer.mlp.fc2),
                );
                h = hn;
                xs = sum;
            } else {
                let fb = b.weight(
                    &format!("{name}.mlp.fc2.bias"),
                    &[d],
                    &bias_of(&layer.mlp.fc2),
                );
                let f = b.g.node("Add", &[&f, &fb], vec![]);
                xs = b.g.node("Add", &[&f, &mid], vec![]);
            }
            layer_cls.push(b.g.node("Slice", &[&xs, &cls_start, &cls_end, &cls_axis], vec![]));
        }
    } else {
        for (i, layer) in vm.encoder.layers.iter().enumerate() {
            let name = format!("layers.{i}");
            let (g1, b1) = ln(&layer.layer_norm1);
            let h = b.layer_norm(&xs, &format!("{name}.layer_norm1"), &g1, &b1);
            let a = attention(
                &mut b,
                &h,
                &format!("{name}.self_attn"),
                &layer.self_attn,
                d,
            );
            xs = b.g.node("Add", &[&xs, &a], vec![]);
            let (g2, b2) = ln(&layer.layer_norm2);
            let h = b.layer_norm(&xs, &format!("{name}.layer_norm2"), &g2, &b2);
            let inter = c.vision.intermediate_size;
            let fc1b = values(layer.mlp.fc1.bias.as_ref().expect("bias").val());
            let h = b.linear(
                &h,
                &format!("{name}.mlp.fc1"),
                &values(layer.mlp.fc1.weight.val()),
                [d, inter],
                Some(&fc1b),
            );
            let h = b.quick_gelu(&h);
            let fc2b = values(layer.mlp.fc2.bias.as_ref().expect("bias").val());
            let h = b.linear(
                &h,
                &format!("{name}.mlp.fc2"),
                &values(layer.mlp.fc2.weight.val()),
                [inter, d],
                Some(&fc2b),
            );
            xs = b.g.node("Add", &[&xs, &h], vec![]);
            layer_cls.push(b.g.node("Slice", &[&xs, &cls_start, &cls_end, &cls_axis], vec![]));
        }
    }

    // Final representation: post-norm of the last class token, projected.
    let last = layer_cls.last().expect("at least one layer").clone();
    let squeeze = b.shape("squeeze_shape", &[0, d as i64]);
    let last = b.g.node("Reshape", &[&last, &squeeze], vec![]);
    let (gp, bp) = ln(&vm.post_layernorm);
    let pooled = b.layer_norm(&last, "post_layernorm", &gp, &bp);
    let embeds = b.linear(
        &pooled,
        "visual_projection",
        &values(model.clip.visual_projection.weight.val()),
        [d, p],
        None,
    );

    // CLAM and the adapter (Eq. 1-2).
    let f = match (&model.clam, &model.adapter) {
        (Some(clam), Some(adapter)) => {
            let refs: Vec<&str> = layer_cls.iter().map(String::as_str).collect();
            let stacked = b.g.node("Concat", &refs, vec![Attr::Int("axis", 1)]);
            let sat = if variant.fused {
                let [q, k, v, o] = attention_weights(&clam.attention);
                let (a, out_bias) = b.attention_fused(
                    &stacked,
                    "clam",
                    clam.attention.num_heads,
                    d,
                    (&q.0, &q.1),
                    &k.0,
                    (&v.0, &v.1),
                    (&o.0, &o.1),
                );
                let ob = b.weight("clam.out_proj.bias", &[d], &out_bias);
                b.g.node("Add", &[&a, &ob], vec![])
            } else {
                attention(&mut b, &stacked, "clam", &clam.attention, d)
            };
            let sat = b.g.node(
                "ReduceMean",
                &[&sat],
                vec![Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 0)],
            );
            let joined =
                b.g.node("Concat", &[&sat, &embeds], vec![Attr::Int("axis", 1)]);
            let hidden = config.adapter_hidden;
            let a1b = values(adapter.fc1.bias.as_ref().expect("bias").val());
            let h = if variant.fused {
                let w = b.weight(
                    "adapter.fc1.weight",
                    &[d + p, hidden],
                    &values(adapter.fc1.weight.val()),
                );
                let h = b.g.node("MatMul", &[&joined, &w], vec![]);
                b.bias_gelu(&h, "adapter.fc1", &a1b)
            } else {
                let w = values(adapter.fc1.weight.val());
                let h = b.linear(&joined, "adapter.fc1", &w, [d + p, hidden], Some(&a1b));
                b.gelu(&h)
            };
            let a2b = values(adapter.fc2.bias.as_ref().expect("bias").val());
            b.linear(
                &h,
                "adapter.fc2",
                &values(adapter.fc2.weight.val()),
                [hidden, p],
                Some(&a2b),
            )
        }
        _ => embeds,
    };

    // Cosine head (§5.1).
    let fn_ = b.l2_normalise(&f);
    let labels_w = b.weight("label_embeddings", &[p, DeepfakeType::COUNT], &values(u));
    let sims = b.g.node("MatMul", &[&fn_, &labels_w], vec![]);
    let tau_c = b.g.scalar("tau", tau, precision);
    let logits = b.g.node("Mul", &[&sims, &tau_c], vec![]);
    b.g.output(
        &logits,
        "logits",
        io,
        &["N".into(), Dim::Fixed(DeepfakeType::COUNT as i64)],
    );
    b.g.output(&fn_, "embedding", io, &["N".into(), Dim::Fixed(p as i64)]);

    let mut m = Model::new(b.g);
    if variant.fused {
        m = m.with_opset(graph::MS, 1);
    }
    let mut m = m
        .with_metadata("model_name", info.model_name.clone())
        .with_metadata("graph", if variant.fused { "fused" } else { "standard" })
        .with_metadata("model_version", info.model_version.clone())
        .with_metadata("type_names", DeepfakeType::ALL.map(|t| t.code()).join(","))
        .with_metadata("labels", serde_json::to_string(&simple).expect("strings"))
        .with_metadata("tau", tau.to_string())
        .with_metadata(
            "precision",
            if precision == Precision::F16 {
                "fp16"
            } else {
                "fp32"
            },
        )
        .with_metadata("producer", "sd2-train export");
    for (k, v) in state.config.crop.to_metadata() {
        m = m.with_metadata(&k, v);
    }
    m.doc = format!(
        "SD² deepfake detector: CLIP {}x{} /{} vision tower with LoRA merged, CLAM, adapter, cosine head over REAL, FS, FR, EFS, FE.",
        s, s, patch
    );
    m
}
