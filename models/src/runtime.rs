//! ONNX Runtime sessions: loading the library once, placing a model on a device, and
//! turning every failure into an error that names the file and what to do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep;
use ort::ep::cuda::ConvAlgorithmSearch;
use ort::session::Session;
use ort::session::builder::{AutoDevicePolicy, GraphOptimizationLevel};
use ort::value::{TensorElementType, ValueType};

use crate::cuda_gate::Gated;
use crate::paths;

/// Where a model should run, as a user asks for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA or an error: never a silent fall back to the CPU.
    Cuda,
    /// CUDA when it can be used, else the CPU; the choice is reported.
    Auto,
}

/// A device name that is none of [`Device`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}`: expected cpu, cuda or auto")]
pub struct UnknownDevice(pub String);

impl FromStr for Device {
    type Err = UnknownDevice;
    fn from_str(s: &str) -> Result<Self, UnknownDevice> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(UnknownDevice(other.to_owned())),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

/// Where a session actually runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Cpu,
    Cuda,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Cpu => "cpu",
            Placement::Cuda => "cuda",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library {path} could not be loaded: {reason}. Run scripts/setup.sh, or set ORT_DYLIB_PATH to libonnxruntime.so.{}",
        paths::ORT_VERSION
    )]
    Library { path: PathBuf, reason: String },
    #[error("model file {path} does not exist{hint}")]
    MissingModel { path: PathBuf, hint: String },
    #[error("model file {path} could not be loaded by ONNX Runtime: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error(
        "device=cuda was asked for but CUDA cannot be used for {path}: {reason}. Use the onnxruntime-gpu build (ORT_DYLIB_PATH) on a machine with an NVIDIA GPU, or device=cpu / device=auto"
    )]
    Cuda { path: PathBuf, reason: String },
    #[error(
        "model file {path} does not have the inputs and outputs this element needs: {problems}"
    )]
    Contract { path: PathBuf, problems: String },
    #[error("model file {path} does not record what an SD² model records: {source}")]
    Metadata {
        path: PathBuf,
        source: crate::contract::MetadataError,
    },
    #[error("model file {path} loads on CUDA but does not run there: {reason}")]
    CudaRun { path: PathBuf, reason: String },
    #[error("model file {path} cannot run with device={device}: {reason}")]
    Unmet {
        path: PathBuf,
        device: Device,
        reason: crate::kernels::requirements::Unmet,
    },
    #[error("ONNX Runtime failed: {0}")]
    Ort(String),
}

static ENVIRONMENT: OnceLock<Result<Environment, (PathBuf, String)>> = OnceLock::new();

/// The process's ONNX Runtime environment, loading the library from [`paths::ort_dylib`]
/// the first time.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = paths::ort_dylib();
        if !path.exists() {
            return Err((path, "file not found".into()));
        }
        ort::init_from(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("sd2").build().map_err(|e| e.to_string()))
            .map_err(|reason| (path, reason))
    });
    loaded
        .as_ref()
        .map_err(|(path, reason)| RuntimeError::Library {
            path: path.clone(),
            reason: reason.clone(),
        })
}

/// A session and where it runs.
pub struct LoadedSession {
    /// Dropped under the CUDA gate when it runs on CUDA, so that a load that fails after
    /// opening it (a contract check) does not free device memory beside a capture.
    pub session: Gated<Session>,
    pub placement: Placement,
    /// Why `auto` chose the CPU, when it did.
    pub fallback_reason: Option<String>,
    /// Whether runs capture and replay CUDA graphs.
    pub cuda_graph: bool,
    /// Why CUDA graphs were asked for and are not used, when they are not.
    pub cuda_graph_off: Option<String>,
}

impl LoadedSession {
    fn new(session: Session, placement: Placement, fallback_reason: Option<String>) -> Self {
        LoadedSession {
            session: Gated::new(session, placement == Placement::Cuda),
            placement,
            fallback_reason,
            cuda_graph: false,
            cuda_graph_off: None,
        }
    }
}

impl fmt::Debug for LoadedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedSession")
            .field("placement", &self.placement)
            .field("fallback_reason", &self.fallback_reason)
            .field("cuda_graph", &self.cuda_graph)
            .finish_non_exhaustive()
    }
}

