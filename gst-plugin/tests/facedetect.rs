//! `sd2facedetect` on real faces, every supported input format, its properties, and its
//! error paths.

mod common;

use common::*;
use gst::prelude::*;
use gst_check::Harness;

fn harness(launch: &str, img: &sd2_models::image::RgbImage) -> Harness {
    init();
    let mut h = Harness::new_parse(launch);
    h.set_src_caps(rgb_caps(img));
    h
}

#[test]
fn astronaut_frame_has_one_face_where_the_reference_finds_it() {
    let img = sample("astronaut.png");
    let mut h = harness("sd2facedetect", &img);
    let out = h.push_and_pull(rgb_buffer(&img, 0)).unwrap();
    let faces = faces(&out);
    assert_eq!(faces.len(), 1, "{faces:?}");
    let f = &faces[0];
    assert!(iou(f.bbox, astronaut_box()) >= 0.9, "{:?}", f.bbox);
    assert!(f.confidence > 0.99 && f.frames_ago == 0 && f.id == 0);
    assert_eq!(f.landmarks.len(), 10);
    // Landmarks lie inside the face box.
    for p in f.landmarks.chunks(2) {
        assert!(
            p[0] > f.bbox[0] && p[0] < f.bbox[2] && p[1] > f.bbox[1] && p[1] < f.bbox[3],
            "{p:?}"
        );
    }
    // The ROI rectangle covers the normalised box in pixels.
    let (x, y, w, hh) = f.rect;
    assert!(
        (x as f64 - f.bbox[0] * 512.0).abs() <= 1.0 && (y as f64 - f.bbox[1] * 512.0).abs() <= 1.0
    );
    assert!(
        ((x + w) as f64 - f.bbox[2] * 512.0).abs() <= 1.0
            && ((y + hh) as f64 - f.bbox[3] * 512.0).abs() <= 1.0
    );
    // Pixels pass unchanged.
    assert_eq!(out.map_readable().unwrap().as_slice(), img.data.as_slice());
}

