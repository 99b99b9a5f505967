//! `sd2-train export`: the SD² inference graph as ONNX, written with our ONNX writer
//! (burn cannot export attention or LayerNorm).
//!
//! The graph is the image side only: the vision tower with LoRA merged into its weights,
//! CLAM and the adapter, then the cosine head against the five simple labels' embeddings
//! (computed here by the text tower and baked in as a constant) times τ (paper §5.1). Its
//! input, outputs and `metadata_props` are the model contract
//! ([`sd2_models::contract`]): what the element needs to prepare faces as training did.
//!
//! One writer per part of the model, in graph order: [`embeddings`], [`encoder`], the
//! image embedding and [`clam`] with the adapter, the [`head`].

pub mod check;
mod clam;
mod embeddings;
mod encoder;
mod graph;
mod head;
mod weights;

use sd2_models::contract::{GraphInfo, GraphKind, ModelMetadata, PIXEL_VALUES};
use sd2_models::onnx::{Dim, Graph, Model, Precision};
use sd2_models::taxonomy::DeepfakeType;

use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::tokenizer::ClipTokenizer;
use crate::train::checkpoint::RunState;
use graph::Builder;

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

/// The ONNX model of `model`'s image side as `variant`.
pub fn export(
    model: &Sd2Model,
    state: &RunState,
    labels: &TextLabels,
    tok: &ClipTokenizer,
    variant: Variant,
    info: &ExportInfo,
) -> Model {
    let c = &state.config.model.clip;
    let s = c.vision.image_size;
    let simple = labels.simple();
    let (label_embeddings, tau) = head::label_embeddings(model, tok, &simple);
    let mut b = Builder {
        g: Graph::new("sd2"),
        precision: variant.precision,
        eps: c.layer_norm_eps as f32,
    };
    let side = Dim::Fixed(s as i64);
    let io = b.io_type();
    let x = b.g.input(
        PIXEL_VALUES,
        io,
        &["N".into(), 3.into(), side.clone(), side],
    );
    let vm = &model.clip.vision_model;
    let (xs, cls) = embeddings::write(&mut b, &x, vm, &c.vision);
    let layer_cls = encoder::write(&mut b, xs, &vm.encoder.layers, &cls, variant.fused);
    let last = layer_cls.last().expect("at least one layer");
    let embeds = head::embedding(&mut b, last, vm, &model.clip.visual_projection);
    let f = match (&model.clam, &model.adapter) {
        (Some(clam), Some(adapter)) => {
            let sat = clam::write(&mut b, &layer_cls, clam, variant.fused);
            clam::adapter(&mut b, &sat, &embeds, adapter, variant.fused)
        }
        _ => embeds,
    };
    head::write(&mut b, &f, &label_embeddings, tau);
    let metadata = ModelMetadata {
        recipe: state.config.crop,
        type_names: DeepfakeType::ALL,
        model_name: info.model_name.clone(),
        model_version: info.model_version.clone(),
        tau,
        labels: simple,
        graph: Some(variant.graph_info()),
    };
    let doc = format!(
        "SD² deepfake detector: CLIP {s}x{s} /{} vision tower with LoRA merged, CLAM, adapter, cosine head over REAL, FS, FR, EFS, FE.",
        c.vision.patch_size
    );
    model_file(b.g, &metadata, doc)
}

impl Variant {
    /// How the model file records this variant.
    fn graph_info(self) -> GraphInfo {
        let kind = if self.fused {
            GraphKind::Fused
        } else {
            GraphKind::Standard
        };
        GraphInfo {
            kind,
            precision: self.precision,
        }
    }
}

/// The model file of `graph`: its operator sets, the metadata, a description.
fn model_file(graph: Graph, metadata: &ModelMetadata, doc: String) -> Model {
    let mut m = Model::new(graph);
    if metadata.graph.is_some_and(|g| g.kind == GraphKind::Fused) {
        m = m.with_opset(graph::MS, 1);
    }
    for (key, value) in metadata.to_props() {
        m = m.with_metadata(key, value);
    }
    m.doc = doc;
    m
}
