//! `sd2deepfake`: a verdict per face and per frame, tracks, intervals, batching across
//! frames, alerts, events, and its error paths.

mod common;

use common::*;
use gst::prelude::*;
use gst_check::Harness;
use sd2_models::image::RgbImage;

/// `upstream` then `sd2deepfake` on the demo model with `extra` properties, fed RGB frames
/// of `img`'s size.
fn harness_after(upstream: &str, extra: &str, img: &RgbImage) -> Harness {
    init();
    let mut h = Harness::new_parse(&format!(
        "{upstream}sd2deepfake model={} {extra}",
        demo_model().display()
    ));
    h.set_src_caps(rgb_caps(img));
    h
}

/// `sd2facedetect ! sd2deepfake`.
fn harness(extra: &str, img: &RgbImage) -> Harness {
    harness_after("sd2facedetect ! ", extra, img)
}

/// `sd2deepfake` alone: faces come from the boxes a test attaches.
fn deepfake_alone(extra: &str, img: &RgbImage) -> Harness {
    harness_after("", extra, img)
}

/// The index of the highest of `p[from..]`, the first on a tie.
fn first_highest(p: &[f64; 5], from: usize) -> usize {
    (from + 1..5).fold(from, |best, i| if p[i] > p[best] { i } else { best })
}

/// Checks each face's param against `is_fake` (the decision rule on its probabilities) and
/// the frame's verdict against its faces.
fn check_judgements(out: &gst::Buffer, is_fake: impl Fn(&DeepfakeParam) -> bool) {
    let params = deepfake_params(out);
    assert_eq!(params.len(), 6);
    let names = ["REAL", "FS", "FR", "EFS", "FE"];
    for p in params
        .iter()
        .map(|p| p.as_ref().expect("every face classified"))
    {
        let sum: f64 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{p:?}");
        assert_eq!(p.fake, is_fake(p), "{p:?}");
        // The label agrees with the judgement: REAL, or the likeliest manipulation.
        let label = if p.fake {
            first_highest(&p.probabilities, 1)
        } else {
            0
        };
        assert_eq!((p.label.as_str(), p.label_id), (names[label], label as i32));
        assert!((p.confidence - p.probabilities[label]).abs() < 1e-6);
        assert!((p.fake_score - (1.0 - p.probabilities[0])).abs() < 1e-6);
        assert_eq!(p.model_name, "sd2-demo");
        assert_eq!(p.frames_ago, 0);
    }
    let v = verdict(out).expect("a frame verdict");
    assert_eq!(v.get::<u32>("faces").unwrap(), 6);
    assert_eq!(v.get::<u32>("analysed_faces").unwrap(), 6);
    let max = params
        .iter()
        .flatten()
        .map(|p| p.fake_score)
        .fold(0.0, f64::max);
    assert!((v.get::<f64>("fake_score").unwrap() - max).abs() < 1e-9);
    let fakes: Vec<&DeepfakeParam> = params.iter().flatten().filter(|p| p.fake).collect();
    assert_eq!(v.get::<u32>("fake_faces").unwrap(), fakes.len() as u32);
    assert_eq!(v.get::<bool>("fake").unwrap(), !fakes.is_empty());
    let label = fakes
        .iter()
        .max_by(|a, b| a.fake_score.total_cmp(&b.fake_score))
        .map_or("REAL", |p| p.label.as_str());
    assert_eq!(v.get::<String>("label").unwrap(), label);
}

#[test]
fn every_face_gets_a_deepfake_param_and_the_frame_a_verdict() {
    let img = sample("t1.jpg");
    let mut h = harness("", &img);
    let out = h.push_and_pull(rgb_buffer(&img, 0)).unwrap();
    // The paper's rule by default: fake when a manipulation is likelier than REAL.
    check_judgements(&out, |p| first_highest(&p.probabilities, 0) != 0);
    let v = verdict(&out).unwrap();
    assert_eq!(v.get::<String>("decision").unwrap(), "argmax");
}

#[test]
fn the_threshold_rule_judges_a_face_by_its_fake_score() {
    let img = sample("t1.jpg");
    for threshold in [0.05, 0.3, 0.95] {
        let mut h = harness(&format!("decision=threshold threshold={threshold}"), &img);
        let out = h.push_and_pull(rgb_buffer(&img, 0)).unwrap();
        check_judgements(&out, |p| p.fake_score > threshold);
        let v = verdict(&out).unwrap();
        assert_eq!(v.get::<String>("decision").unwrap(), "threshold");
    }
}

