//! The three-stage cascade, step for step as facenet-pytorch's `detect_face` runs it.

use std::path::Path;

use ort::value::TensorRef;

use super::area::IntegralImage;
use super::nets::{self, NetSpec};
use super::nms::{Corners, Overlap, nms};
use super::sessions::NetSessions;
use crate::image::RgbView;
use crate::runtime::{self, Device, Placement, RuntimeError, SessionConfig};

/// Cascade settings. The defaults are facenet-pytorch's, with faces kept above 0.9 as
/// SD² does before cropping (paper, Appendix A.3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MtcnnConfig {
    /// Smallest face searched for, in pixels (20).
    pub min_face_size: f64,
    /// Scale step of the image pyramid (0.709).
    pub factor: f64,
    /// Score thresholds of P-Net, R-Net and O-Net (0.6, 0.7, 0.7).
    pub stage_thresholds: [f32; 3],
    /// Faces returned have an O-Net score above this (0.9).
    pub face_threshold: f32,
    /// At most this many faces, the most confident first; 0 for no limit.
    pub max_faces: usize,
}

impl Default for MtcnnConfig {
    fn default() -> Self {
        MtcnnConfig {
            min_face_size: 20.0,
            factor: 0.709,
            stage_thresholds: [0.6, 0.7, 0.7],
            face_threshold: 0.9,
            max_faces: 0,
        }
    }
}

/// A detected face in pixel coordinates of the frame (the box may reach past its edges).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    pub confidence: f32,
    /// Left eye, right eye, nose, left and right mouth corners, as `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

#[derive(Debug, thiserror::Error)]
pub enum MtcnnError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{net}: inference failed: {reason}")]
    Inference { net: &'static str, reason: String },
}

/// The scales of the image pyramid for a `w × h` frame.
pub fn pyramid(w: usize, h: usize, min_face_size: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_face_size;
    let mut minl = w.min(h) as f64 * m;
    let mut scale = m;
    let mut scales = Vec::new();
    while minl >= 12.0 {
        scales.push(scale);
        scale *= factor;
        minl *= factor;
    }
    scales
}

/// `rerec`: the square of side `max(w, h)` with the same centre.
fn square(b: Corners) -> Corners {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// `bbreg`: moves each side by the regression times the `+1` width or height.
fn regress(b: Corners, reg: &[f32]) -> Corners {
    let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
    [
        b[0] + reg[0] * w,
        b[1] + reg[1] * h,
        b[2] + reg[2] * w,
        b[3] + reg[3] * h,
    ]
}

/// Area-resampled, normalised `side × side` crops of `boxes`, as facenet-pytorch's `pad`
/// and `detect_face` cut them: corners truncated toward zero, the left and top ones clamped
/// to 1 and read from the pixel before (its corners count from 1), the right and bottom ones
/// clamped to the frame's width and height. The part of a box outside the frame is not
/// padded: the part inside is stretched to the whole crop. (The original MTCNN pads it
/// with zeros instead; facenet-pytorch 2.6.0 does not, and its boxes for faces cut by an
/// edge follow from the stretched crop.) Returns the batch and, for each crop, the index of
/// its box; boxes with nothing inside the frame are dropped.
fn crops(sat: &IntegralImage, boxes: &[Corners], side: usize) -> (Vec<f32>, Vec<usize>) {
    let (w, h) = (sat.width() as i64, sat.height() as i64);
    let per = 3 * side * side;
    let mut data = Vec::with_capacity(per * boxes.len());
    let mut index = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        let x = (b[0].trunc() as i64).max(1);
        let y = (b[1].trunc() as i64).max(1);
        let ex = (b[2].trunc() as i64).min(w);
        let ey = (b[3].trunc() as i64).min(h);
        if ey > y - 1 && ex > x - 1 {
            let start = data.len();
            data.resize(start + per, 0.0);
            let region = [(x - 1) as usize, (y - 1) as usize, ex as usize, ey as usize];
            sat.resample_into(region, side, side, &mut data[start..]);
            index.push(i);
        }
    }
    (data, index)
}

/// The batch `n` crops run as: with `pad`, the next power of two (at least 16), the crops
/// behind the real ones zero and their outputs unread.
fn padded(n: usize, pad: bool) -> usize {
    if pad {
        n.next_power_of_two().max(16)
    } else {
        n
    }
}

