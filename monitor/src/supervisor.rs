//! The thread that keeps one channel running. It builds the pipeline and watches its bus;
//! when a live source fails, ends or stops delivering frames for `stall_timeout_s`, it
//! tears down that channel's pipeline only and builds it again after a delay that doubles
//! from `reconnect_min_s` to `reconnect_max_s` ([`Backoff`]). A file ends (`on_eos = "end"`,
//! the default) or plays again from its start without a gap (`"loop"`: segment seeks, or
//! a rebuild when the file's format does not allow them). A stop ends the stream so that
//! `sd2publish` drains its spool (bounded by `drain_timeout_s`), then stops.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::backoff::Backoff;
use crate::channel::{self, Channel, Command, State};
use crate::config::{OnEos, ServiceConfig};
use crate::evidence::Evidence;
use crate::pipeline::{self, Pipeline};
use crate::probes;
use crate::stats;

/// How often the bus wait wakes to look at commands and the frame count.
const TICK: gst::ClockTime = gst::ClockTime::from_mseconds(100);

/// How a run of the pipeline ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Stopped on command.
    Stopped,
    /// A file reached its end.
    Ended,
    /// A looping file whose format refused a segment seek reached its end.
    Restart,
    /// The source failed, ended or stalled: why.
    Lost(String),
}

pub fn supervise(
    ch: &Arc<Channel>,
    service: &ServiceConfig,
    evidence: &Evidence,
    commands: Receiver<Command>,
) {
    let mut backoff = Backoff::new(service.reconnect_min(), service.reconnect_max());
    tracing::info!(
        channel = ch.name(),
        event = "starting",
        kind = ch.config.input.kind(),
        input = ch.config.input.describe(),
        "channel starting"
    );
    loop {
        let (end, healthy) = run(ch, service, evidence, &commands);
        match end {
            End::Stopped => break,
            End::Restart => {
                tracing::info!(channel = ch.name(), event = "loop", "file playing again");
            }
            End::Ended => {
                ch.set_state(State::Ended, None, None);
                tracing::info!(channel = ch.name(), event = "ended", "file ended");
                let _ = commands.recv();
                break;
            }
            End::Lost(reason) => {
                let delay = backoff.after(healthy);
                ch.set_state(State::Reconnecting, Some(reason.clone()), Some(delay));
                tracing::warn!(
                    channel = ch.name(),
                    event = "source_lost",
                    error = %reason,
                    retry_in_s = delay.as_secs_f64(),
                    "source lost"
                );
                match commands.recv_timeout(delay) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                }
                stats::add(&ch.stats.reconnects, 1);
                tracing::info!(
                    channel = ch.name(),
                    event = "reconnecting",
                    reconnects = stats::get(&ch.stats.reconnects),
                    "reconnecting"
                );
            }
        }
    }
    ch.set_state(State::Stopped, None, None);
    tracing::info!(channel = ch.name(), event = "stopped", "channel stopped");
}

/// Builds, starts and watches one pipeline; returns how it ended and for how long it
/// delivered frames.
fn run(
    ch: &Arc<Channel>,
    service: &ServiceConfig,
    evidence: &Evidence,
    commands: &Receiver<Command>,
) -> (End, Duration) {
    ch.set_state(State::Starting, None, None);
    let p = match pipeline::build(&ch.config, service) {
        Ok(p) => p,
        Err(e) => return (End::Lost(e), Duration::ZERO),
    };
    probes::install(
        &p,
        probes::Sink {
            channel: ch.name().to_owned(),
            source: ch.config.input.describe().to_owned(),
            analysis_fps: ch.config.analysis_fps,
            stats: ch.stats.clone(),
            evidence: evidence.clone(),
        },
    );
    ch.stats.forget_pending();
    ch.status().running = Some(p.clone());
    let bus = p.pipeline.bus().expect("a pipeline has a bus");
    let looping = ch.config.input.is_file() && ch.config.on_eos == OnEos::Loop;
    let target = if looping {
        gst::State::Paused
    } else {
        gst::State::Playing
    };
    let mut watch = Watch::new(ch, &p, &bus, service, looping);
    let end = match p.pipeline.set_state(target) {
        Ok(_) => watch.run(commands),
        Err(_) => {
            End::Lost(first_error(&bus).unwrap_or_else(|| "the pipeline did not start".into()))
        }
    };
    let healthy = watch.healthy();
    teardown(ch, &p);
    (end, healthy)
}

