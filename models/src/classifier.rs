//! The exported SD² model on ONNX Runtime: faces in, a verdict per face out.
//!
//! A model is checked against the model contract ([`crate::contract`]) when it loads: the
//! input and outputs, and the metadata `sd2-train export` writes. Faces are cropped with
//! the recipe the model records, so inference prepares them as training did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::value::{TensorElementType, ValueType};

use crate::contract::{self, EMBEDDING, GraphInfo, LOGITS, ModelMetadata, PIXEL_VALUES};
use crate::crop::CropRecipe;
use crate::cuda_gate::Gated;
use crate::image::RgbView;
use crate::io_binding::{Memory, Runner, Staging};
use crate::kernels::requirements;
use crate::runtime::{self, Device, Placement, RuntimeError, SessionConfig, TensorSpec};
use crate::taxonomy::DeepfakeType;

/// What the model says about one face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// One probability per type, in [`DeepfakeType::ALL`] order.
    pub probabilities: [f32; DeepfakeType::COUNT],
}

impl Verdict {
    pub fn from_logits(logits: &[f32]) -> Self {
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
        let sum: f32 = e.iter().sum();
        Verdict {
            probabilities: std::array::from_fn(|i| e[i] / sum),
        }
    }

    /// The most probable type; on a tie the first in [`DeepfakeType::ALL`] order, so a
    /// face as likely REAL as anything else is REAL. Whether a face is judged fake is the
    /// decision rule's ([`crate::analyzer::Judge`]).
    pub fn label(&self) -> DeepfakeType {
        DeepfakeType::ALL[self.first_highest(0)]
    }

    /// The most probable manipulation, REAL left out: what kind of fake a fake face is.
    pub fn most_likely_fake(&self) -> DeepfakeType {
        DeepfakeType::ALL[self.first_highest(1)]
    }

    /// The index of the highest probability from `from` on, the first on a tie.
    fn first_highest(&self, from: usize) -> usize {
        (from + 1..DeepfakeType::COUNT).fold(from, |best, i| {
            if self.probabilities[i] > self.probabilities[best] {
                i
            } else {
                best
            }
        })
    }

    pub fn confidence(&self) -> f32 {
        self.probabilities[self.label().index()]
    }

    /// 1 − p(REAL).
    pub fn fake_score(&self) -> f32 {
        1.0 - self.probabilities[0]
    }
}

/// An SD² model loaded for inference.
///
/// On the CPU it holds one single-threaded session per core and splits a batch among them,
/// which runs the small operations of a ViT batch in parallel where one session's
/// intra-operator threads mostly wait; on CUDA one session takes the whole batch. Runs go
/// through I/O binding (see [`crate::io_binding`]).
pub struct DeepfakeModel {
    runners: Vec<Gated<Runner>>,
    path: PathBuf,
    metadata: ModelMetadata,
    half: bool,
    /// What each session was opened with.
    config: SessionConfig,
    placement: Placement,
    fallback_reason: Option<String>,
    cuda_graph_off: Option<String>,
    /// Graph optimization levels that loaded on CUDA and did not run, one line each.
    notes: Vec<String>,
}

impl std::fmt::Debug for DeepfakeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepfakeModel")
            .field("path", &self.path)
            .field("name", &self.metadata.model_name)
            .field("recipe", &self.metadata.recipe)
            .field("half", &self.half)
            .field("placement", &self.placement)
            .field("cuda_graph", &self.cuda_graph())
            .finish_non_exhaustive()
    }
}

fn contract(path: &Path, problems: impl Into<String>) -> RuntimeError {
    RuntimeError::Contract {
        path: path.to_owned(),
        problems: problems.into(),
    }
}

