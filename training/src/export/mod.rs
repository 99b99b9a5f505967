//! `sd2-train export`: the SD² inference graph as ONNX, written with our ONNX writer
//! (burn cannot export attention or LayerNorm).
//!
//! The graph is the image side only: the vision tower with LoRA merged into its weights,
//! CLAM and the adapter, then the cosine head against the five simple labels' embeddings
//! (computed here by the text tower and baked in as a constant) times τ (paper §5.1). Its
//! input, outputs and `metadata_props` are the model contract
//! ([`sd2_models::contract`]): what the element needs to prepare faces as training did.
//!
//! One writer per part of the model, in graph order: [`embeddings`], [`encoder`] (with
//! [`sd2`] for the graph of SD²'s own operators), the image embedding and [`clam`] with the
//! adapter, the [`head`]. [`calibrate`] measures the activations an FP8 graph scales.

pub mod calibrate;
pub mod check;
mod clam;
pub mod drift;
mod embeddings;
mod encoder;
mod graph;
mod head;
mod sd2;
mod weights;

use sd2_models::contract::{GraphInfo, GraphKind, GraphPrecision, ModelMetadata, PIXEL_VALUES};
use sd2_models::kernels;
use sd2_models::onnx::{Dim, Graph, Model, Precision};
use sd2_models::taxonomy::DeepfakeType;

use crate::labels::TextLabels;
use crate::model::Sd2Model;
use crate::tokenizer::ClipTokenizer;
use crate::train::checkpoint::RunState;
use encoder::Layers;
use graph::Builder;
pub use sd2::{AMAX, Calibration, Fp8};

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
    /// Whose kernels the fused graph leans on where ONNX Runtime has no fused one.
    pub kernels: Kernels,
}

/// Whose operators fill the gaps of ONNX Runtime's fused kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// ONNX Runtime's own: the `fused` graph (or, unfused, the `standard` one).
    #[default]
    Ort,
    /// SD²'s (`com.sd2`, `sd2_models::kernels`): the `sd2` graph, which is fused too and
    /// runs where those operators are registered (every session this project opens).
    Sd2,
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
    write(model, state, (labels, tok), variant, Fp8::Off, info)
}

/// The `sd2` graph with its encoder's GEMMs in FP8 (E4M3), activations scaled by
/// `calibration` (see [`calibrate`]), everything else in fp16.
pub fn export_fp8(
    model: &Sd2Model,
    state: &RunState,
    labels: &TextLabels,
    tok: &ClipTokenizer,
    calibration: &Calibration,
    info: &ExportInfo,
) -> Model {
    let variant = Variant {
        precision: Precision::F16,
        fused: true,
        kernels: Kernels::Sd2,
    };
    let fp8 = Fp8::Scales(calibration);
    write(model, state, (labels, tok), variant, fp8, info)
}

/// The fp32 `sd2` graph with the largest magnitude of every FP8 site's activations as an
/// output more (`amax.{site}`), for [`calibrate`].
pub fn calibration_graph(
    model: &Sd2Model,
    state: &RunState,
    labels: &TextLabels,
    tok: &ClipTokenizer,
) -> Model {
    let variant = Variant {
        precision: Precision::F32,
        fused: true,
        kernels: Kernels::Sd2,
    };
    let info = ExportInfo {
        model_name: "calibration".into(),
        model_version: "0".into(),
    };
    write(model, state, (labels, tok), variant, Fp8::Calibrate, &info)
}

fn write(
    model: &Sd2Model,
    state: &RunState,
    (labels, tok): (&TextLabels, &ClipTokenizer),
    variant: Variant,
    fp8: Fp8<'_>,
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
    let layers = match variant.kernels {
        Kernels::Sd2 => Layers::Sd2(fp8),
        Kernels::Ort if variant.fused => Layers::Fused,
        Kernels::Ort => Layers::Standard,
    };
    let fused = variant.fused || variant.kernels == Kernels::Sd2;
    let layer_cls = encoder::write(&mut b, xs, &vm.encoder.layers, &cls, layers);
    let last = layer_cls.last().expect("at least one layer");
    let embeds = head::embedding(&mut b, last, vm, &model.clip.visual_projection);
    let f = match (&model.clam, &model.adapter) {
        (Some(clam), Some(adapter)) => {
            let sat = clam::write(&mut b, &layer_cls, clam, fused);
            clam::adapter(&mut b, &sat, &embeds, adapter, fused)
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
        graph: Some(variant.graph_info(matches!(fp8, Fp8::Scales(_)))),
    };
    let doc = format!(
        "SD² deepfake detector: CLIP {s}x{s} /{} vision tower with LoRA merged, CLAM, adapter, cosine head over REAL, FS, FR, EFS, FE.",
        c.vision.patch_size
    );
    model_file(b.g, &metadata, doc)
}

impl Variant {
    /// How the model file records this variant (`fp8`: its GEMMs quantised).
    fn graph_info(self, fp8: bool) -> GraphInfo {
        let kind = match self.kernels {
            Kernels::Sd2 => GraphKind::Sd2,
            Kernels::Ort if self.fused => GraphKind::Fused,
            Kernels::Ort => GraphKind::Standard,
        };
        let precision = match self.precision {
            _ if fp8 => GraphPrecision::Fp8,
            Precision::F32 => GraphPrecision::Fp32,
            Precision::F16 => GraphPrecision::Fp16,
        };
        GraphInfo { kind, precision }
    }
}

/// The model file of `graph`: its operator sets, the metadata, a description.
fn model_file(graph: Graph, metadata: &ModelMetadata, doc: String) -> Model {
    let mut m = Model::new(graph);
    let kind = metadata.graph.map(|g| g.kind);
    if matches!(kind, Some(GraphKind::Fused | GraphKind::Sd2)) {
        m = m.with_opset(graph::MS, 1);
    }
    if kind == Some(GraphKind::Sd2) {
        m = m.with_opset(kernels::DOMAIN, kernels::OPSET);
    }
    for (key, value) in metadata.to_props() {
        m = m.with_metadata(key, value);
    }
    m.doc = doc;
    m
}