#[test]
fn faces_keep_their_track_ids_across_frames() {
    let img = sample("t1.jpg");
    let mut h = harness("", &img);
    let ids = |h: &mut Harness, t| {
        let mut v: Vec<u64> = deepfake_params(&h.push_and_pull(rgb_buffer(&img, t)).unwrap())
            .into_iter()
            .map(|p| p.unwrap().track_id)
            .collect();
        v.sort();
        v
    };
    let first = ids(&mut h, 0);
    assert_eq!(first, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(ids(&mut h, 40), first);
    assert_eq!(ids(&mut h, 80), first);
}

#[test]
fn reclassify_interval_carries_each_tracks_verdict_in_between() {
    let img = sample("astronaut.png");
    let mut h = harness("reclassify-interval=3 smoothing=0", &img);
    let mut ages = Vec::new();
    let mut scores = Vec::new();
    for i in 0..7 {
        let p = deepfake_params(&h.push_and_pull(rgb_buffer(&img, i * 40)).unwrap())[0]
            .clone()
            .unwrap();
        ages.push(p.frames_ago);
        scores.push(p.fake_score);
    }
    assert_eq!(ages, vec![0, 1, 2, 0, 1, 2, 0]);
    // The same frame gives the same verdict; carried verdicts are the computed ones.
    assert!(
        scores.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-5),
        "{scores:?}"
    );
}

#[test]
fn inference_interval_limits_which_frames_reclassify() {
    let img = sample("astronaut.png");
    let mut h = harness("inference-interval=4", &img);
    let ages: Vec<u32> = (0..9)
        .map(|i| {
            deepfake_params(&h.push_and_pull(rgb_buffer(&img, i * 40)).unwrap())[0]
                .clone()
                .unwrap()
                .frames_ago
        })
        .collect();
    assert_eq!(ages, vec![0, 1, 2, 3, 0, 1, 2, 3, 0]);
}

#[test]
fn a_track_turning_fake_posts_one_alert() {
    let img = sample("t1.jpg");
    let mut h = harness("decision=threshold threshold=0", &img);
    let bus = gst::Bus::new();
    h.find_element("sd2deepfake").unwrap().set_bus(Some(&bus));
    let mut on_frames = Vec::new();
    for i in 0..3 {
        let out = h.push_and_pull(rgb_buffer(&img, i * 40)).unwrap();
        let v = verdict(&out).unwrap();
        assert!(v.get::<bool>("fake").unwrap());
        // The frame carries the alerts raised on it, as posted.
        for a in v.get::<gst::Array>("alerts").unwrap().iter() {
            let a = a.get::<gst::Structure>().unwrap();
            assert_eq!(a.name(), "sd2-deepfake-alert");
            assert_eq!(
                a.get::<String>("label").unwrap(),
                a.get::<String>("fake_type").unwrap()
            );
            on_frames.push((i, a.get::<u64>("track_id").unwrap()));
        }
    }
    assert!(on_frames.iter().all(|&(i, _)| i == 0), "{on_frames:?}");
    let mut alerts = Vec::new();
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Element(e) = msg.view()
            && let Some(s) = e.structure().filter(|s| s.name() == "sd2-deepfake-alert")
        {
            alerts.push(s.get::<u64>("track_id").unwrap());
            assert!(s.get::<f64>("fake_score").unwrap() > 0.0);
            assert!(s.get::<f64>("x_min").unwrap() < s.get::<f64>("x_max").unwrap());
        }
    }
    alerts.sort();
    assert_eq!(
        alerts,
        vec![1, 2, 3, 4, 5, 6],
        "one alert per track, on the frame it turned fake"
    );
    let mut carried: Vec<u64> = on_frames.iter().map(|&(_, t)| t).collect();
    carried.sort();
    assert_eq!(carried, alerts);
}

#[test]
fn frames_without_faces_get_a_real_verdict() {
    init();
    let mut h = Harness::new_parse(&format!(
        "sd2facedetect ! sd2deepfake model={}",
        demo_model().display()
    ));
    h.add_src_parse(
        "videotestsrc pattern=ball ! capsfilter caps=video/x-raw,format=I420,width=320,height=240",
        false,
    );
    h.push_from_src().unwrap();
    let out = h.pull().unwrap();
    assert!(deepfake_params(&out).is_empty());
    let v = verdict(&out).unwrap();
    assert_eq!(
        (
            v.get::<bool>("fake").unwrap(),
            v.get::<u32>("faces").unwrap()
        ),
        (false, 0)
    );
}