/// Session settings besides the device.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Intra-op threads; `None` lets ONNX Runtime use one per physical core.
    pub threads: Option<usize>,
    /// ONNX Runtime's memory pattern planning, which pays off when input shapes repeat
    /// and costs time when they vary from run to run (P-Net's image pyramid).
    pub memory_pattern: bool,
    /// On CUDA, capture a CUDA graph per batch bucket and replay it (implies
    /// `fixed_batches`). When ONNX Runtime refuses graphs for the model, the session runs
    /// without them and says why ([`LoadedSession::cuda_graph_off`]). The SD² classifier
    /// only.
    pub cuda_graph: bool,
    /// Pad every batch so that a model only ever sees a few batch shapes: the SD²
    /// classifier to the next of [`crate::io_binding::BUCKETS`], MTCNN's R-Net and O-Net to
    /// the next power of two (always on CUDA).
    pub fixed_batches: bool,
    /// How far ONNX Runtime rewrites the graph when it loads it.
    pub optimization: Optimization,
    /// Inputs change shape from run to run (MTCNN's pyramid levels and candidate
    /// batches): on CUDA, convolutions choose their cuDNN plans by ONNX Runtime's quick
    /// `HEURISTIC` search instead of its default `EXHAUSTIVE` one, which costs more than
    /// the runs themselves when it is paid for every new shape.
    pub varying_shapes: bool,
    /// MTCNN: a session of its own for every input shape a network sees (each pyramid
    /// level, each padded batch size; implies `fixed_batches`). `None` (the default) turns
    /// it on where the networks run on CUDA, where ONNX Runtime rebuilds a convolution's
    /// cuDNN plans whenever the shape changes from one run to the next (see
    /// `mtcnn::sessions`), and off on the CPU.
    pub shape_sessions: Option<bool>,
    /// Run an FP8 graph on the CPU, its FP8 arithmetic emulated (slow: for measuring its
    /// accuracy); refused otherwise. `SD2_FP8_EMULATION=1` allows it too
    /// ([`crate::kernels::requirements::emulation_allowed`]).
    pub emulate_fp8: bool,
}

/// ONNX Runtime's graph optimization levels that a session may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Optimization {
    /// Every rewrite, layout changes and fusions included.
    #[default]
    All,
    /// ONNX Runtime's basic level: constant folding, redundant-node removal and the fusions
    /// that keep the standard operators, none of its layout changes or contrib-operator
    /// fusions.
    Basic,
    /// The graph as it is in the file.
    Off,
}

impl Optimization {
    /// The next, lesser level, if there is one.
    pub fn lower(self) -> Option<Optimization> {
        match self {
            Optimization::All => Some(Optimization::Basic),
            Optimization::Basic => Some(Optimization::Off),
            Optimization::Off => None,
        }
    }

    fn level(self) -> GraphOptimizationLevel {
        match self {
            Optimization::All => GraphOptimizationLevel::All,
            Optimization::Basic => GraphOptimizationLevel::Level1,
            Optimization::Off => GraphOptimizationLevel::Disable,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            threads: None,
            memory_pattern: true,
            cuda_graph: false,
            fixed_batches: false,
            optimization: Optimization::All,
            varying_shapes: false,
            shape_sessions: None,
            emulate_fp8: false,
        }
    }
}

