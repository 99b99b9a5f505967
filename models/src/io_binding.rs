//! Runs of the SD² model through ONNX Runtime's I/O binding.
//!
//! The faces are written into an input tensor that ONNX Runtime allocated: pinned host
//! memory on CUDA, which ONNX Runtime copies to the GPU when the run starts. Only `logits`
//! is bound as an output, into a host tensor kept from run to run (pageable: a few values a
//! face), so the embedding never leaves the device that computed it.
//!
//! On CUDA the input and logits can also be staged on the GPU ([`Staging::Device`]): tensors
//! there at addresses that never change, bound to the run, and filled and read back by
//! `ort`'s copy sessions outside it. [`Runner::settle`] picks the first [`Staging`] that runs.
//!
//! With fixed batches ([`SessionConfig::fixed_batches`], implied by CUDA graphs) a batch is
//! padded to the next of [`BUCKETS`]; with CUDA graphs every bucket is device-staged and has
//! a graph id of its own, which is what ONNX Runtime needs to capture one CUDA graph per
//! bucket and replay it.
//!
//! [`SessionConfig::fixed_batches`]: crate::runtime::SessionConfig::fixed_batches

use half::f16;
use half::slice::HalfFloatSliceExt;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{RunOptions, Session};
use ort::value::{DynTensor, TensorElementType};

use crate::contract::{LOGITS, PIXEL_VALUES};
use crate::taxonomy::DeepfakeType;

/// Runs after the first that bring a graph to replay: ONNX Runtime runs a graph id plainly
/// once or twice (the count has changed between releases), captures it on the next run and
/// replays it from then on, so the third of these is a replay either way.
const RUNS_TO_REPLAY: usize = 3;

/// The batch sizes fixed batches are padded to; a larger batch runs in pieces of the last.
pub const BUCKETS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// The bucket that `n` (≥ 1, at most the largest bucket) faces are padded to.
pub fn bucket(n: usize) -> usize {
    BUCKETS
        .iter()
        .copied()
        .find(|&b| b >= n)
        .unwrap_or(BUCKETS[BUCKETS.len() - 1])
}

/// `len` input values of a fixed pattern, never all zeros (which hide unwritten outputs):
/// what graph capture checks its replays on, and what `sd2-bench` times and compares.
pub fn probe_inputs(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 255) as f32 - 127.0) / 64.0)
        .collect()
}

/// How far `other` is from `reference`: the largest difference over the largest magnitude
/// in `reference`.
pub fn relative_drift(reference: &[f32], other: &[f32]) -> f32 {
    let scale = reference
        .iter()
        .fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    let d = reference
        .iter()
        .zip(other)
        .fold(0f32, |d, (a, b)| d.max((a - b).abs()));
    d / scale
}

/// Where a runner's tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    Cpu,
    /// A pinned host input where it can be had; with `graphs`, also device tensors at
    /// fixed addresses.
    Cuda {
        graphs: bool,
    },
}

/// How a CUDA session's faces reach the GPU and its logits come back, in the order
/// [`Runner::settle`] tries them: some ONNX Runtime builds fail runs that bind host tensors
/// (1.31.1's CUDA provider aborts a copy whose source and destination are the same host
/// buffer, microsoft/onnxruntime#29713), and a model that cannot use the first way should
/// still run the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// The pinned host input and the host logits bound to the run; ONNX Runtime copies them.
    Pinned,
    /// Tensors on the GPU bound as input and output, filled from the pinned host input and
    /// read back into the host logits by copies of our own. CUDA graphs always run this way.
    Device,
    /// Pageable host tensors bound as input and output.
    Pageable,
}

impl Staging {
    fn next(self) -> Option<Staging> {
        match self {
            Staging::Pinned => Some(Staging::Device),
            Staging::Device => Some(Staging::Pageable),
            Staging::Pageable => None,
        }
    }
}

/// Why a CUDA runner cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// No [`Staging`] runs a probe face; why each failed, one line each.
    #[error("{}", .0.join("; "))]
    Staging(Vec<String>),
    #[error("CUDA graphs can not be captured where this thread is running CUDA work")]
    CaptureBusy,
    #[error("batch {batch}: {source}")]
    Capture { batch: usize, source: ort::Error },
    #[error(
        "the replayed graph of batch {batch} gives logits {drift:.1e} of the largest away from a plain run"
    )]
    Replay { batch: usize, drift: f32 },
}

/// The tensors of one batch size, kept from run to run.
struct Slot {
    batch: usize,
    /// Host side: the input pinned on CUDA where it can be, the logits pageable.
    input: DynTensor,
    logits: DynTensor,
    /// Device staging: the input and logits on the GPU, bound at the same addresses every run.
    device: Option<(DynTensor, DynTensor)>,
    /// CUDA graphs: the run options carrying this bucket's graph id.
    options: Option<RunOptions>,
}