/// The steps of a looping file's start.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LoopStart {
    Preroll,
    SeekPreroll,
    Playing,
    Done,
}

/// Watches a started pipeline.
struct Watch<'a> {
    ch: &'a Channel,
    p: &'a Pipeline,
    bus: &'a gst::Bus,
    service: &'a ServiceConfig,
    /// Where a looping file is in its start.
    loop_start: LoopStart,
    frames: u64,
    first_frame: Option<Instant>,
    last_frame: Instant,
}

impl<'a> Watch<'a> {
    fn new(
        ch: &'a Channel,
        p: &'a Pipeline,
        bus: &'a gst::Bus,
        service: &'a ServiceConfig,
        looping: bool,
    ) -> Self {
        Watch {
            ch,
            p,
            bus,
            service,
            loop_start: if looping {
                LoopStart::Preroll
            } else {
                LoopStart::Done
            },
            frames: stats::get(&ch.stats.frames),
            first_frame: None,
            last_frame: Instant::now(),
        }
    }

    /// For how long frames flowed.
    fn healthy(&self) -> Duration {
        self.first_frame
            .map(|f| self.last_frame.saturating_duration_since(f))
            .unwrap_or_default()
    }

    fn run(&mut self, commands: &Receiver<Command>) -> End {
        loop {
            match commands.try_recv() {
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return self.drain(),
                Err(TryRecvError::Empty) => {}
            }
            if let Some(msg) = self.bus.timed_pop(TICK)
                && let Some(end) = self.message(&msg)
            {
                return end;
            }
            if let Some(end) = self.check_frames() {
                return end;
            }
        }
    }

    fn check_frames(&mut self) -> Option<End> {
        let frames = stats::get(&self.ch.stats.frames);
        let now = Instant::now();
        if frames != self.frames {
            self.frames = frames;
            self.last_frame = now;
            if self.first_frame.is_none() {
                self.first_frame = Some(now);
                self.ch.set_state(State::Playing, None, None);
                tracing::info!(channel = self.ch.name(), event = "playing", "frames flow");
            }
            return None;
        }
        let stalled = now.duration_since(self.last_frame);
        (stalled >= self.service.stall_timeout())
            .then(|| End::Lost(format!("no frame for {:.1} s", stalled.as_secs_f64())))
    }

