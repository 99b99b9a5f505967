//! What waits between `sd2deepfake`'s streaming thread and its inference worker: frames
//! and serialized events, in arrival order.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use sd2_models::analyzer::Plan;

use crate::frame::RgbConverter;

/// A frame waiting for the worker, with the Analyzer's plan for it.
pub struct FrameJob {
    pub buffer: gst::Buffer,
    pub plan: Plan,
}

pub enum Item {
    Frame(FrameJob),
    /// A serialized event; a caps event carries the converter for its format, built and
    /// checked when the caps arrived.
    Event(gst::Event, Option<Box<RgbConverter>>),
}

pub struct Queue {
    pub items: VecDeque<Item>,
    /// Frames with faces for the model, queued or being classified.
    pub in_flight: usize,
    /// Frames of any kind, queued or being classified.
    pub frames: usize,
    /// The worker is processing items it has taken.
    pub busy: bool,
    pub flushing: bool,
    pub stop: bool,
    /// The last flow return of a push downstream, given back to upstream.
    pub flow: Result<gst::FlowSuccess, gst::FlowError>,
}

pub struct Shared {
    pub queue: Mutex<Queue>,
    /// Signalled when items arrive or the worker must stop.
    pub ready: Condvar,
    /// Signalled when the worker frees capacity or goes idle.
    pub space: Condvar,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                in_flight: 0,
                frames: 0,
                busy: false,
                flushing: false,
                stop: false,
                flow: Ok(gst::FlowSuccess::Ok),
            }),
            ready: Condvar::new(),
            space: Condvar::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether a flush keeps `e` while it waits: the sticky events it does not end
/// (stream-start, caps, tags), which downstream has not seen yet and the frames after the
/// flush need. Segments and EOS go; a new segment follows.
pub fn survives_flush(e: &gst::Event) -> bool {
    e.is_sticky() && !matches!(e.type_(), gst::EventType::Segment | gst::EventType::Eos)
}

impl Queue {
    /// Empties the queue for a flush, keeping the events that [`survives_flush`] keeps
    /// (caps with their converter).
    pub fn flush(&mut self) {
        self.items.retain(|item| match item {
            Item::Event(e, _) => survives_flush(e),
            Item::Frame(_) => false,
        });
        self.in_flight = 0;
        self.frames = 0;
    }

    /// Empties the queue, events too (a start or a stop).
    pub fn empty(&mut self) {
        self.items.clear();
        self.in_flight = 0;
        self.frames = 0;
    }
}

/// A run of work taken from the queue.
pub struct Run {
    pub items: Vec<Item>,
    /// Its frames that counted as in flight.
    pub in_flight: usize,
    /// Its frames.
    pub frames: usize,
}

/// The next run of work: one event, or consecutive frames holding at most `batch` faces
/// for the model (at least one frame).
pub fn take_run(q: &mut Queue, batch: usize) -> Run {
    let mut run = Vec::new();
    let mut faces = 0;
    let mut counted = 0;
    while let Some(front) = q.items.front() {
        match front {
            Item::Event(..) if run.is_empty() => {
                run.push(q.items.pop_front().expect("front exists"));
                break;
            }
            Item::Event(..) => break,
            Item::Frame(f) => {
                let n = f.plan.due_faces();
                if !run.is_empty() && faces + n > batch {
                    break;
                }
                faces += n;
                if n > 0 {
                    counted += 1;
                }
                run.push(q.items.pop_front().expect("front exists"));
            }
        }
    }
    let frames = run.iter().filter(|i| matches!(i, Item::Frame(_))).count();
    Run {
        items: run,
        in_flight: counted,
        frames,
    }
}
