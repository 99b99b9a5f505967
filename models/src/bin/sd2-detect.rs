//! Finds faces in image files with the MTCNN face stage and prints one JSON line per image.
//!
//!     sd2-detect [--model-dir DIR] [--device cpu|cuda|auto] [--threshold T] IMAGE...

use std::path::PathBuf;
use std::process::ExitCode;

use sd2_models::image::RgbImage;
use sd2_models::mtcnn::{Mtcnn, MtcnnConfig};
use sd2_models::paths;
use sd2_models::runtime::{Device, SessionConfig, UnknownDevice};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sd2-detect: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut model_dir = paths::model_dir().join("mtcnn");
    let mut device = Device::Cpu;
    let mut config = MtcnnConfig::default();
    let mut images = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--model-dir" => model_dir = PathBuf::from(value("--model-dir")?),
            "--device" => {
                device = value("--device")?
                    .parse()
                    .map_err(|e: UnknownDevice| e.to_string())?
            }
            "--threshold" => {
                config.face_threshold = value("--threshold")?
                    .parse()
                    .map_err(|e| format!("--threshold: {e}"))?
            }
            "-h" | "--help" => {
                println!(
                    "usage: sd2-detect [--model-dir DIR] [--device cpu|cuda|auto] [--threshold T] IMAGE..."
                );
                return Ok(());
            }
            _ => images.push(PathBuf::from(a)),
        }
    }
    if images.is_empty() {
        return Err("no image given (usage: sd2-detect [options] IMAGE...)".into());
    }
    let mut mtcnn = Mtcnn::load(&model_dir, device, SessionConfig::default(), config)
        .map_err(|e| e.to_string())?;
    for path in images {
        let img = RgbImage::open(&path).map_err(|e| e.to_string())?;
        let faces = mtcnn.detect(img.view()).map_err(|e| e.to_string())?;
        let line = serde_json::json!({
            "image": path.display().to_string(),
            "width": img.width,
            "height": img.height,
            "faces": faces,
        });
        println!("{line}");
    }
    Ok(())
}
