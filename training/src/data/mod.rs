//! Training data: the manifest, imports into it, augmentation and the batch loader.

pub mod augment;
pub mod deepfakebench;
pub mod loader;
pub mod manifest;
pub mod rng;
pub mod synthetic;