fn build(
    env: &Environment,
    path: &Path,
    config: SessionConfig,
    cuda: bool,
) -> Result<Session, (bool, String)> {
    let mut builder = Session::builder(env).map_err(|e| (false, e.to_string()))?;
    // SD²'s own operators, for the `sd2` graphs; on CUDA with their CUDA kernels when
    // those can run (crate::kernels::requirements refuses an `sd2` file before that).
    let domain = crate::kernels::register(cuda).map_err(|e| (false, e.to_string()))?;
    builder = builder
        .with_operators(domain)
        .map_err(|e| (false, e.to_string()))?
        .with_optimization_level(config.optimization.level())
        .map_err(|e| (false, e.to_string()))?
        .with_memory_pattern(config.memory_pattern)
        .map_err(|e| (false, e.to_string()))?;
    if let Some(n) = config.threads {
        builder = builder
            .with_intra_threads(n)
            .map_err(|e| (false, e.to_string()))?;
    }
    if cuda {
        builder = builder
            .with_execution_providers([ep::CUDA::default()
                .with_cuda_graph(config.cuda_graph)
                .with_conv_algorithm_search(if config.varying_shapes {
                    ConvAlgorithmSearch::Heuristic
                } else {
                    ConvAlgorithmSearch::Exhaustive
                })
                .build()
                .error_on_failure()])
            .map_err(|e| (true, e.to_string()))?;
    } else {
        // ort asks for the most power-efficient device by default; on the CPU a session
        // must prefer the CPU, or it can lose up to half the throughput of a plain ONNX
        // Runtime session (sd2-bench shows the difference).
        builder = builder
            .with_auto_device(AutoDevicePolicy::PreferCPU)
            .map_err(|e| (false, e.to_string()))?;
    }
    commit_registering_domain(|| builder.commit_from_file(path)).map_err(|e| (false, e.to_string()))
}

/// Whether a session of this process has registered SD²'s operator domain yet.
static DOMAIN_REGISTERED: Mutex<bool> = Mutex::new(false);

/// Runs `commit` (a session's creation, which registers its custom operator domains), alone
/// in the process until one commit has succeeded. ONNX Runtime adds a domain to ONNX's
/// process-wide schema table when the table lacks it, without a lock: two first
/// registrations at once fail one session ("the domain is already exist") and write the
/// table from two threads. Once the domain is in the table it is only read, and sessions
/// open in parallel.
pub fn commit_registering_domain<T>(commit: impl FnOnce() -> ort::Result<T>) -> ort::Result<T> {
    let mut registered = DOMAIN_REGISTERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *registered {
        drop(registered);
        return commit();
    }
    let result = commit();
    *registered = result.is_ok();
    result
}

/// Opens `path` on `device`. `hint` is appended to the missing-file message (e.g. the
/// command that produces the file).
pub fn open_session(
    path: &Path,
    device: Device,
    config: SessionConfig,
    hint: &str,
) -> Result<LoadedSession, RuntimeError> {
    // Opening a CUDA session allocates and creates cuBLAS and cuDNN handles.
    let _gate = (device != Device::Cpu).then(crate::cuda_gate::shared);
    if !config.cuda_graph {
        return open_placed(path, device, config, hint);
    }
    match open_placed(path, device, config, hint) {
        Ok(mut loaded) => {
            loaded.cuda_graph = loaded.placement == Placement::Cuda;
            if !loaded.cuda_graph {
                loaded.cuda_graph_off = Some("the model runs on the CPU".into());
            }
            Ok(loaded)
        }
        // ONNX Runtime refuses graph capture for some models when it creates the session
        // (control flow, copies between CPU and GPU nodes): run them without graphs rather
        // than not at all, and say so. Other failures do not depend on graphs.
        Err(e @ RuntimeError::BadModel { .. }) => {
            let plain = SessionConfig {
                cuda_graph: false,
                ..config
            };
            let mut loaded = open_placed(path, device, plain, hint)?;
            loaded.cuda_graph_off = Some(e.to_string());
            Ok(loaded)
        }
        Err(e) => Err(e),
    }
}

fn open_placed(
    path: &Path,
    device: Device,
    config: SessionConfig,
    hint: &str,
) -> Result<LoadedSession, RuntimeError> {
    let env = environment()?;
    if !path.is_file() {
        return Err(RuntimeError::MissingModel {
            path: path.to_owned(),
            hint: hint.to_owned(),
        });
    }
    let bad = |reason: String| RuntimeError::BadModel {
        path: path.to_owned(),
        reason,
    };
    match device {
        Device::Cpu => build(env, path, config, false)
            .map(|session| LoadedSession::new(session, Placement::Cpu, None))
            .map_err(|(_, reason)| bad(reason)),
        Device::Cuda => match build(env, path, config, true) {
            Ok(session) => Ok(LoadedSession::new(session, Placement::Cuda, None)),
            Err((true, reason)) => Err(RuntimeError::Cuda {
                path: path.to_owned(),
                reason,
            }),
            Err((false, reason)) => Err(bad(reason)),
        },
        Device::Auto => match build(env, path, config, true) {
            Ok(session) => Ok(LoadedSession::new(session, Placement::Cuda, None)),
            Err((true, reason)) => build(env, path, config, false)
                .map(|session| LoadedSession::new(session, Placement::Cpu, Some(reason)))
                .map_err(|(_, reason)| bad(reason)),
            Err((false, reason)) => Err(bad(reason)),
        },
    }
}

