//! What the SD² trainer and the GStreamer elements share: the deepfake taxonomy, the face
//! crop recipe, the model contract, the ONNX writer, the MTCNN face stage and ONNX Runtime
//! sessions.

pub use ort;

pub mod analyzer;
pub mod atomic_write;
pub mod classifier;
pub mod contract;
pub mod crop;
pub mod cuda_gate;
pub mod image;
pub mod io_binding;
pub mod kernels;
pub mod mtcnn;
pub mod onnx;
pub mod paths;
pub mod runtime;
pub mod samples;
pub mod state_dict;
pub mod taxonomy;
pub mod tracker;
