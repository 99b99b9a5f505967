//! `sd2deepfake`'s queue under a downstream that stops taking frames: how much it holds,
//! what a flush keeps, verdicts that come back after their track ended, and messages that
//! an application reads properties from as they are posted.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use sd2_models::image::RgbImage;

/// What reached the downstream pad: a buffer, with the caps the pad had then.
type Out = (gst::Buffer, Option<gst::Caps>);

/// `sd2deepfake` between two pads of the test's: the upstream one pushes from the test's
/// threads, the downstream one holds every buffer until [`Rig::open`].
struct Rig {
    element: gst::Element,
    src: gst::Pad,
    sink: gst::Pad,
    open: Arc<AtomicBool>,
    /// Buffers that reached the downstream pad, held or not.
    arrived: Arc<AtomicUsize>,
    out: Receiver<Out>,
}

impl Rig {
    fn new(props: &[(&str, &str)]) -> Rig {
        init();
        let mut b = gst::ElementFactory::make("sd2deepfake").property("model", demo_model());
        for (k, v) in props {
            b = b.property_from_str(k, v);
        }
        let element = b.build().unwrap();
        let open = Arc::new(AtomicBool::new(false));
        let (tx, out) = channel();
        let tx = Mutex::new(tx);
        let gate = open.clone();
        let arrived = Arc::new(AtomicUsize::new(0));
        let count = arrived.clone();
        let sink = gst::Pad::builder(gst::PadDirection::Sink)
            .chain_function(move |pad, _, buffer| {
                count.fetch_add(1, Ordering::SeqCst);
                while !gate.load(Ordering::SeqCst) {
                    if pad.pad_flags().contains(gst::PadFlags::FLUSHING) {
                        return Err(gst::FlowError::Flushing);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                let _ = tx.lock().unwrap().send((buffer, pad.current_caps()));
                Ok(gst::FlowSuccess::Ok)
            })
            .event_function(|_, _, _| true)
            // Any caps, as a sink that takes any video would.
            .query_function(|pad, _, query| match query.view_mut() {
                gst::QueryViewMut::AcceptCaps(q) => {
                    q.set_result(true);
                    true
                }
                gst::QueryViewMut::Caps(q) => {
                    q.set_result(&gst::Caps::new_any());
                    true
                }
                _ => gst::Pad::query_default(pad, None::<&gst::Object>, query),
            })
            .build();
        let src = gst::Pad::builder(gst::PadDirection::Src).build();
        src.link(&element.static_pad("sink").unwrap()).unwrap();
        element.static_pad("src").unwrap().link(&sink).unwrap();
        sink.set_active(true).unwrap();
        src.set_active(true).unwrap();
        element.set_bus(Some(&gst::Bus::new()));
        element.set_state(gst::State::Playing).unwrap();
        Rig {
            element,
            src,
            sink,
            open,
            arrived,
            out,
        }
    }

    fn start(&self, img: &RgbImage) {
        assert!(self.src.push_event(gst::event::StreamStart::new("test")));
        self.caps(img);
        self.segment();
    }

    fn caps(&self, img: &RgbImage) {
        assert!(self.src.push_event(gst::event::Caps::new(&rgb_caps(img))));
    }

    fn segment(&self) {
        let seg = gst::FormattedSegment::<gst::ClockTime>::new();
        assert!(self.src.push_event(gst::event::Segment::new(&seg)));
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The next buffer out, within 20 s.
    fn next(&self) -> Out {
        self.out
            .recv_timeout(Duration::from_secs(20))
            .expect("a buffer within 20 s")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.open();
        let _ = self.element.set_state(gst::State::Null);
        let _ = self.sink.set_active(false);
    }
}

/// A frame of `img` at `pts_ms` with `faces` (pixel rectangles) attached.
fn frame(img: &RgbImage, pts_ms: u64, faces: &[(u32, u32, u32, u32)]) -> gst::Buffer {
    let mut buf = rgb_buffer(img, pts_ms);
    for &f in faces {
        gst_video::VideoRegionOfInterestMeta::add(buf.get_mut().unwrap(), "face", f);
    }
    buf
}

/// The astronaut's face, as a rectangle.
fn astronaut() -> (u32, u32, u32, u32) {
    let [a, b, c, d] = ASTRONAUT_FACE;
    (a as u32, b as u32, (c - a) as u32, (d - b) as u32)
}

/// Pushes `n` frames of `img` without faces from a thread of its own; counts those the
/// element took.
fn push_faceless(
    rig: &Rig,
    img: &RgbImage,
    n: u64,
) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let taken = Arc::new(AtomicUsize::new(0));
    let (src, count, img) = (rig.src.clone(), taken.clone(), img.clone());
    let pusher = std::thread::spawn(move || {
        for i in 0..n {
            if src.push(frame(&img, i * 40, &[])).is_err() {
                break;
            }
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (taken, pusher)
}

/// Waits until `f` holds, at most `secs`.
fn eventually(secs: u64, f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn a_stalled_downstream_holds_max_queued_frames_in_either_mode() {
    for mode in ["skip", "block"] {
        let img = sample("astronaut.png");
        let rig = Rig::new(&[("max-queued-frames", "8"), ("queue-mode", mode)]);
        rig.start(&img);
        // Frames without faces: none of them counts as in flight.
        let (taken, pusher) = push_faceless(&rig, &img, 20);
        assert!(eventually(10, || taken.load(Ordering::SeqCst) >= 8));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            taken.load(Ordering::SeqCst),
            8,
            "queue-mode={mode}: the element took more frames than max-queued-frames while nothing left"
        );
        assert_eq!(rig.element.property::<u32>("queued-frames"), 8);
        rig.open();
        pusher.join().unwrap();
        let times: Vec<u64> = (0..20)
            .map(|_| rig.next().0.pts().unwrap().mseconds())
            .collect();
        assert_eq!(times, (0..20).map(|i| i * 40).collect::<Vec<_>>());
        assert!(eventually(10, || rig
            .element
            .property::<u32>("queued-frames")
            == 0));
    }
}

#[test]
fn a_flush_keeps_the_caps_that_were_still_queued() {
    let small = sample("astronaut.png");
    let large = sample("t1.jpg");
    let rig = Rig::new(&[]);
    rig.start(&small);
    // The worker takes this frame and waits downstream...
    assert!(rig.src.push(frame(&small, 0, &[])).is_ok());
    assert!(eventually(5, || rig.arrived.load(Ordering::SeqCst) == 1));
    // ...while the new caps wait behind it, when a flush comes.
    rig.caps(&large);
    assert!(rig.src.push_event(gst::event::FlushStart::new()));
    rig.open();
    assert!(rig.src.push_event(gst::event::FlushStop::new(true)));
    rig.segment();
    let pushed = rig.src.push(frame(&large, 0, &[]));
    assert!(pushed.is_ok(), "{pushed:?}");
    let (buf, caps) = rig.next();
    let (buf, caps) = if buf.size() == small.data.len() {
        // The frame before the flush got through before the pad flushed.
        rig.next()
    } else {
        (buf, caps)
    };
    assert_eq!(buf.size(), large.data.len());
    assert_eq!(
        caps.expect("caps downstream"),
        rgb_caps(&large),
        "the frame after the flush went out under the caps before it"
    );
}

#[test]
fn a_verdict_that_comes_back_after_its_track_ended_is_attached() {
    let img = sample("astronaut.png");
    let rig = Rig::new(&[]);
    rig.start(&img);
    assert!(rig.src.push(frame(&img, 0, &[])).is_ok());
    assert!(eventually(5, || rig.arrived.load(Ordering::SeqCst) == 1));
    // The face is queued behind the frame held downstream, and 30 frames without it follow:
    // the streaming side ends its track (25 frames unseen) before the worker gets to it.
    assert!(rig.src.push(frame(&img, 40, &[astronaut()])).is_ok());
    for i in 2..32 {
        assert!(rig.src.push(frame(&img, i * 40, &[])).is_ok());
    }
    rig.open();
    let _ = rig.next();
    let (with_face, _) = rig.next();
    let params = deepfake_params(&with_face);
    let p = params[0].as_ref().expect("a deepfake param on the face");
    assert_eq!(p.frames_ago, 0);
    assert_eq!(
        verdict(&with_face)
            .unwrap()
            .get::<u32>("analysed_faces")
            .unwrap(),
        1
    );
}

#[test]
fn an_application_reading_properties_as_messages_arrive_does_not_stall_the_stream() {
    let img = sample("astronaut.png");
    let rig = Rig::new(&[("max-in-flight", "1"), ("queue-mode", "skip")]);
    let read = Arc::new(AtomicUsize::new(0));
    {
        let (element, read) = (rig.element.clone(), read.clone());
        rig.element.bus().unwrap().set_sync_handler(move |_, msg| {
            if msg
                .structure()
                .is_some_and(|s| s.name() == "sd2-deepfake-skipped")
            {
                let _ = element.property::<u64>("skipped-frames");
                let _ = element.property::<Option<String>>("active-device");
                read.fetch_add(1, Ordering::SeqCst);
            }
            gst::BusSyncReply::Drop
        });
    }
    rig.start(&img);
    let (done_tx, done) = channel();
    let (src, img2) = (rig.src.clone(), img.clone());
    std::thread::spawn(move || {
        // The first frame holds the one place in flight downstream: the next are skipped.
        for i in 0..4 {
            let _ = src.push(frame(&img2, i * 40, &[astronaut()]));
        }
        let _ = done_tx.send(());
    });
    assert!(
        done.recv_timeout(Duration::from_secs(20)).is_ok(),
        "the streaming thread stalled posting a message"
    );
    assert!(read.load(Ordering::SeqCst) >= 1);
    rig.open();
}

#[test]
fn the_loaded_model_is_not_changed_under_a_running_element() {
    let rig = Rig::new(&[]);
    let loaded = rig.element.property::<String>("model");
    rig.element.set_property("model", "/elsewhere/other.onnx");
    assert_eq!(rig.element.property::<String>("model"), loaded);
    // What is read per frame may change.
    rig.element.set_property("max-in-flight", 2u32);
    assert_eq!(rig.element.property::<u32>("max-in-flight"), 2);
}

#[test]
fn a_restart_after_a_stop_with_frames_waiting_starts_with_an_empty_queue() {
    let img = sample("astronaut.png");
    let rig = Rig::new(&[("max-queued-frames", "4")]);
    rig.start(&img);
    for i in 0..4 {
        assert!(rig.src.push(frame(&img, i * 40, &[])).is_ok());
    }
    assert!(eventually(5, || rig.arrived.load(Ordering::SeqCst) == 1));
    // Stopped while three frames wait; downstream lets the held one go once it stops too.
    let opener = {
        let open = rig.open.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            open.store(true, Ordering::SeqCst);
        })
    };
    rig.element.set_state(gst::State::Ready).unwrap();
    opener.join().unwrap();
    rig.element.set_state(gst::State::Playing).unwrap();
    rig.start(&img);
    // Stalled again: the restarted element holds as many frames as before.
    rig.open.store(false, Ordering::SeqCst);
    let (taken, pusher) = push_faceless(&rig, &img, 6);
    assert!(
        eventually(5, || taken.load(Ordering::SeqCst) >= 4),
        "the restarted element took {} frames: it counted the ones the stop dropped",
        taken.load(Ordering::SeqCst)
    );
    rig.open();
    pusher.join().unwrap();
}
