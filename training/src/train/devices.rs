//! The devices a run trains on, by name.

use burn::prelude::*;

/// `flex` (the CPU) or `cuda:N`, with autodiff.
pub fn parse(name: &str) -> Result<Device, String> {
    let d = match name.trim() {
        "flex" | "cpu" => Device::flex(),
        cuda if cuda.starts_with("cuda") => cuda_device(
            cuda.strip_prefix("cuda")
                .unwrap_or("")
                .trim_start_matches(':'),
        )?,
        other => {
            return Err(format!(
                "unknown device `{other}` (expected flex or cuda:N)"
            ));
        }
    };
    Ok(d.autodiff())
}

#[cfg(feature = "cuda")]
fn cuda_device(index: &str) -> Result<Device, String> {
    let i: usize = if index.is_empty() {
        0
    } else {
        index
            .parse()
            .map_err(|_| format!("bad CUDA device index `{index}`"))?
    };
    let available = Device::enumerate(burn::tensor::DeviceType::Cuda);
    if available.len() <= i {
        return Err(format!(
            "cuda:{i} asked for, but {} CUDA devices are visible",
            available.len()
        ));
    }
    Ok(available[i].clone())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_: &str) -> Result<Device, String> {
    Err("this sd2-train was built without CUDA: rebuild with `cargo build --release -p sd2-train --features cuda`".into())
}
