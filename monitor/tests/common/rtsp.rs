//! An RTSP server for the tests (gst-rtsp-server): it serves the demo video in a loop at
//! `rtsp://127.0.0.1:PORT/demo`, and can go away (its socket closed, every client cut off)
//! and come back on the same port, as a camera or an encoder that restarts.
//!
//! The video's VP8 frames are read once; each client gets them from the first (a key
//! frame) in a loop, paced at the video's frame rate and stamped with the time they are
//! sent (`appsrc do-timestamp=true`), so no client sees time go back when the video
//! starts over.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gst::prelude::*;
use gst_rtsp_server::prelude::*;

pub struct RtspServer {
    port: u16,
    video: Arc<Video>,
    running: Option<Running>,
}

/// The encoded frames and their caps.
struct Video {
    caps: gst::Caps,
    frames: Vec<gst::Buffer>,
    frame_time: Duration,
}

/// A server listening, with the thread running its main loop.
struct Running {
    server: gst_rtsp_server::RTSPServer,
    main_loop: glib::MainLoop,
    context: glib::MainContext,
    source: glib::SourceId,
    thread: Option<JoinHandle<()>>,
}

use gst::glib;

impl RtspServer {
    /// Serves `video` (a WebM with VP8) on a free port.
    pub fn start(video: &Path) -> RtspServer {
        gst::init().unwrap();
        let mut s = RtspServer {
            port: super::free_port(),
            video: Arc::new(read_frames(video)),
            running: None,
        };
        s.resume();
        s
    }

    pub fn uri(&self) -> String {
        format!("rtsp://127.0.0.1:{}/demo", self.port)
    }

    /// Closes the listening socket and cuts every client off.
    pub fn stop(&mut self) {
        let Some(mut r) = self.running.take() else {
            return;
        };
        let server = r.server.clone();
        let context = r.context.clone();
        let source = r.source;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // The server's objects belong to its main context: act on them there.
        context.invoke(move || {
            server.client_filter(Some(&mut |_, _| gst_rtsp_server::RTSPFilterResult::Remove));
            if let Some(s) = glib::MainContext::ref_thread_default().find_source_by_id(&source) {
                s.destroy();
            }
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server stops");
        r.main_loop.quit();
        if let Some(t) = r.thread.take() {
            t.join().unwrap();
        }
    }

    /// Listens again on the same port.
    pub fn resume(&mut self) {
        assert!(self.running.is_none(), "the server is running");
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&self.port.to_string());
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(
            "( appsrc name=video is-live=true format=time do-timestamp=true ! rtpvp8pay name=pay0 pt=96 )",
        );
        factory.set_shared(false);
        let video = self.video.clone();
        factory.connect_media_configure(move |_, media| feed(media, video.clone()));
        server.mount_points().unwrap().add_factory("/demo", factory);
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let source = server
            .attach(Some(&context))
            .expect("the RTSP server listens");
        let thread = {
            let (context, main_loop) = (context.clone(), main_loop.clone());
            std::thread::spawn(move || {
                context
                    .with_thread_default(|| main_loop.run())
                    .expect("the context is free");
            })
        };
        self.running = Some(Running {
            server,
            main_loop,
            context,
            source,
            thread: Some(thread),
        });
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pushes the video's frames into a new client's media, in a loop, until the media stops.
fn feed(media: &gst_rtsp_server::RTSPMedia, video: Arc<Video>) {
    let bin = media.element().downcast::<gst::Bin>().unwrap();
    let appsrc = bin
        .by_name_recurse_up("video")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    appsrc.set_caps(Some(&video.caps));
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        for (i, frame) in video.frames.iter().cycle().enumerate() {
            if appsrc.push_buffer(frame.clone()).is_err() {
                return;
            }
            // Paced from the start, so that the rate holds however long a push takes.
            let next = start + video.frame_time * (i as u32 + 1);
            std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
        }
    });
}

/// The VP8 frames of a WebM file, without timestamps.
fn read_frames(path: &Path) -> Video {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! matroskademux ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    let mut caps = None;
    while let Ok(sample) = sink.pull_sample() {
        caps.get_or_insert_with(|| sample.caps().unwrap().to_owned());
        let mut b = sample.buffer().unwrap().copy();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::NONE);
            b.set_dts(gst::ClockTime::NONE);
        }
        frames.push(b);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let caps = caps.expect("the video has frames");
    let fps = caps
        .structure(0)
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .filter(|f| f.numer() > 0)
        .unwrap_or(gst::Fraction::new(25, 1));
    Video {
        caps,
        frames,
        frame_time: Duration::from_secs_f64(fps.denom() as f64 / fps.numer() as f64),
    }
}
