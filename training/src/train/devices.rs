//! The devices a run trains on, by name.

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::precision::Precision;

/// A device name that names no device this build can train on.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}` (expected flex or cuda:N)")]
    Unknown(String),
    #[error("bad CUDA device index `{0}`")]
    BadIndex(String),
    #[error("cuda:{index} asked for, but {visible} CUDA devices are visible")]
    NotVisible { index: usize, visible: usize },
    #[error(
        "this sd2-train was built without CUDA: rebuild with `cargo build --release -p sd2-train --features cuda`"
    )]
    NoCuda,
    #[error("{0} does not compute in bfloat16: train with --precision f32")]
    NoBf16(String),
}

/// Refuses a `precision` that device `name` (parsed as `device`) cannot compute in.
pub fn check_precision(
    name: &str,
    device: &Device,
    precision: Precision,
) -> Result<(), DeviceError> {
    match precision {
        Precision::Bf16 if !device.supports_dtype(FloatDType::BF16) => {
            Err(DeviceError::NoBf16(name.to_owned()))
        }
        _ => Ok(()),
    }
}

/// `flex` (the CPU) or `cuda:N`, with autodiff.
pub fn parse(name: &str) -> Result<Device, DeviceError> {
    let d = match name.trim() {
        "flex" | "cpu" => Device::flex(),
        cuda if cuda.starts_with("cuda") => cuda_device(
            cuda.strip_prefix("cuda")
                .unwrap_or("")
                .trim_start_matches(':'),
        )?,
        other => return Err(DeviceError::Unknown(other.to_owned())),
    };
    Ok(d.autodiff())
}

#[cfg(feature = "cuda")]
fn cuda_device(index: &str) -> Result<Device, DeviceError> {
    let i: usize = if index.is_empty() {
        0
    } else {
        index
            .parse()
            .map_err(|_| DeviceError::BadIndex(index.to_owned()))?
    };
    let available = Device::enumerate(burn::tensor::DeviceType::Cuda);
    if available.len() <= i {
        return Err(DeviceError::NotVisible {
            index: i,
            visible: available.len(),
        });
    }
    Ok(available[i].clone())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_: &str) -> Result<Device, DeviceError> {
    Err(DeviceError::NoCuda)
}
