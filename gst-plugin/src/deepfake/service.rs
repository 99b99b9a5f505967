//! One model per process, shared by every `sd2deepfake` that runs it: each element's
//! worker hands it faces, and it classifies the faces of several frames and several streams
//! in one batch when they arrive together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use sd2_models::classifier::{DeepfakeModel, Verdict};
use sd2_models::crop::CropRecipe;
use sd2_models::runtime::{Device, Placement, RuntimeError, SessionConfig};

use super::imp::CAT;

struct Job {
    inputs: Vec<f32>,
    reply: SyncSender<Result<Vec<Verdict>, String>>,
}

/// A loaded model and the thread that runs it.
pub struct Service {
    jobs: Sender<Job>,
    recipe: CropRecipe,
    input_len: usize,
    name: String,
    placement: Placement,
    fallback_reason: Option<String>,
    cuda_graph_off: Option<String>,
    /// On CUDA: ways of running that failed before the one in use, one line each.
    staging_notes: Vec<String>,
}

/// Model file, device and whether CUDA graphs are asked for.
type Key = (PathBuf, String, bool);

static SERVICES: LazyLock<Mutex<HashMap<Key, Weak<Service>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn run(mut model: DeepfakeModel, jobs: Receiver<Job>, max_batch: usize) {
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
        if graphs && !model.cuda_graph() {
            gst::warning!(
                CAT,
                "{}",
                model.cuda_graph_off().unwrap_or("CUDA graphs turned off")
            );
        }
        match result {
            Ok(verdicts) => {
                let mut rest = verdicts.as_slice();
                for j in batch {
                    let (mine, others) = rest.split_at(j.inputs.len() / per);
                    rest = others;
                    let _ = j.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => {
                for j in batch {
                    let _ = j.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

impl Service {
    /// The service for `path` on `device` (with CUDA graphs when `cuda_graph`), loading the
    /// model when no element runs it so yet. `max_batch` bounds the faces of one inference
    /// run (the first element's wins).
    pub fn get(
        path: &Path,
        device: Device,
        cuda_graph: bool,
        max_batch: usize,
    ) -> Result<Arc<Service>, RuntimeError> {
        let key = (
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
            device.to_string(),
            cuda_graph,
        );
        let mut services = SERVICES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = services.get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let config = SessionConfig {
            cuda_graph,
            ..SessionConfig::default()
        };
        // The model is loaded on the thread that runs it: CUDA graphs are captured per
        // thread, and the load captures them.
        let (tx, rx) = channel();
        let (loaded_tx, loaded_rx) = sync_channel(1);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("sd2-inference".into())
            .spawn(move || match DeepfakeModel::load(&owned, device, config) {
                Ok(model) => {
                    let _ = loaded_tx.send(Ok(Service {
                        jobs: tx,
                        recipe: *model.recipe(),
                        input_len: model.input_len(),
                        name: model.name().to_owned(),
                        placement: model.placement(),
                        fallback_reason: model.fallback_reason().map(str::to_owned),
                        cuda_graph_off: model.cuda_graph_off().map(str::to_owned),
                        staging_notes: model.staging().1,
                    }));
                    run(model, rx, max_batch.max(1));
                }
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                }
            })
            .map_err(|e| RuntimeError::Ort(format!("cannot start the inference thread: {e}")))?;
        let service = Arc::new(loaded_rx.recv().map_err(|_| {
            RuntimeError::Ort("the inference thread ended while loading the model".into())
        })??);
        services.insert(key, Arc::downgrade(&service));
        Ok(service)
    }

    /// Classifies prepared faces (`n · input_len()` values), waiting for the result.
    pub fn classify(&self, inputs: Vec<f32>) -> Result<Vec<Verdict>, String> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = sync_channel(1);
        self.jobs
            .send(Job { inputs, reply: tx })
            .map_err(|_| "the inference thread has stopped".to_owned())?;
        rx.recv()
            .map_err(|_| "the inference thread has stopped".to_owned())?
    }

    pub fn recipe(&self) -> &CropRecipe {
        &self.recipe
    }

    pub fn input_len(&self) -> usize {
        self.input_len
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

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
}
