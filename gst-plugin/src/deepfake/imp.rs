//! # sd2deepfake
//!
//! Classifies the faces attached upstream (`GstVideoRegionOfInterestMeta` of type `face`,
//! from `sd2facedetect` or any element that attaches them) with an SD² model exported by
//! `sd2-train export`, running on ONNX Runtime. Each face gets a `deepfake` param (label,
//! probabilities, fake score, track id, frames ago; see [`crate::roi`]), each frame a
//! verdict (`Sd2FrameVerdictMeta`: fake when any face is judged fake, its fake score above
//! `threshold`), and when a face's track turns fake the element posts an
//! `sd2-deepfake-alert` message (`track_id`, `label`, `fake_type` (the most likely
//! manipulation), `fake_score`, `confidence`, `timestamp`, the box). A fake track turns
//! real again only once its score is `hysteresis` below the threshold.
//!
//! ```text
//! gst-launch-1.0 -m filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect ! sd2deepfake model=sd2.onnx ! sd2json location=- ! fakesink
//! ```
//!
//! Inference runs off the streaming thread: frames wait in order for a worker, which
//! classifies the faces of the frames waiting together (up to `batch-size` faces) and
//! pushes the frames on in their order. At most `max-in-flight` frames with faces to
//! classify wait; when that many do, `queue-mode=block` holds the streaming thread
//! (nothing is lost) and `queue-mode=skip` lets the frame pass unanalysed (its faces carry
//! their tracks' last verdicts, marked `analysed=false`), counted in `skipped-frames` and
//! reported by an `sd2-deepfake-skipped` message. However many of them have faces, at most
//! `max-queued-frames` frames wait in all; beyond, the streaming thread waits in either mode
//! (a downstream that takes no frames holds the element back, as it would any other).
//! Elements running the same model file on the same device share one loaded model, which
//! batches faces across them.
//!
//! Faces are followed across frames by box overlap; a tracked face goes back to the model
//! every `reclassify-interval` frames (on frames that `inference-interval` selects) and
//! carries its smoothed verdict in between.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use sd2_models::classifier::Verdict;
use sd2_models::paths;
use sd2_models::tracker::Tracker;

use super::queue::{FaceJob, FrameJob, Item, Shared, survives_flush, take_run};
use super::service::Service;
use super::tracks::{TrackState, due, smooth};
use crate::device::DeviceKind;
use crate::frame::{self, RgbConverter};
use crate::roi;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2deepfake",
        gst::DebugColorFlags::empty(),
        Some("SD² deepfake classification"),
    )
});

/// What to do with a frame when `max-in-flight` frames already wait for inference.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2QueueMode")]
pub enum QueueMode {
    #[default]
    #[enum_value(
        name = "Block: hold the streaming thread until there is room (nothing is lost)",
        nick = "block"
    )]
    Block = 0,
    #[enum_value(
        name = "Skip: let the frame pass unanalysed, its faces carrying their last verdicts (never blocks a live source)",
        nick = "skip"
    )]
    Skip = 1,
}

#[derive(Debug, Clone)]
struct Settings {
    model: PathBuf,
    device: DeviceKind,
    cuda_graph: bool,
    batch_size: u32,
    max_in_flight: u32,
    max_queued_frames: u32,
    queue_mode: QueueMode,
    threshold: f32,
    inference_interval: u32,
    reclassify_interval: u32,
    smoothing: f32,
    hysteresis: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: paths::model_dir().join("sd2-demo.onnx"),
            device: DeviceKind::default(),
            cuda_graph: false,
            batch_size: 32,
            max_in_flight: 4,
            max_queued_frames: 64,
            queue_mode: QueueMode::default(),
            threshold: 0.5,
            inference_interval: 1,
            reclassify_interval: 1,
            smoothing: 0.5,
            hysteresis: 0.1,
        }
    }
}

