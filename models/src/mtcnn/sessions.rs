//! A network's ONNX Runtime sessions: one for all input shapes, or one for each.
//!
//! With cuDNN 9, ONNX Runtime's CUDA `Conv` keeps the cuDNN execution plan of the last
//! input shape it saw and builds a new one (a cuDNN frontend graph, validated, its plans
//! built) whenever the shape differs from the previous run's. It caches nothing per shape.
//! P-Net runs each frame at every level of the image pyramid, one shape after another, so
//! a single session rebuilds every convolution's plan at every level of every frame;
//! R-Net's and O-Net's batches change size from frame to frame. A session per shape sees
//! one shape, builds its plans once and keeps them.

use std::path::{Path, PathBuf};

use ort::session::Session;

use crate::cuda_gate::Gated;
use crate::runtime::{self, Device, RuntimeError, SessionConfig};

/// At most this many sessions per network: a 4K frame's pyramid has 14 levels, the
/// padded R-Net and O-Net batches about ten sizes. Beyond it the least recently used goes.
pub const MAX_SHAPE_SESSIONS: usize = 24;

/// The sessions of one network file.
pub(super) struct NetSessions {
    path: PathBuf,
    device: Device,
    config: SessionConfig,
    hint: String,
    per_shape: bool,
    /// Each session with the shape it serves (`None`: none yet, or any shape when not
    /// `per_shape`) and when it was last used.
    /// Dropped under the CUDA gate (`cuda_gate::Gated`).
    open: Vec<(Option<[usize; 4]>, Gated<Session>, u64)>,
    clock: u64,
}

impl NetSessions {
    /// Wraps `first`, opened from `path` on `device` (already settled: CUDA or the CPU).
    /// With `per_shape`, `first` serves the first shape asked for and the others get
    /// sessions of their own, opened the same way.
    pub fn new(
        first: Gated<Session>,
        path: &Path,
        device: Device,
        config: SessionConfig,
        hint: &str,
        per_shape: bool,
    ) -> Self {
        NetSessions {
            path: path.to_owned(),
            device,
            config,
            hint: hint.to_owned(),
            per_shape,
            open: vec![(None, first, 0)],
            clock: 0,
        }
    }

    /// Whether the sessions run on CUDA.
    pub fn cuda(&self) -> bool {
        self.device != Device::Cpu
    }

    /// The session for inputs of `shape`, opened now if there is none yet.
    pub fn get(&mut self, shape: [usize; 4]) -> Result<&mut Session, RuntimeError> {
        self.clock += 1;
        let found = if !self.per_shape {
            Some(0)
        } else if let Some(i) = self.open.iter().position(|(s, ..)| *s == Some(shape)) {
            Some(i)
        } else if self.open[0].0.is_none() {
            // The session opened at load has served no shape yet.
            self.open[0].0 = Some(shape);
            Some(0)
        } else {
            None
        };
        let i = match found {
            Some(i) => i,
            None => {
                if self.open.len() >= MAX_SHAPE_SESSIONS {
                    let oldest = (0..self.open.len())
                        .min_by_key(|&i| self.open[i].2)
                        .expect("sessions are open");
                    self.open.swap_remove(oldest);
                }
                let loaded =
                    runtime::open_session(&self.path, self.device, self.config, &self.hint)?;
                self.open.push((Some(shape), loaded.session, 0));
                self.open.len() - 1
            }
        };
        self.open[i].2 = self.clock;
        Ok(&mut self.open[i].1)
    }

    /// Whether each input shape has a session of its own.
    pub fn per_shape(&self) -> bool {
        self.per_shape
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }
}