#[test]
fn six_faces_photo_has_six_faces() {
    let img = sample("t1.jpg");
    let mut h = harness("sd2facedetect", &img);
    let faces = faces(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap());
    assert_eq!(faces.len(), 6, "{faces:?}");
    let ids: Vec<i32> = faces.iter().map(|f| f.id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn every_supported_format_finds_the_face() {
    let img = sample("astronaut.png");
    for format in [
        "RGB", "BGR", "RGBA", "BGRA", "RGBx", "BGRx", "xRGB", "ARGB", "I420", "YV12", "NV12",
        "NV21", "Y42B", "Y444", "YUY2", "UYVY",
    ] {
        let mut h = harness(
            &format!("videoconvert ! video/x-raw,format={format} ! sd2facedetect"),
            &img,
        );
        let out = h.push_and_pull(rgb_buffer(&img, 0)).unwrap();
        let faces = faces(&out);
        assert_eq!(faces.len(), 1, "{format}: {faces:?}");
        assert!(
            iou(faces[0].bbox, astronaut_box()) >= 0.9,
            "{format}: {:?}",
            faces[0].bbox
        );
    }
}

#[test]
fn test_patterns_have_no_faces() {
    init();
    for pattern in [
        "smpte",
        "snow",
        "ball",
        "checkers-8",
        "circular",
        "zone-plate",
    ] {
        let mut h = Harness::new("sd2facedetect");
        h.add_src_parse(
            &format!("videotestsrc pattern={pattern} ! capsfilter caps=video/x-raw,format=I420,width=640,height=480,framerate=25/1"),
            false,
        );
        for _ in 0..3 {
            h.push_from_src().unwrap();
            let out = h.pull().unwrap();
            assert!(
                faces(&out).is_empty(),
                "pattern {pattern}: {:?}",
                faces(&out)
            );
        }
    }
}

#[test]
fn inference_interval_carries_faces_with_their_age() {
    let img = sample("astronaut.png");
    let mut h = harness("sd2facedetect inference-interval=3", &img);
    let mut ages = Vec::new();
    for i in 0..7 {
        let faces = faces(&h.push_and_pull(rgb_buffer(&img, i * 40)).unwrap());
        assert_eq!(faces.len(), 1, "frame {i}");
        ages.push(faces[0].frames_ago);
    }
    assert_eq!(ages, vec![0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn threshold_max_faces_and_min_face_size_change_what_is_attached() {
    let img = sample("t1.jpg");
    let mut h = harness("sd2facedetect max-faces=2", &img);
    let two = faces(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap());
    assert_eq!(two.len(), 2);
    assert!(two[0].confidence >= two[1].confidence);

    let mut h = harness("sd2facedetect threshold=0.7", &img);
    assert_eq!(
        faces(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap()).len(),
        8,
        "two faces score between 0.7 and 0.9"
    );

    let mut h = harness("sd2facedetect", &img);
    let d = h.find_element("sd2facedetect").unwrap();
    assert_eq!(
        faces(&h.push_and_pull(rgb_buffer(&img, 0)).unwrap()).len(),
        6
    );
    // Properties change while playing.
    d.set_property("min-face-size", 250u32);
    assert!(faces(&h.push_and_pull(rgb_buffer(&img, 40)).unwrap()).len() < 6);
    d.set_property("min-face-size", 20u32);
    d.set_property("threshold", 1.0f32);
    assert!(faces(&h.push_and_pull(rgb_buffer(&img, 80)).unwrap()).is_empty());
}

#[test]
fn frames_too_small_for_a_face_pass_without_faces() {
    init();
    for (w, hgt) in [(1, 1), (8, 8), (11, 40), (16, 16), (24, 18)] {
        let mut h = Harness::new("sd2facedetect");
        h.set_src_caps_str(&format!(
            "video/x-raw,format=RGB,width={w},height={hgt},framerate=25/1"
        ));
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, hgt)
            .build()
            .unwrap();
        let buf = gst::Buffer::from_mut_slice(vec![128u8; info.size()]);
        let out = h.push_and_pull(buf).unwrap();
        assert!(faces(&out).is_empty(), "{w}x{hgt}");
    }
}

#[test]
fn a_caps_change_mid_stream_is_followed() {
    let astronaut = sample("astronaut.png");
    let group = sample("t1.jpg");
    let mut h = harness("sd2facedetect", &astronaut);
    assert_eq!(
        faces(&h.push_and_pull(rgb_buffer(&astronaut, 0)).unwrap()).len(),
        1
    );
    h.set_src_caps(rgb_caps(&group));
    assert_eq!(
        faces(&h.push_and_pull(rgb_buffer(&group, 40)).unwrap()).len(),
        6
    );
    h.set_src_caps(rgb_caps(&astronaut));
    assert_eq!(
        faces(&h.push_and_pull(rgb_buffer(&astronaut, 80)).unwrap()).len(),
        1
    );
}

#[test]
fn a_short_buffer_is_reported_and_passed_on() {
    let img = sample("astronaut.png");
    let mut h = harness("sd2facedetect", &img);
    let short = gst::Buffer::from_mut_slice(vec![0u8; 100]);
    let out = h.push_and_pull(short).unwrap();
    assert!(faces(&out).is_empty());
    // The stream goes on.
    assert_eq!(
        faces(&h.push_and_pull(rgb_buffer(&img, 40)).unwrap()).len(),
        1
    );
}

fn launch(line: &str) -> gst::Element {
    init();
    gst::parse::launch(line).unwrap()
}

#[test]
fn a_missing_model_directory_fails_the_state_change_naming_the_file() {
    let p = launch(
        "videotestsrc num-buffers=1 ! sd2facedetect model-dir=/nonexistent/mtcnn ! fakesink",
    );
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("/nonexistent/mtcnn/pnet.onnx does not exist"),
        "{err}"
    );
}

#[test]
fn a_model_of_the_wrong_shape_fails_the_state_change_saying_what_was_expected() {
    let dir = std::env::temp_dir().join(format!("sd2-wrong-mtcnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mtcnn = installed("models/mtcnn");
    for (src, dst) in [("pnet", "pnet"), ("rnet", "rnet"), ("rnet", "onet")] {
        std::fs::copy(
            mtcnn.join(format!("{src}.onnx")),
            dir.join(format!("{dst}.onnx")),
        )
        .unwrap();
    }
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2facedetect model-dir={} ! fakesink",
        dir.display()
    ));
    let err = start_error(&p).expect("an error");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        err.contains("onet.onnx does not have the inputs and outputs"),
        "{err}"
    );
    assert!(err.contains("[?,3,48,48]"), "{err}");
}

#[test]
fn a_corrupt_model_fails_the_state_change_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("sd2-corrupt-mtcnn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pnet.onnx"), b"not an onnx file").unwrap();
    let p = launch(&format!(
        "videotestsrc num-buffers=1 ! sd2facedetect model-dir={} ! fakesink",
        dir.display()
    ));
    let err = start_error(&p).expect("an error");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        err.contains("pnet.onnx could not be loaded by ONNX Runtime"),
        "{err}"
    );
}

#[test]
fn device_cuda_without_cuda_fails_and_auto_falls_back_saying_so() {
    let p = launch("videotestsrc num-buffers=1 ! sd2facedetect device=cuda ! fakesink");
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("device=cuda was asked for but CUDA cannot be used"),
        "{err}"
    );

    let p = launch("videotestsrc num-buffers=2 ! sd2facedetect name=d device=auto ! fakesink");
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut fallback = None;
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(10)) {
        match msg.view() {
            gst::MessageView::Element(e)
                if e.structure().is_some_and(|s| s.name() == "sd2-device") =>
            {
                fallback = Some(e.structure().unwrap().get::<String>("reason").unwrap());
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    let d = p.downcast_ref::<gst::Bin>().unwrap().by_name("d").unwrap();
    assert_eq!(
        d.property::<Option<String>>("active-device").as_deref(),
        Some("cpu")
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(
        fallback.is_some_and(|r| !r.is_empty()),
        "auto posts why it chose the CPU"
    );
}
