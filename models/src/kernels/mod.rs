//! SD²'s own ONNX Runtime operators, domain [`DOMAIN`]: what the `sd2` graph
//! (`sd2-train export --kernels sd2`) computes where ONNX Runtime has no fused kernel.
//!
//! | operator | computes |
//! | --- | --- |
//! | `Linear(X, W, B?)` | `X·W + B`, `W` as `[in, out]`; on CUDA a cuBLASLt GEMM with the bias in its epilogue |
//! | `BiasQuickGelu(X, B)` | `v·σ(1.702 v)` of `v = X + B`, one pass over `X` |
//! | `QuantizeE4M3(X, S)` | `X / S` rounded to FP8 E4M3 ([`e4m3`]), as `uint8` codes |
//! | `BiasQuickGeluE4M3(X, B, S)` | `BiasQuickGelu` quantised as `QuantizeE4M3` does, in the same pass |
//! | `LinearE4M3(Q, W, SQ, SW, B)` | `(Q·Wᵀ)·SQ·SW + B` of E4M3 codes, `W` as `[out, in]`, scales per tensor; on CUDA an FP8 cuBLASLt GEMM |
//!
//! `X`, `W`, `B` and the outputs are float32 or float16 (the same in one node), scales
//! float32 scalars, E4M3 tensors `uint8`. Every operator has a CPU kernel, a plain and
//! exact implementation (the FP8 ones emulate the GPU's arithmetic up to the order of
//! accumulation), so an `sd2` graph runs, and is tested, anywhere; and a CUDA kernel
//! ([`cuda`]): NVRTC compiles the element-wise kernels when a session loads, cuBLASLt runs
//! the GEMMs, all on ONNX Runtime's compute stream, so CUDA graphs capture them. The FP8
//! kernels need compute capability 8.9 or newer.
//!
//! [`register`] gives a session the domain; [`requirements`] checks, before a session
//! opens, that the device asked for can run a model file's graph.

mod cpu;
pub mod cuda;
pub mod e4m3;
mod ops;
pub mod requirements;

use ort::operator::OperatorDomain;

/// The operator domain of SD²'s kernels.
pub const DOMAIN: &str = "com.sd2";
/// Its version, which the graphs import.
pub const OPSET: i64 = 1;

/// SD²'s operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Linear,
    BiasQuickGelu,
    QuantizeE4M3,
    BiasQuickGeluE4M3,
    LinearE4M3,
}

impl Op {
    pub const ALL: [Op; 5] = [
        Op::Linear,
        Op::BiasQuickGelu,
        Op::QuantizeE4M3,
        Op::BiasQuickGeluE4M3,
        Op::LinearE4M3,
    ];

    /// The operator's name in a graph.
    pub fn name(self) -> &'static str {
        match self {
            Op::Linear => "Linear",
            Op::BiasQuickGelu => "BiasQuickGelu",
            Op::QuantizeE4M3 => "QuantizeE4M3",
            Op::BiasQuickGeluE4M3 => "BiasQuickGeluE4M3",
            Op::LinearE4M3 => "LinearE4M3",
        }
    }

    /// Whether it computes with FP8 (needs compute capability 8.9 on CUDA).
    pub fn fp8(self) -> bool {
        matches!(
            self,
            Op::QuantizeE4M3 | Op::BiasQuickGeluE4M3 | Op::LinearE4M3
        )
    }
}

/// The element type of an operator's float tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    F16,
}

/// `x · σ(1.702 x)`, written as the CUDA kernels compute it.
pub fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + (-1.702 * x).exp())
}

/// The domain a session of `device` registers: the CPU kernels always, and on CUDA the
/// CUDA kernels when [`cuda::available`] (else nodes of an `sd2` graph would fall back to
/// the CPU, which [`requirements`] refuses before a session opens). Every operator for
/// both element types.
pub fn register(cuda: bool) -> Result<OperatorDomain, ort::Error> {
    let mut domain = OperatorDomain::new(DOMAIN)?;
    let gpu = if cuda { cuda::available().ok() } else { None };
    for op in Op::ALL {
        for elem in [Elem::F32, Elem::F16] {
            domain = domain.add(ops::Sd2Operator::cpu(op, elem))?;
            if let Some(gpu) = gpu
                && ops::Sd2Operator::runs_on_cuda(op, elem, gpu)
            {
                domain = domain.add(ops::Sd2Operator::cuda(op, elem))?;
            }
        }
    }
    Ok(domain)
}
