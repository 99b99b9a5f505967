//! `sd2bin`: decode, sample, detect and classify in one element.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use gst::prelude::*;

/// GStreamer's CRITICAL messages in this process so far (every test's: any is a bug).
fn criticals() -> Vec<String> {
    static SEEN: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        gst::glib::log_set_handler(
            Some("GStreamer"),
            gst::glib::LogLevels::LEVEL_CRITICAL,
            false,
            false,
            move |_, _, msg| log.lock().unwrap().push(msg.to_owned()),
        );
        seen
    })
    .lock()
    .unwrap()
    .clone()
}

/// Runs `filesrc location=VIDEO ! sd2bin PROPS ! appsink` and returns the buffers.
fn run(props: &str) -> Vec<gst::Buffer> {
    init();
    criticals();
    let video = installed("demo/faces.webm");
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! sd2bin model={} {props} ! appsink name=out sync=false",
        video.display(),
        demo_model().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        out.push(sample.buffer_owned().unwrap());
    }
    let bus = p.bus().unwrap();
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        panic!("{msg:?}");
    }
    p.set_state(gst::State::Null).unwrap();
    // Sampling drops most frames: a probe that disposes of them wrongly says so here,
    // once a frame, on GStreamer 1.22.
    let c = criticals();
    assert!(
        c.is_empty(),
        "GStreamer criticals: {:?}",
        &c[..c.len().min(3)]
    );
    out
}

#[test]
fn frames_per_video_takes_evenly_spaced_frames_with_faces_and_verdicts() {
    let buffers = run("frames-per-video=8");
    assert_eq!(buffers.len(), 8);
    // 12 s of video: a frame every 1.5 s.
    let times: Vec<u64> = buffers
        .iter()
        .map(|b| b.pts().unwrap().mseconds())
        .collect();
    for (k, t) in times.iter().enumerate() {
        assert!((*t as i64 - 1500 * k as i64).abs() <= 40, "{times:?}");
    }
    for b in &buffers {
        let params = deepfake_params(b);
        assert!(!params.is_empty() && params.iter().all(Option::is_some));
        assert!(verdict(b).is_some());
    }
}

#[test]
fn sample_fps_limits_the_analysed_frames() {
    let buffers = run("sample-fps=1");
    assert_eq!(buffers.len(), 12);
}

#[test]
fn raw_video_goes_through_as_well() {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 ! sd2bin model={} ! fakesink",
        demo_model().display()
    ))
    .unwrap();
    run_to_eos(&p);
}

#[test]
fn inner_properties_are_forwarded() {
    init();
    let bin = gst::ElementFactory::make("sd2bin")
        .property("threshold", 0.25f32)
        .property("face-threshold", 0.8f32)
        .build()
        .unwrap();
    let proxy = bin.dynamic_cast_ref::<gst::ChildProxy>().unwrap();
    let inner = |factory: &str| {
        (0..proxy.children_count())
            .filter_map(|i| proxy.child_by_index(i))
            .filter_map(|c| c.downcast::<gst::Element>().ok())
            .find(|e| e.factory().unwrap().name() == factory)
            .unwrap()
    };
    assert_eq!(inner("sd2deepfake").property::<f32>("threshold"), 0.25);
    assert_eq!(inner("sd2facedetect").property::<f32>("threshold"), 0.8);
    assert_eq!(bin.property::<f32>("face-threshold"), 0.8);
}

#[test]
fn a_bad_model_path_fails_naming_it() {
    init();
    let p = gst::parse::launch(
        "videotestsrc num-buffers=1 ! sd2bin model=/nonexistent/m.onnx ! fakesink",
    )
    .unwrap();
    let err = start_error(&p).expect("an error");
    assert!(err.contains("/nonexistent/m.onnx does not exist"), "{err}");
}

#[test]
fn an_input_without_video_fails_saying_so() {
    init();
    let p = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=5 ! sd2bin model={} ! fakesink",
        demo_model().display()
    ))
    .unwrap();
    let err = start_error(&p).expect("an error, not a pipeline prerolling forever");
    assert!(err.contains("no video stream"), "{err}");
}
