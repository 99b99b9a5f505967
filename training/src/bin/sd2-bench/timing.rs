//! What `sd2-bench` times: our path on one batch size, the logit drift between variants,
//! and the face path on 1080p frames.

use std::time::Instant;

use anyhow::{Context, Result};
use sd2_models::classifier::DeepfakeModel;
use sd2_models::image::RgbImage;
use sd2_models::io_binding::{probe_inputs, relative_drift};
use sd2_models::mtcnn::{Mtcnn, MtcnnConfig};
use sd2_models::paths;
use sd2_models::runtime::{Device as OrtDevice, SessionConfig};

/// Seconds per iteration of our path on one batch size.
pub fn time_ours(model: &mut DeepfakeModel, batch: usize, iterations: usize) -> Result<f64> {
    let x = pattern(model, batch);
    model.classify(&x)?;
    let start = Instant::now();
    for _ in 0..iterations {
        model.classify(&x)?;
    }
    Ok(start.elapsed().as_secs_f64() / iterations as f64)
}

/// `batch` inputs of a fixed pattern, the same for every path.
fn pattern(model: &DeepfakeModel, batch: usize) -> Vec<f32> {
    probe_inputs(batch * model.input_len())
}

/// How far each model's logits are from the first's on the same 16 inputs: the largest
/// difference over the first's largest logit magnitude (fp16 against fp32 on CUDA).
pub fn logit_drift(models: &mut [DeepfakeModel]) -> Result<Vec<f64>> {
    let x = pattern(&models[0], 16);
    let reference = models[0].logits(&x)?.concat();
    models
        .iter_mut()
        .map(|m| Ok(relative_drift(&reference, &m.logits(&x)?.concat()) as f64))
        .collect()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What the face path measured.
#[derive(Clone, Copy, Debug)]
pub struct FacePath {
    /// MTCNN's sessions: one per network, or one per input shape.
    pub per_shape: bool,
    pub frames: usize,
    pub frames_per_second: f64,
    pub crops_per_second: f64,
    /// Milliseconds per frame in MTCNN, in cropping, and in the classifier.
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

/// Frames and crops per second of detect (MTCNN on `device`, its sessions as
/// `shape_sessions` says) + crop + classify (`sd2`, as loaded for the timings) on 1080p
/// frames, and where each frame's time goes.
pub fn face_path(
    sd2: &mut DeepfakeModel,
    device: OrtDevice,
    frames: usize,
    shape_sessions: Option<bool>,
) -> Result<FacePath> {
    let samples = paths::samples_dir();
    let imgs: Vec<RgbImage> = ["astronaut.png", "t1.jpg"]
        .iter()
        .map(|f| RgbImage::open(&samples.join(f)).map(|i| i.letterboxed(1920, 1080, 96)))
        .collect::<Result<_, _>>()
        .context("sample faces (run scripts/setup.sh)")?;
    let mut mtcnn = Mtcnn::load(
        &paths::model_dir().join("mtcnn"),
        device,
        SessionConfig {
            shape_sessions,
            ..SessionConfig::default()
        },
        MtcnnConfig::default(),
    )?;
    let per = sd2.input_len();
    let mut spent = [0f64; 3];
    let mut frame = |img: &RgbImage, spent: &mut [f64; 3]| -> Result<usize> {
        let t = Instant::now();
        let faces = mtcnn.detect(img.view())?;
        let detected = t.elapsed().as_secs_f64();
        let mut inputs = vec![0.0; faces.len() * per];
        for (f, chunk) in faces.iter().zip(inputs.chunks_mut(per)) {
            sd2.prepare(img.view(), f.bbox, chunk);
        }
        let cropped = t.elapsed().as_secs_f64();
        let n = sd2.classify(&inputs)?.len();
        let done = t.elapsed().as_secs_f64();
        spent[0] += detected;
        spent[1] += cropped - detected;
        spent[2] += done - cropped;
        Ok(n)
    };
    // One untimed frame of each image first: on CUDA the first run of every shape builds
    // cuDNN's plans (and, with a session per shape, opens its session), which a stream
    // pays once.
    for img in &imgs {
        frame(img, &mut [0.0; 3])?;
    }
    let mut crops = 0;
    let start = Instant::now();
    for i in 0..frames {
        crops += frame(&imgs[i % imgs.len()], &mut spent)?;
    }
    let s = start.elapsed().as_secs_f64();
    let ms = |v: f64| 1000.0 * v / frames.max(1) as f64;
    Ok(FacePath {
        per_shape: mtcnn.shape_sessions(),
        frames,
        frames_per_second: frames as f64 / s,
        crops_per_second: crops as f64 / s,
        detect_ms: ms(spent[0]),
        crop_ms: ms(spent[1]),
        classify_ms: ms(spent[2]),
    })
}