impl DeepfakeModel {
    /// Loads `path` and checks it against the model contract. On CUDA it also runs a probe
    /// face, so that a model this runtime cannot run fails here, naming the file. A model
    /// that loads on CUDA but does not run there is loaded again with lesser graph
    /// optimization (some ONNX Runtime builds fail on what their optimizers made), and with
    /// `Device::Auto` at last on the CPU; [`staging`](Self::staging) and
    /// [`fallback_reason`](Self::fallback_reason) say why.
    pub fn load(path: &Path, device: Device, config: SessionConfig) -> Result<Self, RuntimeError> {
        let asked = config;
        let mut config = config;
        let mut notes = Vec::new();
        loop {
            match Self::load_on(path, device, config) {
                Ok(mut model) => {
                    model.notes = notes;
                    return Ok(model);
                }
                Err(RuntimeError::CudaRun { reason, .. }) => {
                    notes.push(format!(
                        "{:?} graph optimization: {reason}",
                        config.optimization
                    ));
                    if let Some(lower) = config.optimization.lower() {
                        config.optimization = lower;
                        continue;
                    }
                    let reason = notes.join("; ");
                    if device != Device::Auto {
                        return Err(RuntimeError::CudaRun {
                            path: path.to_owned(),
                            reason,
                        });
                    }
                    let mut model = Self::load_on(path, Device::Cpu, asked)?;
                    model.fallback_reason = Some(format!("it does not run on CUDA: {reason}"));
                    return Ok(model);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn load_on(path: &Path, device: Device, config: SessionConfig) -> Result<Self, RuntimeError> {
        let (device, unmet_on_cuda) = resolve(path, device, config)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = config.threads.unwrap_or(cores).max(1);
        let pool = pool_size(threads, std::fs::metadata(path).map_or(0, |m| m.len()));
        let each = SessionConfig {
            threads: Some((threads / pool).max(1)),
            ..config
        };
        let (mut loaded, metadata, half) = open_checked(path, device, each)?;
        let emulate = requirements::emulation_allowed(config.emulate_fp8);
        requirements::check(metadata.graph, loaded.placement, emulate).map_err(|reason| {
            RuntimeError::Unmet {
                path: path.to_owned(),
                device,
                reason,
            }
        })?;
        if loaded.placement == Placement::Cpu && loaded.fallback_reason.is_none() {
            loaded.fallback_reason = unmet_on_cuda;
        }
        // The rest of the CPU pool, once the model has passed the checks.
        let side = metadata.recipe.input_size;
        let memory = match loaded.placement {
            Placement::Cpu => Memory::Cpu,
            Placement::Cuda => Memory::Cuda {
                graphs: loaded.cuda_graph,
            },
        };
        let cuda = memory != Memory::Cpu;
        let runner = |s| {
            Gated::new(
                Runner::new(s, memory, config.fixed_batches, half, side),
                cuda,
            )
        };
        let mut runners = vec![runner(loaded.session.into_inner())];
        if loaded.placement == Placement::Cpu {
            for _ in 1..pool {
                let s = runtime::open_session(path, Device::Cpu, each, MISSING_HINT)?.session;
                runners.push(runner(s.into_inner()));
            }
        }
        let mut model = DeepfakeModel {
            runners,
            path: path.to_owned(),
            metadata,
            half,
            config: each,
            placement: loaded.placement,
            fallback_reason: loaded.fallback_reason,
            cuda_graph_off: loaded.cuda_graph_off,
            notes: Vec::new(),
        };
        if model.cuda_graph() {
            // Without graphs the session settles in drop_graphs.
            if let Err(why) = model.runners[0].capture_graphs() {
                model.drop_graphs(why.to_string())?;
            }
        } else {
            model.settle()?;
        }
        Ok(model)
    }

    /// On CUDA: finds a way of staging the tensors that runs (see [`Runner::settle`]), so
    /// that a model this runtime cannot run fails here, naming the file, and not in a stream.
    fn settle(&mut self) -> Result<(), RuntimeError> {
        for r in &mut self.runners {
            r.settle().map_err(|e| RuntimeError::CudaRun {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Reopens the CUDA session without graphs after `why` went wrong with them, which
    /// [`cuda_graph_off`](Self::cuda_graph_off) then says.
    fn drop_graphs(&mut self, why: String) -> Result<(), RuntimeError> {
        let config = SessionConfig {
            cuda_graph: false,
            ..self.config
        };
        let session = runtime::open_session(&self.path, Device::Cuda, config, "")?
            .session
            .into_inner();
        let memory = Memory::Cuda { graphs: false };
        let side = self.metadata.recipe.input_size;
        let runner = Runner::new(session, memory, config.fixed_batches, self.half, side);
        self.runners = vec![Gated::new(runner, true)];
        self.cuda_graph_off = Some(format!("CUDA graphs failed and were turned off: {why}"));
        self.settle()
    }

    /// What the model records about itself.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    pub fn recipe(&self) -> &CropRecipe {
        &self.metadata.recipe
    }

    pub fn name(&self) -> &str {
        &self.metadata.model_name
    }

    pub fn version(&self) -> &str {
        &self.metadata.model_version
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Why the host side of CUDA runs uses pageable memory instead of pinned, once a run
    /// has found out.
    pub fn pageable_reason(&self) -> Option<&str> {
        self.runners.iter().find_map(|r| r.pageable_reason())
    }

    /// How CUDA runs stage their tensors (`None` on the CPU), and why the ways tried before
    /// were left: graph optimization levels that did not run, then stagings that did not.
    pub fn staging(&self) -> (Option<Staging>, Vec<String>) {
        let r = &self.runners[0];
        let notes = self
            .notes
            .iter()
            .chain(r.staging_notes())
            .cloned()
            .collect();
        let staging = (self.placement == Placement::Cuda).then(|| r.staging());
        (staging, notes)
    }

    /// Whether runs capture and replay CUDA graphs.
    pub fn cuda_graph(&self) -> bool {
        self.runners.iter().any(|r| r.graphs())
    }

    /// Why CUDA graphs were asked for and are not used, when they are not.
    pub fn cuda_graph_off(&self) -> Option<&str> {
        self.cuda_graph_off.as_deref()
    }

    /// Values per face input: `3 · S · S`.
    pub fn input_len(&self) -> usize {
        let side = self.metadata.recipe.input_size;
        3 * side * side
    }

    /// Writes the model input of one face of `img` into `out` (`input_len()` values).
    pub fn prepare(&self, img: RgbView<'_>, bbox: [f32; 4], out: &mut [f32]) {
        self.metadata.recipe.input_for(img, bbox, out);
    }

    /// Runs prepared inputs (`n · input_len()` values) and returns a verdict per face.
    pub fn classify(&mut self, inputs: &[f32]) -> Result<Vec<Verdict>, RuntimeError> {
        Ok(self
            .logits(inputs)?
            .iter()
            .map(|l| Verdict::from_logits(l))
            .collect())
    }

    /// Runs prepared inputs (`n · input_len()` values) and returns the model's logits, one
    /// row per face in [`DeepfakeType::ALL`] order. A run that fails with CUDA graphs is
    /// run again without them, and they stay off.
    pub fn logits(
        &mut self,
        inputs: &[f32],
    ) -> Result<Vec<[f32; DeepfakeType::COUNT]>, RuntimeError> {
        match self.run(inputs) {
            Err(e) if self.cuda_graph() => {
                self.drop_graphs(e.to_string())?;
                self.run(inputs)
            }
            result => result,
        }
    }

    fn run(&mut self, inputs: &[f32]) -> Result<Vec<[f32; DeepfakeType::COUNT]>, RuntimeError> {
        let per = self.input_len();
        let n = inputs.len() / per;
        if n == 0 {
            return Ok(Vec::new());
        }
        let path = self.path.as_path();
        let parts = self.runners.len().min(n);
        runtime::share(&mut self.runners[..parts], n, |runner, r| {
            let logits = runner
                .run(&inputs[r.start * per..r.end * per], r.len())
                .map_err(|e| RuntimeError::Ort(format!("{}: {e}", path.display())))?;
            Ok(logits
                .chunks_exact(DeepfakeType::COUNT)
                .map(|row| std::array::from_fn(|i| row[i]))
                .collect())
        })
    }
}

/// The device to open `path` on for `device`, from what its graph needs (read before the
/// session opens; see [`requirements`]), and why CUDA was passed over when `auto` chose
/// the CPU for that. A file whose metadata cannot be read here is left to the session to
/// report.
fn resolve(
    path: &Path,
    device: Device,
    config: SessionConfig,
) -> Result<(Device, Option<String>), RuntimeError> {
    let graph = requirements::peek_metadata(path)
        .ok()
        .and_then(|props| GraphInfo::from_props(&props).ok().flatten());
    let emulate = requirements::emulation_allowed(config.emulate_fp8);
    requirements::resolve(graph, device, emulate).map_err(|reason| RuntimeError::Unmet {
        path: path.to_owned(),
        device,
        reason,
    })
}

/// Appended to the message for a model file that does not exist.
const MISSING_HINT: &str =
    " (export one with `sd2-train export`, or run scripts/setup.sh for the demo model)";

/// Opens one session of `path` and checks it against the model contract: its input (whose
/// element type says whether the model runs in f16), its metadata, then its input and
/// output shapes at the recorded input size.
fn open_checked(
    path: &Path,
    device: Device,
    config: SessionConfig,
) -> Result<(runtime::LoadedSession, ModelMetadata, bool), RuntimeError> {
    let loaded = runtime::open_session(path, device, config, MISSING_HINT)?;
    let session = &loaded.session;
    let input = session
        .inputs()
        .iter()
        .find(|o| o.name() == PIXEL_VALUES)
        .ok_or_else(|| {
            contract(
                path,
                format!("no input named `{PIXEL_VALUES}` (expected f32 or f16 [N,3,S,S])"),
            )
        })?;
    let half = matches!(
        input.dtype(),
        ValueType::Tensor {
            ty: TensorElementType::Float16,
            ..
        }
    );
    let metadata = read_metadata(path, session)?;
    let elem = if half {
        TensorElementType::Float16
    } else {
        TensorElementType::Float32
    };
    let spec = |name: &'static str, dims: &[Option<i64>]| TensorSpec {
        name,
        elem,
        dims: dims.to_vec(),
    };
    let s = Some(metadata.recipe.input_size as i64);
    runtime::check_contract(
        path,
        session,
        &[spec(PIXEL_VALUES, &[None, Some(3), s, s])],
        &[
            spec(LOGITS, &[None, Some(DeepfakeType::COUNT as i64)]),
            spec(EMBEDDING, &[None, None]),
        ],
    )?;
    Ok((loaded, metadata, half))
}

/// The model's `metadata_props`, read as [`ModelMetadata`].
fn read_metadata(
    path: &Path,
    session: &ort::session::Session,
) -> Result<ModelMetadata, RuntimeError> {
    let meta = session
        .metadata()
        .map_err(|e| contract(path, format!("cannot read metadata: {e}")))?;
    let keys = meta.custom_keys().unwrap_or_default();
    let props: HashMap<String, String> = keys
        .iter()
        .filter_map(|k| meta.custom(k).map(|v| (k.clone(), v)))
        .collect();
    contract::ModelMetadata::from_props(&props).map_err(|source| RuntimeError::Metadata {
        path: path.to_owned(),
        source,
    })
}

/// Weights the CPU session pool may hold in memory together: every session keeps its own
/// copy, so a ViT-L/14 export (1.2 GB) gets one multi-threaded session and the small
/// models one single-threaded session per core.
const POOL_WEIGHT_BUDGET: u64 = 2 << 30;

/// How many CPU sessions to open for a model file of `bytes` with `threads` to spend.
fn pool_size(threads: usize, bytes: u64) -> usize {
    let by_memory = (POOL_WEIGHT_BUDGET / bytes.max(1)).max(1) as usize;
    threads.min(16).min(by_memory).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_from_logits() {
        let v = Verdict::from_logits(&[0.0, 2.0, 0.0, 0.0, 0.0]);
        assert_eq!(v.label(), DeepfakeType::FaceSwap);
        assert!((v.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e2 = 2f32.exp();
        assert!((v.confidence() - e2 / (e2 + 4.0)).abs() < 1e-6);
        assert!((v.fake_score() - (1.0 - 1.0 / (e2 + 4.0))).abs() < 1e-6);
        assert_eq!(
            Verdict::from_logits(&[5.0, 0.0, 0.0, 0.0, 0.0]).label(),
            DeepfakeType::Real
        );
        // A REAL face's likeliest manipulation is the likeliest of the other four.
        let real = Verdict::from_logits(&[5.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(real.label(), DeepfakeType::Real);
        assert_eq!(real.most_likely_fake(), DeepfakeType::ALL[3]);
        let tie = Verdict {
            probabilities: [0.4, 0.4, 0.1, 0.1, 0.0],
        };
        assert_eq!(tie.label(), DeepfakeType::Real);
        assert_eq!(tie.most_likely_fake(), DeepfakeType::FaceSwap);
    }

    #[test]
    fn pool_keeps_large_models_to_one_session() {
        assert_eq!(pool_size(16, 1_200_000_000), 1);
        assert_eq!(pool_size(16, 600_000_000), 3);
        assert_eq!(pool_size(2, 4_000_000), 2);
        assert_eq!(pool_size(64, 4_000_000), 16);
        assert_eq!(pool_size(0, 0), 1);
    }
}
