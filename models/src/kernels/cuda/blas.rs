//! The GEMMs of `Linear` and `LinearE4M3` through cuBLASLt, the bias in the epilogue.
//!
//! cuBLASLt is column-major; a row-major `[rows, cols]` matrix is its `cols × rows`. So
//! `Y[M, N] = X[M, K]·W + B` is computed as `Yᵀ = op(W)·Xᵀ` with cuBLASLt's `m = N`,
//! `n = M`, `k = K`, and the bias, one value per row of `Yᵀ`, broadcast along its columns
//! as the `BIAS` epilogue does. `Linear`'s `W` is `[K, N]` (no transposition); the FP8
//! GEMM wants its `A` transposed (its "TN" layout), which is why `LinearE4M3`'s `W` is
//! stored `[N, K]`.

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::{size_of, size_of_val};
use std::ptr;
use std::sync::OnceLock;

use cudarc::cublaslt::sys::{
    self, cublasComputeType_t, cublasLtEpilogue_t, cublasLtMatmulDescAttributes_t as Attr,
    cublasLtMatmulPreferenceAttributes_t as Pref, cublasStatus_t, cudaDataType,
};

use super::driver;

/// `cublasOperation_t` (cublas_api.h).
const OP_N: i32 = 0;
const OP_T: i32 = 1;

fn check(s: cublasStatus_t, what: &str) -> Result<(), String> {
    if s == cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed ({s:?})"))
    }
}

/// The process's cuBLASLt handle (it holds no stream, and cuBLASLt lets threads share it).
fn handle() -> Result<sys::cublasLtHandle_t, String> {
    static HANDLE: OnceLock<Result<usize, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut h = ptr::null_mut();
            // SAFETY: cuBLASLt is present (checked with the rest of CUDA); valid pointer.
            check(unsafe { sys::cublasLtCreate(&mut h) }, "cublasLtCreate")?;
            Ok(h as usize)
        })
        .clone()
        .map(|h| h as sys::cublasLtHandle_t)
}

/// Which GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F32,
    F16,
    /// E4M3 inputs with per-tensor scales, float16 output and bias.
    E4M3,
}

/// One node's GEMM: `n` outputs and `k` inputs per row; plans per number of rows.
pub struct Gemm {
    kind: Kind,
    n: u64,
    k: u64,
    bias: bool,
    desc: sys::cublasLtMatmulDesc_t,
    /// The layout of the weights, the same for every run.
    a: sys::cublasLtMatrixLayout_t,
    plans: HashMap<u64, Plan>,
}

/// What a GEMM of `m` rows runs with.
struct Plan {
    b: sys::cublasLtMatrixLayout_t,
    d: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

/// The device pointers of one GEMM.
pub struct Operands {
    pub x: u64,
    pub w: u64,
    pub bias: Option<u64>,
    /// `LinearE4M3`'s scales of X and W.
    pub scales: Option<(u64, u64)>,
    pub y: u64,
}

fn layout(
    t: cudaDataType,
    rows: u64,
    cols: u64,
    ld: u64,
) -> Result<sys::cublasLtMatrixLayout_t, String> {
    let mut l = ptr::null_mut();
    // SAFETY: valid out-pointer; plain sizes.
    check(
        unsafe { sys::cublasLtMatrixLayoutCreate(&mut l, t, rows, cols, ld as i64) },
        "cublasLtMatrixLayoutCreate",
    )?;
    Ok(l)
}

fn set<T>(desc: sys::cublasLtMatmulDesc_t, attr: Attr, value: &T) -> Result<(), String> {
    // SAFETY: `value` is the attribute's C type (an enum, an int32 or a pointer).
    check(
        unsafe {
            sys::cublasLtMatmulDescSetAttribute(
                desc,
                attr,
                (value as *const T).cast::<c_void>(),
                size_of_val(value),
            )
        },
        "cublasLtMatmulDescSetAttribute",
    )
}

impl Gemm {
    /// The GEMM of a node whose weights are `n` outputs by `k` inputs.
    pub fn new(kind: Kind, n: u64, k: u64, bias: bool) -> Result<Self, String> {
        let (input, output) = match kind {
            Kind::F32 => (cudaDataType::CUDA_R_32F, cudaDataType::CUDA_R_32F),
            Kind::F16 => (cudaDataType::CUDA_R_16F, cudaDataType::CUDA_R_16F),
            Kind::E4M3 => (cudaDataType::CUDA_R_8F_E4M3, cudaDataType::CUDA_R_16F),
        };
        let mut desc = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(
            unsafe {
                sys::cublasLtMatmulDescCreate(
                    &mut desc,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cudaDataType::CUDA_R_32F,
                )
            },
            "cublasLtMatmulDescCreate",
        )?;
        let transposed = kind == Kind::E4M3;
        set(
            desc,
            Attr::CUBLASLT_MATMUL_DESC_TRANSA,
            &if transposed { OP_T } else { OP_N },
        )?;
        set(desc, Attr::CUBLASLT_MATMUL_DESC_TRANSB, &OP_N)?;
        let epilogue = if bias {
            cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS
        } else {
            cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT
        };
        set(desc, Attr::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue)?;
        if bias {
            set(desc, Attr::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &output)?;
        }
        let a = if transposed {
            layout(input, k, n, k)?
        } else {
            layout(input, n, k, n)?
        };
        Ok(Gemm {
            kind,
            n,
            k,
            bias,
            desc,
            a,
            plans: HashMap::new(),
        })
    }