/// One session with the tensors it reuses.
pub struct Runner {
    /// Before `session`, so that the tensors go before the session whose allocators made them.
    slots: Vec<Slot>,
    pub session: Session,
    memory: Memory,
    fixed_batches: bool,
    half: bool,
    side: usize,
    staging: Staging,
    /// Why the host tensors of a CUDA session are in pageable memory, when pinned memory
    /// could not be had.
    pageable_reason: Option<String>,
    /// Why earlier stagings were left, one line each.
    staging_notes: Vec<String>,
}

/// Slots kept without fixed batches: the most recently used batch sizes. With fixed
/// batches every bucket keeps its slot (a captured graph holds its addresses). A slot holds
/// at most one largest bucket of faces: 77 MB for ViT-L/14 in fp32.
const VARYING_SLOTS: usize = 4;

impl Runner {
    /// `side`: the model's input size; `half`: f16 input and logits.
    pub fn new(
        session: Session,
        memory: Memory,
        fixed_batches: bool,
        half: bool,
        side: usize,
    ) -> Self {
        let graphs = memory == (Memory::Cuda { graphs: true });
        Runner {
            slots: Vec::new(),
            session,
            memory,
            fixed_batches: fixed_batches || graphs,
            half,
            side,
            staging: if graphs {
                Staging::Device
            } else {
                Staging::Pinned
            },
            pageable_reason: None,
            staging_notes: Vec::new(),
        }
    }

    /// How this runner stages a CUDA session's tensors.
    pub fn staging(&self) -> Staging {
        self.staging
    }

    /// Why the stagings tried before the one in use were left, when they were.
    pub fn staging_notes(&self) -> &[String] {
        &self.staging_notes
    }

    /// On CUDA without graphs: runs one face with each [`Staging`] in turn until one works,
    /// and keeps it; `Err` says why each failed. Best done when the model is loaded, so
    /// that a failure is reported there and not in a stream.
    pub fn settle(&mut self) -> Result<(), RunnerError> {
        if self.memory == Memory::Cpu || self.graphs() {
            return Ok(());
        }
        // CUDA work throughout, the slots' memory freed on a failure too (`cuda_gate`).
        let _gate = crate::cuda_gate::shared();
        let x = probe_inputs(3 * self.side * self.side);
        loop {
            let failed = match self.run(&x, 1) {
                Ok(y) if y.iter().all(|v| v.is_finite()) => return Ok(()),
                Ok(_) => "the logits of a probe face are not finite".to_string(),
                Err(e) => e.to_string(),
            };
            self.staging_notes
                .push(format!("{:?} staging failed: {failed}", self.staging));
            self.slots.clear();
            match self.staging.next() {
                // Without a pinned allocator the pinned staging already was pageable.
                Some(Staging::Pageable) if self.pageable_reason.is_some() => {
                    return Err(RunnerError::Staging(self.staging_notes.clone()));
                }
                Some(next) => self.staging = next,
                None => return Err(RunnerError::Staging(self.staging_notes.clone())),
            }
        }
    }

    /// Whether runs capture and replay CUDA graphs.
    pub fn graphs(&self) -> bool {
        self.memory == (Memory::Cuda { graphs: true })
    }

    /// Why this CUDA session's host tensors are pageable rather than pinned, when they are.
    pub fn pageable_reason(&self) -> Option<&str> {
        self.pageable_reason.as_deref()
    }

    /// With CUDA graphs: runs every bucket until its graph has been captured and replayed,
    /// and checks that the replay gives what the first, plain run gave. Capture is
    /// process-wide in CUDA, so it is best done once, on the thread that will run the model,
    /// before any stream flows.
    ///
    /// The capture holds the process's CUDA gate alone (`cuda_gate`): no other thread's
    /// CUDA work in this crate runs meanwhile, since in CUDA's global capture mode it would
    /// fail and end the capture.
    pub fn capture_graphs(&mut self) -> Result<(), RunnerError> {
        if !self.graphs() {
            return Ok(());
        }
        let Some(_capture) = crate::cuda_gate::exclusive() else {
            return Err(RunnerError::CaptureBusy);
        };
        for b in BUCKETS {
            let x = probe_inputs(b * 3 * self.side * self.side);
            let run = |r: &mut Runner| {
                r.run(&x, b)
                    .map_err(|source| RunnerError::Capture { batch: b, source })
            };
            let first = run(self)?;
            let mut last = first.clone();
            for _ in 0..RUNS_TO_REPLAY {
                last = run(self)?;
            }
            let drift = relative_drift(&first, &last);
            let finite = last.iter().all(|v| v.is_finite());
            if !finite || drift > 1e-3 {
                return Err(RunnerError::Replay { batch: b, drift });
            }
        }
        Ok(())
    }

