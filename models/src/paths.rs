//! Where the project's installed artifacts live.
//!
//! `scripts/setup.sh` caches everything it installs under `.cache/sd2` in the project
//! (ONNX Runtime, MTCNN weights and their ONNX conversions, the CLIP vocabulary, sample
//! faces). Programs built from this checkout find them there; environment variables point
//! elsewhere for an installed plugin.

use std::path::PathBuf;

/// The ONNX Runtime release this project is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// `$SD2_CACHE_DIR`, else `.cache/sd2` in the checkout this was built from.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SD2_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/sd2")))
}

/// `$ORT_DYLIB_PATH`, else the CPU build of ONNX Runtime that setup extracted.
pub fn ort_dylib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            cache_dir()
                .join("onnxruntime")
                .join(format!("libonnxruntime.so.{ORT_VERSION}"))
        })
}

/// `$SD2_MODEL_DIR`, else `models/` in the cache: holds `mtcnn/` and the default SD² model.
pub fn model_dir() -> PathBuf {
    std::env::var_os("SD2_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("models"))
}

/// CLIP's BPE vocabulary, which setup extracted from the `open-clip-torch` wheel.
pub fn clip_vocab() -> PathBuf {
    cache_dir().join("clip/bpe_simple_vocab_16e6.txt.gz")
}

/// Sample images (`astronaut.png`, `t1.jpg`) that setup extracted from their wheels.
pub fn samples_dir() -> PathBuf {
    cache_dir().join("samples")
}
