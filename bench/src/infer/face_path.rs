//! The whole face path on 1080p frames, as `sd2facedetect ! sd2deepfake` runs it: MTCNN,
//! then the Analyzer (tracks, crops, the shared model batching every stream's faces, the
//! verdicts), one stream or several at once.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use sd2_models::analyzer::{Analyzer, AnalyzerSettings, Batch, SharedModel};
use sd2_models::image::RgbImage;
use sd2_models::mtcnn::{Mtcnn, MtcnnConfig};
use sd2_models::paths;
use sd2_models::runtime::{Device as OrtDevice, SessionConfig};

/// What the face path measured.
#[derive(Clone, Copy, Debug)]
pub struct FacePath {
    /// MTCNN's sessions: one per network, or one per input shape.
    pub per_shape: bool,
    /// Streams run at once, each with a thread, an MTCNN and an Analyzer of its own.
    pub streams: usize,
    /// Frames per stream.
    pub frames: usize,
    /// Frames and crops per second, all streams together.
    pub frames_per_second: f64,
    pub crops_per_second: f64,
    /// Milliseconds per frame in MTCNN, in cropping, and in the classifier (waiting for
    /// it included, when streams share it).
    pub detect_ms: f64,
    pub crop_ms: f64,
    pub classify_ms: f64,
}

impl FacePath {
    /// How MTCNN held its sessions, in words.
    pub fn sessions(&self) -> &'static str {
        if self.per_shape {
            "a session per shape"
        } else {
            "a session per network"
        }
    }
}

impl std::fmt::Display for FacePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.streams > 1 {
            write!(f, "{} streams at once: ", self.streams)?;
        }
        write!(
            f,
            "{:.2} frames/s, {:.1} crops/s; per frame {:.1} ms MTCNN ({}), {:.1} ms cropping, {:.1} ms classifying",
            self.frames_per_second,
            self.crops_per_second,
            self.detect_ms,
            self.sessions(),
            self.crop_ms,
            self.classify_ms
        )
    }
}

/// The sample faces on 1080p canvases.
fn frames_1080p() -> Result<Vec<RgbImage>> {
    let samples = paths::samples_dir();
    ["astronaut.png", "t1.jpg"]
        .iter()
        .map(|f| RgbImage::open(&samples.join(f)).map(|i| i.letterboxed(1920, 1080, 96)))
        .collect::<Result<_, _>>()
        .context("sample faces (run scripts/setup.sh)")
}

/// How the face path runs: the model file and how it is loaded, MTCNN's device and sessions.
#[derive(Clone, Copy, Debug)]
pub struct FacePathSetup<'a> {
    pub model: &'a Path,
    pub device: OrtDevice,
    pub cuda_graph: bool,
    /// Most faces in one run of the model (`sd2deepfake`'s `batch-size`).
    pub batch_size: usize,
    /// MTCNN's sessions: per shape, per network, or the device's default.
    pub shape_sessions: Option<bool>,
}

/// What one stream measured: when its timed frames began and ended, its crops, and the
/// seconds its frames spent detecting, cropping and classifying.
struct StreamRun {
    start: Instant,
    end: Instant,
    crops: usize,
    spent: [f64; 3],
    per_shape: bool,
}

/// One stream: its MTCNN and Analyzer, and the frames it has timed.
struct Stream<'a> {
    mtcnn: Mtcnn,
    analyzer: Analyzer,
    model: &'a SharedModel,
}