/// What a model input or output must look like: a name, an element type and its dims,
/// `None` where any size is accepted (a dynamic batch, P-Net's height and width).
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: &'static str,
    pub elem: TensorElementType,
    pub dims: Vec<Option<i64>>,
}

impl TensorSpec {
    pub fn f32(name: &'static str, dims: &[Option<i64>]) -> Self {
        TensorSpec {
            name,
            elem: TensorElementType::Float32,
            dims: dims.to_vec(),
        }
    }

    fn describe(&self) -> String {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| d.map_or_else(|| "?".to_owned(), |v| v.to_string()))
            .collect();
        format!("{} {:?} [{}]", self.name, self.elem, dims.join(","))
    }
}

fn describe_outlet(o: &ort::value::Outlet) -> String {
    match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> = shape
                .iter()
                .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
                .collect();
            format!("{} {ty:?} [{}]", o.name(), dims.join(","))
        }
        other => format!("{} {other}", o.name()),
    }
}

fn outlet_matches(o: &ort::value::Outlet, spec: &TensorSpec) -> bool {
    match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            *ty == spec.elem
                && shape.len() == spec.dims.len()
                && shape.iter().zip(&spec.dims).all(|(&d, want)| match want {
                    None => true,
                    // A model may leave a dimension dynamic that we pin; it is checked when run.
                    Some(w) => d == *w || d < 0,
                })
        }
        _ => false,
    }
}

/// Checks a session's inputs and outputs against what the caller will feed and read.
pub fn check_contract(
    path: &Path,
    session: &Session,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<(), RuntimeError> {
    let mut problems = Vec::new();
    for (kind, specs, outlets) in [
        ("input", inputs, session.inputs()),
        ("output", outputs, session.outputs()),
    ] {
        for spec in specs {
            match outlets.iter().find(|o| o.name() == spec.name) {
                None => problems.push(format!(
                    "no {kind} named `{}` (expected {}; the model has {})",
                    spec.name,
                    spec.describe(),
                    outlets
                        .iter()
                        .map(describe_outlet)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Some(o) if !outlet_matches(o, spec) => problems.push(format!(
                    "{kind} expected {}, found {}",
                    spec.describe(),
                    describe_outlet(o)
                )),
                Some(_) => {}
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::Contract {
            path: path.to_owned(),
            problems: problems.join("; "),
        })
    }
}

/// Runs `task` on each worker with a consecutive, about equal share of the items `0..n`,
/// in parallel, and returns the results in item order. With one worker, or at most one
/// item, the first worker takes everything on the caller's thread.
pub fn share<W: Send, T: Send, E: Send>(
    workers: &mut [W],
    n: usize,
    task: impl Fn(&mut W, Range<usize>) -> Result<Vec<T>, E> + Sync,
) -> Result<Vec<T>, E> {
    if workers.len() == 1 || n <= 1 {
        return task(&mut workers[0], 0..n);
    }
    let chunk = n.div_ceil(workers.len());
    let results: Vec<Result<Vec<T>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .zip((0..n).step_by(chunk))
            .map(|(w, start)| {
                let task = &task;
                scope.spawn(move || task(w, start..(start + chunk).min(n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::with_capacity(n);
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimization_is_lowered_from_all_to_off_and_ends_there() {
        let mut order = vec![Optimization::default()];
        while let Some(next) = order.last().unwrap().lower() {
            order.push(next);
        }
        assert_eq!(
            order,
            [Optimization::All, Optimization::Basic, Optimization::Off]
        );
    }
}