#[test]
fn batching_across_frames_keeps_order_and_results() {
    let img = sample("t1.jpg");
    let scores = |batch: u32| -> Vec<(u64, Vec<f64>)> {
        let mut h = harness(&format!("batch-size={batch} smoothing=0"), &img);
        for i in 0..5 {
            h.push(rgb_buffer(&img, i * 40)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        (0..5)
            .map(|_| {
                let b = h.pull().unwrap();
                let mut s: Vec<f64> = deepfake_params(&b)
                    .into_iter()
                    .map(|p| p.unwrap().fake_score)
                    .collect();
                s.sort_by(f64::total_cmp);
                (b.pts().unwrap().mseconds(), s)
            })
            .collect()
    };
    let one = scores(1);
    let many = scores(8);
    assert_eq!(
        one.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 40, 80, 120, 160]
    );
    for ((t1, a), (t2, b)) in one.iter().zip(&many) {
        assert_eq!(t1, t2, "order kept");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() < 1e-4,
                "batched and single results differ: {x} {y}"
            );
        }
    }
}

#[test]
fn eos_follows_every_frame_and_a_flush_forgets_the_tracks() {
    let img = sample("astronaut.png");
    let mut h = harness("", &img);
    for i in 0..3 {
        h.push(rgb_buffer(&img, i * 40)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    for i in 0..3 {
        assert_eq!(h.pull().unwrap().pts().unwrap().mseconds(), i * 40);
    }
    // Events come out in order too: stream-start, caps, segment, then EOS.
    loop {
        let e = h.pull_event().expect("EOS goes out after the frames");
        if e.type_() == gst::EventType::Eos {
            break;
        }
    }

    let mut h = harness("", &img);
    let first = deepfake_params(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap())[0]
        .clone()
        .unwrap();
    h.push_event(gst::event::FlushStart::new());
    h.push_event(gst::event::FlushStop::new(true));
    let seg = gst::FormattedSegment::<gst::ClockTime>::new();
    h.push_event(gst::event::Segment::new(&seg));
    let after = deepfake_params(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap())[0]
        .clone()
        .unwrap();
    assert!(
        after.track_id > first.track_id,
        "the flush forgot the old tracks"
    );
}

/// `sd2deepfake` alone, fed 200 frames with the six faces of t1.jpg attached, as fast as
/// the test can push them; returns the frames that come out.
fn flood(props: &str) -> (Vec<gst::Buffer>, u64) {
    let img = sample("t1.jpg");
    let boxes = [
        (54, 262, 111, 135),
        (268, 149, 107, 123),
        (465, 262, 105, 143),
        (743, 346, 100, 128),
        (908, 62, 106, 140),
        (1134, 276, 93, 119),
    ];
    let mut h = deepfake_alone(props, &img);
    for i in 0..200 {
        let mut buf = rgb_buffer(&img, i * 40);
        for b in boxes {
            gst_video::VideoRegionOfInterestMeta::add(buf.get_mut().unwrap(), "face", b);
        }
        h.push(buf).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out: Vec<gst::Buffer> = (0..200).map(|_| h.pull().unwrap()).collect();
    let skipped = h
        .find_element("sd2deepfake")
        .unwrap()
        .property::<u64>("skipped-frames");
    (out, skipped)
}

#[test]
fn skip_mode_never_blocks_and_marks_what_it_skips() {
    let (out, skipped) = flood("max-in-flight=1 batch-size=6 queue-mode=skip");
    let times: Vec<u64> = out.iter().map(|b| b.pts().unwrap().mseconds()).collect();
    assert_eq!(
        times,
        (0..200).map(|i| i * 40).collect::<Vec<_>>(),
        "every frame, in order"
    );
    let marked: Vec<bool> = out
        .iter()
        .map(|b| verdict(b).unwrap().get::<bool>("skipped").unwrap())
        .collect();
    let count = marked.iter().filter(|&&m| m).count() as u64;
    assert!(
        count > 0,
        "the source outran inference, so some frames were skipped"
    );
    assert_eq!(
        count, skipped,
        "the skipped-frames count matches the frames marked"
    );
    for (b, m) in out.iter().zip(&marked) {
        for p in deepfake_params(b).into_iter().flatten() {
            // Skipped frames carry their tracks' last verdicts, marked not analysed.
            assert!(
                !*m || p.frames_ago > 0,
                "a skipped frame's verdict is an old one"
            );
        }
    }
    assert!(!marked[0], "the first frame is analysed");
}

#[test]
fn block_mode_loses_nothing() {
    let (out, skipped) = flood("max-in-flight=1 batch-size=6 queue-mode=block");
    assert_eq!(skipped, 0);
    let times: Vec<u64> = out.iter().map(|b| b.pts().unwrap().mseconds()).collect();
    assert_eq!(times, (0..200).map(|i| i * 40).collect::<Vec<_>>());
    for b in &out {
        let v = verdict(b).unwrap();
        assert!(!v.get::<bool>("skipped").unwrap());
        assert_eq!(v.get::<u32>("analysed_faces").unwrap(), 6);
        assert!(
            deepfake_params(b)
                .iter()
                .all(|p| p.as_ref().is_some_and(|p| p.frames_ago == 0))
        );
    }
}

#[test]
fn elements_sharing_a_model_give_the_results_they_give_alone() {
    let img = sample("t1.jpg");
    let alone: Vec<f64> = {
        let mut h = harness("smoothing=0", &img);
        deepfake_params(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap())
            .into_iter()
            .map(|p| p.unwrap().fake_score)
            .collect()
    };
    // Two streams through one model at once, in two threads.
    let runs: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let img = img.clone();
                s.spawn(move || {
                    let mut h = harness("smoothing=0", &img);
                    deepfake_params(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap())
                        .into_iter()
                        .map(|p| p.unwrap().fake_score)
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in runs {
        assert_eq!(r.len(), alone.len());
        for (a, b) in r.iter().zip(&alone) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}

#[test]
fn cuda_graphs_without_cuda_fall_back_to_plain_runs_with_the_same_verdicts() {
    let img = sample("t1.jpg");
    let scores = |props: &str| -> Vec<f64> {
        let mut h = harness(props, &img);
        deepfake_params(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap())
            .into_iter()
            .map(|p| p.expect("every face classified").fake_score)
            .collect()
    };
    let plain = scores("smoothing=0");
    // No CUDA here: auto runs on the CPU, where graphs do not apply (the element logs why),
    // and every face is classified as without them.
    let graphs = scores("smoothing=0 device=auto cuda-graph=true");
    assert_eq!(graphs.len(), 6);
    for (a, b) in graphs.iter().zip(&plain) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn faces_attached_by_another_element_are_classified() {
    let img = sample("astronaut.png");
    let mut h = deepfake_alone("", &img);
    let mut buf = rgb_buffer(&img, 0);
    gst_video::VideoRegionOfInterestMeta::add(buf.get_mut().unwrap(), "face", (181, 62, 87, 110));
    gst_video::VideoRegionOfInterestMeta::add(buf.get_mut().unwrap(), "car", (0, 0, 50, 50));
    let out = h.push_and_pull(buf).unwrap();
    let params = deepfake_params(&out);
    assert_eq!(params.len(), 1, "only faces are classified");
    assert!(params[0].is_some());
}

#[test]
fn broken_boxes_from_another_element_are_cropped_within_bounds() {
    let img = sample("astronaut.png");
    let mut h = deepfake_alone("", &img);
    let mut buf = rgb_buffer(&img, 0);
    let b = buf.get_mut().unwrap();
    // A rectangle near u32::MAX, and a detection param with NaN and infinite corners.
    gst_video::VideoRegionOfInterestMeta::add(b, "face", (u32::MAX - 5, 7, u32::MAX, u32::MAX));
    let mut m = gst_video::VideoRegionOfInterestMeta::add(b, "face", (181, 62, 87, 110));
    m.add_param(
        gst::Structure::builder("detection")
            .field("x_min", f64::NAN)
            .field("y_min", f64::NEG_INFINITY)
            .field("x_max", f64::INFINITY)
            .field("y_max", 1e30f64)
            .field("confidence", 0.99f64)
            .build(),
    );
    // A finite box a million frames wide.
    let mut m = gst_video::VideoRegionOfInterestMeta::add(b, "face", (0, 0, 10, 10));
    m.add_param(
        gst::Structure::builder("detection")
            .field("x_min", 0.0f64)
            .field("y_min", 0.0f64)
            .field("x_max", 1e6f64)
            .field("y_max", 1e6f64)
            .field("confidence", 0.99f64)
            .build(),
    );
    let out = h.push_and_pull(buf).unwrap();
    let params = deepfake_params(&out);
    assert_eq!(params.len(), 3, "{params:?}");
    assert!(params.iter().all(Option::is_some), "{params:?}");
}

#[test]
fn a_short_buffer_with_a_face_is_reported_and_passed_on() {
    let img = sample("astronaut.png");
    let mut h = deepfake_alone("", &img);
    let mut short = gst::Buffer::from_mut_slice(vec![0u8; 100]);
    gst_video::VideoRegionOfInterestMeta::add(short.get_mut().unwrap(), "face", (181, 62, 87, 110));
    let out = h.push_and_pull(short).unwrap();
    let params = deepfake_params(&out);
    assert!(
        params.len() == 1 && params[0].is_none(),
        "a face it could not crop: {params:?}"
    );
    assert_eq!(analysed(&out), [Some(false)], "marked not analysed");
    assert_eq!(
        verdict(&out).unwrap().get::<u32>("analysed_faces").unwrap(),
        0
    );
    // The stream goes on.
    let mut buf = rgb_buffer(&img, 40);
    gst_video::VideoRegionOfInterestMeta::add(buf.get_mut().unwrap(), "face", (181, 62, 87, 110));
    let out = h.push_and_pull(buf).unwrap();
    assert!(deepfake_params(&out)[0].is_some());
}

fn launch(line: &str) -> gst::Element {
    init();
    gst::parse::launch(line).unwrap()
}

#[test]
fn a_missing_model_fails_the_state_change_naming_the_file() {
    let p =
        launch("videotestsrc num-buffers=1 ! sd2deepfake model=/nonexistent/sd2.onnx ! fakesink");
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("/nonexistent/sd2.onnx does not exist") && err.contains("sd2-train export"),
        "{err}"
    );
}

#[test]
fn a_model_that_is_not_an_sd2_model_fails_saying_what_was_expected() {
    let pnet = installed("models/mtcnn/pnet.onnx");
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2deepfake model={} ! fakesink",
        pnet.display()
    ));
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("pnet.onnx") && err.contains("pixel_values"),
        "{err}"
    );
}

#[test]
fn a_model_without_the_crop_recipe_is_refused() {
    // An SD² graph whose metadata lacks the recipe: rewrite the demo model without metadata.
    let bytes = std::fs::read(demo_model()).unwrap();
    let needle = b"crop_scale";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("recipe in the metadata");
    let mut broken = bytes.clone();
    broken[pos..pos + needle.len()].copy_from_slice(b"crop_scalX");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("norecipe.onnx");
    std::fs::write(&path, broken).unwrap();
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2deepfake model={} ! fakesink",
        path.display()
    ));
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("norecipe.onnx") && err.contains("`crop_scale` is missing"),
        "{err}"
    );
}

