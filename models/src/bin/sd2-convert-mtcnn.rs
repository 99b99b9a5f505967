//! Converts facenet-pytorch's MTCNN weights (`pnet.pt`, `rnet.pt`, `onet.pt`) to ONNX.
//!
//!     sd2-convert-mtcnn WEIGHTS_DIR OUT_DIR

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, out] = args.as_slice() else {
        eprintln!(
            "usage: sd2-convert-mtcnn WEIGHTS_DIR OUT_DIR\n  reads pnet.pt, rnet.pt, onet.pt from WEIGHTS_DIR (facenet-pytorch's data/) and writes pnet.onnx, rnet.onnx, onet.onnx to OUT_DIR"
        );
        return ExitCode::from(2);
    };
    match sd2_models::mtcnn::nets::export_all(&PathBuf::from(weights), &PathBuf::from(out)) {
        Ok(paths) => {
            for p in paths {
                println!("wrote {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sd2-convert-mtcnn: {e}");
            ExitCode::FAILURE
        }
    }
}
