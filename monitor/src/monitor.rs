//! The service: its channels by name, the models they share, the evidence writer. Adding a
//! channel checks everything that can be checked before it starts (its fields, its model
//! loading, its pipeline building), so a bad channel is refused with a message and never
//! disturbs the others.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sd2_models::analyzer::SharedModel;

use crate::channel::{Channel, ChannelView, State};
use crate::config::{self, ChannelConfig, ChannelFields, Config, ServiceConfig};
use crate::evidence::Evidence;
use crate::pipeline;

/// Why a channel was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("{0}")]
    Invalid(String),
    #[error("a channel named {0:?} exists")]
    Exists(String),
    #[error("the monitor is shutting down")]
    ShuttingDown,
}

/// Why a channel was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("no channel named {0:?}")]
    NotFound(String),
    #[error("channel {0:?} is being removed")]
    Removing(String),
}

/// A loaded model: its file (canonical) and device.
type ModelKey = (PathBuf, String);

pub struct Monitor {
    pub service: Arc<ServiceConfig>,
    defaults: ChannelFields,
    base: PathBuf,
    channels: Mutex<BTreeMap<String, Arc<Channel>>>,
    /// Held so that a channel whose pipeline is rebuilt finds its model loaded.
    models: Mutex<HashMap<ModelKey, Arc<SharedModel>>>,
    /// One add at a time: a name is checked and taken in one step.
    adding: Mutex<()>,
    evidence: Evidence,
    shutting_down: AtomicBool,
    pub started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// A monitor with no channel yet, and the evidence writer's thread.
    pub fn new(config: &Config) -> std::io::Result<(Arc<Monitor>, std::thread::JoinHandle<()>)> {
        let (evidence, writer) = Evidence::start(config.service.evidence_dir.clone())?;
        let m = Monitor {
            service: Arc::new(config.service.clone()),
            defaults: config.defaults.clone(),
            base: config.base.clone(),
            channels: Mutex::default(),
            models: Mutex::default(),
            adding: Mutex::new(()),
            evidence,
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
        };
        Ok((Arc::new(m), writer))
    }

    /// Loads the channel's model (or finds it loaded) and builds its pipeline once, without
    /// starting it: what fails here would fail on every try.
    pub fn prepare(&self, cfg: &ChannelConfig) -> Result<(), String> {
        let key = (
            std::fs::canonicalize(&cfg.model).unwrap_or_else(|_| cfg.model.clone()),
            cfg.device.to_string(),
        );
        if !lock(&self.models).contains_key(&key) {
            let model = SharedModel::get(
                &cfg.model,
                cfg.device,
                false,
                self.service.batch_size as usize,
            )
            .map_err(|e| format!("model {}: {e}", cfg.model.display()))?;
            tracing::info!(
                event = "model_loaded",
                model = %cfg.model.display(),
                name = model.name(),
                placement = %model.placement(),
                "model loaded"
            );
            lock(&self.models).insert(key, model);
        }
        pipeline::build(cfg, &self.service).map(drop)
    }

    /// Checks and starts a channel given as fields (the API's `POST /channels`).
    pub fn add_fields(&self, fields: ChannelFields) -> Result<Arc<Channel>, AddError> {
        let cfg = config::resolve(fields, &self.defaults, &self.base)
            .map_err(|e| AddError::Invalid(e.to_string()))?;
        self.add(cfg)
    }

    /// Checks and starts a channel.
    pub fn add(&self, cfg: ChannelConfig) -> Result<Arc<Channel>, AddError> {
        let _one = lock(&self.adding);
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(AddError::ShuttingDown);
        }
        if lock(&self.channels).contains_key(&cfg.name) {
            return Err(AddError::Exists(cfg.name));
        }
        self.prepare(&cfg)
            .map_err(|e| AddError::Invalid(format!("channel {:?}: {e}", cfg.name)))?;
        let name = cfg.name.clone();
        let ch = Channel::start(cfg, self.service.clone(), self.evidence.clone())
            .map_err(|e| AddError::Invalid(format!("cannot start a thread: {e}")))?;
        lock(&self.channels).insert(name, ch.clone());
        Ok(ch)
    }

    /// Stops a channel (its spool drained, bounded) and forgets it.
    pub fn remove(&self, name: &str) -> Result<ChannelView, RemoveError> {
        let ch = lock(&self.channels)
            .get(name)
            .cloned()
            .ok_or_else(|| RemoveError::NotFound(name.to_owned()))?;
        if matches!(ch.state(), State::Stopping | State::Stopped) {
            return Err(RemoveError::Removing(name.to_owned()));
        }
        tracing::info!(channel = name, event = "removing", "channel removal asked");
        if !ch.stop(self.stop_wait()) {
            tracing::warn!(
                channel = name,
                event = "stop_timeout",
                "the channel did not stop in time; forgotten anyway"
            );
        }
        let view = ch.view();
        lock(&self.channels).remove(name);
        self.release_models();
        Ok(view)
    }

    /// How long a stop may take: the drain, and a margin for tearing down.
    fn stop_wait(&self) -> Duration {
        self.service.drain_timeout() + Duration::from_secs(5)
    }

    /// Lets go of models no channel uses.
    fn release_models(&self) {
        let used: Vec<ModelKey> = self
            .channels()
            .iter()
            .map(|c| {
                (
                    std::fs::canonicalize(&c.config.model)
                        .unwrap_or_else(|_| c.config.model.clone()),
                    c.config.device.to_string(),
                )
            })
            .collect();
        lock(&self.models).retain(|k, _| used.contains(k));
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        lock(&self.channels).values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        lock(&self.channels).get(name).cloned()
    }

    pub fn models(&self) -> Vec<Arc<SharedModel>> {
        lock(&self.models).values().cloned().collect()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Stops every channel at once, each draining its spool; returns when all have
    /// stopped or the drain timeout (and a margin) has passed.
    pub fn shutdown(&self) {
        {
            let _one = lock(&self.adding);
            self.shutting_down.store(true, Ordering::SeqCst);
        }
        let wait = self.stop_wait();
        let stopping: Vec<_> = self
            .channels()
            .into_iter()
            .map(|ch| std::thread::spawn(move || (ch.name().to_owned(), ch.stop(wait))))
            .collect();
        for t in stopping {
            if let Ok((name, false)) = t.join() {
                tracing::warn!(channel = %name, event = "stop_timeout", "the channel did not stop in time");
            }
        }
    }
}