#[test]
fn device_cuda_without_cuda_fails_the_state_change() {
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2deepfake device=cuda model={} ! fakesink",
        demo_model().display()
    ));
    let err = start_error(&p).expect("an error");
    assert!(err.contains("CUDA cannot be used"), "{err}");
}

/// The demo model with its metadata saying its graph is `graph` in `precision` (what
/// `sd2-train export --kernels sd2 [--fp8]` records), written into `dir`.
fn demo_model_recorded_as(
    graph: &str,
    precision: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    use prost::Message;
    use sd2_models::onnx::proto::{ModelProto, StringStringEntryProto};
    let bytes = std::fs::read(demo_model()).unwrap();
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    m.metadata_props
        .retain(|e| e.key != "graph" && e.key != "precision");
    for (key, value) in [("graph", graph), ("precision", precision)] {
        m.metadata_props.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        });
    }
    let path = dir.join(format!("{graph}-{precision}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

#[test]
fn an_fp8_model_on_the_cpu_fails_the_state_change_naming_the_file_and_fp8() {
    let dir = tempfile::tempdir().unwrap();
    let path = demo_model_recorded_as("sd2", "fp8", dir.path());
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2deepfake device=cpu model={} ! fakesink",
        path.display()
    ));
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("sd2-fp8.onnx")
            && err.contains("FP8")
            && err.contains("compute capability 8.9"),
        "{err}"
    );
}

#[test]
fn an_sd2_model_on_cuda_without_its_kernels_fails_naming_what_is_missing() {
    if sd2_models::kernels::cuda::available().is_ok() {
        eprintln!("SKIPPED: this machine runs SD²'s CUDA kernels");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = demo_model_recorded_as("sd2", "fp16", dir.path());
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2deepfake device=cuda model={} ! fakesink",
        path.display()
    ));
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("sd2-fp16.onnx") && err.contains("com.sd2") && err.contains(".so"),
        "{err}"
    );
}

#[test]
fn a_caps_change_mid_stream_is_followed() {
    let astronaut = sample("astronaut.png");
    let group = sample("t1.jpg");
    let mut h = harness("", &astronaut);
    assert_eq!(
        deepfake_params(&h.push_and_pull(rgb_buffer(&astronaut, 0)).unwrap()).len(),
        1
    );
    h.set_src_caps(rgb_caps(&group));
    let params = deepfake_params(&h.push_and_pull(rgb_buffer(&group, 40)).unwrap());
    assert_eq!(params.len(), 6);
    assert!(params.iter().all(Option::is_some));
}
