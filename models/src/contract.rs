//! The model contract: what `sd2-train export` writes into an SD² model and what the
//! classifier ([`crate::classifier::DeepfakeModel`]) reads from one.
//!
//! - input [`PIXEL_VALUES`], f32 or f16 `[N, 3, S, S]`: faces cropped and normalised by the
//!   recipe the model records;
//! - outputs [`LOGITS`] `[N, 5]`, one per type in [`DeepfakeType::ALL`] order, and
//!   [`EMBEDDING`] `[N, E]`, the unit-length image feature;
//! - `metadata_props` named in [`key`], holding a [`ModelMetadata`].

use std::collections::HashMap;
use std::str::FromStr;

use crate::crop::{CropRecipe, RESAMPLE_FILTER, RecipeError};
use crate::onnx::Precision;
use crate::taxonomy::DeepfakeType;

/// The input: normalised face crops.
pub const PIXEL_VALUES: &str = "pixel_values";
/// The output read for verdicts: τ·cosine against each type's label.
pub const LOGITS: &str = "logits";
/// The output kept for search and clustering: the unit-length image feature.
pub const EMBEDDING: &str = "embedding";

/// The names of the `metadata_props` entries.
pub mod key {
    pub const MODEL_NAME: &str = "model_name";
    pub const GRAPH: &str = "graph";
    pub const MODEL_VERSION: &str = "model_version";
    pub const TYPE_NAMES: &str = "type_names";
    pub const LABELS: &str = "labels";
    pub const TAU: &str = "tau";
    pub const PRECISION: &str = "precision";
    pub const PRODUCER: &str = "producer";
    pub const INPUT_SIZE: &str = "input_size";
    pub const CROP_SCALE: &str = "crop_scale";
    pub const MEAN: &str = "mean";
    pub const STD: &str = "std";
    pub const CROP_FILTER: &str = "crop_filter";

    /// Every key, in the order [`super::ModelMetadata::to_props`] writes them.
    pub const ALL: [&str; 13] = [
        MODEL_NAME,
        GRAPH,
        MODEL_VERSION,
        TYPE_NAMES,
        LABELS,
        TAU,
        PRECISION,
        PRODUCER,
        INPUT_SIZE,
        CROP_SCALE,
        MEAN,
        STD,
        CROP_FILTER,
    ];
}

/// The value of [`key::PRODUCER`].
pub const PRODUCER: &str = "sd2-train export";

/// What the value of each key must be, as error messages say it.
fn expectation(key: &str) -> &'static str {
    match key {
        key::MODEL_NAME => "the model's name",
        key::MODEL_VERSION => "the model's version",
        key::GRAPH => "standard, fused or sd2",
        key::TYPE_NAMES => "`REAL,FS,FR,EFS,FE`",
        key::LABELS => "a JSON list of 5 texts, one per type",
        key::TAU => "a finite number",
        key::PRECISION => "fp32, fp16 or fp8",
        key::INPUT_SIZE => "a whole number of pixels",
        key::CROP_SCALE => "a positive number",
        key::MEAN => "3 comma-separated numbers",
        key::STD => "3 comma-separated positive numbers",
        key::CROP_FILTER => RESAMPLE_FILTER,
        _ => "a text",
    }
}

/// Metadata that does not describe an SD² model, naming the entry and what it should hold.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata entry `{key}` is missing (expected {expected})")]
    Missing {
        key: &'static str,
        expected: &'static str,
    },
    #[error("metadata entry `{key}` is `{found}`, expected {expected}")]
    Invalid {
        key: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("metadata entry `{key}` is `{found}`: {reason}")]
    Recipe {
        key: &'static str,
        found: String,
        reason: RecipeError,
    },
}

impl MetadataError {
    /// The entry at fault.
    pub fn key(&self) -> &'static str {
        match self {
            MetadataError::Missing { key, .. }
            | MetadataError::Invalid { key, .. }
            | MetadataError::Recipe { key, .. } => key,
        }
    }
}

/// How the graph in the file was written. The classifier takes the element type from the
/// input itself; the kind and precision say what the graph needs to run: ONNX Runtime's
/// contrib operators, SD²'s own (`crate::kernels`), FP8 matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphInfo {
    pub kind: GraphKind,
    pub precision: GraphPrecision,
}

/// The numbers a graph computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphPrecision {
    Fp32,
    Fp16,
    /// The encoder's matrix products in FP8 (E4M3) with per-tensor scales, everything else in
    /// fp16: needs a GPU of compute capability 8.9 or newer, or CPU emulation.
    Fp8,
}

impl GraphInfo {
    /// How the graph was written, from `metadata_props`; `None` when the file does not say.
    pub fn from_props(props: &HashMap<String, String>) -> Result<Option<Self>, MetadataError> {
        graph(&Props(props))
    }
}