/// What exists between start and stop.
struct State {
    service: Arc<Service>,
    tracker: Tracker<TrackState>,
    /// Frames seen since start or the last flush.
    frame: u64,
    /// The negotiated frame size, on the streaming side.
    size: Option<(u32, u32)>,
    skipped: u64,
    /// The previous frame was skipped (a run of skips is reported once).
    skipping: bool,
    failures: u64,
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
fn face_boxes(buf: &gst::BufferRef, width: u32, height: u32) -> Vec<[f32; 4]> {
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

impl Deepfake {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings().clone();
        {
            let q = self.shared.lock();
            if q.flushing {
                return Err(gst::FlowError::Flushing);
            }
            q.flow?;
        }
        let mut guard = self.state();
        let Some(st) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        let Some((width, height)) = st.size else {
            drop(guard);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("no caps were negotiated before the first buffer")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let boxes = face_boxes(&buffer, width, height);
        let frame = st.frame;
        st.frame += 1;
        // A track whose face is still with the model outlives its absence: its verdict,
        // alert state and smoothing wait for it. A frame waits behind at most
        // `max-queued-frames` others, so the result is back (or failed) by then.
        let waits = settings.max_queued_frames as u64 + 1;
        let tracks = st
            .tracker
            .update_keeping(frame, &boxes, |s: &TrackState| s.pending(frame, waits));
        let analysed = frame % settings.inference_interval.max(1) as u64 == 0;
        let reclassify = settings.reclassify_interval.max(1) as u64;
        let wanted: Vec<bool> = tracks
            .iter()
            .map(|&t| due(&st.tracker.tracks[t].state, frame, analysed, reclassify))
            .collect();
        let needs_model = wanted.iter().any(|&w| w);
        // Room for the frame? One that goes to the model needs a place among the
        // `max-in-flight` (else queue-mode decides), and every frame one among the
        // `max-queued-frames`, which only a downstream that takes no frames, or a model far
        // slower than the stream, fills: then the thread waits whatever the mode.
        let mut skipped = false;
        {
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
                    needs_model && !skipped && q.in_flight >= max_in_flight.max(1) as usize;
                if model_full && mode == QueueMode::Skip {
                    skipped = true;
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
            if needs_model && !skipped {
                q.in_flight += 1;
            }
            q.frames += 1;
        }
        let st = guard.as_mut().expect("checked above");
        let mut skip_message = None;
        if skipped {
            st.skipped += 1;
            if !st.skipping {
                gst::debug!(
                    CAT,
                    imp = self,
                    "queue full: frame {frame} passes unanalysed"
                );
                skip_message = Some(
                    gst::message::Element::builder(
                        gst::Structure::builder("sd2-deepfake-skipped")
                            .field("skipped_frames", st.skipped)
                            .field(
                                "timestamp",
                                buffer.pts().map(|t| t.nseconds()).unwrap_or(u64::MAX),
                            )
                            .build(),
                    )
                    .src(&*self.obj())
                    .build(),
                );
            }
        }
        st.skipping = skipped;
        let faces = boxes
            .iter()
            .zip(&tracks)
            .zip(&wanted)
            .map(|((b, &t), &w)| {
                let track = &mut st.tracker.tracks[t];
                let due = w && !skipped;
                if due {
                    track.state.scheduled = Some(frame);
                }
                FaceJob {
                    track: track.id,
                    bbox: *b,
                    norm: [
                        b[0] as f64 / width as f64,
                        b[1] as f64 / height as f64,
                        b[2] as f64 / width as f64,
                        b[3] as f64 / height as f64,
                    ],
                    due,
                }
            })
            .collect();
        drop(guard);
        // Posted with the state unlocked: a bus sync handler may read `skipped-frames`.
        if let Some(msg) = skip_message {
            let _ = self.obj().post_message(msg);
        }
        let mut q = self.shared.lock();
        if q.flushing {
            return Err(gst::FlowError::Flushing);
        }
        q.items.push_back(Item::Frame(FrameJob {
            buffer,
            frame,
            faces,
            skipped,
        }));
        self.shared.ready.notify_all();
        q.flow
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
                    // A sticky event that a flush catches here goes back to the queue, which
                    // keeps it through the flush: downstream has not seen it.
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
                }
                Item::Frame(f) => frames.push(f),
            }
        }
        if frames.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let service = match self.state().as_ref() {
            Some(st) => st.service.clone(),
            None => return Err(gst::FlowError::Flushing),
        };
        // Crop every face that goes to the model.
        let per = service.input_len();
        let mut inputs = Vec::new();
        let mut index: Vec<Vec<Option<usize>>> = Vec::with_capacity(frames.len());
        for f in &frames {
            let mut idx = vec![None; f.faces.len()];
            let due: Vec<(usize, [f32; 4])> = f
                .faces
                .iter()
                .enumerate()
                .filter(|(_, x)| x.due)
                .map(|(i, x)| (i, x.bbox))
                .collect();
            if !due.is_empty()
                && let Some(conv) = converter.as_mut()
            {
                let start = inputs.len();
                inputs.resize(start + per * due.len(), 0.0);
                let recipe = *service.recipe();
                let ok = conv.with_rgb(&f.buffer, |rgb| {
                    for (k, (_, b)) in due.iter().enumerate() {
                        recipe.input_for(
                            rgb,
                            *b,
                            &mut inputs[start + k * per..start + (k + 1) * per],
                        );
                    }
                });
                match ok {
                    Ok(()) => {
                        for (k, (i, _)) in due.iter().enumerate() {
                            idx[*i] = Some(start / per + k);
                        }
                    }
                    Err(e) => {
                        inputs.truncate(start);
                        gst::element_imp_warning!(
                            self,
                            gst::StreamError::Decode,
                            ("frame {} not analysed: {}", f.frame, e)
                        );
                    }
                }
            }
            index.push(idx);
        }
        let verdicts = match service.classify(inputs) {
            Ok(v) => v,
            Err(e) => {
                if let Some(st) = self.state().as_mut() {
                    st.failures += 1;
                }
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Failed,
                    ("faces not classified: {}", e)
                );
                Vec::new()
            }
        };
        let settings = self.settings().clone();
        let name = service.name().to_owned();
        let mut alerts = Vec::new();
        let mut buffers = Vec::with_capacity(frames.len());
        {
            let mut guard = self.state();
            let Some(st) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            for (f, idx) in frames.into_iter().zip(index) {
                let mut buffer = f.buffer;
                let b = buffer.make_mut();
                let pts = b.pts();
                let (mut best, mut best_label, mut fake_faces, mut analysed) =
                    (0.0f64, "REAL", 0u32, 0u32);
                let mut metas: Vec<_> = b
                    .iter_meta_mut::<VideoRegionOfInterestMeta>()
                    .filter(|m| m.roi_type() == roi::FACE)
                    .collect();
                for ((face, i), meta) in f.faces.iter().zip(idx).zip(metas.iter_mut()) {
                    let fresh = i.and_then(|i| verdicts.get(i));
                    // As fresh as the schedule wants: not on a skipped frame, nor for a face
                    // due whose crop or batch failed.
                    let current = !f.skipped && (fresh.is_some() || !face.due);
                    // The track may have ended on the streaming side (unseen for a while)
                    // before its face came back from the model: its verdict still counts.
                    let mut track = st.tracker.tracks.iter_mut().find(|t| t.id == face.track);
                    let known = match track.as_deref_mut() {
                        Some(t) => {
                            if let Some(v) = fresh {
                                let old = t.state.verdict.as_ref().map(|(v, _)| v);
                                t.state.verdict =
                                    Some((smooth(old, v, settings.smoothing), f.frame));
                            }
                            t.state.verdict.map(|(v, at)| (v, at, t.state.fake))
                        }
                        None => fresh.map(|v| (*v, f.frame, false)),
                    };
                    let Some((v, at, was_fake)) = known else {
                        meta.add_param(roi::unanalysed_param(&name, face.track));
                        continue;
                    };
                    analysed += 1;
                    meta.add_param(roi::deepfake_param(
                        &v,
                        &name,
                        face.track,
                        (f.frame - at) as u32,
                        current,
                    ));
                    let score = v.fake_score() as f64;
                    let bar = if was_fake {
                        settings.threshold - settings.hysteresis
                    } else {
                        settings.threshold
                    };
                    let fake = score > bar as f64;
                    if fake {
                        fake_faces += 1;
                    }
                    if score >= best {
                        best = score;
                        best_label = v.label().code();
                    }
                    if fake && !was_fake {
                        alerts.push(alert(&v, face.track, face.norm, pts));
                    }
                    if let Some(t) = track {
                        t.state.fake = fake;
                    }
                }
                drop(metas);
                roi::set_frame_verdict(
                    b,
                    gst::Structure::builder("frame_verdict")
                        .field("fake", fake_faces > 0)
                        .field("fake_score", best)
                        .field("label", best_label)
                        .field("faces", f.faces.len() as u32)
                        .field("fake_faces", fake_faces)
                        .field("analysed_faces", analysed)
                        .field("skipped", f.skipped)
                        .field("threshold", settings.threshold as f64)
                        .field("model_name", name.as_str())
                        .build(),
                );
                buffers.push(buffer);
            }
        }
        for s in alerts {
            gst::info!(CAT, imp = self, "alert: {s}");
            let _ = self
                .obj()
                .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
        }
        let mut flow = Ok(gst::FlowSuccess::Ok);
        for b in buffers {
            if self.shared.lock().flushing {
                return Err(gst::FlowError::Flushing);
            }
            flow = self.srcpad.push(b);
            if flow.is_err() {
                break;
            }
        }
        flow
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
            gst::EventView::FlushStop(_) => {
                {
                    let mut q = self.shared.lock();
                    while q.busy {
                        q = self.shared.space.wait(q).unwrap_or_else(|p| p.into_inner());
                    }
                    q.flush();
                }
                if let Some(st) = self.state().as_mut() {
                    st.tracker.clear();
                    st.frame = 0;
                    st.skipping = false;
                }
                // Downstream stops flushing first, so that the sticky events kept through
                // the flush reach it (as `queue` does).
                let forwarded = self.srcpad.push_event(event);
                let mut q = self.shared.lock();
                q.flushing = false;
                q.flow = Ok(gst::FlowSuccess::Ok);
                self.shared.ready.notify_all();
                forwarded
            }
            _ if event.is_serialized() => {
                let mut converter = None;
                if let gst::EventView::Caps(c) = event.view() {
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
                    converter = Some(Box::new(conv));
                }
                let mut q = self.shared.lock();
                if q.flushing {
                    return false;
                }
                q.items.push_back(Item::Event(event, converter));
                self.shared.ready.notify_all();
                true
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
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

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings().clone();
        let service = Service::get(
            &s.model,
            s.device.into(),
            s.cuda_graph,
            s.batch_size.max(1) as usize,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("sd2deepfake: {}", e)))?;
        if let Some(why) = service.cuda_graph_off() {
            gst::warning!(
                CAT,
                imp = self,
                "cuda-graph=true: CUDA graphs not used: {why}"
            );
        }
        for note in service.staging_notes() {
            gst::warning!(CAT, imp = self, "model {}: {note}", service.name());
        }
        crate::device::report_placement(
            self.obj().upcast_ref(),
            *CAT,
            &format!("model {}", service.name()),
            service.placement(),
            service.fallback_reason(),
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
            service,
            tracker: Tracker::new(0.3, 25),
            frame: 0,
            size: None,
            skipped: 0,
            skipping: false,
            failures: 0,
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
            && (st.failures > 0 || st.skipped > 0)
        {
            gst::info!(
                CAT,
                imp = self,
                "{} frames skipped, {} batches failed",
                st.skipped,
                st.failures
            );
        }
    }
}

