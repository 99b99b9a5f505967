//! What `sd2-bench` times: our path on one batch size, the logit drift between variants,
//! and the face path on 1080p frames.

use std::sync::{Barrier, mpsc};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
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
    /// Streams run at once, each with a thread and an MTCNN of its own.
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

/// What one stream measured: when its timed frames began and ended, its crops, and the
/// seconds its frames spent detecting, cropping and classifying.
struct StreamRun {
    start: Instant,
    end: Instant,
    crops: usize,
    spent: [f64; 3],
    per_shape: bool,
}

/// A stream's faces for the classifier, and where its answer (how many verdicts) goes.
type Request = (Vec<f32>, mpsc::Sender<Result<usize, String>>);

/// Frames and crops per second of detect (MTCNN on `device`, its sessions as
/// `shape_sessions` says) + crop + classify (`sd2`, as loaded for the timings) on 1080p
/// frames, and where each frame's time goes; `streams` streams at once, as that many
/// `sd2facedetect` elements in one process run them: each a thread and an MTCNN of its
/// own. The classifier runs on this thread, as `sd2deepfake`'s service runs the shared
/// model on one thread of its own: each time it takes every stream's waiting faces as one
/// batch. (ONNX Runtime keeps CUDA graphs per thread: the thread that loaded the model
/// and captured them is the one to run it.) The streams start their timed frames
/// together, after a frame of each image that builds what a stream builds once (on CUDA
/// cuDNN's plans and, with a session per shape, the sessions).
pub fn face_path(
    sd2: &mut DeepfakeModel,
    device: OrtDevice,
    frames: usize,
    shape_sessions: Option<bool>,
    streams: usize,
) -> Result<FacePath> {
    let imgs = frames_1080p()?;
    let recipe = *sd2.recipe();
    let per = sd2.input_len();
    let ready = Barrier::new(streams);
    let stream = |k: usize, classifier: mpsc::Sender<Request>| -> Result<StreamRun> {
        let loaded = Mtcnn::load(
            &paths::model_dir().join("mtcnn"),
            device,
            SessionConfig {
                shape_sessions,
                ..SessionConfig::default()
            },
            MtcnnConfig::default(),
        );
        let frame = |mtcnn: &mut Mtcnn, img: &RgbImage, spent: &mut [f64; 3]| {
            let t = Instant::now();
            let faces = mtcnn.detect(img.view())?;
            let detected = t.elapsed().as_secs_f64();
            let mut inputs = vec![0.0; faces.len() * per];
            for (f, chunk) in faces.iter().zip(inputs.chunks_mut(per)) {
                recipe.input_for(img.view(), f.bbox, chunk);
            }
            let cropped = t.elapsed().as_secs_f64();
            let (reply, answer) = mpsc::channel();
            let stopped = || anyhow!("the classifier stopped");
            classifier.send((inputs, reply)).map_err(|_| stopped())?;
            let n = answer
                .recv()
                .map_err(|_| stopped())?
                .map_err(|e| anyhow!(e))?;
            let done = t.elapsed().as_secs_f64();
            spent[0] += detected;
            spent[1] += cropped - detected;
            spent[2] += done - cropped;
            anyhow::Ok(n)
        };
        // Every stream reaches the barrier, a failed or panicked one too, so none waits
        // forever.
        let warmed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            loaded.map_err(anyhow::Error::from).and_then(|mut mtcnn| {
                for img in &imgs {
                    frame(&mut mtcnn, img, &mut [0.0; 3])?;
                }
                Ok(mtcnn)
            })
        }))
        .unwrap_or_else(|_| Err(anyhow!("stream {k} panicked while warming up")));
        ready.wait();
        let mut mtcnn = warmed?;
        let (mut crops, mut spent) = (0, [0f64; 3]);
        let start = Instant::now();
        for i in 0..frames {
            crops += frame(&mut mtcnn, &imgs[(i + k) % imgs.len()], &mut spent)?;
        }
        Ok(StreamRun {
            start,
            end: Instant::now(),
            crops,
            spent,
            per_shape: mtcnn.shape_sessions(),
        })
    };
    let (classifier, requests) = mpsc::channel::<Request>();
    let runs: Vec<StreamRun> = std::thread::scope(|s| {
        // Owned here, so that a panic below drops it and no stream waits for an answer.
        let requests = requests;
        let handles: Vec<_> = (0..streams)
            .map(|k| {
                let (stream, classifier) = (&stream, classifier.clone());
                s.spawn(move || stream(k, classifier))
            })
            .collect();
        drop(classifier);
        // Until every stream has ended (and dropped its sender).
        while let Ok(first) = requests.recv() {
            let batch: Vec<Request> = std::iter::once(first).chain(requests.try_iter()).collect();
            let inputs: Vec<f32> = batch.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let answer = if inputs.is_empty() {
                Ok(0)
            } else {
                sd2.classify(&inputs).map(|v| v.len())
            };
            for (x, reply) in batch {
                // A stream that failed has stopped listening.
                let _ = reply.send(match &answer {
                    Ok(_) => Ok(x.len() / per),
                    Err(e) => Err(e.to_string()),
                });
            }
        }
        handles
            .into_iter()
            .enumerate()
            .map(|(k, h)| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("face path stream {k} panicked")))
            })
            .collect::<Result<_>>()
    })?;
    let start = runs.iter().map(|r| r.start).min().expect("a stream");
    let end = runs.iter().map(|r| r.end).max().expect("a stream");
    let s = (end - start).as_secs_f64();
    let all = (streams * frames).max(1) as f64;
    let ms = |k: usize| 1000.0 * runs.iter().map(|r| r.spent[k]).sum::<f64>() / all;
    Ok(FacePath {
        per_shape: runs[0].per_shape,
        streams,
        frames,
        frames_per_second: (streams * frames) as f64 / s,
        crops_per_second: runs.iter().map(|r| r.crops).sum::<usize>() as f64 / s,
        detect_ms: ms(0),
        crop_ms: ms(1),
        classify_ms: ms(2),
    })
}
