//! Batches decoded and augmented on worker threads, delivered in order.
//!
//! Workers claim batch numbers in turn and never run more than `prefetch` batches ahead of
//! the consumer. Which images a batch holds and how each is augmented depend only on the
//! seed, the epoch and the batch number, so a resumed run sees exactly the batches the
//! killed run would have seen. A row whose image is missing or unreadable is reported and
//! left out of its batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use sd2_models::crop::CropRecipe;
use sd2_models::image::{ImageError, RgbImage};
use sd2_models::taxonomy::DeepfakeType;

use super::augment::{AugmentConfig, augment, fit_square};
use super::manifest::Manifest;
use super::rng::Rng;

/// One decoded face.
pub struct Sample {
    /// Normalised `[3, size, size]`.
    pub pixels: Vec<f32>,
    pub kind: DeepfakeType,
    pub face: Option<String>,
    pub environment: Option<String>,
    /// Index of the row in the manifest.
    pub row: usize,
}

pub struct Batch {
    /// Position of the batch in the epoch.
    pub index: usize,
    pub samples: Vec<Sample>,
    /// Rows left out, with why.
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    pub prefetch: usize,
    pub augment: AugmentConfig,
    pub recipe: CropRecipe,
    pub seed: u64,
}

/// Why a row is left out of its batch.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The row no longer reads as it did when the manifest was opened.
    #[error("{0}")]
    Row(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("reading it panicked: {0}")]
    Panicked(String),
}

/// Decodes, fits, augments and normalises one row.
pub fn load_sample(
    manifest: &Manifest,
    row: usize,
    config: &LoaderConfig,
    rng: &mut Rng,
) -> Result<Sample, SampleError> {
    let r = manifest
        .row(row)
        .map_err(|e| SampleError::Row(e.problem.to_string()))?;
    let path = manifest.image_path(&r);
    let img = RgbImage::open(&path)?;
    let img = augment(
        fit_square(img, config.recipe.input_size),
        &config.augment,
        rng,
    );
    let n = config.recipe.input_size;
    let mut pixels = vec![0.0; 3 * n * n];
    config.recipe.normalise_into(&img, &mut pixels);
    Ok(Sample {
        pixels,
        kind: r.kind,
        face: r.face.filter(|s| !s.trim().is_empty()),
        environment: r.environment.filter(|s| !s.trim().is_empty()),
        row,
    })
}

fn make_batch(
    manifest: &Manifest,
    order: &[usize],
    index: usize,
    epoch: u64,
    config: &LoaderConfig,
) -> Batch {
    let start = index * config.batch_size;
    let rows = &order[start..(start + config.batch_size).min(order.len())];
    let mut samples = Vec::with_capacity(rows.len());
    let mut skipped = Vec::new();
    for (k, &row) in rows.iter().enumerate() {
        let mut rng = Rng::keyed(config.seed, &[epoch, (start + k) as u64, 0xA06]);
        // A decoder that panics on a corrupt image costs that row, not the run.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            load_sample(manifest, row, config, &mut rng)
        }))
        .unwrap_or_else(|p| Err(SampleError::Panicked(panic_message(&*p).to_owned())));
        match loaded {
            Ok(s) => samples.push(s),
            Err(e) => skipped.push(format!(
                "{} line {}: {e}",
                manifest.path.display(),
                manifest.entries[row].line
            )),
        }
    }
    Batch {
        index,
        samples,
        skipped,
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

struct Shared {
    next: AtomicUsize,
    stop: AtomicBool,
    consumed: Mutex<usize>,
    moved: Condvar,
}

/// An epoch's batches from `first` on, in order.
pub struct BatchStream {
    rx: Receiver<Batch>,
    pending: BTreeMap<usize, Batch>,
    next: usize,
    end: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl BatchStream {
    /// `order` is the epoch's row order; batches are consecutive runs of `batch_size` rows.
    pub fn new(
        manifest: Arc<Manifest>,
        order: Arc<Vec<usize>>,
        epoch: u64,
        first: usize,
        config: LoaderConfig,
    ) -> Self {
        let end = order.len().div_ceil(config.batch_size.max(1));
        let shared = Arc::new(Shared {
            next: AtomicUsize::new(first),
            stop: AtomicBool::new(false),
            consumed: Mutex::new(first),
            moved: Condvar::new(),
        });
        let (tx, rx): (Sender<Batch>, Receiver<Batch>) = channel();
        let workers = (0..config.workers.max(1))
            .map(|_| {
                let (manifest, order, shared, tx, config) = (
                    manifest.clone(),
                    order.clone(),
                    shared.clone(),
                    tx.clone(),
                    config.clone(),
                );
                std::thread::Builder::new()
                    .name("sd2-loader".into())
                    .spawn(move || {
                        loop {
                            let i = shared.next.fetch_add(1, Ordering::SeqCst);
                            if i >= end {
                                return;
                            }
                            {
                                let mut consumed =
                                    shared.consumed.lock().unwrap_or_else(|p| p.into_inner());
                                while i >= *consumed + config.prefetch.max(1)
                                    && !shared.stop.load(Ordering::SeqCst)
                                {
                                    consumed = shared
                                        .moved
                                        .wait(consumed)
                                        .unwrap_or_else(|p| p.into_inner());
                                }
                            }
                            if shared.stop.load(Ordering::SeqCst) {
                                return;
                            }
                            if tx
                                .send(make_batch(&manifest, &order, i, epoch, &config))
                                .is_err()
                            {
                                return;
                            }
                        }
                    })
                    .expect("spawn a loader thread")
            })
            .collect();
        BatchStream {
            rx,
            pending: BTreeMap::new(),
            next: first,
            end,
            shared,
            workers,
        }
    }
}

impl Iterator for BatchStream {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            return None;
        }
        while !self.pending.contains_key(&self.next) {
            let Ok(b) = self.rx.recv() else {
                // Every worker is gone with batches still due: one panicked. Re-raise it
                // rather than end the epoch early.
                for w in self.workers.drain(..) {
                    if let Err(p) = w.join() {
                        std::panic::resume_unwind(p);
                    }
                }
                panic!(
                    "the data loader stopped before batch {} of {}",
                    self.next, self.end
                );
            };
            self.pending.insert(b.index, b);
        }
        let batch = self.pending.remove(&self.next);
        self.next += 1;
        *self
            .shared
            .consumed
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self.next;
        self.shared.moved.notify_all();
        batch
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.moved.notify_all();
        // Unblock workers waiting to send by draining the channel.
        while self.rx.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The rows of an epoch in training order: `rows` shuffled by the seed and the epoch.
pub fn epoch_order(rows: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = rows.to_vec();
    Rng::keyed(seed, &[epoch, 0x0DE]).shuffle(&mut order);
    order
}
