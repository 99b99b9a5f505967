//! Helpers for the element tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use sd2_models::image::RgbImage;
use sd2_models::paths;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsd2::plugin_register_static().expect("register the sd2 plugin");
    });
}

/// A file `scripts/setup.sh` installs; fails with the command to run when absent.
pub fn installed(relative: &str) -> PathBuf {
    let p = paths::cache_dir().join(relative);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh first",
        p.display()
    );
    p
}

pub fn sample(name: &str) -> RgbImage {
    RgbImage::open(&installed(&format!("samples/{name}"))).unwrap()
}

/// The astronaut's face as facenet-pytorch finds it (fixture of sd2-models).
pub const ASTRONAUT_FACE: [f32; 4] = [181.0514, 62.1561, 267.7473, 172.0502];

/// An RGB buffer holding `img`, with a timestamp.
pub fn rgb_buffer(img: &RgbImage, pts_ms: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(img.data.clone());
    buf.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(pts_ms));
    buf
}

pub fn rgb_caps(img: &RgbImage) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::Rgb)
        .width(img.width as i32)
        .height(img.height as i32)
        .framerate(gst::Fraction::new(25, 1))
        .build()
}

/// A face read back from a buffer.
#[derive(Debug, Clone)]
pub struct FaceMeta {
    pub rect: (u32, u32, u32, u32),
    pub id: i32,
    pub bbox: [f64; 4],
    pub confidence: f64,
    pub landmarks: Vec<f64>,
    pub frames_ago: u32,
}

pub fn faces(buf: &gst::BufferRef) -> Vec<FaceMeta> {
    buf.iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == "face")
        .map(|m| {
            let d = m
                .param("detection")
                .expect("every face has a detection param");
            FaceMeta {
                rect: m.rect(),
                id: m.id(),
                bbox: ["x_min", "y_min", "x_max", "y_max"].map(|k| d.get::<f64>(k).unwrap()),
                confidence: d.get("confidence").unwrap(),
                landmarks: d
                    .get::<gst::Array>("landmarks")
                    .unwrap()
                    .iter()
                    .map(|v| v.get::<f64>().unwrap())
                    .collect(),
                frames_ago: d.get("frames_ago").unwrap(),
            }
        })
        .collect()
}

pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// The normalised reference box of the astronaut's face.
pub fn astronaut_box() -> [f64; 4] {
    ASTRONAUT_FACE.map(|v| v as f64 / 512.0)
}

/// Sets `pipeline` to PLAYING and returns the first error it posts.
pub fn start_error(pipeline: &gst::Element) -> Option<String> {
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let stop = [
        gst::MessageType::Error,
        gst::MessageType::AsyncDone,
        gst::MessageType::Eos,
    ];
    let error = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &stop)
        .and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => {
                Some(format!("{} {}", e.error(), e.debug().unwrap_or_default()))
            }
            _ => None,
        });
    pipeline.set_state(gst::State::Null).unwrap();
    error
}

/// Runs `pipeline` to EOS, failing on an error.
pub fn run_to_eos(pipeline: &gst::Element) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("EOS or an error within a minute");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{} {:?}", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The demo model `scripts/setup.sh` trains and exports.
pub fn demo_model() -> PathBuf {
    installed("models/sd2-demo.onnx")
}

/// A face's `deepfake` param, read back.
#[derive(Debug, Clone)]
pub struct DeepfakeParam {
    pub label: String,
    pub label_id: i32,
    pub confidence: f64,
    /// The judgement under the element's decision rule.
    pub fake: bool,
    pub probabilities: [f64; 5],
    pub fake_score: f64,
    pub model_name: String,
    pub track_id: u64,
    pub frames_ago: u32,
}

/// Each face's verdict; `None` where it has none (no `deepfake` param, or one without a
/// label: see [`analysed`]).
pub fn deepfake_params(buf: &gst::BufferRef) -> Vec<Option<DeepfakeParam>> {
    buf.iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == "face")
        .map(|m| {
            m.param("deepfake")
                .filter(|d| d.has_field("label"))
                .map(|d| DeepfakeParam {
                    label: d.get("label").unwrap(),
                    label_id: d.get("label_id").unwrap(),
                    confidence: d.get("confidence").unwrap(),
                    fake: d.get("fake").unwrap(),
                    probabilities: ["REAL", "FS", "FR", "EFS", "FE"]
                        .map(|k| d.get::<f64>(k).unwrap()),
                    fake_score: d.get("fake_score").unwrap(),
                    model_name: d.get("model_name").unwrap(),
                    track_id: d.get("track_id").unwrap(),
                    frames_ago: d.get("frames_ago").unwrap(),
                })
        })
        .collect()
}

/// Each face's `analysed` flag; `None` where it has no `deepfake` param.
pub fn analysed(buf: &gst::BufferRef) -> Vec<Option<bool>> {
    buf.iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == "face")
        .map(|m| {
            m.param("deepfake")
                .map(|d| d.get::<bool>("analysed").unwrap())
        })
        .collect()
}

/// The frame verdict's structure.
pub fn verdict(buf: &gst::BufferRef) -> Option<gst::Structure> {
    gst::meta::CustomMeta::from_buffer(buf, "Sd2FrameVerdictMeta")
        .ok()
        .map(|m| m.structure().to_owned())
}
