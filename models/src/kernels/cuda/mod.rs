//! The CUDA kernels of SD²'s operators: NVRTC compiles the element-wise ones ([`source`])
//! for the GPU at hand when a session creates its kernels, cuBLASLt runs the GEMMs
//! ([`blas`]); every launch goes on ONNX Runtime's compute stream of the node and nothing
//! allocates or synchronises during a run once the first run of a shape has passed, so a
//! CUDA graph captures them. Device 0, the one ONNX Runtime's CUDA provider uses by
//! default and this project's sessions run on.

mod blas;
mod driver;
mod kernel;
pub mod libs;
pub mod nvrtc;
pub mod source;

use std::sync::OnceLock;

pub use kernel::Kernel;

/// The GPU the kernels run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// Compute capability.
    pub major: i32,
    pub minor: i32,
}

impl Gpu {
    /// The compute capability as 10·major + minor (90 for Hopper).
    pub fn arch(&self) -> u32 {
        (self.major * 10 + self.minor) as u32
    }

    /// Whether its tensor cores multiply FP8 (compute capability 8.9 and newer).
    pub fn has_fp8(&self) -> bool {
        self.arch() >= FP8_ARCH
    }
}

/// The compute capability from which GPUs multiply FP8 (Ada Lovelace, then Hopper).
pub const FP8_ARCH: u32 = 89;

/// What the CUDA kernels need and this machine lacks, each with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Missing(pub Vec<String>);

static PROBED: OnceLock<Result<Gpu, Missing>> = OnceLock::new();

/// The GPU, when the driver, a device, NVRTC and cuBLASLt are all there; else everything
/// that is missing. Looked for once per process.
pub fn available() -> Result<&'static Gpu, &'static Missing> {
    PROBED.get_or_init(probe).as_ref()
}

fn probe() -> Result<Gpu, Missing> {
    let mut missing = Vec::new();
    let gpu = driver::device().map_err(|e| missing.push(e)).ok();
    if let Err(e) = libs::nvrtc() {
        missing.push(format!("NVRTC, which compiles the kernels: {e}"));
    }
    if let Err(e) = libs::cublaslt() {
        missing.push(e);
    }
    match gpu {
        Some(gpu) if missing.is_empty() => Ok(gpu),
        _ => Err(Missing(missing)),
    }
}