impl GraphPrecision {
    pub const ALL: [GraphPrecision; 3] = [
        GraphPrecision::Fp32,
        GraphPrecision::Fp16,
        GraphPrecision::Fp8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GraphPrecision::Fp32 => "fp32",
            GraphPrecision::Fp16 => "fp16",
            GraphPrecision::Fp8 => "fp8",
        }
    }

    /// The precision of the graph's input, outputs and activations.
    pub fn activations(self) -> Precision {
        match self {
            GraphPrecision::Fp32 => Precision::F32,
            GraphPrecision::Fp16 | GraphPrecision::Fp8 => Precision::F16,
        }
    }
}

/// Which operators the graph uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphKind {
    /// Standard ONNX operators only: runs on any ONNX runtime.
    Standard,
    /// ONNX Runtime's fused contrib operators (`com.microsoft`).
    Fused,
    /// The fused graph with SD²'s own operators (`com.sd2`, [`crate::kernels`]) where ONNX
    /// Runtime has no fused kernel: runs where those operators are registered.
    Sd2,
}

impl GraphKind {
    pub const ALL: [GraphKind; 3] = [GraphKind::Standard, GraphKind::Fused, GraphKind::Sd2];

    pub fn name(self) -> &'static str {
        match self {
            GraphKind::Standard => "standard",
            GraphKind::Fused => "fused",
            GraphKind::Sd2 => "sd2",
        }
    }
}

/// What an SD² model records about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMetadata {
    /// How faces become the model's input, as in training.
    pub recipe: CropRecipe,
    /// The type of each logit, in order: [`DeepfakeType::ALL`], the only order read.
    pub type_names: [DeepfakeType; DeepfakeType::COUNT],
    /// Shown with every verdict.
    pub model_name: String,
    pub model_version: String,
    /// The logit scale of the cosine head (paper §5.1).
    pub tau: f32,
    /// The text label of each type that the head compares against.
    pub labels: [String; DeepfakeType::COUNT],
    /// `None` when the file does not say.
    pub graph: Option<GraphInfo>,
}

impl ModelMetadata {
    /// The `metadata_props` entries, always in the order of [`key::ALL`], so that one
    /// checkpoint always exports to the same bytes.
    pub fn to_props(&self) -> Vec<(&'static str, String)> {
        let types = self.type_names.map(|t| t.code()).join(",");
        let labels = serde_json::to_string(&self.labels).expect("strings serialise");
        let mut props = vec![(key::MODEL_NAME, self.model_name.clone())];
        if let Some(g) = self.graph {
            props.push((key::GRAPH, g.kind.name().into()));
        }
        props.extend([
            (key::MODEL_VERSION, self.model_version.clone()),
            (key::TYPE_NAMES, types),
            (key::LABELS, labels),
            (key::TAU, self.tau.to_string()),
        ]);
        if let Some(g) = self.graph {
            props.push((key::PRECISION, g.precision.name().into()));
            props.push((key::PRODUCER, PRODUCER.into()));
        }
        props.extend(recipe_props(&self.recipe));
        props
    }

    /// Reads the metadata of a model; the first entry that is missing or wrong is the error.
    /// `crop_filter` may be absent (there is one filter); `graph` too, and then
    /// `precision` is not read.
    pub fn from_props(props: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let p = Props(props);
        let recipe = recipe(&p)?;
        let types = p.get(key::TYPE_NAMES)?;
        if types != DeepfakeType::ALL.map(|t| t.code()).join(",") {
            return Err(p.invalid(key::TYPE_NAMES));
        }
        let tau: f32 = p.parse(key::TAU)?;
        if !tau.is_finite() {
            return Err(p.invalid(key::TAU));
        }
        let labels: Vec<String> =
            serde_json::from_str(p.get(key::LABELS)?).map_err(|_| p.invalid(key::LABELS))?;
        let labels = labels.try_into().map_err(|_| p.invalid(key::LABELS))?;
        Ok(ModelMetadata {
            recipe,
            type_names: DeepfakeType::ALL,
            model_name: p.get(key::MODEL_NAME)?.to_owned(),
            model_version: p.get(key::MODEL_VERSION)?.to_owned(),
            tau,
            labels,
            graph: graph(&p)?,
        })
    }
}

