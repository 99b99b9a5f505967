//! `sd2overlay`: boxes, labels, landmarks and the banner drawn where they belong, in the
//! right colours, in every format the element accepts; frames with nothing to draw pass
//! untouched; each layer can be turned off; the example scripts write annotated video.
//!
//! Frames are made and read back by GStreamer's own converter (RGB in, the format under
//! test, RGB out), so colours are checked against GStreamer's reading of the frame.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gst::prelude::*;
use gst_check::Harness;
use gst_video::{VideoFormat, VideoFrameRef, VideoInfo, VideoRegionOfInterestMeta};
use gstsd2::roi;
use sd2_models::analyzer::{Judged, label};
use sd2_models::classifier::Verdict;
use sd2_models::mtcnn::Face;

const BACKGROUND: [u8; 3] = [40, 40, 40];
const FAKE: [u8; 3] = [230, 30, 30];
const REAL: [u8; 3] = [40, 200, 70];
const UNKNOWN: [u8; 3] = [150, 150, 150];
const LANDMARK: [u8; 3] = [255, 220, 0];

/// Each of R, G, B may differ this much after a trip through YUV and back.
const COLOUR_TOLERANCE: i32 = 12;

/// The formats the element's sink pad accepts.
fn formats() -> Vec<VideoFormat> {
    init();
    let factory = gst::ElementFactory::find("sd2overlay").expect("sd2overlay is registered");
    let template = factory
        .static_pad_templates()
        .into_iter()
        .find(|t| t.name_template() == "sink")
        .unwrap();
    let caps = template.caps();
    let list = caps
        .structure(0)
        .unwrap()
        .get::<gst::List>("format")
        .unwrap();
    list.iter()
        .map(|v| v.get::<&str>().unwrap().parse().unwrap())
        .collect()
}

fn info(format: VideoFormat, width: u32, height: u32) -> VideoInfo {
    init();
    VideoInfo::builder(format, width, height)
        .fps(gst::Fraction::new(25, 1))
        .build()
        .unwrap()
}

/// `buf` (of `from`) converted by GStreamer to `to`, without dithering; chroma samples are
/// repeated over the pixels they cover, not interpolated, so that every pixel reads the
/// colour its own samples hold.
fn convert(buf: &gst::BufferRef, from: &VideoInfo, to: &VideoInfo) -> gst::Buffer {
    let mut config = gst_video::VideoConverterConfig::new();
    config.set_chroma_mode(gst_video::VideoChromaMode::None);
    config.set_dither_method(gst_video::VideoDitherMethod::None);
    let converter = gst_video::VideoConverter::new(from, to, Some(config)).unwrap();
    let mut out = gst::Buffer::with_size(to.size()).unwrap();
    {
        let src = VideoFrameRef::from_buffer_ref_readable(buf, from).unwrap();
        let mut dst = VideoFrameRef::from_buffer_ref_writable(out.get_mut().unwrap(), to).unwrap();
        converter.frame_ref(&src, &mut dst);
    }
    out
}

/// A frame of `info` filled with `rgb`.
fn uniform(info: &VideoInfo, rgb: [u8; 3]) -> gst::Buffer {
    let rgb_info = self::info(VideoFormat::Rgb, info.width(), info.height());
    let stride = rgb_info.stride()[0] as usize;
    let mut data = vec![0u8; rgb_info.size()];
    for row in data.chunks_exact_mut(stride) {
        for px in row[..info.width() as usize * 3].chunks_exact_mut(3) {
            px.copy_from_slice(&rgb);
        }
    }
    convert(&gst::Buffer::from_mut_slice(data), &rgb_info, info)
}

/// A frame read back as RGB.
struct Image {
    data: Vec<u8>,
    stride: usize,
    width: u32,
    height: u32,
}

impl Image {
    fn of(buf: &gst::BufferRef, info: &VideoInfo) -> Image {
        let rgb_info = self::info(VideoFormat::Rgb, info.width(), info.height());
        let rgb = convert(buf, info, &rgb_info);
        Image {
            data: rgb.map_readable().unwrap().to_vec(),
            stride: rgb_info.stride()[0] as usize,
            width: info.width(),
            height: info.height(),
        }
    }