fn alert(v: &Verdict, track: u64, bbox: [f64; 4], pts: Option<gst::ClockTime>) -> gst::Structure {
    gst::Structure::builder("sd2-deepfake-alert")
        .field("track_id", track)
        .field("label", v.label().code())
        .field("fake_type", v.most_likely_fake().code())
        .field("fake_score", v.fake_score() as f64)
        .field("confidence", v.confidence() as f64)
        .field("timestamp", pts.map(|t| t.nseconds()).unwrap_or(u64::MAX))
        .field("x_min", bbox[0])
        .field("y_min", bbox[1])
        .field("x_max", bbox[2])
        .field("y_max", bbox[3])
        .build()
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
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("SD² model file written by `sd2-train export` (input pixel_values, outputs logits and embedding, crop recipe in its metadata); default: the demo model")
                    .default_value(Some(d.model.to_string_lossy().as_ref()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", d.device)
                    .nick("Device")
                    .blurb("Where the model runs: cpu, cuda (fails to start if CUDA cannot be used) or auto (CUDA when it works, else the CPU; the choice is logged)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("cuda-graph")
                    .nick("CUDA graphs")
                    .blurb("On CUDA, pad batches to 1, 2, 4, ... 128 faces and capture one CUDA graph per size when the element starts, replayed on later runs; when ONNX Runtime refuses graphs for the model, or a capture or replay fails, it runs without them and logs why")
                    .default_value(d.cuda_graph)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Most faces classified in one run of the model; the faces of the frames waiting together (and of other streams sharing the model) go in one batch. Nothing waits for a batch to fill")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(d.batch_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-in-flight")
                    .nick("Frames in flight")
                    .blurb("Most frames with faces to classify that wait for or are in inference; beyond, queue-mode decides")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(d.max_in_flight)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-queued-frames")
                    .nick("Frames queued")
                    .blurb("Most frames of any kind waiting in the element (those without faces to classify wait in order behind those with). When that many wait the streaming thread waits, whatever queue-mode says: only a downstream that takes no frames, or a model much slower than the stream, fills it. Bounds the memory held (about 3 MB a 1080p I420 frame)")
                    .minimum(1)
                    .maximum(100_000)
                    .default_value(d.max_queued_frames)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("queue-mode", d.queue_mode)
                    .nick("Queue mode")
                    .blurb("When max-in-flight frames wait: block the streaming thread (nothing is lost), or skip (the frame passes unanalysed; for live sources)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Fake threshold")
                    .blurb("A face is judged fake when its fake score (1 - p(REAL)) is above this; a frame is fake when any face is")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-interval")
                    .nick("Inference interval")
                    .blurb("Send tracked faces to the model only on every Nth frame (new faces go at first sight); the frames in between carry each track's last verdict, with frames_ago set")
                    .minimum(1)
                    .default_value(d.inference_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("reclassify-interval")
                    .nick("Reclassify interval")
                    .blurb("Send a tracked face to the model again once this many frames have passed since it last went")
                    .minimum(1)
                    .default_value(d.reclassify_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("smoothing")
                    .nick("Smoothing")
                    .blurb("Weight of a track's past verdict when a new one arrives (0: the latest verdict only)")
                    .minimum(0.0)
                    .maximum(0.99)
                    .default_value(d.smoothing)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("hysteresis")
                    .nick("Hysteresis")
                    .blurb("A face judged fake stays fake until its fake score falls this far below threshold, so a score wavering around the threshold raises one alert")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.hysteresis)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("skipped-frames")
                    .nick("Skipped frames")
                    .blurb("Frames let through unanalysed since start because the queue was full (queue-mode=skip)")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("active-device")
                    .nick("Active device")
                    .blurb("Where the model runs once started (cpu or cuda); unset before")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // What the loaded model depends on changes at the next start, not under a running
        // one: refused while it runs, so that reading it back names what is loaded.
        let loads = ["model", "device", "cuda-graph", "batch-size"].contains(&pspec.name());
        if loads && self.state().is_some() {
            gst::warning!(
                CAT,
                imp = self,
                "{} cannot change while the element runs (stop it first): kept",
                pspec.name()
            );
            return;
        }
        let mut s = self.settings();
        match pspec.name() {
            "model" => {
                s.model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map_or_else(|| Settings::default().model, PathBuf::from)
            }
            "device" => s.device = value.get().expect("type checked upstream"),
            "cuda-graph" => s.cuda_graph = value.get().expect("type checked upstream"),
            "batch-size" => s.batch_size = value.get().expect("type checked upstream"),
            "max-in-flight" => s.max_in_flight = value.get().expect("type checked upstream"),
            "max-queued-frames" => {
                s.max_queued_frames = value.get().expect("type checked upstream")
            }
            "queue-mode" => s.queue_mode = value.get().expect("type checked upstream"),
            "threshold" => s.threshold = value.get().expect("type checked upstream"),
            "inference-interval" => {
                s.inference_interval = value.get().expect("type checked upstream")
            }
            "reclassify-interval" => {
                s.reclassify_interval = value.get().expect("type checked upstream")
            }
            "smoothing" => s.smoothing = value.get().expect("type checked upstream"),
            "hysteresis" => s.hysteresis = value.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
        drop(s);
        // A streaming thread waiting for room looks at the new limits.
        self.shared.space.notify_all();
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "active-device" => {
                return self
                    .state()
                    .as_ref()
                    .map(|st| st.service.placement().to_string())
                    .to_value();
            }
            "skipped-frames" => return self.state().as_ref().map_or(0, |st| st.skipped).to_value(),
            _ => {}
        }
        let s = self.settings();
        match pspec.name() {
            "model" => s.model.to_string_lossy().to_value(),
            "device" => s.device.to_value(),
            "cuda-graph" => s.cuda_graph.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "max-in-flight" => s.max_in_flight.to_value(),
            "max-queued-frames" => s.max_queued_frames.to_value(),
            "queue-mode" => s.queue_mode.to_value(),
            "threshold" => s.threshold.to_value(),
            "inference-interval" => s.inference_interval.to_value(),
            "reclassify-interval" => s.reclassify_interval.to_value(),
            "smoothing" => s.smoothing.to_value(),
            "hysteresis" => s.hysteresis.to_value(),
            other => unreachable!("no property {other}"),
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
