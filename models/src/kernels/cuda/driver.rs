//! The CUDA driver calls the kernels make: finding the device, loading compiled kernels
//! into the context ONNX Runtime runs in, launching them, and allocating cuBLASLt's
//! workspace.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_void};
use std::ptr;
use std::sync::{Mutex, OnceLock};

use cudarc::driver::sys::{self, CUdevice_attribute, CUresult};

use super::{Gpu, libs};

/// The device the sessions run on.
const DEVICE: i32 = 0;

/// `r` as an error naming `what`.
pub fn check(r: CUresult, what: &str) -> Result<(), String> {
    if r == CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    let mut text = ptr::null();
    // SAFETY: cuGetErrorString writes a static string's address or leaves it null.
    unsafe { sys::cuGetErrorString(r, &mut text) };
    let text = if text.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated static string from the driver.
        format!(": {}", unsafe { CStr::from_ptr(text) }.to_string_lossy())
    };
    Err(format!("{what} failed ({r:?}{text})"))
}

/// Device 0's compute capability, after initialising the driver.
pub fn device() -> Result<Gpu, String> {
    libs::driver()?;
    // SAFETY: the driver library is present; the pointers are valid.
    unsafe {
        check(sys::cuInit(0), "cuInit").map_err(|e| format!("no usable CUDA device: {e}"))?;
        let mut dev = 0;
        check(sys::cuDeviceGet(&mut dev, DEVICE), "cuDeviceGet")?;
        let attr = |a| {
            let mut v = 0;
            check(
                sys::cuDeviceGetAttribute(&mut v, a, dev),
                "cuDeviceGetAttribute",
            )
            .map(|_| v)
        };
        Ok(Gpu {
            major: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            minor: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        })
    }
}

/// The current context: ONNX Runtime's (the device's primary context, which the CUDA
/// runtime makes current on the threads it runs on), made current here if a thread has
/// none.
fn context() -> Result<sys::CUcontext, String> {
    // SAFETY: plain driver calls with valid out-pointers.
    unsafe {
        let mut ctx = ptr::null_mut();
        check(sys::cuCtxGetCurrent(&mut ctx), "cuCtxGetCurrent")?;
        if ctx.is_null() {
            let mut dev = 0;
            check(sys::cuDeviceGet(&mut dev, DEVICE), "cuDeviceGet")?;
            check(
                sys::cuDevicePrimaryCtxRetain(&mut ctx, dev),
                "cuDevicePrimaryCtxRetain",
            )?;
            check(sys::cuCtxSetCurrent(ctx), "cuCtxSetCurrent")?;
        }
        Ok(ctx)
    }
}

/// Modules loaded, by compiled image and context; kept for the life of the process (as
/// few as there are sources).
static MODULES: OnceLock<Mutex<HashMap<(usize, usize), usize>>> = OnceLock::new();

/// The function `name` of `image` (a cubin) in the current context, loading the image the
/// first time.
pub fn function(image: &'static [u8], name: &str) -> Result<sys::CUfunction, String> {
    let ctx = context()?;
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (image.as_ptr() as usize, ctx as usize);
    let module = match modules.get(&key) {
        Some(&m) => m as sys::CUmodule,
        None => {
            let mut m = ptr::null_mut();
            // SAFETY: `image` is a cubin NVRTC made for this device; it outlives the module.
            check(
                unsafe { sys::cuModuleLoadData(&mut m, image.as_ptr().cast::<c_void>()) },
                "cuModuleLoadData",
            )?;
            modules.insert(key, m as usize);
            m
        }
    };
    let cname = CString::new(name).expect("kernel names hold no NUL");
    let mut f = ptr::null_mut();
    // SAFETY: a loaded module and a valid name.
    check(
        unsafe { sys::cuModuleGetFunction(&mut f, module, cname.as_ptr()) },
        &format!("finding kernel {name}"),
    )?;
    Ok(f)
}

/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;

/// Launches `f` on `stream` over `items` work items (each kernel strides over the grid, so
/// the grid is capped); `args` point at the kernel's arguments, in order.
pub fn launch(
    f: sys::CUfunction,
    items: u64,
    stream: *mut c_void,
    args: &mut [*mut c_void],
) -> Result<(), String> {
    let blocks = items.div_ceil(u64::from(THREADS)).clamp(1, 1 << 16) as u32;
    // SAFETY: `args` match the kernel's parameters (the callers' contract), and `stream`
    // is ONNX Runtime's stream of the current context.
    check(
        unsafe {
            sys::cuLaunchKernel(
                f,
                blocks,
                1,
                1,
                THREADS,
                1,
                1,
                0,
                stream.cast(),
                args.as_mut_ptr(),
                ptr::null_mut(),
            )
        },
        "cuLaunchKernel",
    )
}

/// cuBLASLt's workspace: one per stream, since the GEMMs of one stream run one after
/// another. Allocated at a stream's first GEMM (ONNX Runtime runs a model once before it
/// captures a CUDA graph, so never during a capture) and kept.
pub const WORKSPACE: usize = 32 << 20;

static WORKSPACES: OnceLock<Mutex<HashMap<usize, u64>>> = OnceLock::new();

/// The workspace of `stream`.
pub fn workspace(stream: *mut c_void) -> Result<u64, String> {
    let mut spaces = WORKSPACES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(&p) = spaces.get(&(stream as usize)) {
        return Ok(p);
    }
    context()?;
    let mut p = 0;
    // SAFETY: a valid out-pointer; the memory is kept for the life of the process.
    check(
        unsafe { sys::cuMemAlloc_v2(&mut p, WORKSPACE) },
        "allocating cuBLASLt's workspace",
    )?;
    spaces.insert(stream as usize, p);
    Ok(p)
}
