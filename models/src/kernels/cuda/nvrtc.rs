//! Compiling the kernels with NVRTC, which needs no GPU: PTX for a virtual architecture
//! (what the test on a machine without a GPU checks), or a cubin for the GPU at hand (what
//! a session loads: machine code needs no JIT by a driver that may be older than NVRTC).

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use cudarc::nvrtc::sys;

use super::libs;
use super::source::Source;

/// What to compile to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// PTX for `compute_XY` (XY = 10·major + minor).
    Ptx(u32),
    /// Machine code for `sm_XY`.
    Cubin(u32),
}

impl Target {
    fn arch(self) -> u32 {
        match self {
            Target::Ptx(a) | Target::Cubin(a) => a,
        }
    }
}

/// Why a source did not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("NVRTC cannot be used: {0}")]
    Unavailable(String),
    #[error("{unit} needs compute capability {need} or newer, not {arch}")]
    Arch {
        unit: &'static str,
        need: u32,
        arch: u32,
    },
    #[error("NVRTC failed on {unit} for {target:?} ({step}: {code:?}){log}")]
    Nvrtc {
        unit: &'static str,
        target: Target,
        step: &'static str,
        code: sys::nvrtcResult,
        log: String,
    },
}

/// NVRTC's version (major, minor), once the library is found.
pub fn version() -> Result<(i32, i32), String> {
    libs::nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is loaded (libs::nvrtc) and both pointers are valid.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(format!("nvrtcVersion failed: {r:?}"));
    }
    Ok((major, minor))
}

/// A program, destroyed when dropped.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed once.
        unsafe {
            sys::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

/// Compiles `source` to `target`: PTX text (NUL-terminated) or cubin bytes, either of which
/// `cuModuleLoadData` takes.
pub fn compile(source: &Source, target: Target) -> Result<Vec<u8>, CompileError> {
    libs::nvrtc().map_err(CompileError::Unavailable)?;
    if target.arch() < source.min_arch {
        return Err(CompileError::Arch {
            unit: source.name,
            need: source.min_arch,
            arch: target.arch(),
        });
    }
    let fail = |step, code, log: String| CompileError::Nvrtc {
        unit: source.name,
        target,
        step,
        code,
        log,
    };
    let code = CString::new(source.code).expect("sources hold no NUL");
    let name = CString::new(source.name).expect("names hold no NUL");
    let mut raw = ptr::null_mut();
    // SAFETY: the strings outlive the call; no headers are passed.
    let r = unsafe {
        sys::nvrtcCreateProgram(
            &mut raw,
            code.as_ptr(),
            name.as_ptr(),
            0,
            ptr::null(),
            ptr::null(),
        )
    };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail("nvrtcCreateProgram", r, String::new()));
    }
    let program = Program(raw);
    let arch = match target {
        Target::Ptx(a) => format!("--gpu-architecture=compute_{a}"),
        Target::Cubin(a) => format!("--gpu-architecture=sm_{a}"),
    };
    let options = [
        CString::new(arch).expect("no NUL"),
        c"--std=c++17".to_owned(),
    ];
    let pointers: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: `pointers` holds valid C strings that outlive the call.
    let r =
        unsafe { sys::nvrtcCompileProgram(program.0, pointers.len() as i32, pointers.as_ptr()) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail("nvrtcCompileProgram", r, log(&program)));
    }
    type SizeOf = unsafe fn(sys::nvrtcProgram, *mut usize) -> sys::nvrtcResult;
    type Get = unsafe fn(sys::nvrtcProgram, *mut c_char) -> sys::nvrtcResult;
    let (size_of, get): (SizeOf, Get) = match target {
        Target::Ptx(_) => (sys::nvrtcGetPTXSize, sys::nvrtcGetPTX),
        Target::Cubin(_) => (sys::nvrtcGetCUBINSize, sys::nvrtcGetCUBIN),
    };
    let mut size = 0usize;
    // SAFETY: the program compiled; `size` is valid.
    let r = unsafe { size_of(program.0, &mut size) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail("getting the output's size", r, String::new()));
    }
    let mut image = vec![0u8; size];
    // SAFETY: `image` holds the `size` bytes NVRTC reported.
    let r = unsafe { get(program.0, image.as_mut_ptr().cast::<c_char>()) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail("getting the output", r, String::new()));
    }
    Ok(image)
}

/// The compiler's log, as a message's tail.
fn log(program: &Program) -> String {
    let mut size = 0usize;
    // SAFETY: a valid program and a valid size pointer.
    if unsafe { sys::nvrtcGetProgramLogSize(program.0, &mut size) }
        != sys::nvrtcResult::NVRTC_SUCCESS
        || size <= 1
    {
        return String::new();
    }
    let mut text = vec![0u8; size];
    // SAFETY: `text` holds the `size` bytes NVRTC reported.
    unsafe { sys::nvrtcGetProgramLog(program.0, text.as_mut_ptr().cast::<c_char>()) };
    let text = CStr::from_bytes_until_nul(&text)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(":\n{}", text.trim_end())
}