    fn message(&mut self, msg: &gst::Message) -> Option<End> {
        use gst::MessageView;
        let from_pipeline = msg.src() == Some(self.p.pipeline.upcast_ref());
        match msg.view() {
            MessageView::Error(e) => {
                let src = msg.src().map(|s| s.path_string()).unwrap_or_default();
                tracing::debug!(channel = self.ch.name(), event = "error_detail", debug = ?e.debug(), "what GStreamer says of the error");
                Some(End::Lost(format!("{src}: {}", e.error())))
            }
            MessageView::Eos(_) => Some(self.end_of_stream()),
            MessageView::AsyncDone(_) if from_pipeline => {
                self.start_loop(None);
                None
            }
            MessageView::StateChanged(c) if from_pipeline => {
                self.start_loop(Some(c.current()));
                None
            }
            MessageView::SegmentDone(_) => {
                (!segment_seek(&self.p.pipeline, false)).then_some(End::Restart)
            }
            MessageView::Warning(w) => {
                let src = msg.src().map(|s| s.path_string()).unwrap_or_default();
                tracing::warn!(channel = self.ch.name(), event = "warning", source = %src, warning = %w.error(), "GStreamer warns");
                None
            }
            MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    self.element_message(s);
                }
                None
            }
            _ => None,
        }
    }

    /// Takes a looping file through its start: preroll, a flushing segment seek to the
    /// start, preroll again, play, then let frames in at their time (`state` is the
    /// pipeline's new state, `None` for an async-done).
    fn start_loop(&mut self, state: Option<gst::State>) {
        self.loop_start = match (self.loop_start, state) {
            (LoopStart::Preroll, None) => {
                if segment_seek(&self.p.pipeline, true) {
                    LoopStart::SeekPreroll
                } else {
                    tracing::info!(
                        channel = self.ch.name(),
                        event = "loop_by_restart",
                        "the file refuses segment seeks: it loops by starting again"
                    );
                    let _ = self.p.pipeline.set_state(gst::State::Playing);
                    LoopStart::Playing
                }
            }
            (LoopStart::SeekPreroll, None) => {
                let _ = self.p.pipeline.set_state(gst::State::Playing);
                LoopStart::Playing
            }
            (LoopStart::Playing, Some(gst::State::Playing)) => {
                if let Some(pace) = &self.p.pace {
                    pace.set_property("sync", true);
                }
                LoopStart::Done
            }
            (other, _) => other,
        };
    }

    /// Logs what the analysis and publish elements report.
    fn element_message(&self, s: &gst::StructureRef) {
        match s.name().as_str() {
            "sd2-deepfake-skipped" => tracing::warn!(
                channel = self.ch.name(),
                event = "skipping",
                skipped_frames = s.get::<u64>("skipped_frames").unwrap_or(0),
                "the model is behind: frames pass unanalysed"
            ),
            "sd2-publish-dropped" => tracing::warn!(
                channel = self.ch.name(),
                event = "publish_dropped",
                dropped = s.get::<u64>("dropped").unwrap_or(0),
                "the spool is full: its oldest messages are dropped"
            ),
            _ => {}
        }
    }

    fn end_of_stream(&self) -> End {
        match (self.ch.config.input.is_file(), self.ch.config.on_eos) {
            (true, OnEos::End) => End::Ended,
            (true, OnEos::Loop) => End::Restart,
            (false, _) => End::Lost("the stream ended".into()),
        }
    }

    /// Ends the stream and waits, up to the drain timeout and a margin, for the end to
    /// pass `sd2publish` (which waits for its spool to drain). The end goes in after the
    /// source, whatever it is: a looping file's demuxer would answer an end sent to the
    /// source with the end of its segment, not of the stream.
    fn drain(&self) -> End {
        self.ch.set_state(State::Stopping, None, None);
        let entry = self
            .p
            .entry
            .static_pad("sink")
            .expect("a queue has a sink pad");
        if !entry.send_event(gst::event::Eos::new()) {
            return End::Stopped;
        }
        let limit = self.service.drain_timeout() + Duration::from_secs(2);
        let msg = self.bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let backlog = self
            .p
            .publish
            .as_ref()
            .map(|pb| channel::read_publish(&self.ch.stats, pb, false).backlog);
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => tracing::info!(
                channel = self.ch.name(),
                event = "drained",
                backlog,
                "stream ended and the spool drained"
            ),
            _ => tracing::warn!(
                channel = self.ch.name(),
                event = "drain_incomplete",
                backlog,
                "stopped before the stream ended; what is left stays in the spool"
            ),
        }
        End::Stopped
    }
}

/// Plays the file again from its start: a flushing seek to start the first segment, then
/// one without flushing at each segment's end, so that playback has no gap.
fn segment_seek(pipeline: &gst::Pipeline, flush: bool) -> bool {
    let mut flags = gst::SeekFlags::SEGMENT;
    if flush {
        flags |= gst::SeekFlags::FLUSH;
    }
    pipeline
        .seek(
            1.0,
            flags,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::None,
            gst::ClockTime::NONE,
        )
        .is_ok()
}

/// The first error on the bus, as a line.
fn first_error(bus: &gst::Bus) -> Option<String> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(200),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{}: {}",
            msg.src().map(|s| s.path_string()).unwrap_or_default(),
            e.error()
        )),
        _ => None,
    }
}

/// Stops the pipeline, adding its publish counters to the channel's totals first.
fn teardown(ch: &Channel, p: &Pipeline) {
    {
        let mut status = ch.status();
        if let Some(publish) = &p.publish {
            channel::read_publish(&ch.stats, publish, true);
        }
        status.running = None;
    }
    let _ = p.pipeline.set_state(gst::State::Null);
}