    /// Runs `n` prepared faces (`n · 3 · S · S` values) and returns their logits, `n · 5`.
    pub fn run(&mut self, faces: &[f32], n: usize) -> ort::Result<Vec<f32>> {
        let _gate = (self.memory != Memory::Cpu).then(crate::cuda_gate::shared);
        let k = DeepfakeType::COUNT;
        let per_face = 3 * self.side * self.side;
        // Pieces of at most the largest bucket bound the memory a slot holds.
        let step = BUCKETS[BUCKETS.len() - 1];
        let mut logits = Vec::with_capacity(n * k);
        for start in (0..n).step_by(step) {
            let m = step.min(n - start);
            let batch = if self.fixed_batches { bucket(m) } else { m };
            let i = self.slot(batch)?;
            let slot = &mut self.slots[i];
            let part = &faces[start * per_face..(start + m) * per_face];
            let parallel = self.memory != Memory::Cpu;
            write(&mut slot.input, part, self.half, parallel)?;
            let mut binding = self.session.create_binding()?;
            match &mut slot.device {
                Some((input, out)) => {
                    slot.input.copy_into(&mut *input)?;
                    binding.bind_input(PIXEL_VALUES, input)?;
                    binding.bind_output(LOGITS, &mut *out)?;
                }
                None => {
                    binding.bind_input(PIXEL_VALUES, &slot.input)?;
                    binding.bind_output(LOGITS, &mut slot.logits)?;
                }
            }
            match &slot.options {
                Some(options) => drop(self.session.run_binding_with_options(&binding, options)?),
                None => drop(self.session.run_binding(&binding)?),
            }
            drop(binding);
            if let Some((_, out)) = &slot.device {
                out.copy_into(&mut slot.logits)?;
            }
            read(&slot.logits, m * k, self.half, &mut logits)?;
        }
        Ok(logits)
    }

    /// The index of the slot for `batch`, made on first use. Slots are kept most recently
    /// used last; beyond [`VARYING_SLOTS`] the least recently used goes (never with fixed
    /// batches, which have one slot per bucket).
    fn slot(&mut self, batch: usize) -> ort::Result<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.batch == batch) {
            let used = self.slots.remove(i);
            self.slots.push(used);
            return Ok(self.slots.len() - 1);
        }
        let keep = if self.fixed_batches {
            BUCKETS.len()
        } else {
            VARYING_SLOTS
        };
        if self.slots.len() >= keep {
            self.slots.remove(0);
        }
        let elem = if self.half {
            TensorElementType::Float16
        } else {
            TensorElementType::Float32
        };
        let input_shape = [batch, 3, self.side, self.side];
        let logits_shape = [batch, DeepfakeType::COUNT];
        let slot = match self.memory {
            Memory::Cpu => {
                let host = Allocator::default();
                Slot {
                    batch,
                    input: DynTensor::new(&host, elem, input_shape)?,
                    logits: DynTensor::new(&host, elem, logits_shape)?,
                    device: None,
                    options: None,
                }
            }
            Memory::Cuda { graphs } => {
                // Pinned memory makes the input's copy a DMA; where the runtime has no
                // pinned allocator, pageable memory still works (ONNX Runtime stages the
                // copy). The logits, a few values a face, stay in pageable memory: pinned
                // memory would gain nothing there, and binding it as an output is what
                // ONNX Runtime 1.31.1's CUDA provider fails on.
                let host_in = match self.staging {
                    Staging::Pageable => Allocator::default(),
                    Staging::Pinned | Staging::Device => match pinned_input(&self.session) {
                        Ok(a) => a,
                        Err(e) => {
                            self.pageable_reason = Some(e.to_string());
                            Allocator::default()
                        }
                    },
                };
                let device = match self.staging {
                    Staging::Device => Some(device_tensors(
                        &self.session,
                        elem,
                        &input_shape,
                        &logits_shape,
                    )?),
                    Staging::Pinned | Staging::Pageable => None,
                };
                let options = if graphs {
                    Some(graph_options(batch)?)
                } else {
                    None
                };
                Slot {
                    batch,
                    input: DynTensor::new(&host_in, elem, input_shape)?,
                    logits: DynTensor::new(&Allocator::default(), elem, logits_shape)?,
                    device,
                    options,
                }
            }
        };
        self.slots.push(slot);
        Ok(self.slots.len() - 1)
    }
}

/// A device-staged slot's input and logits on the GPU.
fn device_tensors(
    session: &Session,
    elem: TensorElementType,
    input_shape: &[usize],
    logits_shape: &[usize],
) -> ort::Result<(DynTensor, DynTensor)> {
    let info = MemoryInfo::new(
        AllocationDevice::CUDA,
        0,
        AllocatorType::Device,
        MemoryType::Default,
    )?;
    let gpu = Allocator::new(session, info)?;
    Ok((
        DynTensor::new(&gpu, elem, input_shape.to_vec())?,
        DynTensor::new(&gpu, elem, logits_shape.to_vec())?,
    ))
}

