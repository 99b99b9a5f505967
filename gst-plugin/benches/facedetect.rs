//! Frames per second of `sd2facedetect` on 720p and 1080p frames holding the sample
//! faces, beside facenet-pytorch's MTCNN on the same frames in the same run.
//!
//!     scripts/bench-facedetect.sh        (sets SD2_REFERENCE_PYTHON, then runs this)
//!
//! Frames: the astronaut and the six-face photo, each scaled to the frame's height on a
//! grey canvas. Our element is fed RGB (as the reference is) and I420 (what decoders
//! produce, converted inside the element).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gst::prelude::*;
use sd2_models::image::RgbImage;

const FRAMES: usize = 30;

/// Frames per second of `sd2facedetect` fed `frames` in `format`, and faces per frame.
fn ours(frames: &[RgbImage], format: &str) -> (f64, Vec<usize>) {
    let (w, h) = (frames[0].width, frames[0].height);
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! videoconvert ! video/x-raw,format={format} ! queue max-size-buffers=0 max-size-time=0 max-size-bytes=0 name=q ! sd2facedetect ! fakesink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(gst::Fraction::new(25, 1))
        .build()
        .unwrap()
        .to_caps()
        .unwrap();
    src.set_caps(Some(&caps));
    let (tx, rx) = mpsc::channel();
    let sinkpad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            let n = gstsd2::roi::faces(buf).count();
            let _ = tx.send((Instant::now(), n));
        }
        gst::PadProbeReturn::Ok
    });
    // Hold the element back until every frame is converted and queued, so the clock
    // measures detection alone.
    let q = pipeline.by_name("q").unwrap();
    let qsrc = q.static_pad("src").unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = std::sync::Mutex::new(Some(gate_rx));
    let block = qsrc
        .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, move |_, _| {
            if let Some(rx) = gate_rx.lock().unwrap().take() {
                let _ = rx.recv();
            }
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let total = FRAMES + 2;
    for i in 0..total {
        let mut buf = gst::Buffer::from_mut_slice(frames[i % frames.len()].data.clone());
        buf.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        src.push_buffer(buf).unwrap();
    }
    src.end_of_stream().unwrap();
    // Let every frame reach the queue.
    std::thread::sleep(Duration::from_millis(500 + 30 * total as u64));
    gate_tx.send(()).unwrap();
    qsrc.remove_probe(block);
    let mut times = Vec::new();
    let mut faces = Vec::new();
    for _ in 0..total {
        let (t, n) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("frames arrive");
        times.push(t);
        faces.push(n);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    // The first two frames warm up; the clock runs from the second to the last.
    let elapsed = times[total - 1].duration_since(times[1]).as_secs_f64();
    (FRAMES as f64 / elapsed, faces[2..2 + frames.len()].to_vec())
}

/// The reference's frames per second, or why it was not run.
fn reference(paths: &[PathBuf]) -> Result<(f64, Vec<usize>), String> {
    let python = std::env::var("SD2_REFERENCE_PYTHON").map_err(|_| {
        "SD2_REFERENCE_PYTHON is not set (scripts/bench-facedetect.sh sets it)".to_owned()
    })?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference_mtcnn.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(FRAMES.to_string())
        .args(paths)
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let faces = v["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as usize)
        .collect();
    Ok((v["fps"].as_f64().unwrap(), faces))
}

fn main() {
    gst::init().unwrap();
    gstsd2::plugin_register_static().unwrap();
    let samples = sd2_models::paths::samples_dir();
    let astronaut = RgbImage::open(&samples.join("astronaut.png")).expect("run scripts/setup.sh");
    let group = RgbImage::open(&samples.join("t1.jpg")).expect("run scripts/setup.sh");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-frames");
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "sd2facedetect vs facenet-pytorch MTCNN, {FRAMES} frames after 2 warm-up, frames per second"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>8} {:>8}",
        "frames", "ours RGB", "ours I420", "facenet-pytorch", "RGB/ref", "I420/ref"
    );
    for (w, h) in [(1280, 720), (1920, 1080)] {
        let frames = [astronaut.letterboxed(w, h, 96), group.letterboxed(w, h, 96)];
        let paths: Vec<PathBuf> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let p = dir.join(format!("{w}x{h}-{i}.png"));
                f.save_png(&p).unwrap();
                p
            })
            .collect();
        let (rgb, faces_rgb) = ours(&frames, "RGB");
        let (i420, faces_i420) = ours(&frames, "I420");
        match reference(&paths) {
            Ok((r, faces_ref)) => {
                println!(
                    "{:<10} {rgb:>12.2} {i420:>12.2} {r:>14.2} {:>8.2} {:>8.2}",
                    format!("{h}p"),
                    rgb / r,
                    i420 / r
                );
                println!(
                    "{:<10} faces per frame: ours RGB {faces_rgb:?}, ours I420 {faces_i420:?}, reference {faces_ref:?}",
                    ""
                );
            }
            Err(why) => {
                println!(
                    "{:<10} {rgb:>12.2} {i420:>12.2} {:>14}",
                    format!("{h}p"),
                    "not run"
                );
                println!(
                    "{:<10} faces per frame: ours RGB {faces_rgb:?}, ours I420 {faces_i420:?}; reference not run: {why}",
                    ""
                );
            }
        }
    }
}
