//! The analysis core, without GStreamer: what `sd2deepfake`, `sd2-monitor`, `sd2-scan` and
//! the benchmarks share.
//!
//! - [`SharedModel`]: one loaded model per file, device and CUDA-graph setting in the
//!   process; its thread batches the faces of every stream waiting at once.
//! - [`Analyzer`]: one stream's state. A frame's face boxes are [observed](Analyzer::observe)
//!   (matched to tracks; which faces are due under the inference and reclassify intervals),
//!   then [planned](Analyzer::plan) (admitted or skipped); the due faces of one or more
//!   planned frames are cropped into a [`Batch`] and classified; each frame is then
//!   [completed](Analyzer::complete): verdicts smoothed per track, judged by the
//!   [decision rule](Judge) with its hysteresis, alerts for tracks that turn fake, and the
//!   frame's verdict.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sd2_models::analyzer::{Analyzer, AnalyzerSettings, Batch, SharedModel};
//! use sd2_models::image::RgbImage;
//! use sd2_models::runtime::Device;
//!
//! let model = SharedModel::get("sd2.onnx".as_ref(), Device::Cpu, false, 32)?;
//! let mut analyzer = Analyzer::new(AnalyzerSettings::default());
//! let frame = RgbImage::open("frame.png".as_ref())?;
//! let boxes = [[100.0, 80.0, 220.0, 230.0]]; // from a face detector
//! let seen = analyzer.observe(&boxes, (frame.width as u32, frame.height as u32));
//! let plan = analyzer.plan(seen, false);
//! let mut batch = Batch::new(&model);
//! batch.add(&plan, frame.view());
//! let verdicts = batch.classify();
//! let outcome = analyzer.complete(&plan, &verdicts.frames[0]);
//! println!("fake: {}", outcome.verdict.fake);
//! # Ok(())
//! # }
//! ```

mod batch;
mod decision;
mod service;
mod stream;
mod track;
mod video;

use std::sync::Arc;

pub use batch::{Batch, BatchVerdicts};
pub use decision::{Decision, Judge, UnknownDecision, label};
pub use service::{Classified, ModelStats, Pending, SharedModel};
pub use stream::{
    Alert, Analyzer, AnalyzerSettings, FaceOutcome, FrameOutcome, FrameVerdict, Judged,
    Observation, Plan, PlannedFace, normalise,
};
pub use video::{VideoTally, VideoVerdict};

use crate::runtime::RuntimeError;

/// Why faces were not classified.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("the inference thread has stopped")]
    Stopped,
    #[error("faces not classified: {0}")]
    Classify(Arc<RuntimeError>),
}