/// One set of the three networks, driven by one thread.
struct Worker {
    pnet: NetSessions,
    rnet: NetSessions,
    onet: NetSessions,
}

/// MTCNN on ONNX Runtime.
///
/// On the CPU the cascade runs on several single-threaded copies of the networks at once:
/// the levels of the pyramid are shared out among them, and so are the R-Net and O-Net
/// crops. The networks are small and ONNX Runtime's own threading gains little on them;
/// whole runs side by side use every core. Results do not depend on the number of workers.
pub struct Mtcnn {
    workers: Vec<Worker>,
    /// R-Net's and O-Net's batches padded to a power of two (see [`padded`]).
    pad_batches: bool,
    placement: Placement,
    fallback_reason: Option<String>,
    pub config: MtcnnConfig,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn")
            .field("workers", &self.workers.len())
            .field("placement", &self.placement)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One network's outputs, flattened, by name.
struct Outputs(Vec<(&'static str, Vec<usize>, Vec<f32>)>);

impl Outputs {
    fn get(&self, name: &str) -> (&[usize], &[f32]) {
        let (_, shape, data) = self
            .0
            .iter()
            .find(|(n, ..)| *n == name)
            .expect("output checked by the contract");
        (shape, data)
    }
}

fn run(
    sessions: &mut NetSessions,
    spec: &NetSpec,
    shape: [usize; 4],
    data: &[f32],
) -> Result<Outputs, MtcnnError> {
    // Opening a session for a new shape, closing the oldest, running: CUDA work
    // (`cuda_gate`).
    let _gate = sessions.cuda().then(crate::cuda_gate::shared);
    let session = sessions.get(shape)?;
    let fail = |e: ort::Error| MtcnnError::Inference {
        net: spec.name,
        reason: e.to_string(),
    };
    let input = TensorRef::from_array_view((shape, data)).map_err(fail)?;
    let out = session.run(ort::inputs!["input" => input]).map_err(fail)?;
    let mut result = Vec::new();
    for name in spec.outputs() {
        let (s, d) = out[name].try_extract_tensor::<f32>().map_err(fail)?;
        result.push((name, s.iter().map(|&v| v as usize).collect(), d.to_vec()));
    }
    Ok(Outputs(result))
}

/// R-Net or O-Net (`spec`) over the crops of `boxes` (see [`crops`]), the batch padded to
/// [`padded`]'s size with `pad`: each crop's box index and the outputs, `None` when no box
/// had a crop.
fn run_crops(
    sessions: &mut NetSessions,
    spec: &NetSpec,
    sat: &IntegralImage,
    boxes: &[Corners],
    pad: bool,
) -> Result<Option<(Vec<usize>, Outputs)>, MtcnnError> {
    let side = spec
        .input_side
        .expect("R-Net and O-Net have a fixed input size");
    let (mut data, index) = crops(sat, boxes, side);
    if index.is_empty() {
        return Ok(None);
    }
    let n = padded(index.len(), pad);
    data.resize(n * 3 * side * side, 0.0);
    let out = run(sessions, spec, [n, 3, side, side], &data)?;
    Ok(Some((index, out)))
}

/// The candidates of one pyramid level: boxes, scores, regressions.
type Level = (Vec<Corners>, Vec<f32>, Vec<[f32; 4]>);

impl Mtcnn {
    /// Loads `pnet.onnx`, `rnet.onnx` and `onet.onnx` from `dir` and checks each against
    /// the inputs and outputs the cascade uses.
    ///
    /// On the CPU, `session.threads` workers (default: one per available core) each run
    /// single-threaded sessions; on CUDA one worker runs them, by default with a session
    /// for every input shape ([`SessionConfig::shape_sessions`]), each opened when its
    /// shape first comes.
    pub fn load(
        dir: &Path,
        device: Device,
        session: SessionConfig,
        config: MtcnnConfig,
    ) -> Result<Self, RuntimeError> {
        let hint = format!(
            " (scripts/setup.sh converts facenet-pytorch's weights into {})",
            dir.display()
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = session.threads.unwrap_or(cores).clamp(1, 16);
        let mut workers = Vec::new();
        let mut device = device;
        let mut placement = Placement::Cpu;
        let mut fallback_reason = None;
        let per_shape = |p: Placement| session.shape_sessions.unwrap_or(p == Placement::Cuda);
        while workers.len() < wanted {
            let mut nets = Vec::new();
            for spec in nets::ALL {
                let path = dir.join(format!("{}.onnx", spec.name));
                let config = SessionConfig {
                    threads: Some(1),
                    // P-Net sees a different input size for every level of the pyramid.
                    memory_pattern: spec.input_side.is_some() && session.memory_pattern,
                    // R-Net and O-Net see as many crops as the stage before kept.
                    varying_shapes: true,
                    ..SessionConfig::default()
                };
                let s = runtime::open_session(&path, device, config, &hint)?;
                let (inputs, outputs) = spec.contract();
                runtime::check_contract(&path, &s.session, &inputs, &outputs)?;
                // The first net settles where the others run: CUDA is tried once.
                if fallback_reason.is_none() {
                    fallback_reason = s.fallback_reason;
                }
                placement = s.placement;
                device = match placement {
                    Placement::Cuda => Device::Cuda,
                    Placement::Cpu => Device::Cpu,
                };
                nets.push(NetSessions::new(
                    s.session,
                    &path,
                    device,
                    config,
                    &hint,
                    per_shape(placement),
                ));
            }
            let onet = nets.pop().expect("three nets");
            let rnet = nets.pop().expect("three nets");
            let pnet = nets.pop().expect("three nets");
            workers.push(Worker { pnet, rnet, onet });
            if placement == Placement::Cuda {
                break;
            }
        }
        Ok(Mtcnn {
            workers,
            // On CUDA every new input shape costs cuDNN new plans (and ONNX Runtime an
            // allocation plan); a stream's candidate counts change every frame, so the
            // shapes, and with a session per shape the sessions, are kept to a few.
            pad_batches: session.fixed_batches
                || placement == Placement::Cuda
                || per_shape(placement),
            placement,
            fallback_reason,
            config,
        })
    }

    /// Where the networks run.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Why `device=auto` chose the CPU, when it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Whether each network has a session per input shape ([`SessionConfig::shape_sessions`]
    /// as given, or by default on CUDA).
    pub fn shape_sessions(&self) -> bool {
        self.workers[0].pnet.per_shape()
    }

    /// How many ONNX Runtime sessions the networks hold now: three per worker, or, with
    /// a session per input shape (always on CUDA), one per shape seen, up to
    /// [`MAX_SHAPE_SESSIONS`](super::MAX_SHAPE_SESSIONS) per network.
    pub fn sessions(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.pnet.len() + w.rnet.len() + w.onet.len())
            .sum()
    }

    /// Finds the faces in `img`, most confident first.
    pub fn detect(&mut self, img: RgbView<'_>) -> Result<Vec<Face>, MtcnnError> {
        let (w, h) = (img.width(), img.height());
        let cfg = self.config;
        let scales = pyramid(w, h, cfg.min_face_size, cfg.factor);
        if scales.is_empty() {
            return Ok(Vec::new());
        }
        let sat = IntegralImage::new(img);
        let boxes = self.stage_one(&sat, &scales)?;
        let boxes = self.stage_two(&sat, &boxes)?;
        let mut faces = self.stage_three(&sat, &boxes)?;
        faces.retain(|f| f.confidence > cfg.face_threshold);
        if cfg.max_faces > 0 {
            faces.truncate(cfg.max_faces);
        }
        Ok(faces)
    }

    /// P-Net over the pyramid: candidate squares.
    fn stage_one(
        &mut self,
        sat: &IntegralImage,
        scales: &[f64],
    ) -> Result<Vec<Corners>, MtcnnError> {
        let threshold = self.config.stage_thresholds[0];
        // Levels shrink geometrically: the first holds about half the work, so it goes to
        // one worker and the rest, in order, are shared among the others.
        let n = self.workers.len();
        let levels: Vec<Level> = if n > 1 && scales.len() > 1 {
            let (first, rest) = self.workers.split_at_mut(1);
            let (a, b) = std::thread::scope(|scope| {
                let a = scope.spawn(|| pnet_levels(&mut first[0], sat, &scales[..1], threshold));
                let rest_scales = &scales[1..];
                let b = runtime::share(rest, rest_scales.len(), |w, r| {
                    pnet_levels(w, sat, &rest_scales[r], threshold)
                });
                (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
            });
            let mut levels = a?;
            levels.extend(b?);
            levels
        } else {
            pnet_levels(&mut self.workers[0], sat, scales, threshold)?
        };
        let (mut boxes, mut scores, mut regs) = (Vec::new(), Vec::new(), Vec::new());
        for (b, s, r) in levels {
            boxes.extend(b);
            scores.extend(s);
            regs.extend(r);
        }
        Ok(nms(&boxes, &scores, 0.7, Overlap::Union)
            .into_iter()
            .map(|i| {
                let (b, r) = (boxes[i], regs[i]);
                let (rw, rh) = (b[2] - b[0], b[3] - b[1]);
                square([
                    b[0] + r[0] * rw,
                    b[1] + r[1] * rh,
                    b[2] + r[2] * rw,
                    b[3] + r[3] * rh,
                ])
            })
            .collect())
    }

    /// R-Net on 24×24 crops: refined squares.
    fn stage_two(
        &mut self,
        sat: &IntegralImage,
        boxes: &[Corners],
    ) -> Result<Vec<Corners>, MtcnnError> {
        let threshold = self.config.stage_thresholds[1];
        let pad = self.pad_batches;
        let scored = runtime::share::<_, _, MtcnnError>(&mut self.workers, boxes.len(), |w, r| {
            let part = &boxes[r];
            let Some((index, out)) = run_crops(&mut w.rnet, &nets::RNET, sat, part, pad)? else {
                return Ok(Vec::new());
            };
            let (_, prob) = out.get("prob");
            let (_, reg) = out.get("reg");
            Ok(index
                .iter()
                .enumerate()
                .filter(|&(k, _)| prob[2 * k + 1] > threshold)
                .map(|(k, &i)| {
                    (
                        part[i],
                        prob[2 * k + 1],
                        [0, 1, 2, 3].map(|c| reg[4 * k + c]),
                    )
                })
                .collect())
        })?;
        let kept: Vec<Corners> = scored.iter().map(|s| s.0).collect();
        let scores: Vec<f32> = scored.iter().map(|s| s.1).collect();
        Ok(nms(&kept, &scores, 0.7, Overlap::Union)
            .into_iter()
            .map(|i| square(regress(kept[i], &scored[i].2)))
            .collect())
    }

    /// O-Net on 48×48 crops: final boxes, scores and landmarks.
    fn stage_three(
        &mut self,
        sat: &IntegralImage,
        boxes: &[Corners],
    ) -> Result<Vec<Face>, MtcnnError> {
        let threshold = self.config.stage_thresholds[2];
        let pad = self.pad_batches;
        let faces = runtime::share::<_, _, MtcnnError>(&mut self.workers, boxes.len(), |w, r| {
            let part = &boxes[r];
            let Some((index, out)) = run_crops(&mut w.onet, &nets::ONET, sat, part, pad)? else {
                return Ok(Vec::new());
            };
            let (_, prob) = out.get("prob");
            let (_, reg) = out.get("reg");
            let (_, lm) = out.get("landmarks");
            let mut faces = Vec::new();
            for (k, &i) in index.iter().enumerate() {
                let score = prob[2 * k + 1];
                if score <= threshold {
                    continue;
                }
                let b = part[i];
                let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
                let p = &lm[10 * k..10 * k + 10];
                let landmarks =
                    std::array::from_fn(|j| [bw * p[j] + b[0] - 1.0, bh * p[5 + j] + b[1] - 1.0]);
                faces.push(Face {
                    bbox: regress(b, &reg[4 * k..4 * k + 4]),
                    confidence: score,
                    landmarks,
                });
            }
            Ok(faces)
        })?;
        let corners: Vec<Corners> = faces.iter().map(|f| f.bbox).collect();
        let scores: Vec<f32> = faces.iter().map(|f| f.confidence).collect();
        Ok(nms(&corners, &scores, 0.7, Overlap::Min)
            .into_iter()
            .map(|i| faces[i])
            .collect())
    }
}

/// P-Net on the given pyramid levels, one after another: each level's candidates after
/// its own NMS (0.5), as the reference keeps them.
fn pnet_levels(
    w: &mut Worker,
    sat: &IntegralImage,
    scales: &[f64],
    threshold: f32,
) -> Result<Vec<Level>, MtcnnError> {
    let (width, height) = (sat.width(), sat.height());
    let mut buf = Vec::new();
    let mut levels = Vec::with_capacity(scales.len());
    for &scale in scales {
        let hs = (height as f64 * scale + 1.0) as usize;
        let ws = (width as f64 * scale + 1.0) as usize;
        buf.resize(3 * hs * ws, 0.0);
        sat.resample_into([0, 0, width, height], ws, hs, &mut buf);
        let out = run(&mut w.pnet, &nets::PNET, [1, 3, hs, ws], &buf)?;
        let (shape, prob) = out.get("prob");
        let (_, reg) = out.get("reg");
        let (oh, ow) = (shape[2], shape[3]);
        let plane = oh * ow;
        let s = scale as f32;
        let (mut b, mut sc, mut rg) = (Vec::new(), Vec::new(), Vec::new());
        for y in 0..oh {
            for x in 0..ow {
                let p = prob[plane + y * ow + x];
                if p >= threshold {
                    let (fx, fy) = (x as f32, y as f32);
                    b.push([
                        ((2.0 * fx + 1.0) / s).floor(),
                        ((2.0 * fy + 1.0) / s).floor(),
                        ((2.0 * fx + 12.0) / s).floor(),
                        ((2.0 * fy + 12.0) / s).floor(),
                    ]);
                    sc.push(p);
                    rg.push([0, 1, 2, 3].map(|c| reg[c * plane + y * ow + x]));
                }
            }
        }
        let keep = nms(&b, &sc, 0.5, Overlap::Union);
        levels.push((
            keep.iter().map(|&i| b[i]).collect(),
            keep.iter().map(|&i| sc[i]).collect(),
            keep.iter().map(|&i| rg[i]).collect(),
        ));
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::RgbImage;
    use crate::mtcnn::normalise;

    /// A bright `w × h` image: no pixel darker than 100, so a zero-padded border would show.
    fn bright(w: usize, h: usize) -> RgbImage {
        let data = (0..w * h * 3)
            .map(|i| 100 + ((i * 7919) % 151) as u8)
            .collect();
        RgbImage::new(w, h, data).unwrap()
    }

    fn resampled(sat: &IntegralImage, region: [usize; 4], side: usize) -> Vec<f32> {
        let mut out = vec![0.0; 3 * side * side];
        sat.resample_into(region, side, side, &mut out);
        out
    }

    #[test]
    fn a_box_past_the_top_left_corner_crops_the_part_inside_stretched_without_zero_padding() {
        let img = bright(40, 30);
        let sat = IntegralImage::new(img.view());
        let (data, index) = crops(&sat, &[[-12.7, -8.2, 19.6, 24.9]], 24);
        assert_eq!(index, vec![0]);
        // Corners truncated toward zero (-12, -8, 19, 24), the left and top clamped to 1
        // and read from the pixel before: pixels [0, 19) × [0, 24).
        assert_eq!(data, resampled(&sat, [0, 0, 19, 24], 24));
        let darkest = data.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(darkest >= normalise(100.0), "a padded pixel: {darkest}");
    }

    #[test]
    fn a_box_past_the_bottom_right_corner_is_clamped_to_the_frame() {
        let img = bright(40, 30);
        let sat = IntegralImage::new(img.view());
        let (data, index) = crops(&sat, &[[20.9, 10.5, 57.3, 46.8]], 48);
        assert_eq!(index, vec![0]);
        assert_eq!(data, resampled(&sat, [19, 9, 40, 30], 48));
    }

    #[test]
    fn crop_corners_are_truncated_not_rounded() {
        let img = bright(40, 30);
        let sat = IntegralImage::new(img.view());
        let (data, _) = crops(&sat, &[[-0.9, 5.99, 30.99, 20.5]], 24);
        assert_eq!(data, resampled(&sat, [0, 4, 30, 20], 24));
    }

    #[test]
    fn boxes_with_nothing_inside_the_frame_have_no_crop() {
        let img = bright(40, 30);
        let sat = IntegralImage::new(img.view());
        let boxes = [
            [-30.0, 0.0, -2.0, 20.0],
            [5.0, 5.0, 25.0, 25.0],
            [0.0, 45.0, 20.0, 60.0],
        ];
        let (data, index) = crops(&sat, &boxes, 24);
        assert_eq!(index, vec![1]);
        assert_eq!(data.len(), 3 * 24 * 24);
    }
}