/// The crop recipe's entries of `metadata_props`.
pub(crate) fn recipe_props(recipe: &CropRecipe) -> [(&'static str, String); 5] {
    let list = |v: &[f32; 3]| v.map(|x| x.to_string()).join(",");
    [
        (key::INPUT_SIZE, recipe.input_size.to_string()),
        (key::CROP_SCALE, recipe.scale.to_string()),
        (key::MEAN, list(&recipe.mean)),
        (key::STD, list(&recipe.std)),
        (key::CROP_FILTER, RESAMPLE_FILTER.into()),
    ]
}

/// Reads the crop recipe from `metadata_props`.
pub(crate) fn recipe_from_props(
    props: &HashMap<String, String>,
) -> Result<CropRecipe, MetadataError> {
    recipe(&Props(props))
}

fn recipe(p: &Props<'_>) -> Result<CropRecipe, MetadataError> {
    if let Some(f) = p.0.get(key::CROP_FILTER)
        && f != RESAMPLE_FILTER
    {
        return Err(p.invalid(key::CROP_FILTER));
    }
    let recipe = CropRecipe {
        input_size: p.parse(key::INPUT_SIZE)?,
        scale: p.parse(key::CROP_SCALE)?,
        mean: p.triple(key::MEAN)?,
        std: p.triple(key::STD)?,
    };
    recipe.validate().map_err(|reason| {
        let key = match reason {
            RecipeError::InputSize(_) => key::INPUT_SIZE,
            RecipeError::Scale(_) => key::CROP_SCALE,
            RecipeError::Mean(_) => key::MEAN,
            RecipeError::Std(_) => key::STD,
        };
        MetadataError::Recipe {
            key,
            found: p.shown(key),
            reason,
        }
    })?;
    Ok(recipe)
}

fn graph(p: &Props<'_>) -> Result<Option<GraphInfo>, MetadataError> {
    let Some(kind) = p.0.get(key::GRAPH) else {
        return Ok(None);
    };
    let kind = GraphKind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(|| p.invalid(key::GRAPH))?;
    let precision = p.get(key::PRECISION)?;
    let precision = GraphPrecision::ALL
        .into_iter()
        .find(|q| q.name() == precision)
        .ok_or_else(|| p.invalid(key::PRECISION))?;
    Ok(Some(GraphInfo { kind, precision }))
}

/// `metadata_props` as a map, read entry by entry.
struct Props<'a>(&'a HashMap<String, String>);

/// Values longer than this are cut short in messages.
const SHOWN: usize = 80;

impl Props<'_> {
    fn get(&self, key: &'static str) -> Result<&str, MetadataError> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or(MetadataError::Missing {
                key,
                expected: expectation(key),
            })
    }

    /// The value of `key` as a message shows it.
    fn shown(&self, key: &str) -> String {
        let v = self.0.get(key).map_or("", String::as_str);
        match v.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}…", &v[..cut]),
            None => v.to_owned(),
        }
    }

    fn invalid(&self, key: &'static str) -> MetadataError {
        MetadataError::Invalid {
            key,
            found: self.shown(key),
            expected: expectation(key),
        }
    }

    fn parse<T: FromStr>(&self, key: &'static str) -> Result<T, MetadataError> {
        self.get(key)?.trim().parse().map_err(|_| self.invalid(key))
    }

    fn triple(&self, key: &'static str) -> Result<[f32; 3], MetadataError> {
        let v: Vec<f32> = self
            .get(key)?
            .split(',')
            .map(|s| s.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|_| self.invalid(key))?;
        v.try_into().map_err(|_| self.invalid(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> ModelMetadata {
        ModelMetadata {
            recipe: CropRecipe::default(),
            type_names: DeepfakeType::ALL,
            model_name: "sd2-demo".into(),
            model_version: "step-684".into(),
            tau: 14.25,
            labels: DeepfakeType::ALL.map(|t| format!("a photo of a {} face.", t.description())),
            graph: Some(GraphInfo {
                kind: GraphKind::Fused,
                precision: GraphPrecision::Fp16,
            }),
        }
    }

    fn map(props: Vec<(&'static str, String)>) -> HashMap<String, String> {
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn entries_are_written_in_key_order_and_read_back() {
        let m = written();
        let props = m.to_props();
        let keys: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, key::ALL);
        assert_eq!(ModelMetadata::from_props(&map(props)).unwrap(), m);
        assert_eq!(
            expectation(key::TYPE_NAMES),
            format!("`{}`", DeepfakeType::ALL.map(|t| t.code()).join(","))
        );
    }

    #[test]
    fn a_missing_or_wrong_entry_is_named_with_what_was_expected() {
        let props = map(written().to_props());
        let mut m = props.clone();
        m.remove(key::CROP_SCALE);
        assert_eq!(
            ModelMetadata::from_props(&m).unwrap_err().to_string(),
            "metadata entry `crop_scale` is missing (expected a positive number)"
        );
        let mut m = props.clone();
        m.insert(key::TYPE_NAMES.into(), "REAL,FS".into());
        assert_eq!(
            ModelMetadata::from_props(&m).unwrap_err().to_string(),
            "metadata entry `type_names` is `REAL,FS`, expected `REAL,FS,FR,EFS,FE`"
        );
        let mut m = props.clone();
        m.insert(key::STD.into(), "0.2,0,0.3".into());
        let e = ModelMetadata::from_props(&m).unwrap_err();
        assert_eq!(e.key(), key::STD);
        assert!(e.to_string().contains("not positive"), "{e}");
        let mut m = props;
        m.insert(key::LABELS.into(), "x".repeat(500));
        let e = ModelMetadata::from_props(&m).unwrap_err().to_string();
        assert!(e.len() < 200 && e.contains("JSON list"), "{e}");
    }

    #[test]
    fn a_file_that_does_not_say_how_its_graph_was_written_reads_without_it() {
        let mut m = written();
        m.graph = None;
        let props = map(m.to_props());
        assert!(!props.contains_key(key::GRAPH) && !props.contains_key(key::PRODUCER));
        assert_eq!(ModelMetadata::from_props(&props).unwrap(), m);
    }
}
