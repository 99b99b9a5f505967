//! # sd2deepfake
//!
//! Classifies the faces attached upstream (`GstVideoRegionOfInterestMeta` of type `face`,
//! from `sd2facedetect` or any element that attaches them) with an SD² model exported by
//! `sd2-train export`, running on ONNX Runtime. Each face gets a `deepfake` param (label,
//! probabilities, fake score, the judgement, track id, frames ago; see [`crate::roi`]),
//! each frame a verdict (`Sd2FrameVerdictMeta`: fake when any face is judged fake), and
//! when a face's track turns fake the element posts an `sd2-deepfake-alert` message
//! (`track_id`, `label` and `fake_type` (the most likely manipulation), `fake_score`,
//! `confidence`, `timestamp`, the box), which the frame's verdict also carries. A face is
//! fake under the `decision` rule: a manipulation type more probable than REAL (the
//! paper's rule, the default) or a fake score above `threshold`; a fake track turns real
//! again only `hysteresis` past the rule's boundary.
//!
//! ```text
//! gst-launch-1.0 -m filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect ! sd2deepfake model=sd2.onnx ! sd2json location=- ! fakesink
//! ```
//!
//! The element is plumbing over [`sd2_models::analyzer`]: the streaming thread matches a
//! frame's faces to tracks and plans which go to the model ([`Analyzer`]); frames wait in
//! order for a worker, which crops the due faces of the frames waiting together (up to
//! `batch-size` faces) into one [`Batch`] for the shared model, completes each frame
//! (smoothing, decision, alerts, frame verdict), attaches the outcome and pushes the frames
//! on in their order. At most `max-in-flight` frames with faces to classify wait; when that
//! many do, `queue-mode=block` holds the streaming thread (nothing is lost) and
//! `queue-mode=skip` lets the frame pass unanalysed (its faces carry their tracks' last
//! verdicts, marked `analysed=false`), counted in `skipped-frames` and reported by an
//! `sd2-deepfake-skipped` message. However many of them have faces, at most
//! `max-queued-frames` frames wait in all; beyond, the streaming thread waits in either mode
//! (a downstream that takes no frames holds the element back, as it would any other).
//! Elements running the same model file on the same device share one loaded model, which
//! batches faces across them.
//!
//! Locks: `state` (the Analyzer and the loaded model), then `shared.queue`, then
//! `settings`. A thread holding one may take those after it, never those before; `settings`
//! is only ever held alone or innermost. Messages are posted with no lock held, so a bus
//! sync handler may read properties.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use sd2_models::analyzer::{Analyzer, Batch, SharedModel};

use super::outcome;
use super::queue::{FrameJob, Item, Shared, survives_flush, take_run};
use super::settings::{self, LOAD_PROPERTIES, QueueMode, Settings};
use crate::frame::{self, RgbConverter};
use crate::roi;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2deepfake",
        gst::DebugColorFlags::empty(),
        Some("SD² deepfake classification"),
    )
});

/// What exists between start and stop.
struct State {
    model: Arc<SharedModel>,
    analyzer: Analyzer,
    /// The negotiated frame size, on the streaming side.
    size: Option<(u32, u32)>,
    worker: Option<JoinHandle<()>>,
}

pub struct Deepfake {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    shared: Arc<Shared>,
}

/// Faces on a buffer as pixel boxes: from the `detection` param's normalised box when it
/// has one, else from the ROI rectangle.
fn face_boxes(buf: &gst::BufferRef, (width, height): (u32, u32)) -> Vec<[f32; 4]> {
    let (w, h) = (width as f64, height as f64);
    // Boxes come from any upstream element: keep them within a frame's size of the frame,
    // so a broken one (NaN, infinite, huge) cannot make the crop allocate without bound.
    let bound = |v: f64, size: f64| {
        if v.is_nan() {
            0.0
        } else {
            v.clamp(-size, 2.0 * size) as f32
        }
    };
    roi::faces(buf)
        .map(|m| {
            let d = m.param(roi::DETECTION);
            let get = |k: &str| d.and_then(|s| s.get::<f64>(k).ok());
            let [a, b, c, e] = match (get("x_min"), get("y_min"), get("x_max"), get("y_max")) {
                (Some(a), Some(b), Some(c), Some(e)) => [a * w, b * h, c * w, e * h],
                _ => {
                    let (x, y, rw, rh) = m.rect();
                    let (x, y) = (x as f64, y as f64);
                    [x, y, x + rw as f64, y + rh as f64]
                }
            };
            [bound(a, w), bound(b, h), bound(c, w), bound(e, h)]
        })
        .collect()
}

