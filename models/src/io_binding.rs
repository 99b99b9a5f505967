//! Runs of the SD² model through ONNX Runtime's I/O binding.
//!
//! The faces are written into an input tensor that ONNX Runtime allocated: pinned host
//! memory on CUDA, so the copy to the GPU is one DMA that the runtime queues. Only `logits`
//! is bound as an output, into a tensor kept from run to run (pinned on CUDA), so the
//! embedding never leaves the device that computed it.
//!
//! With fixed batches ([`SessionConfig::fixed_batches`], implied by CUDA graphs) a batch is
//! padded to the next of [`BUCKETS`]; with CUDA graphs every bucket also gets its input and
//! logits on the GPU at addresses that never change and a graph id of its own, which is what
//! ONNX Runtime needs to capture one CUDA graph per bucket and replay it.
//!
//! [`SessionConfig::fixed_batches`]: crate::runtime::SessionConfig::fixed_batches

use half::f16;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{RunOptions, Session};
use ort::value::{DynTensor, TensorElementType};

use crate::taxonomy::DeepfakeType;

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
    pub session: Session,
    memory: Memory,
    fixed_batches: bool,
    half: bool,
    side: usize,
    slots: Vec<Slot>,
    /// Why the host tensors of a CUDA session are in pageable memory, when pinned memory
    /// could not be had.
    pageable_reason: Option<String>,
}

/// Slots kept at most: one per bucket with fixed batches; the most recently used batch
/// sizes otherwise (a few hundred MB at most for ViT-L/14 batches of 128).
const MAX_SLOTS: usize = BUCKETS.len();

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
            session,
            memory,
            fixed_batches: fixed_batches || matches!(memory, Memory::Cuda { graphs: true }),
            half,
            side,
            slots: Vec::new(),
            pageable_reason: None,
        }
    }

    /// Why this CUDA session's host tensors are pageable rather than pinned, when they are.
    pub fn pageable_reason(&self) -> Option<&str> {
        self.pageable_reason.as_deref()
    }

    /// Runs `n` prepared faces (`n · 3 · S · S` values) and returns their logits, `n · 5`.
    pub fn run(&mut self, faces: &[f32], n: usize) -> ort::Result<Vec<f32>> {
        let k = DeepfakeType::COUNT;
        let per_face = 3 * self.side * self.side;
        let step = if self.fixed_batches {
            BUCKETS[BUCKETS.len() - 1]
        } else {
            n.max(1)
        };
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
    /// used last; beyond [`MAX_SLOTS`] the least recently used goes (never with fixed
    /// batches, which have no more sizes than that).
    fn slot(&mut self, batch: usize) -> ort::Result<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.batch == batch) {
            let used = self.slots.remove(i);
            self.slots.push(used);
            return Ok(self.slots.len() - 1);
        }
        if self.slots.len() == MAX_SLOTS {
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
}
