//! Runs of the SD² model through ONNX Runtime's I/O binding.
//!
//! The faces are written into an input tensor that ONNX Runtime allocated: pinned host
//! memory on CUDA, which ONNX Runtime copies to the GPU when it is bound. Only `logits` is
//! bound as an output, into a tensor kept from run to run (pinned on CUDA), so the
//! embedding never leaves the device that computed it.
//!
//! With fixed batches ([`SessionConfig::fixed_batches`], implied by CUDA graphs) a batch is
//! padded to the next of [`BUCKETS`]; with CUDA graphs every bucket also gets its input and
//! logits on the GPU at addresses that never change and a graph id of its own, which is what
//! ONNX Runtime needs to capture one CUDA graph per bucket and replay it. The copies to and
//! from those device tensors go through `ort`'s copy sessions, outside the graph.
//!
//! [`SessionConfig::fixed_batches`]: crate::runtime::SessionConfig::fixed_batches

use half::f16;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{RunOptions, Session};
use ort::value::{DynTensor, TensorElementType};

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
    /// Pinned host tensors; with `graphs`, also device tensors at fixed addresses.
    Cuda {
        graphs: bool,
    },
}

/// The tensors of one batch size, kept from run to run.
struct Slot {
    batch: usize,
    /// Host side: pinned on CUDA.
    input: DynTensor,
    logits: DynTensor,
    /// CUDA graphs: the input and logits on the GPU, bound at the same addresses every run.
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
    /// Why the host tensors of a CUDA session are in pageable memory, when pinned memory
    /// could not be had.
    pageable_reason: Option<String>,
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
        Runner {
            slots: Vec::new(),
            session,
            memory,
            fixed_batches: fixed_batches || memory == (Memory::Cuda { graphs: true }),
            half,
            side,
            pageable_reason: None,
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
    pub fn capture_graphs(&mut self) -> Result<(), String> {
        if !self.graphs() {
            return Ok(());
        }
        for b in BUCKETS {
            let x = probe_inputs(b * 3 * self.side * self.side);
            let run = |r: &mut Runner| r.run(&x, b).map_err(|e| format!("batch {b}: {e}"));
            let first = run(self)?;
            let mut last = first.clone();
            for _ in 0..RUNS_TO_REPLAY {
                last = run(self)?;
            }
            let drift = relative_drift(&first, &last);
            let finite = last.iter().all(|v| v.is_finite());
            if !finite || drift > 1e-3 {
                return Err(format!(
                    "the replayed graph of batch {b} gives logits {drift:.1e} of the largest away from a plain run"
                ));
            }
        }
        Ok(())
    }

    /// Runs `n` prepared faces (`n · 3 · S · S` values) and returns their logits, `n · 5`.
    pub fn run(&mut self, faces: &[f32], n: usize) -> ort::Result<Vec<f32>> {
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
            write(&mut slot.input, part, self.half)?;
            let mut binding = self.session.create_binding()?;
            match &mut slot.device {
                Some((input, out)) => {
                    slot.input.copy_into(&mut *input)?;
                    binding.bind_input("pixel_values", input)?;
                    binding.bind_output("logits", &mut *out)?;
                }
                None => {
                    binding.bind_input("pixel_values", &slot.input)?;
                    binding.bind_output("logits", &mut slot.logits)?;
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
                // Pinned memory makes the copies DMAs; where the runtime has no pinned
                // allocator, pageable tensors still work (ONNX Runtime stages the copies).
                let host = |kind| pinned(&self.session, kind).map_err(|e| e.to_string());
                let (host_in, host_out) =
                    match (host(MemoryType::CPUInput), host(MemoryType::CPUOutput)) {
                        (Ok(i), Ok(o)) => (i, o),
                        (Err(e), _) | (_, Err(e)) => {
                            self.pageable_reason = Some(e);
                            (Allocator::default(), Allocator::default())
                        }
                    };
                let (device, options) = if graphs {
                    let (tensors, options) =
                        graph_side(&self.session, elem, &input_shape, &logits_shape, batch)?;
                    (Some(tensors), Some(options))
                } else {
                    (None, None)
                };
                Slot {
                    batch,
                    input: DynTensor::new(&host_in, elem, input_shape)?,
                    logits: DynTensor::new(&host_out, elem, logits_shape)?,
                    device,
                    options,
                }
            }
        };
        self.slots.push(slot);
        Ok(self.slots.len() - 1)
    }
}

/// A CUDA-graph slot's input and logits on the GPU, and the run options naming its graph.
fn graph_side(
    session: &Session,
    elem: TensorElementType,
    input_shape: &[usize],
    logits_shape: &[usize],
    batch: usize,
) -> ort::Result<((DynTensor, DynTensor), RunOptions)> {
    let info = MemoryInfo::new(
        AllocationDevice::CUDA,
        0,
        AllocatorType::Device,
        MemoryType::Default,
    )?;
    let gpu = Allocator::new(session, info)?;
    let tensors = (
        DynTensor::new(&gpu, elem, input_shape.to_vec())?,
        DynTensor::new(&gpu, elem, logits_shape.to_vec())?,
    );
    let mut options = RunOptions::new()?;
    let id = BUCKETS.iter().position(|&b| b == batch).unwrap_or(0);
    options.set("gpu_graph_id", id.to_string())?;
    Ok((tensors, options))
}

/// The CUDA session's allocator of pinned host memory of `kind` (input or output).
fn pinned(session: &Session, kind: MemoryType) -> ort::Result<Allocator> {
    let info = MemoryInfo::new(
        AllocationDevice::CUDA_PINNED,
        0,
        AllocatorType::Device,
        kind,
    )?;
    Allocator::new(session, info)
}

/// Writes `faces` into the head of `input` and zeroes the padding behind them.
fn write(input: &mut DynTensor, faces: &[f32], half: bool) -> ort::Result<()> {
    if half {
        let (_, data) = input.try_extract_tensor_mut::<f16>()?;
        let (head, pad) = data.split_at_mut(faces.len());
        for (d, v) in head.iter_mut().zip(faces) {
            *d = f16::from_f32(*v);
        }
        pad.fill(f16::ZERO);
    } else {
        let (_, data) = input.try_extract_tensor_mut::<f32>()?;
        let (head, pad) = data.split_at_mut(faces.len());
        head.copy_from_slice(faces);
        pad.fill(0.0);
    }
    Ok(())
}

/// Appends the first `len` logits of `logits` to `out` as f32.
fn read(logits: &DynTensor, len: usize, half: bool, out: &mut Vec<f32>) -> ort::Result<()> {
    if half {
        let (_, data) = logits.try_extract_tensor::<f16>()?;
        out.extend(data[..len].iter().map(|v| v.to_f32()));
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
    fn drift_is_the_largest_difference_over_the_largest_reference_magnitude() {
        assert_eq!(relative_drift(&[2.0, -4.0], &[2.0, -4.0]), 0.0);
        assert_eq!(relative_drift(&[2.0, -4.0], &[1.0, -4.5]), 0.25);
        assert!(probe_inputs(64).iter().any(|v| *v != 0.0));
    }
}
