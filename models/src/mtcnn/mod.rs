//! MTCNN face detection (Zhang et al., 2016) as facenet-pytorch 2.6.0 implements it:
//! its P-Net, R-Net and O-Net weights converted to ONNX ([`nets`]), and the cascade that
//! runs them through ONNX Runtime ([`Mtcnn`]).

mod area;
mod detector;
pub mod nets;
pub mod nms;
mod sessions;

pub use area::{IntegralImage, normalise};
pub use detector::{Face, Mtcnn, MtcnnConfig, MtcnnError, pyramid};
pub use sessions::MAX_SHAPE_SESSIONS;