fn skipped_message(skipped: u64, pts: Option<gst::ClockTime>) -> gst::Structure {
    gst::Structure::builder("sd2-deepfake-skipped")
        .field("skipped_frames", skipped)
        .field("timestamp", pts.map(|t| t.nseconds()).unwrap_or(u64::MAX))
        .build()
}

impl Deepfake {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn post(&self, s: gst::Structure) {
        let _ = self
            .obj()
            .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        {
            let q = self.shared.lock();
            if q.flushing {
                return Err(gst::FlowError::Flushing);
            }
            q.flow?;
        }
        let analysis = self.settings().analysis();
        let mut guard = self.state();
        let Some(st) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let Some(size) = st.size else {
            drop(guard);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("no caps were negotiated before the first buffer")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        st.analyzer.settings = analysis;
        let observed = st.analyzer.observe(&face_boxes(&buffer, size), size);
        let (mut guard, skip) = self.reserve(guard, observed.needs_model())?;
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let plan = st.analyzer.plan(observed, skip);
        let skipped = plan
            .starts_skip_run
            .then(|| skipped_message(st.analyzer.skipped(), buffer.pts()));
        drop(guard);
        if let Some(msg) = skipped {
            gst::debug!(CAT, imp = self, "queue full: frames pass unanalysed");
            self.post(msg);
        }
        let mut q = self.shared.lock();
        if q.flushing {
            return Err(gst::FlowError::Flushing);
        }
        q.items.push_back(Item::Frame(FrameJob { buffer, plan }));
        self.shared.ready.notify_all();
        q.flow
    }

    /// Waits for room for a frame and takes it: a place among the `max-in-flight` for one
    /// that goes to the model (unless `queue-mode=skip` skips it instead), and one among the
    /// `max-queued-frames` for every frame, which only a downstream that takes no frames,
    /// or a model far slower than the stream, fills: then the thread waits whatever the
    /// mode. Returns the state again and whether to skip the frame.
    fn reserve<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Option<State>>,
        needs_model: bool,
    ) -> Result<(MutexGuard<'a, Option<State>>, bool), gst::FlowError> {
        let mut skip = false;
        let mut q = self.shared.lock();
        loop {
            if q.flushing {
                return Err(gst::FlowError::Flushing);
            }
            // Read again on every wake: the limits and the mode may change while playing.
            let (max_in_flight, max_queued, mode) = {
                let s = self.settings();
                (s.max_in_flight, s.max_queued_frames, s.queue_mode)
            };
            let mut model_full =
                needs_model && !skip && q.in_flight >= max_in_flight.max(1) as usize;
            if model_full && mode == QueueMode::Skip {
                skip = true;
                model_full = false;
            }
            if !model_full && q.frames < max_queued.max(1) as usize {
                break;
            }
            drop(guard);
            q = self.shared.space.wait(q).unwrap_or_else(|p| p.into_inner());
            drop(q);
            guard = self.state();
            q = self.shared.lock();
            if guard.is_none() {
                return Err(gst::FlowError::Flushing);
            }
        }
        if needs_model && !skip {
            q.in_flight += 1;
        }
        q.frames += 1;
        drop(q);
        Ok((guard, skip))
    }

