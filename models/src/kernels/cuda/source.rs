//! The CUDA source of the element-wise kernels, compiled by NVRTC when a session loads.
//!
//! Self-contained: no header is included (NVRTC ships none of `cuda_fp16.h` or
//! `cuda_fp8.h`), so float16 and E4M3 conversions are single PTX instructions. Float16
//! kernels move 8 values (16 bytes) per thread and step, the widest load a thread issues,
//! which is what streams at memory bandwidth; a `_scalar` variant takes rows whose length
//! is not a multiple of 8. Every kernel strides over the grid, so any grid covers any size.

/// One compilation unit.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub name: &'static str,
    pub code: &'static str,
    /// The kernels it defines.
    pub kernels: &'static [&'static str],
    /// The lowest compute capability (as 10·major + minor) it compiles for.
    pub min_arch: u32,
}

/// Types and conversions every unit shares.
macro_rules! prelude {
    () => {
        r#"
typedef unsigned short half_t;
typedef unsigned char e4m3_t;

__device__ __forceinline__ float h2f(half_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ half_t f2h(float f) {
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// x * sigmoid(1.702 x), as the CPU kernels compute it.
__device__ __forceinline__ float quick_gelu(float x) {
    return x / (1.0f + expf(-1.702f * x));
}

__device__ __forceinline__ void unpack8(uint4 v, float* f) {
    unsigned int w[4] = {v.x, v.y, v.z, v.w};
    #pragma unroll
    for (int j = 0; j < 4; ++j) {
        f[2 * j] = h2f((half_t)(w[j] & 0xffffu));
        f[2 * j + 1] = h2f((half_t)(w[j] >> 16));
    }
}

__device__ __forceinline__ uint4 pack8(const float* f) {
    unsigned int w[4];
    #pragma unroll
    for (int j = 0; j < 4; ++j) {
        w[j] = (unsigned int)f2h(f[2 * j]) | ((unsigned int)f2h(f[2 * j + 1]) << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ long long first_index(int per_thread) {
    return ((long long)blockIdx.x * blockDim.x + threadIdx.x) * per_thread;
}

__device__ __forceinline__ long long grid_step(int per_thread) {
    return (long long)gridDim.x * blockDim.x * per_thread;
}

// The column of a thread's element as it strides over the grid, kept without a 64-bit
// division per step (the step is the same every time).
struct Columns {
    int col, step, cols;
    __device__ __forceinline__ Columns(long long first, long long stride, int n)
        : col((int)(first % n)), step((int)(stride % n)), cols(n) {}
    __device__ __forceinline__ void next() {
        col += step;
        if (col >= cols) col -= cols;
    }
};
"#
    };
}

macro_rules! elementwise {
    () => {
        r#"
// y = quick_gelu(x + b), b broadcast over rows of `cols`; n and cols multiples of 8.
extern "C" __global__ void bias_quick_gelu_f16(const half_t* __restrict__ x,
        const half_t* __restrict__ b, half_t* __restrict__ y, long long n, int cols) {
    Columns c(first_index(8), grid_step(8), cols);
    for (long long i = first_index(8); i < n; i += grid_step(8), c.next()) {
        float xv[8], bv[8];
        unpack8(*reinterpret_cast<const uint4*>(x + i), xv);
        unpack8(*reinterpret_cast<const uint4*>(b + c.col), bv);
        #pragma unroll
        for (int j = 0; j < 8; ++j) xv[j] = quick_gelu(xv[j] + bv[j]);
        *reinterpret_cast<uint4*>(y + i) = pack8(xv);
    }
}

extern "C" __global__ void bias_quick_gelu_f16_scalar(const half_t* __restrict__ x,
        const half_t* __restrict__ b, half_t* __restrict__ y, long long n, int cols) {
    for (long long i = first_index(1); i < n; i += grid_step(1)) {
        y[i] = f2h(quick_gelu(h2f(x[i]) + h2f(b[i % cols])));
    }
}

extern "C" __global__ void bias_quick_gelu_f32(const float* __restrict__ x,
        const float* __restrict__ b, float* __restrict__ y, long long n, int cols) {
    for (long long i = first_index(1); i < n; i += grid_step(1)) {
        y[i] = quick_gelu(x[i] + b[i % cols]);
    }
}
"#
    };
}

macro_rules! fp8 {
    () => {
        r#"
// Two floats to two E4M3 codes, `lo` in the low byte: round to nearest even, saturating at
// +-448, NaN to NaN (sm_89 and newer).
__device__ __forceinline__ unsigned short e4m3x2(float lo, float hi) {
    unsigned short r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
    return r;
}

// Codes of f * inv, inv being 1 / scale (as the CPU kernels compute it).
__device__ __forceinline__ uint2 quantize8(const float* f, float inv) {
    unsigned int w[2];
    #pragma unroll
    for (int j = 0; j < 2; ++j) {
        w[j] = (unsigned int)e4m3x2(f[4 * j] * inv, f[4 * j + 1] * inv)
             | ((unsigned int)e4m3x2(f[4 * j + 2] * inv, f[4 * j + 3] * inv) << 16);
    }
    return make_uint2(w[0], w[1]);
}

__device__ __forceinline__ e4m3_t quantize1(float f, float inv) {
    return (e4m3_t)(e4m3x2(f * inv, 0.0f) & 0xffu);
}

// q = e4m3(x / s), as x * (1 / s); n a multiple of 8.
extern "C" __global__ void quantize_e4m3_f16(const half_t* __restrict__ x,
        const float* __restrict__ scale, e4m3_t* __restrict__ q, long long n) {
    const float inv = 1.0f / *scale;
    for (long long i = first_index(8); i < n; i += grid_step(8)) {
        float xv[8];
        unpack8(*reinterpret_cast<const uint4*>(x + i), xv);
        *reinterpret_cast<uint2*>(q + i) = quantize8(xv, inv);
    }
}

extern "C" __global__ void quantize_e4m3_f16_scalar(const half_t* __restrict__ x,
        const float* __restrict__ scale, e4m3_t* __restrict__ q, long long n) {
    const float inv = 1.0f / *scale;
    for (long long i = first_index(1); i < n; i += grid_step(1)) {
        q[i] = quantize1(h2f(x[i]), inv);
    }
}

// q = e4m3(quick_gelu(x + b) / s), as quantize_e4m3_f16 computes it; n and cols multiples
// of 8.
extern "C" __global__ void bias_quick_gelu_e4m3_f16(const half_t* __restrict__ x,
        const half_t* __restrict__ b, const float* __restrict__ scale,
        e4m3_t* __restrict__ q, long long n, int cols) {
    const float inv = 1.0f / *scale;
    Columns c(first_index(8), grid_step(8), cols);
    for (long long i = first_index(8); i < n; i += grid_step(8), c.next()) {
        float xv[8], bv[8];
        unpack8(*reinterpret_cast<const uint4*>(x + i), xv);
        unpack8(*reinterpret_cast<const uint4*>(b + c.col), bv);
        #pragma unroll
        for (int j = 0; j < 8; ++j) xv[j] = quick_gelu(xv[j] + bv[j]);
        *reinterpret_cast<uint2*>(q + i) = quantize8(xv, inv);
    }
}

extern "C" __global__ void bias_quick_gelu_e4m3_f16_scalar(const half_t* __restrict__ x,
        const half_t* __restrict__ b, const float* __restrict__ scale,
        e4m3_t* __restrict__ q, long long n, int cols) {
    const float s = *scale;
    for (long long i = first_index(1); i < n; i += grid_step(1)) {
        q[i] = quantize1(quick_gelu(h2f(x[i]) + h2f(b[i % cols])), s);
    }
}
"#
    };
}

/// The element-wise kernels, for every GPU CUDA 13 supports (Turing and newer).
pub const ELEMENTWISE_SOURCE: Source = Source {
    name: "sd2_elementwise.cu",
    code: concat!(prelude!(), elementwise!()),
    kernels: &[
        "bias_quick_gelu_f16",
        "bias_quick_gelu_f16_scalar",
        "bias_quick_gelu_f32",
    ],
    min_arch: 75,
};

/// The FP8 kernels (compute capability 8.9: Ada, Hopper and newer).
pub const FP8_SOURCE: Source = Source {
    name: "sd2_fp8.cu",
    code: concat!(prelude!(), fp8!()),
    kernels: &[
        "quantize_e4m3_f16",
        "quantize_e4m3_f16_scalar",
        "bias_quick_gelu_e4m3_f16",
        "bias_quick_gelu_e4m3_f16_scalar",
    ],
    min_arch: 89,
};

/// Every source, for compiling them all (the PTX test, and a GPU at load).
pub const SOURCES: [Source; 2] = [ELEMENTWISE_SOURCE, FP8_SOURCE];
