//! Writing ONNX models from weights held in memory.
//!
//! burn 0.22 cannot export attention or LayerNorm, and the MTCNN weights come from PyTorch
//! files, so every ONNX file this project ships is written here: [`Graph`] builds the
//! computation, [`Model`] adds opsets and `metadata_props` and serialises it with the
//! message definitions in [`proto`].

mod graph;
pub mod proto;

pub use graph::{Attr, DEFAULT_OPSET, Dim, Graph, IR_VERSION, Model, Precision};
pub use proto::DataType;