    fn px(&self, x: u32, y: u32) -> [u8; 3] {
        let i = y as usize * self.stride + x as usize * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    fn luma(&self, x: u32, y: u32) -> f64 {
        luma(self.px(x, y))
    }
}

fn luma(c: [u8; 3]) -> f64 {
    0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter()
        .zip(b)
        .all(|(&x, y)| (x as i32 - y as i32).abs() <= COLOUR_TOLERANCE)
}

/// A face the tests attach, and how it must be drawn.
struct Mark {
    /// `(x, y, w, h)`; even, so that 4:2:0 chroma samples align with the edges.
    rect: (u32, u32, u32, u32),
    colour: [u8; 3],
    /// Its five landmarks, in pixels.
    landmarks: [[u32; 2]; 5],
}

fn landmarks_in(rect: (u32, u32, u32, u32)) -> [[u32; 2]; 5] {
    let (x, y, _, _) = rect;
    [
        [x + 50, y + 80],
        [x + 110, y + 80],
        [x + 80, y + 110],
        [x + 55, y + 150],
        [x + 105, y + 150],
    ]
}

/// Attaches a face at `rect` with `deepfake` as its verdict param, as sd2facedetect and
/// sd2deepfake do.
fn attach(
    buf: &mut gst::BufferRef,
    info: &VideoInfo,
    id: i32,
    rect: (u32, u32, u32, u32),
    deepfake: Option<gst::Structure>,
) {
    let (x, y, w, h) = rect;
    let face = Face {
        bbox: [x as f32, y as f32, (x + w) as f32, (y + h) as f32],
        confidence: 0.99,
        landmarks: landmarks_in(rect).map(|[a, b]| [a as f32, b as f32]),
    };
    let mut meta = VideoRegionOfInterestMeta::add(buf, roi::FACE, rect);
    meta.set_id(id);
    meta.add_param(roi::detection_param(&face, info.width(), info.height(), 0));
    if let Some(d) = deepfake {
        meta.add_param(d);
    }
}

/// A face judged fake, its label FS, its fake score 0.87.
fn fake_verdict() -> Judged {
    judged([0.13, 0.80, 0.03, 0.02, 0.02], true)
}

/// A face judged real, its fake score 0.12.
fn real_verdict() -> Judged {
    judged([0.88, 0.03, 0.03, 0.03, 0.03], false)
}

fn judged(probabilities: [f32; 5], fake: bool) -> Judged {
    let verdict = Verdict { probabilities };
    Judged {
        verdict,
        fake,
        label: label(&verdict, fake),
        frames_ago: 0,
        current: true,
    }
}

/// Attaches a fake frame verdict, as sd2deepfake does.
fn attach_fake_frame(buf: &mut gst::BufferRef) {
    roi::set_frame_verdict(
        buf,
        gst::Structure::builder("frame_verdict")
            .field("fake", true)
            .field("fake_score", 0.87f64)
            .field("label", "FS")
            .field("faces", 3u32)
            .field("fake_faces", 1u32)
            .build(),
    );
}

/// A background frame with a fake face (track 3), a real one (track 1), one without a
/// verdict (track 2) and a fake frame verdict.
fn scene(info: &VideoInfo) -> (gst::Buffer, Vec<Mark>) {
    let mut buf = uniform(info, BACKGROUND);
    let marks = vec![
        Mark {
            rect: (200, 300, 160, 200),
            colour: FAKE,
            landmarks: landmarks_in((200, 300, 160, 200)),
        },
        Mark {
            rect: (600, 300, 160, 200),
            colour: REAL,
            landmarks: landmarks_in((600, 300, 160, 200)),
        },
        Mark {
            rect: (1000, 300, 160, 200),
            colour: UNKNOWN,
            landmarks: landmarks_in((1000, 300, 160, 200)),
        },
    ];
    let b = buf.get_mut().unwrap();
    let params = [
        roi::deepfake_param(&fake_verdict(), "sd2-demo", 3),
        roi::deepfake_param(&real_verdict(), "sd2-demo", 1),
        roi::unanalysed_param("sd2-demo", 2),
    ];
    for (i, (m, p)) in marks.iter().zip(params).enumerate() {
        attach(b, info, i as i32, m.rect, Some(p));
    }
    attach_fake_frame(b);
    (buf, marks)
}

fn harness(props: &str, info: &VideoInfo) -> Harness {
    init();
    let mut h = Harness::new_parse(&format!("sd2overlay name=overlay {props}"));
    h.set_src_caps(info.to_caps().unwrap());
    h
}

/// Problems found on one frame, for one message per format.
type Problems = Vec<String>;

fn expect_colour(p: &mut Problems, img: &Image, x: u32, y: u32, want: [u8; 3], what: &str) {
    let got = img.px(x, y);
    if !close(got, want) {
        p.push(format!("{what} at ({x}, {y}): {got:?}, want {want:?}"));
    }
}

/// The outline of `m`, `line` pixels wide inside its rectangle: every pixel across each
/// edge has the verdict's colour, the pixels just inside and just outside the background
/// (above the top edge sits the label).
fn check_box(p: &mut Problems, img: &Image, m: &Mark, line: u32) {
    let (x, y, w, h) = m.rect;
    let (xm, ym) = (x + w / 2, y + h / 2);
    for d in 0..line {
        expect_colour(p, img, x + d, ym, m.colour, "left edge");
        expect_colour(p, img, x + w - 1 - d, ym, m.colour, "right edge");
        expect_colour(p, img, xm, y + d, m.colour, "top edge");
        expect_colour(p, img, xm, y + h - 1 - d, m.colour, "bottom edge");
    }
    for (px, py, what) in [
        (x - 1, ym, "left of the box"),
        (x + line, ym, "inside the left edge"),
        (x + w, ym, "right of the box"),
        (x + w - 1 - line, ym, "inside the right edge"),
        (xm, y + line, "inside the top edge"),
        (xm, y + h - 1 - line, "inside the bottom edge"),
        (xm, y + h, "below the box"),
    ] {
        expect_colour(p, img, px, py, BACKGROUND, what);
    }
}

/// The label strip on top of the box: mostly the verdict's colour, with text pixels
/// (far from that colour's luma) in it.
fn check_label(p: &mut Problems, img: &Image, m: &Mark, line_height: u32) {
    let (x, y, _, _) = m.rect;
    let (mut background, mut text, mut total) = (0, 0, 0);
    for py in y - line_height..y {
        for px in x..x + 120 {
            let c = img.px(px, py);
            total += 1;
            if close(c, m.colour) {
                background += 1;
            } else if (luma(c) - luma(m.colour)).abs() > 60.0 {
                text += 1;
            }
        }
    }
    if background * 10 < total * 4 || text < 150 {
        p.push(format!(
            "label of {:?}: {background} of {total} pixels in its colour, {text} text pixels",
            m.rect
        ));
    }
}

/// The banner: red across the top, `height` rows, with white text at its left.
fn check_banner(p: &mut Problems, img: &Image, height: u32) {
    let right = img.width - 1;
    expect_colour(p, img, right, 0, FAKE, "banner");
    expect_colour(p, img, right, height - 1, FAKE, "banner's last row");
    expect_colour(p, img, right, height, BACKGROUND, "below the banner");
    let text = (0..height)
        .flat_map(|y| (0..img.width / 2).map(move |x| (x, y)))
        .filter(|&(x, y)| img.luma(x, y) > luma(FAKE) + 60.0)
        .count();
    if text < 300 {
        p.push(format!("banner: {text} text pixels"));
    }
}

/// Every pixel outside the banner, the boxes, their labels and landmarks is background.
fn check_rest(p: &mut Problems, img: &Image, marks: &[Mark], banner: u32, line_height: u32) {
    let drawn = |x: u32, y: u32| {
        y < banner
            || marks.iter().any(|m| {
                let (mx, my, mw, mh) = m.rect;
                let in_box = x + 2 >= mx && x < mx + mw + 2 && y + 2 >= my && y < my + mh + 2;
                let in_label = x + 2 >= mx && x < mx + 260 && y + 2 + line_height >= my && y < my;
                in_box || in_label
            })
    };
    let stray: Vec<(u32, u32)> = (0..img.height)
        .flat_map(|y| (0..img.width).map(move |x| (x, y)))
        .filter(|&(x, y)| !drawn(x, y))
        .filter(|&(x, y)| !close(img.px(x, y), BACKGROUND))
        .take(5)
        .collect();
    if !stray.is_empty() {
        p.push(format!("drawn outside the marks: {stray:?}"));
    }
}

#[test]
fn every_format_gets_boxes_labels_landmarks_and_banner_where_they_belong() {
    let formats = formats();
    assert!(formats.len() >= 8, "{formats:?}");
    let mut failures = Vec::new();
    for format in formats {
        let info = info(format, 1280, 720);
        let mut h = harness("line-width=6 draw-landmarks=true", &info);
        let (buf, marks) = scene(&info);
        let out = h.push_and_pull(buf).unwrap();
        let img = Image::of(&out, &info);
        let mut p = Problems::new();
        for m in &marks {
            check_box(&mut p, &img, m, 6);
            check_label(&mut p, &img, m, 24);
            for [x, y] in m.landmarks {
                expect_colour(&mut p, &img, x, y, LANDMARK, "landmark");
            }
        }
        check_banner(&mut p, &img, 46);
        check_rest(&mut p, &img, &marks, 46, 24);
        if !p.is_empty() {
            failures.push(format!("{format:?}: {}", p.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn frames_without_faces_or_a_fake_verdict_pass_byte_identical_and_unmapped() {
    let mut failures = Vec::new();
    for format in formats() {
        let info = info(format, 320, 240);
        let mut h = harness("draw-landmarks=true", &info);
        let mut input = uniform(&info, [90, 120, 200]);
        // A real frame verdict with no faces draws nothing either.
        roi::set_frame_verdict(
            input.get_mut().unwrap(),
            gst::Structure::builder("frame_verdict")
                .field("fake", false)
                .field("fake_score", 0.0f64)
                .field("faces", 0u32)
                .build(),
        );
        // Upstream keeps a reference: mapping the frame for writing would copy its memory.
        let out = h.push_and_pull(input.clone()).unwrap();
        let (a, b) = (input.map_readable().unwrap(), out.map_readable().unwrap());
        if a.as_slice() != b.as_slice() {
            failures.push(format!("{format:?}: bytes changed"));
        } else if a.as_ptr() != b.as_ptr() {
            failures.push(format!("{format:?}: the frame was mapped for writing"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn drawing_never_writes_into_a_frame_upstream_still_holds() {
    let info = info(VideoFormat::I420, 1280, 720);
    let mut h = harness("", &info);
    let (input, _) = scene(&info);
    let before = input.map_readable().unwrap().to_vec();
    let out = h.push_and_pull(input.clone()).unwrap();
    assert_eq!(input.map_readable().unwrap().as_slice(), before.as_slice());
    assert_ne!(out.map_readable().unwrap().as_slice(), before.as_slice());
}

#[test]
fn a_fake_frame_without_faces_still_gets_its_banner() {
    let info = info(VideoFormat::Nv12, 1280, 720);
    let mut h = harness("", &info);
    let mut buf = uniform(&info, BACKGROUND);
    attach_fake_frame(buf.get_mut().unwrap());
    let img = Image::of(&h.push_and_pull(buf).unwrap(), &info);
    let mut p = Problems::new();
    check_banner(&mut p, &img, 46);
    check_rest(&mut p, &img, &[], 46, 24);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

#[test]
fn each_layer_turns_off_while_playing_and_none_leaves_the_frame_untouched() {
    let info = info(VideoFormat::Rgb, 1280, 720);
    let mut h = harness("", &info);
    let element = h
        .element()
        .unwrap()
        .downcast::<gst::Bin>()
        .unwrap()
        .by_name("overlay")
        .unwrap();
    let push = |h: &mut Harness| {
        let (buf, marks) = scene(&info);
        (Image::of(&h.push_and_pull(buf).unwrap(), &info), marks)
    };
    // The defaults: boxes 3 pixels wide at 720p, labels, the banner, no landmarks.
    let (img, marks) = push(&mut h);
    let fake = &marks[0];
    let (x, y, _, h_) = fake.rect;
    let ym = y + h_ / 2;
    assert_eq!(img.px(x + 2, ym), FAKE);
    assert_eq!(img.px(x + 3, ym), BACKGROUND);
    assert_eq!(
        img.px(fake.landmarks[0][0], fake.landmarks[0][1]),
        BACKGROUND
    );
    assert_eq!(img.px(1279, 0), FAKE);
    assert!(close(img.px(x + 1, y - 1), FAKE), "label");

    element.set_property("line-width", 10u32);
    let (img, _) = push(&mut h);
    assert_eq!(img.px(x + 9, ym), FAKE);
    assert_eq!(img.px(x + 10, ym), BACKGROUND);

    element.set_property("draw-boxes", false);
    let (img, _) = push(&mut h);
    assert_eq!(img.px(x, ym), BACKGROUND);
    assert!(close(img.px(x + 1, y - 1), FAKE), "the label stays");

    element.set_property("draw-labels", false);
    let (img, _) = push(&mut h);
    assert_eq!(img.px(x + 1, y - 1), BACKGROUND);
    assert_eq!(img.px(1279, 0), FAKE, "the banner stays");

    element.set_property("draw-banner", false);
    let (buf, _) = scene(&info);
    let out = h.push_and_pull(buf.clone()).unwrap();
    assert_eq!(
        out.map_readable().unwrap().as_ptr(),
        buf.map_readable().unwrap().as_ptr(),
        "nothing to draw: the frame is not mapped for writing"
    );

    element.set_property("draw-landmarks", true);
    let (img, _) = push(&mut h);
    let [lx, ly] = fake.landmarks[2];
    assert_eq!(img.px(lx, ly), LANDMARK);
    assert_eq!(img.px(x, ym), BACKGROUND);
}

/// The rows of the label strip above `rect` that hold text pixels.
fn text_rows(img: &Image, rect: (u32, u32, u32, u32), line_height: u32) -> u32 {
    let (x, y, _, _) = rect;
    (y - line_height..y)
        .filter(|&py| (x..x + 150).any(|px| luma(img.px(px, py)) > luma(FAKE) + 60.0))
        .count() as u32
}

#[test]
fn label_text_is_a_readable_share_of_the_frame_at_720p_and_1080p() {
    let mut heights = Vec::new();
    for (w, h, line) in [(1280, 720, 24), (1920, 1080, 36)] {
        let info = info(VideoFormat::Rgb, w, h);
        let mut harness = harness("", &info);
        let mut buf = uniform(&info, BACKGROUND);
        let rect = (400, 400, 200, 240);
        attach(
            buf.get_mut().unwrap(),
            &info,
            0,
            rect,
            Some(roi::deepfake_param(&fake_verdict(), "m", 3)),
        );
        let img = Image::of(&harness.push_and_pull(buf).unwrap(), &info);
        let rows = text_rows(&img, rect, line);
        assert!(
            rows as f64 >= 0.015 * h as f64,
            "{h}p: text {rows} pixels high"
        );
        heights.push(rows);
    }
    assert!(
        heights[1] as f64 >= 1.3 * heights[0] as f64,
        "text grows with the frame: {heights:?}"
    );
}

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Builds the plugin where the example scripts load it from (target/release), which
/// `cargo test` does not update.
fn build_plugin() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--release", "-p", "gst-plugin-sd2"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "cargo build failed: {status}");
    });
}

/// A 25-frame 1280×720 WebM of the six-face sample photo.
fn six_face_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("six.webm");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! jpegdec ! imagefreeze num-buffers=25 ! videoconvert ! videoscale ! \
         video/x-raw,width=1280,height=720,framerate=25/1 ! vp8enc deadline=1 target-bitrate=4000000 ! \
         webmmux ! filesink location={}",
        installed("samples/t1.jpg").display(),
        clip.display()
    ))
    .unwrap();
    run_to_eos(&pipeline);
    clip
}

/// Decoded RGB frames of a video file.
fn decode(path: &Path) -> Vec<Image> {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
        path.display()
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let sink = bin
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let info = VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let buf = sample.buffer().unwrap();
        frames.push(Image {
            data: buf.map_readable().unwrap().to_vec(),
            stride: info.stride()[0] as usize,
            width: info.width(),
            height: info.height(),
        });
    }
    pipeline.set_state(gst::State::Null).unwrap();
    frames
}

/// Pixels near the colour of real faces' boxes.
fn real_box_pixels(img: &Image) -> usize {
    (0..img.height)
        .flat_map(|y| (0..img.width).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let c = img.px(x, y);
            c.iter()
                .zip(REAL)
                .all(|(&a, b)| (a as i32 - b as i32).abs() <= 40)
        })
        .count()
}

#[test]
fn the_file_example_writes_every_frame_annotated() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let clip = six_face_clip(dir.path());
    let out = dir.path().join("annotated.webm");
    build_plugin();
    let status = Command::new(root().join("examples/pipelines/overlay-file.sh"))
        .arg(&clip)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "overlay-file.sh failed: {status}");
    let (before, after) = (decode(&clip), decode(&out));
    assert_eq!(after.len(), before.len());
    assert_eq!((after[0].width, after[0].height), (1280, 720));
    // The demo model finds most of the six faces real: green boxes and labels appear.
    let (b, a) = (real_box_pixels(&before[12]), real_box_pixels(&after[12]));
    assert!(a > b + 2000, "green pixels: {b} before, {a} after");
}

#[test]
fn the_window_example_plays_a_file_through_the_overlay() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let clip = six_face_clip(dir.path());
    build_plugin();
    // No display here: the sink the script lets a user choose stands in for the window.
    let out = Command::new(root().join("examples/pipelines/overlay-window.sh"))
        .arg(&clip)
        .env("SD2_VIDEO_SINK", "fakesink")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "overlay-window.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
