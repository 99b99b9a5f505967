//! An application that reads SD² metadata from a pipeline: it decodes a file or stream,
//! runs the face and deepfake elements, and prints each frame's verdict, each face's
//! deepfake label, and every alert the element posts.
//!
//!     GST_PLUGIN_PATH=target/release sd2-watch VIDEO_OR_URI [MODEL]
//!
//! The metadata are read where a user's application would: on buffers in an appsink
//! (`GstVideoRegionOfInterestMeta` with the `detection` and `deepfake` params, the
//! `Sd2FrameVerdictMeta` custom meta) and as element messages on the bus.

use anyhow::{Context, Result, bail};
use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;

fn uri(arg: &str) -> Result<String> {
    if arg.contains("://") {
        return Ok(arg.to_owned());
    }
    let path = std::fs::canonicalize(arg).with_context(|| format!("{arg}: no such file"))?;
    Ok(format!("file://{}", path.display()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first() else {
        bail!("usage: sd2-watch VIDEO_OR_URI [MODEL]");
    };
    let model = args.get(1).cloned().unwrap_or_else(|| {
        sd2_models::paths::model_dir()
            .join("sd2-demo.onnx")
            .display()
            .to_string()
    });
    gst::init()?;
    let pipeline = gst::parse::launch(&format!(
        "uridecodebin uri=\"{}\" ! videoconvert ! sd2facedetect ! sd2deepfake model=\"{model}\" ! appsink name=sink sync=false",
        uri(input)?
    ))
    .context("building the pipeline (is GST_PLUGIN_PATH set to the sd2 plugin's folder?)")?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("sink")
        .context("appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(|sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let time = buffer
                    .pts()
                    .map_or("-".to_owned(), |t| format!("{:.2}s", t.seconds_f64()));
                let verdict = gst::meta::CustomMeta::from_buffer(buffer, "Sd2FrameVerdictMeta")
                    .ok()
                    .map(|m| m.structure().to_owned());
                let faces: Vec<String> = buffer
                    .iter_meta::<VideoRegionOfInterestMeta>()
                    .filter(|m| m.roi_type() == "face")
                    .filter_map(|m| {
                        let d = m.param("deepfake")?;
                        Some(format!(
                            "track {} {} ({:.2})",
                            d.get::<u64>("track_id").ok()?,
                            d.get::<String>("label").ok()?,
                            d.get::<f64>("fake_score").ok()?
                        ))
                    })
                    .collect();
                if let Some(v) = verdict {
                    let fake = v.get::<bool>("fake").unwrap_or(false);
                    println!(
                        "{time} {} {}",
                        if fake { "FAKE" } else { "real" },
                        faces.join(", ")
                    );
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().context("bus")?;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "sd2-deepfake-alert") {
                    eprintln!(
                        "ALERT: track {} judged fake, most likely {} (fake score {:.2}) at {:.2}s",
                        s.get::<u64>("track_id").unwrap_or(0),
                        s.get::<String>("fake_type").unwrap_or_default(),
                        s.get::<f64>("fake_score").unwrap_or(0.0),
                        s.get::<u64>("timestamp").unwrap_or(0) as f64 / 1e9
                    );
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                pipeline.set_state(gst::State::Null)?;
                bail!("{}: {}", e.error(), e.debug().unwrap_or_default());
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}
