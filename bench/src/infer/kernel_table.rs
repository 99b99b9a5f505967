//! The kernel table of one encoder layer: how long each operator of a layer takes in a
//! variant's graph, from ONNX Runtime's profiler over a few runs of the whole model.
//!
//! A layer's nodes are found in the exported graph: those reading a weight of
//! `layers.{L}.` and those reading only what such nodes produce (attention, reshapes).
//! Layer 1, not 0: the residual sum that starts a layer (its first LayerNorm) is computed
//! at the end of the layer before it, so layer 1 has every node a layer has. The profiler
//! times a node on the host; on CUDA that is a launch unless every launch waits for its
//! kernel, so run this with `CUDA_LAUNCH_BLOCKING=1` there (`scripts/gpu/run.sh kernels`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use half::f16;
use sd2_models::contract::PIXEL_VALUES;
use sd2_models::io_binding::probe_inputs;
use sd2_models::onnx::proto::GraphProto;
use sd2_models::ort;
use sd2_models::ort::session::Session;
use sd2_models::runtime;

/// The layer whose nodes are tabled.
pub const LAYER: usize = 1;

/// The layer a weight belongs to, from its name (`layers.{L}.…`).
fn weight_layer(name: &str) -> Option<usize> {
    name.strip_prefix("layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The nodes of layer [`LAYER`] in `graph`: name → operator. A node is a layer's when it
/// reads one of its weights, or, reading no other layer's, reads what that layer's nodes
/// produce and no other layer's (constants and values made once for all layers, such as
/// the bias lanes, do not count against it).
pub fn layer_nodes(graph: &GraphProto) -> HashMap<String, String> {
    let weights: HashSet<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
    let mut made_in: HashMap<&str, usize> = HashMap::new();
    let mut nodes = HashMap::new();
    for n in &graph.node {
        let mut layers = HashSet::new();
        let mut by_weight = None;
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if weights.contains(i.as_str()) {
                by_weight = by_weight.or(weight_layer(i));
            } else if let Some(&l) = made_in.get(i.as_str()) {
                layers.insert(l);
            }
        }
        let layer = by_weight.or_else(|| {
            let mut it = layers.iter();
            match (it.next(), it.next()) {
                (Some(&l), None) => Some(l),
                _ => None,
            }
        });
        if let Some(l) = layer {
            made_in.extend(n.output.iter().map(|o| (o.as_str(), l)));
            if l == LAYER {
                nodes.insert(n.name.clone(), n.op_type.clone());
            }
        }
    }
    nodes
}

/// One variant's layer: microseconds a run per operator (nodes, µs), largest first.
#[derive(Clone, Debug)]
pub struct LayerKernels {
    pub variant: String,
    pub batch: usize,
    pub rows: Vec<(String, usize, f64)>,
}

impl LayerKernels {
    pub fn total(&self) -> f64 {
        self.rows.iter().map(|r| r.2).sum()
    }

    pub fn print(&self) {
        println!(
            "kernels of encoder layer {LAYER}, {} at batch {}: {:.1} µs",
            self.variant,
            self.batch,
            self.total()
        );
        for (op, nodes, us) in &self.rows {
            println!("  {op:<28}{nodes:>3} nodes {us:>10.1} µs");
        }
    }
}

/// Profiles `runs` runs of `path` at `batch` (after one unprofiled run) and sums the time
/// of `nodes` (see [`layer_nodes`]) per operator.
pub fn profile(
    variant: &str,
    path: &Path,
    nodes: &HashMap<String, String>,
    cuda: bool,
    batch: usize,
    runs: usize,
) -> Result<LayerKernels> {
    let dir = tempfile::tempdir()?;
    let mut session = session(path, cuda, &dir.path().join("profile"))?;
    let side = session
        .inputs()
        .iter()
        .find(|o| o.name() == PIXEL_VALUES)
        .and_then(|o| match o.dtype() {
            ort::value::ValueType::Tensor { shape, ty, .. } => {
                Some((shape.last().copied().unwrap_or(0) as usize, *ty))
            }
            _ => None,
        })
        .context("no pixel_values input")?;
    let x = probe_inputs(batch * 3 * side.0 * side.0);
    let shape = [batch, 3, side.0, side.0];
    let half = side.1 == ort::value::TensorElementType::Float16;
    let h: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
    for _ in 0..=runs {
        if half {
            let t = ort::value::TensorRef::from_array_view((shape, h.as_slice()))?;
            session.run(ort::inputs![PIXEL_VALUES => t])?;
        } else {
            let t = ort::value::TensorRef::from_array_view((shape, x.as_slice()))?;
            session.run(ort::inputs![PIXEL_VALUES => t])?;
        }
    }
    let trace = session.end_profiling()?;
    let text = std::fs::read_to_string(&trace).with_context(|| format!("reading {trace}"))?;
    let events: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let mut per_op: BTreeMap<String, (HashSet<String>, f64)> = BTreeMap::new();
    for e in &events {
        let Some(name) = e["name"]
            .as_str()
            .and_then(|n| n.strip_suffix("_kernel_time"))
        else {
            continue;
        };
        // ONNX Runtime keeps a node's name, or names a node it fused after one of them.
        let Some((node, op)) = nodes
            .iter()
            .find(|(n, _)| name == n.as_str() || name.contains(n.as_str()))
        else {
            continue;
        };
        let op = e["args"]["op_name"].as_str().unwrap_or(op).to_owned();
        let entry = per_op.entry(op).or_default();
        entry.0.insert(node.clone());
        entry.1 += e["dur"].as_f64().unwrap_or(0.0);
    }
    // The first run is not profiled apart from the others: it is one of `runs + 1`.
    let n = (runs + 1) as f64;
    let mut rows: Vec<(String, usize, f64)> = per_op
        .into_iter()
        .map(|(op, (nodes, us))| (op, nodes.len(), us / n))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(LayerKernels {
        variant: variant.into(),
        batch,
        rows,
    })
}

/// A session of `path` with ONNX Runtime's profiler on, SD²'s operators registered.
fn session(path: &Path, cuda: bool, prefix: &Path) -> Result<Session> {
    let env = runtime::environment()?;
    let text = |e: ort::Error<_>| anyhow::anyhow!("{e}");
    let mut builder = Session::builder(env)?
        .with_operators(sd2_models::kernels::register(cuda)?)
        .map_err(text)?
        .with_profiling(prefix)
        .map_err(text)?;
    if cuda {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(text)?;
    }
    runtime::commit_registering_domain(|| builder.commit_from_file(path))
        .map_err(|e| anyhow::anyhow!("{e}"))
}