impl Stream<'_> {
    /// Detects, crops and classifies one frame; returns its crops and adds the seconds
    /// spent in each stage to `spent`.
    fn frame(&mut self, img: &RgbImage, spent: &mut [f64; 3]) -> Result<usize> {
        let t = Instant::now();
        let boxes: Vec<[f32; 4]> = self
            .mtcnn
            .detect(img.view())?
            .iter()
            .map(|f| f.bbox)
            .collect();
        let detected = t.elapsed().as_secs_f64();
        let seen = self
            .analyzer
            .observe(&boxes, (img.width as u32, img.height as u32));
        let plan = self.analyzer.plan(seen, false);
        let mut batch = Batch::new(self.model);
        batch.add(&plan, img.view());
        let crops = batch.faces();
        let cropped = t.elapsed().as_secs_f64();
        let verdicts = batch.classify();
        if let Some(e) = verdicts.error {
            bail!(e);
        }
        self.analyzer.complete(&plan, &verdicts.frames[0]);
        let done = t.elapsed().as_secs_f64();
        spent[0] += detected;
        spent[1] += cropped - detected;
        spent[2] += done - cropped;
        Ok(crops)
    }
}

/// Frames and crops per second of the face path on 1080p frames, and where each frame's
/// time goes; `streams` streams at once, as that many `sd2facedetect ! sd2deepfake` pipelines
/// in one process run them: each a thread, an MTCNN and an Analyzer of its own, the model
/// shared. The streams start their timed frames together, after a frame of each image that
/// builds what a stream builds once (on CUDA cuDNN's plans and, with a session per shape,
/// the sessions).
pub fn face_path(setup: FacePathSetup<'_>, frames: usize, streams: usize) -> Result<FacePath> {
    let imgs = frames_1080p()?;
    let model: Arc<SharedModel> = SharedModel::get(
        setup.model,
        setup.device,
        setup.cuda_graph,
        setup.batch_size,
    )?;
    let ready = Barrier::new(streams);
    let stream = |k: usize| -> Result<StreamRun> {
        // Every stream reaches the barrier, a failed or panicked one too, so none waits
        // forever.
        let warmed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mtcnn = Mtcnn::load(
                &paths::model_dir().join("mtcnn"),
                setup.device,
                SessionConfig {
                    shape_sessions: setup.shape_sessions,
                    ..SessionConfig::default()
                },
                MtcnnConfig::default(),
            )?;
            let mut s = Stream {
                mtcnn,
                analyzer: Analyzer::new(AnalyzerSettings::default()),
                model: &model,
            };
            for img in &imgs {
                s.frame(img, &mut [0.0; 3])?;
            }
            anyhow::Ok(s)
        }))
        .unwrap_or_else(|_| Err(anyhow!("stream {k} panicked while warming up")));
        ready.wait();
        let mut s = warmed?;
        let (mut crops, mut spent) = (0, [0f64; 3]);
        let start = Instant::now();
        for i in 0..frames {
            crops += s.frame(&imgs[(i + k) % imgs.len()], &mut spent)?;
        }
        Ok(StreamRun {
            start,
            end: Instant::now(),
            crops,
            spent,
            per_shape: s.mtcnn.shape_sessions(),
        })
    };
    let runs: Vec<StreamRun> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|k| {
                let stream = &stream;
                s.spawn(move || stream(k))
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(k, h)| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("face path stream {k} panicked")))
            })
            .collect::<Result<_>>()
    })?;
    Ok(summarise(&runs, streams, frames))
}

fn summarise(runs: &[StreamRun], streams: usize, frames: usize) -> FacePath {
    let start = runs.iter().map(|r| r.start).min().expect("a stream");
    let end = runs.iter().map(|r| r.end).max().expect("a stream");
    let s = (end - start).as_secs_f64();
    let all = (streams * frames).max(1) as f64;
    let ms = |k: usize| 1000.0 * runs.iter().map(|r| r.spent[k]).sum::<f64>() / all;
    FacePath {
        per_shape: runs[0].per_shape,
        streams,
        frames,
        frames_per_second: (streams * frames) as f64 / s,
        crops_per_second: runs.iter().map(|r| r.crops).sum::<usize>() as f64 / s,
        detect_ms: ms(0),
        crop_ms: ms(1),
        classify_ms: ms(2),
    }
}
