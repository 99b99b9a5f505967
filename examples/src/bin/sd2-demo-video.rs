//! Makes the demo video from the sample faces: 12 seconds of 1280×720 at 25 fps, VP8 in
//! WebM. The astronaut (scikit-image) drifts and zooms across the frame for four seconds,
//! then the six-face photo (insightface) slowly zooms for four more, then the same photo
//! zooms again for four seconds with one face swapped for another's (by
//! `sd2_train::data::synthetic::swap`, the manipulation the demo model was trained to see).
//!
//!     sd2-demo-video OUTPUT.webm [SAMPLES_DIR]
//!
//! Frames are composed here and encoded by GStreamer: `appsrc ! videoconvert ! vp8enc ! webmmux ! filesink`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gst::prelude::*;
use sd2_models::image::RgbImage;
use sd2_train::data::rng::Rng;
use sd2_train::data::synthetic;

const WIDTH: usize = 1280;
const HEIGHT: usize = 720;
const FPS: usize = 25;
const SEGMENT: usize = 4 * FPS;
const SEGMENTS: usize = 3;

/// Draws `src` scaled by `scale` with its top-left corner at `(x0, y0)` on a dark grey
/// frame, sampling bilinearly.
fn compose(src: &RgbImage, scale: f32, x0: f32, y0: f32) -> Vec<u8> {
    let mut out = vec![24u8; WIDTH * HEIGHT * 3];
    let (sw, sh) = (src.width as f32, src.height as f32);
    for y in 0..HEIGHT {
        let sy = (y as f32 + 0.5 - y0) / scale - 0.5;
        if sy < -0.5 || sy > sh - 0.5 {
            continue;
        }
        for x in 0..WIDTH {
            let sx = (x as f32 + 0.5 - x0) / scale - 0.5;
            if sx < -0.5 || sx > sw - 0.5 {
                continue;
            }
            let v = src.sample_bilinear(sx, sy);
            for (o, v) in out[(y * WIDTH + x) * 3..][..3].iter_mut().zip(v) {
                *o = v.round() as u8;
            }
        }
    }
    out
}

/// Frame `i` of the demo.
fn frame(i: usize, astronaut: &RgbImage, group: &RgbImage, swapped: &RgbImage) -> Vec<u8> {
    if i >= 2 * SEGMENT {
        return frame(i - SEGMENT, astronaut, swapped, swapped);
    }
    if i < SEGMENT {
        let t = i as f32 / (SEGMENT - 1) as f32;
        let scale = (600.0 / astronaut.height as f32) * (1.0 + 0.2 * t);
        let size = astronaut.width as f32 * scale;
        let x0 = 40.0 + t * (WIDTH as f32 - size - 80.0);
        let y0 = (HEIGHT as f32 - astronaut.height as f32 * scale) / 2.0;
        compose(astronaut, scale, x0, y0)
    } else {
        let t = (i - SEGMENT) as f32 / (SEGMENT - 1) as f32;
        let fit = (WIDTH as f32 / group.width as f32).min(HEIGHT as f32 / group.height as f32);
        let scale = fit * (1.0 + 0.1 * t);
        let x0 = (WIDTH as f32 - group.width as f32 * scale) / 2.0;
        let y0 = (HEIGHT as f32 - group.height as f32 * scale) / 2.0;
        compose(group, scale, x0, y0)
    }
}

fn encode(out: &Path, astronaut: &RgbImage, group: &RgbImage, swapped: &RgbImage) -> Result<()> {
    gst::init()?;
    let tmp = out.with_extension("webm.part");
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time ! videoconvert ! vp8enc deadline=1000000 cpu-used=5 threads=1 target-bitrate=3000000 keyframe-max-dist=50 ! webmmux ! filesink location=\"{}\"",
        tmp.display()
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .context("appsrc")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| anyhow::anyhow!("not an appsrc"))?;
    let info =
        gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, WIDTH as u32, HEIGHT as u32)
            .fps(gst::Fraction::new(FPS as i32, 1))
            .build()?;
    src.set_caps(Some(&info.to_caps()?));
    pipeline.set_state(gst::State::Playing)?;
    let stride = info.stride()[0] as usize;
    for i in 0..SEGMENTS * SEGMENT {
        let rgb = frame(i, astronaut, group, swapped);
        let mut buffer = gst::Buffer::with_size(info.size())?;
        {
            let b = buffer.get_mut().expect("new buffer");
            b.set_pts(gst::ClockTime::from_nseconds(
                (i as u64) * 1_000_000_000 / FPS as u64,
            ));
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / FPS as u64));
            let mut map = b.map_writable()?;
            for (row, chunk) in rgb.chunks_exact(WIDTH * 3).enumerate() {
                map[row * stride..row * stride + WIDTH * 3].copy_from_slice(chunk);
            }
        }
        src.push_buffer(buffer)?;
    }
    src.end_of_stream()?;
    let bus = pipeline.bus().context("bus")?;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(e) => {
                pipeline.set_state(gst::State::Null)?;
                bail!("encoding failed: {} ({:?})", e.error(), e.debug());
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, samples) = match args.as_slice() {
        [out] => (PathBuf::from(out), sd2_models::paths::samples_dir()),
        [out, samples] => (PathBuf::from(out), PathBuf::from(samples)),
        _ => bail!("usage: sd2-demo-video OUTPUT.webm [SAMPLES_DIR]"),
    };
    let astronaut = RgbImage::open(&samples.join("astronaut.png"))?;
    let group = RgbImage::open(&samples.join("t1.jpg"))?;
    // The third person from the left of the group photo gets the face of the fifth.
    let mtcnn = sd2_models::paths::model_dir().join("mtcnn");
    let (photos, people) = synthetic::sample_photos(&samples, &mtcnn)
        .map_err(anyhow::Error::msg)
        .context("finding the faces to swap (run scripts/setup.sh first)")?;
    let in_group: Vec<&synthetic::Person> = people.iter().filter(|p| p.frame == 1).collect();
    if in_group.len() < 5 {
        bail!("found {} faces in t1.jpg, expected six", in_group.len());
    }
    let (target, donor) = (in_group[2], in_group[4]);
    let mut rng = Rng::new(5);
    let swapped = synthetic::swap(
        &group,
        &target.face,
        &photos[1].image,
        &donor.face,
        &mut rng,
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    encode(&out, &astronaut, &group, &swapped)?;
    println!(
        "wrote {} ({} frames of {WIDTH}x{HEIGHT} at {FPS} fps)",
        out.display(),
        SEGMENTS * SEGMENT
    );
    Ok(())
}
