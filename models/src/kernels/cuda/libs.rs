//! CUDA's libraries, opened at run time like the rest of CUDA (nothing links against
//! them): the driver, NVRTC and cuBLASLt. cudarc's bindings open each by its soname the
//! first time one of its functions is called, and panic when there is none; so each
//! library is looked for here first, and a missing one is an error naming it.
//!
//! NVRTC is also looked for in [`nvrtc_dir`], where `scripts/setup.sh --gpu` puts the
//! pinned wheel's copy: opened there by its full path, it is what a later open by soname
//! finds. NVRTC opens its builtins library by soname too, so that one is opened first.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::paths;

/// NVRTC of CUDA 13, by soname.
pub const NVRTC: &str = "libnvrtc.so.13";
/// The start of its builtins' file name (`libnvrtc-builtins.so.13.0` for NVRTC 13.0).
const NVRTC_BUILTINS: &str = "libnvrtc-builtins.so.13";

/// `$SD2_NVRTC_DIR`, else `nvrtc/` in the cache, where `scripts/setup.sh --gpu` puts
/// NVRTC.
pub fn nvrtc_dir() -> PathBuf {
    std::env::var_os("SD2_NVRTC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::cache_dir().join("nvrtc"))
}

/// Libraries opened by path, held for the life of the process.
static NVRTC_OPENED: OnceLock<Result<Vec<libloading::Library>, String>> = OnceLock::new();

/// Makes NVRTC available to cudarc's bindings, or says where it was looked for.
pub fn nvrtc() -> Result<(), String> {
    NVRTC_OPENED
        .get_or_init(open_nvrtc)
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

fn open_nvrtc() -> Result<Vec<libloading::Library>, String> {
    let dir = nvrtc_dir();
    let mut held = Vec::new();
    if dir.join(NVRTC).is_file() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(NVRTC_BUILTINS))
            })
            .collect();
        files.sort();
        files.push(dir.join(NVRTC));
        for f in files {
            // SAFETY: NVRTC's libraries run no code of consequence when opened.
            let lib = unsafe { libloading::Library::new(&f) }
                .map_err(|e| format!("{} could not be opened: {e}", f.display()))?;
            held.push(lib);
        }
    }
    // SAFETY: only opens and closes candidate libraries by name.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(held)
    } else {
        Err(format!(
            "{NVRTC} is neither in {} nor on the library path (scripts/setup.sh --gpu installs it there; SD2_NVRTC_DIR names another folder)",
            dir.display()
        ))
    }
}

/// Whether the CUDA driver library (`libcuda.so.1`) can be opened.
pub fn driver() -> Result<(), String> {
    // SAFETY: only opens and closes candidate libraries by name.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "the CUDA driver (libcuda.so.1) is not installed: no NVIDIA driver on this machine"
                .into(),
        )
    }
}

/// Whether cuBLASLt (`libcublasLt.so.13`) can be opened.
pub fn cublaslt() -> Result<(), String> {
    // SAFETY: only opens and closes candidate libraries by name.
    if unsafe { cudarc::cublaslt::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("cuBLASLt (libcublasLt.so.13) is not on the library path, where ONNX Runtime's CUDA provider also needs it".into())
    }
}