/// The run options that name `batch`'s CUDA graph.
fn graph_options(batch: usize) -> ort::Result<RunOptions> {
    let mut options = RunOptions::new()?;
    let id = BUCKETS.iter().position(|&b| b == batch).unwrap_or(0);
    options.set("gpu_graph_id", id.to_string())?;
    Ok(options)
}

/// The CUDA session's allocator of pinned host memory for inputs.
fn pinned_input(session: &Session) -> ort::Result<Allocator> {
    let info = MemoryInfo::new(
        AllocationDevice::CUDA_PINNED,
        0,
        AllocatorType::Device,
        MemoryType::CPUInput,
    )?;
    Allocator::new(session, info)
}

/// Writes `faces` into the head of `input` and zeroes the padding behind them.
/// `parallel`: large f16 conversions may use several threads (CUDA sessions; a CPU pool
/// already keeps every core busy).
fn write(input: &mut DynTensor, faces: &[f32], half: bool, parallel: bool) -> ort::Result<()> {
    if half {
        let (_, data) = input.try_extract_tensor_mut::<f16>()?;
        let (head, pad) = data.split_at_mut(faces.len());
        to_half(faces, head, parallel);
        pad.fill(f16::ZERO);
    } else {
        let (_, data) = input.try_extract_tensor_mut::<f32>()?;
        let (head, pad) = data.split_at_mut(faces.len());
        head.copy_from_slice(faces);
        pad.fill(0.0);
    }
    Ok(())
}

/// Inputs from which [`to_half`] shares the conversion among threads: a few faces.
const PARALLEL_HALF: usize = 1 << 20;

/// `src` into `dst` as f16, vectorised (F16C where the CPU has it) and, for large batches
/// when `parallel`, on up to 8 threads. The conversion runs on the host for every batch a
/// GPU session takes, so it must stay well below a forward pass's time: element by
/// element, a ViT-L/14 batch of 64 costs about as much to convert as to run.
fn to_half(src: &[f32], dst: &mut [f16], parallel: bool) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if !parallel || src.len() < PARALLEL_HALF || threads < 2 {
        dst.convert_from_f32_slice(src);
        return;
    }
    // Chunks handed out one at a time: a helper thread that cannot be started leaves its
    // share to the others and to this one.
    let chunk = src.len().div_ceil(2 * threads);
    let work = std::sync::Mutex::new(dst.chunks_mut(chunk).zip(src.chunks(chunk)));
    let convert = || {
        while let Some((d, v)) = work.lock().ok().and_then(|mut w| w.next()) {
            d.convert_from_f32_slice(v);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            if std::thread::Builder::new()
                .spawn_scoped(s, convert)
                .is_err()
            {
                break;
            }
        }
        convert();
    });
}

/// Appends the first `len` logits of `logits` to `out` as f32.
fn read(logits: &DynTensor, len: usize, half: bool, out: &mut Vec<f32>) -> ort::Result<()> {
    if half {
        let (_, data) = logits.try_extract_tensor::<f16>()?;
        let start = out.len();
        out.resize(start + len, 0.0);
        data[..len].convert_to_f32_slice(&mut out[start..]);
    } else {
        let (_, data) = logits.try_extract_tensor::<f32>()?;
        out.extend_from_slice(&data[..len]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_up_to_the_next_bucket() {
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(3), 4);
        assert_eq!(bucket(8), 8);
        assert_eq!(bucket(9), 16);
        assert_eq!(bucket(100), 128);
        assert_eq!(bucket(128), 128);
    }

    #[test]
    fn stagings_are_tried_from_pinned_to_pageable_and_end_there() {
        let mut order = vec![Staging::Pinned];
        while let Some(next) = order.last().unwrap().next() {
            order.push(next);
        }
        assert_eq!(order, [Staging::Pinned, Staging::Device, Staging::Pageable]);
    }

    #[test]
    fn half_conversion_matches_element_by_element_at_every_size() {
        for n in [5, PARALLEL_HALF - 1, PARALLEL_HALF + 13] {
            let src = probe_inputs(n);
            let mut dst = vec![f16::ZERO; n];
            to_half(&src, &mut dst, true);
            assert!(dst.iter().zip(&src).all(|(d, v)| *d == f16::from_f32(*v)));
        }
    }

    #[test]
    fn drift_is_the_largest_difference_over_the_largest_reference_magnitude() {
        assert_eq!(relative_drift(&[2.0, -4.0], &[2.0, -4.0]), 0.0);
        assert_eq!(relative_drift(&[2.0, -4.0], &[1.0, -4.5]), 0.25);
        assert!(probe_inputs(64).iter().any(|v| *v != 0.0));
    }
}
