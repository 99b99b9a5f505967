//! One loaded model per model file, device and CUDA-graph setting in the process, shared by
//! every stream that runs it: each stream hands it faces, and its thread classifies the
//! faces of every stream waiting at that moment in one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::classifier::{DeepfakeModel, Verdict};
use crate::crop::CropRecipe;
use crate::runtime::{Device, Placement, RuntimeError, SessionConfig};

use super::AnalysisError;

/// What one batch the faces went in gave back.
#[derive(Debug)]
pub struct Classified {
    /// One verdict per face handed in, in order.
    pub verdicts: Vec<Verdict>,
    /// Set on the batch during which CUDA graphs failed and were turned off: why.
    pub graphs_off: Option<String>,
}

type Reply = Result<Classified, AnalysisError>;

struct Job {
    inputs: Vec<f32>,
    reply: SyncSender<Reply>,
}

/// Faces handed to the model, not yet back.
pub struct Pending(Option<Receiver<Reply>>);

impl Pending {
    /// Waits for the verdicts.
    pub fn wait(self) -> Reply {
        match self.0 {
            None => Ok(Classified {
                verdicts: Vec::new(),
                graphs_off: None,
            }),
            Some(rx) => rx.recv().map_err(|_| AnalysisError::Stopped)?,
        }
    }
}

/// How much work the model's thread has done: runs of the model and faces classified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub runs: u64,
    pub faces: u64,
}

#[derive(Default)]
struct Counters {
    runs: AtomicU64,
    faces: AtomicU64,
}

/// A loaded model and the thread that runs it. Dropping the last handle ends the thread.
pub struct SharedModel {
    jobs: Sender<Job>,
    recipe: CropRecipe,
    input_len: usize,
    name: String,
    version: String,
    placement: Placement,
    fallback_reason: Option<String>,
    cuda_graph_off: Option<String>,
    staging_notes: Vec<String>,
    counters: Arc<Counters>,
}

/// Model file, device and whether CUDA graphs are asked for.
type Key = (PathBuf, String, bool);

static LOADED: LazyLock<Mutex<HashMap<Key, Weak<SharedModel>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The model thread: takes the first job waiting and every other one waiting behind it, up
/// to `max_batch` faces, runs them as one batch and answers each job with its share.
fn serve(mut model: DeepfakeModel, jobs: Receiver<Job>, max_batch: usize, counters: &Counters) {
    let per = model.input_len();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let mut faces = batch[0].inputs.len() / per;
        while faces < max_batch {
            match jobs.try_recv() {
                Ok(j) => {
                    faces += j.inputs.len() / per;
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        let joined: Vec<f32>;
        let inputs = if let [only] = batch.as_slice() {
            &only.inputs
        } else {
            joined = batch
                .iter()
                .flat_map(|j| j.inputs.iter().copied())
                .collect();
            &joined
        };
        let graphs = model.cuda_graph();
        let result = model.classify(inputs);
        let graphs_off = (graphs && !model.cuda_graph()).then(|| {
            model
                .cuda_graph_off()
                .unwrap_or("CUDA graphs turned off")
                .to_owned()
        });
        counters.runs.fetch_add(1, Ordering::Relaxed);
        counters.faces.fetch_add(faces as u64, Ordering::Relaxed);
        match result {
            Ok(verdicts) => {
                let mut rest = verdicts.as_slice();
                for j in batch {
                    let (mine, others) = rest.split_at(j.inputs.len() / per);
                    rest = others;
                    let _ = j.reply.send(Ok(Classified {
                        verdicts: mine.to_vec(),
                        graphs_off: graphs_off.clone(),
                    }));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for j in batch {
                    let _ = j.reply.send(Err(AnalysisError::Classify(e.clone())));
                }
            }
        }
    }
}

impl SharedModel {
    /// The model at `path` on `device` (with CUDA graphs when `cuda_graph`), loaded when no
    /// stream runs it yet. `max_batch` bounds the faces of one run (the first caller's wins).
    pub fn get(
        path: &Path,
        device: Device,
        cuda_graph: bool,
        max_batch: usize,
    ) -> Result<Arc<SharedModel>, RuntimeError> {
        let key = (
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
            device.to_string(),
            cuda_graph,
        );
        let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = loaded.get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let config = SessionConfig {
            cuda_graph,
            ..SessionConfig::default()
        };
        // The model is loaded on the thread that runs it: ONNX Runtime keeps CUDA graphs per
        // thread, and the load captures them.
        let (tx, rx) = channel();
        let (loaded_tx, loaded_rx) = sync_channel(1);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("sd2-inference".into())
            .spawn(move || match DeepfakeModel::load(&owned, device, config) {
                Ok(model) => {
                    let counters = Arc::new(Counters::default());
                    let _ = loaded_tx.send(Ok(SharedModel {
                        jobs: tx,
                        recipe: *model.recipe(),
                        input_len: model.input_len(),
                        name: model.name().to_owned(),
                        version: model.version().to_owned(),
                        placement: model.placement(),
                        fallback_reason: model.fallback_reason().map(str::to_owned),
                        cuda_graph_off: model.cuda_graph_off().map(str::to_owned),
                        staging_notes: model.staging().1,
                        counters: counters.clone(),
                    }));
                    serve(model, rx, max_batch.max(1), &counters);
                }
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                }
            })
            .map_err(|e| RuntimeError::Ort(format!("cannot start the inference thread: {e}")))?;
        let model = Arc::new(loaded_rx.recv().map_err(|_| {
            RuntimeError::Ort("the inference thread ended while loading the model".into())
        })??);
        loaded.insert(key, Arc::downgrade(&model));
        Ok(model)
    }

    /// Hands prepared faces (`n · input_len()` values) to the model's thread.
    pub fn submit(&self, inputs: Vec<f32>) -> Result<Pending, AnalysisError> {
        if inputs.is_empty() {
            return Ok(Pending(None));
        }
        let (reply, rx) = sync_channel(1);
        self.jobs
            .send(Job { inputs, reply })
            .map_err(|_| AnalysisError::Stopped)?;
        Ok(Pending(Some(rx)))
    }

    /// Classifies prepared faces, waiting for the result.
    pub fn classify(&self, inputs: Vec<f32>) -> Result<Classified, AnalysisError> {
        self.submit(inputs)?.wait()
    }

    pub fn recipe(&self) -> &CropRecipe {
        &self.recipe
    }

    /// Values per face input: `3 · S · S`.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Why `Device::Auto` runs on the CPU, when it does.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Why CUDA graphs were asked for and are not used, when they are not.
    pub fn cuda_graph_off(&self) -> Option<&str> {
        self.cuda_graph_off.as_deref()
    }

    /// On CUDA: ways of running that failed before the one in use, one line each.
    pub fn staging_notes(&self) -> &[String] {
        &self.staging_notes
    }

    pub fn stats(&self) -> ModelStats {
        ModelStats {
            runs: self.counters.runs.load(Ordering::Relaxed),
            faces: self.counters.faces.load(Ordering::Relaxed),
        }
    }
}