    /// The worker: takes runs of frames (or an event) in order, classifies, pushes.
    fn work(&self) {
        let mut converter: Option<RgbConverter> = None;
        loop {
            let batch = self.settings().batch_size.max(1) as usize;
            let run = {
                let mut q = self.shared.lock();
                // While flushing, what stays queued (sticky events) waits for the flush's end.
                while (q.items.is_empty() || q.flushing) && !q.stop {
                    q = self.shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.stop {
                    return;
                }
                q.busy = true;
                take_run(&mut q, batch)
            };
            let (in_flight, frames) = (run.in_flight, run.frames);
            let flow = self.process(run.items, &mut converter);
            let mut q = self.shared.lock();
            q.in_flight = q.in_flight.saturating_sub(in_flight);
            q.frames = q.frames.saturating_sub(frames);
            q.busy = false;
            if let Err(e) = flow
                && !q.flushing
            {
                q.flow = Err(e);
            }
            self.shared.space.notify_all();
        }
    }

    /// Pushes a serialized event downstream. A sticky event that a flush catches here goes
    /// back to the queue, which keeps it through the flush: downstream has not seen it.
    fn forward_event(&self, e: gst::Event) -> Result<(), gst::FlowError> {
        let kept = survives_flush(&e).then(|| e.clone());
        let put_back = |kept: Option<gst::Event>| {
            let mut q = self.shared.lock();
            if let Some(e) = kept.filter(|_| q.flushing) {
                q.items.push_front(Item::Event(e, None));
            }
        };
        if self.shared.lock().flushing {
            put_back(kept);
            return Err(gst::FlowError::Flushing);
        }
        let is_eos = e.type_() == gst::EventType::Eos;
        if !self.srcpad.push_event(e) {
            put_back(kept);
            if !is_eos {
                gst::debug!(CAT, imp = self, "an event was not handled downstream");
            }
        }
        Ok(())
    }

    fn process(
        &self,
        run: Vec<Item>,
        converter: &mut Option<RgbConverter>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut frames = Vec::new();
        for item in run {
            match item {
                Item::Event(e, conv) => {
                    if let Some(conv) = conv {
                        *converter = Some(*conv);
                    }
                    self.forward_event(e)?;
                }
                Item::Frame(f) => frames.push(f),
            }
        }
        if frames.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let model = match self.state().as_ref() {
            Some(st) => st.model.clone(),
            None => return Err(gst::FlowError::Flushing),
        };
        let verdicts = self.classify(&model, &frames, converter);
        let judge = self.settings().analysis().judge;
        let mut alerts = Vec::new();
        let mut buffers = Vec::with_capacity(frames.len());
        {
            let mut guard = self.state();
            let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            st.analyzer.settings.judge = judge;
            if verdicts.error.is_some() {
                st.analyzer.record_failure();
            }
            for (f, fresh) in frames.into_iter().zip(&verdicts.frames) {
                let outcome = st.analyzer.complete(&f.plan, fresh);
                let mut buffer = f.buffer;
                alerts.extend(outcome::attach(
                    buffer.make_mut(),
                    &outcome,
                    &judge,
                    model.name(),
                ));
                buffers.push(buffer);
            }
        }
        for s in alerts {
            gst::info!(CAT, imp = self, "alert: {s}");
            self.post(s);
        }
        for b in buffers {
            if self.shared.lock().flushing {
                return Err(gst::FlowError::Flushing);
            }
            self.srcpad.push(b)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Crops the due faces of `frames` and classifies them on the shared model; a frame
    /// that cannot be read, or a batch that fails, is reported and its faces go without.
    fn classify(
        &self,
        model: &SharedModel,
        frames: &[FrameJob],
        converter: &mut Option<RgbConverter>,
    ) -> sd2_models::analyzer::BatchVerdicts {
        let mut batch = Batch::new(model);
        for f in frames {
            let conv = converter.as_mut().filter(|_| f.plan.due_faces() > 0);
            let Some(conv) = conv else {
                batch.add_uncropped(&f.plan);
                continue;
            };
            if let Err(e) = conv.with_rgb(&f.buffer, |rgb| batch.add(&f.plan, rgb)) {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Decode,
                    ("frame {} not analysed: {}", f.plan.frame, e)
                );
                batch.add_uncropped(&f.plan);
            }
        }
        let verdicts = batch.classify();
        if let Some(e) = &verdicts.error {
            gst::element_imp_warning!(self, gst::StreamError::Failed, ("{}", e));
        }
        if let Some(why) = &verdicts.graphs_off {
            gst::warning!(CAT, imp = self, "{why}");
        }
        verdicts
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStart(_) => {
                {
                    let mut q = self.shared.lock();
                    q.flushing = true;
                    q.flush();
                    self.shared.space.notify_all();
                }
                self.srcpad.push_event(event)
            }
            gst::EventView::FlushStop(_) => self.flush_stop(event),
            gst::EventView::Caps(c) => {
                let conv = match gst_video::VideoInfo::from_caps(c.caps())
                    .map_err(|e| e.to_string())
                    .and_then(|info| RgbConverter::new(&info).map_err(|e| e.to_string()))
                {
                    Ok(conv) => conv,
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("cannot use caps {}: {}", c.caps(), e)
                        );
                        return false;
                    }
                };
                if let Some(st) = self.state().as_mut() {
                    st.size = Some((conv.info().width(), conv.info().height()));
                }
                self.enqueue_event(event, Some(Box::new(conv)))
            }
            _ if event.is_serialized() => self.enqueue_event(event, None),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn enqueue_event(&self, event: gst::Event, converter: Option<Box<RgbConverter>>) -> bool {
        let mut q = self.shared.lock();
        if q.flushing {
            return false;
        }
        q.items.push_back(Item::Event(event, converter));
        self.shared.ready.notify_all();
        true
    }

    fn flush_stop(&self, event: gst::Event) -> bool {
        {
            let mut q = self.shared.lock();
            while q.busy {
                q = self.shared.space.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            q.flush();
        }
        if let Some(st) = self.state().as_mut() {
            st.analyzer.reset();
        }
        // Downstream stops flushing first, so that the sticky events kept through the flush
        // reach it (as `queue` does).
        let forwarded = self.srcpad.push_event(event);
        let mut q = self.shared.lock();
        q.flushing = false;
        q.flow = Ok(gst::FlowSuccess::Ok);
        self.shared.ready.notify_all();
        forwarded
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            if !self.sinkpad.peer_query(q.query_mut()) {
                return false;
            }
            let (live, min, max) = q.result();
            // A frame waits behind the others queued: as many as `max-queued-frames`.
            let frames = self.settings().max_queued_frames.max(1) as u64;
            let duration = self
                .sinkpad
                .current_caps()
                .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
                .map(|i| i.fps())
                .filter(|f| f.numer() > 0)
                .and_then(|f| {
                    gst::ClockTime::SECOND.mul_div_floor(f.denom() as u64, f.numer() as u64)
                })
                .unwrap_or_default();
            q.set(
                live,
                min.saturating_add(duration),
                max.map(|m| m.saturating_add(duration.saturating_mul(frames))),
            );
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Loads (or joins) the shared model, reports where it runs, starts the worker.
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings().clone();
        let model = SharedModel::get(
            &s.model,
            s.device.into(),
            s.cuda_graph,
            s.batch_size.max(1) as usize,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("sd2deepfake: {}", e)))?;
        if let Some(why) = model.cuda_graph_off() {
            gst::warning!(
                CAT,
                imp = self,
                "cuda-graph=true: CUDA graphs not used: {why}"
            );
        }
        for note in model.staging_notes() {
            gst::warning!(CAT, imp = self, "model {}: {note}", model.name());
        }
        crate::device::report_placement(
            self.obj().upcast_ref(),
            *CAT,
            &format!("model {}", model.name()),
            model.placement(),
            model.fallback_reason(),
        );
        {
            let mut q = self.shared.lock();
            q.empty();
            q.flushing = false;
            q.stop = false;
            q.flow = Ok(gst::FlowSuccess::Ok);
        }
        let weak = self.obj().downgrade();
        let worker = std::thread::Builder::new()
            .name("sd2deepfake-worker".into())
            .spawn(move || {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().work();
                }
            })
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ("cannot start the worker thread: {}", e)
                )
            })?;
        *self.state() = Some(State {
            model,
            analyzer: Analyzer::new(s.analysis()),
            size: None,
            worker: Some(worker),
        });
        Ok(())
    }

    fn stop(&self) {
        {
            let mut q = self.shared.lock();
            q.stop = true;
            q.flushing = true;
            q.empty();
            self.shared.ready.notify_all();
            self.shared.space.notify_all();
        }
        let worker = self.state().as_mut().and_then(|st| st.worker.take());
        if let Some(w) = worker {
            let _ = w.join();
        }
        if let Some(st) = self.state().take()
            && (st.analyzer.failures() > 0 || st.analyzer.skipped() > 0)
        {
            gst::info!(
                CAT,
                imp = self,
                "{} frames skipped, {} batches failed",
                st.analyzer.skipped(),
                st.analyzer.failures()
            );
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for Deepfake {
    const NAME: &'static str = "GstSd2Deepfake";
    type Type = super::Deepfake;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad =
            gst::Pad::builder_from_template(&klass.pad_template("sink").expect("sink template"))
                .chain_function(|pad, parent, buffer| {
                    Deepfake::catch_panic_pad_function(
                        parent,
                        || Err(gst::FlowError::Error),
                        |this| this.chain(pad, buffer),
                    )
                })
                .event_function(|pad, parent, event| {
                    Deepfake::catch_panic_pad_function(
                        parent,
                        || false,
                        |this| this.sink_event(pad, event),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
        let srcpad =
            gst::Pad::builder_from_template(&klass.pad_template("src").expect("src template"))
                .query_function(|pad, parent, query| {
                    Deepfake::catch_panic_pad_function(
                        parent,
                        || false,
                        |this| this.src_query(pad, query),
                    )
                })
                .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
                .build();
        Deepfake {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            shared: Arc::new(Shared::new()),
        }
    }
}

impl ObjectImpl for Deepfake {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("add the sink pad");
        obj.add_pad(&self.srcpad).expect("add the src pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        settings::specs()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // What the loaded model depends on changes at the next start, not under a running
        // one: refused while it runs, so that reading it back names what is loaded.
        if LOAD_PROPERTIES.contains(&pspec.name()) && self.state().is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "{} cannot change while the element runs (stop it first): kept",
                pspec.name()
            );
            return;
        }
        self.settings().set(pspec.name(), value);
        // A streaming thread waiting for room looks at the new limits.
        self.shared.space.notify_all();
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "active-device" => self
                .state()
                .as_ref()
                .map(|st| st.model.placement().to_string())
                .to_value(),
            "skipped-frames" => self
                .state()
                .as_ref()
                .map_or(0, |st| st.analyzer.skipped())
                .to_value(),
            "queued-frames" => (self.shared.lock().frames as u32).to_value(),
            name => self.settings().get(name),
        }
    }
}

impl GstObjectImpl for Deepfake {}

impl ElementImpl for Deepfake {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² deepfake classification",
                "Filter/Analyzer/Video",
                "Classifies the faces attached upstream as real or face swapping, reenactment, synthesis or editing with an SD² model",
                "SD² GStreamer developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = frame::caps();
            crate::pads::sink_and_src(&caps, &caps)
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused
            && let Err(e) = self.start()
        {
            self.post_error_message(e);
            return Err(gst::StateChangeError);
        }
        if transition == gst::StateChange::PausedToReady {
            // Unblock a streaming thread waiting for room before the pads deactivate.
            let mut q = self.shared.lock();
            q.flushing = true;
            self.shared.space.notify_all();
        }
        let result = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            self.stop();
        }
        Ok(result)
    }
}