    /// Whether this GEMM was made for weights of `n` by `k` and a bias or none.
    pub fn fits(&self, n: u64, k: u64, bias: bool) -> bool {
        (self.n, self.k, self.bias) == (n, k, bias)
    }

    fn plan(&mut self, m: u64) -> Result<&Plan, String> {
        if !self.plans.contains_key(&m) {
            let (input, output) = match self.kind {
                Kind::F32 => (cudaDataType::CUDA_R_32F, cudaDataType::CUDA_R_32F),
                Kind::F16 => (cudaDataType::CUDA_R_16F, cudaDataType::CUDA_R_16F),
                Kind::E4M3 => (cudaDataType::CUDA_R_8F_E4M3, cudaDataType::CUDA_R_16F),
            };
            let b = layout(input, self.k, m, self.k)?;
            let d = layout(output, self.n, m, self.n)?;
            let algo = self.heuristic(b, d)?;
            self.plans.insert(m, Plan { b, d, algo });
        }
        Ok(&self.plans[&m])
    }

    /// cuBLASLt's first choice for these layouts within the workspace.
    fn heuristic(
        &self,
        b: sys::cublasLtMatrixLayout_t,
        d: sys::cublasLtMatrixLayout_t,
    ) -> Result<sys::cublasLtMatmulAlgo_t, String> {
        let mut pref = ptr::null_mut();
        // SAFETY: valid pointers throughout; the preference is destroyed before returning.
        unsafe {
            check(
                sys::cublasLtMatmulPreferenceCreate(&mut pref),
                "cublasLtMatmulPreferenceCreate",
            )?;
            let bytes = driver::WORKSPACE as u64;
            let r = check(
                sys::cublasLtMatmulPreferenceSetAttribute(
                    pref,
                    Pref::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    (&bytes as *const u64).cast::<c_void>(),
                    size_of::<u64>(),
                ),
                "cublasLtMatmulPreferenceSetAttribute",
            )
            .and_then(|_| {
                let mut result: sys::cublasLtMatmulHeuristicResult_t = std::mem::zeroed();
                let mut found = 0;
                check(
                    sys::cublasLtMatmulAlgoGetHeuristic(
                        handle()?,
                        self.desc,
                        self.a,
                        b,
                        d,
                        d,
                        pref,
                        1,
                        &mut result,
                        &mut found,
                    ),
                    "cublasLtMatmulAlgoGetHeuristic",
                )?;
                if found == 0 {
                    return Err(format!(
                        "cuBLASLt has no {:?} GEMM for {} outputs of {} inputs",
                        self.kind, self.n, self.k
                    ));
                }
                Ok(result.algo)
            });
            sys::cublasLtMatmulPreferenceDestroy(pref);
            r
        }
    }

    /// `Y = X·W + B` over `m` rows, on `stream`.
    pub fn run(&mut self, m: u64, ops: &Operands, stream: *mut c_void) -> Result<(), String> {
        if let Some(b) = ops.bias {
            set(self.desc, Attr::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b)?;
        }
        if let Some((sx, sw)) = ops.scales {
            // cuBLASLt's A is W, its B is X.
            set(self.desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw)?;
            set(self.desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx)?;
        }
        let workspace = driver::workspace(stream)?;
        let handle = handle()?;
        let (desc, a) = (self.desc, self.a);
        let plan = self.plan(m)?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // SAFETY: the operands are device buffers of the shapes the layouts describe (the
        // kernel checked the tensors' shapes), on the stream's device.
        check(
            unsafe {
                sys::cublasLtMatmul(
                    handle,
                    desc,
                    (&alpha as *const f32).cast(),
                    ops.w as *const c_void,
                    a,
                    ops.x as *const c_void,
                    plan.b,
                    (&beta as *const f32).cast(),
                    ops.y as *const c_void,
                    plan.d,
                    ops.y as *mut c_void,
                    plan.d,
                    &plan.algo,
                    workspace as *mut c_void,
                    driver::WORKSPACE,
                    stream.cast(),
                )
            },
            "cublasLtMatmul",
        )
    }
}

impl Drop for Gemm {
    fn drop(&mut self) {
        // SAFETY: each descriptor and layout was created once and is destroyed once.
        unsafe {
            for p in self.plans.values() {
                sys::cublasLtMatrixLayoutDestroy(p.b);
                sys::cublasLtMatrixLayoutDestroy(p.d);
            }
            sys::cublasLtMatrixLayoutDestroy(self.a);
            sys::cublasLtMatmulDescDestroy(self.desc);
        }
    }
}
