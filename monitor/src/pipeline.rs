//! A channel's pipeline:
//!
//! ```text
//! uridecodebin uri=… (or the channel's source) ! queue ! videoconvert !
//!     sd2facedetect ! sd2deepfake queue-mode=skip ! [sd2publish] ! fakesink
//! ```
//!
//! Both analysis elements run on every Nth frame, N being the stream's frame rate over
//! the channel's `analysis_fps` (rounded; at least 1; see [`crate::interval`]). The queue
//! lets the decoder run ahead while the detector works on a frame. A file plays in real
//! time: an `identity sync=true` after the queue lets each frame into the analysis at its
//! time, so the analysis itself never waits for the clock (frames waiting downstream would
//! fill `sd2deepfake`'s queue and be skipped). Nothing after the analysis waits either.
//!
//! ```text
//! uridecodebin uri=file://… ! queue ! identity sync=true ! videoconvert ! …
//! ```

use gst::prelude::*;

use crate::config::{ChannelConfig, Input, OnEos, ServiceConfig};
use crate::props;

/// Frames the queue after the decoder holds: a second of 25 fps video.
const QUEUE_FRAMES: u32 = 25;

/// A built pipeline and the elements the monitor reads.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub pipeline: gst::Pipeline,
    /// The queue after the source: where a drain sends its end of stream.
    pub entry: gst::Element,
    /// A file's `identity` that lets frames in at their time.
    pub pace: Option<gst::Element>,
    pub facedetect: gst::Element,
    pub deepfake: gst::Element,
    pub publish: Option<gst::Element>,
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        format!("GStreamer has no {factory} element (is the plugin that provides it installed?)")
    })
}

/// Builds `cfg`'s pipeline, not started.
pub fn build(cfg: &ChannelConfig, service: &ServiceConfig) -> Result<Pipeline, String> {
    let pipeline = gst::Pipeline::with_name(&cfg.name);
    let queue = make("queue")?;
    queue.set_property("max-size-buffers", QUEUE_FRAMES);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    let convert = make("videoconvert")?;
    let facedetect = make("sd2facedetect")?;
    let deepfake = make("sd2deepfake")?;
    configure_analysis(cfg, service, &facedetect, &deepfake)?;
    let publish = cfg
        .publish
        .as_ref()
        .map(|_| make_publish(cfg, service))
        .transpose()?;
    let sink = make("fakesink")?;
    sink.set_property("sync", false);
    let mut chain = vec![queue.clone()];
    let pace = cfg.input.is_file().then(|| make("identity")).transpose()?;
    if let Some(pace) = &pace {
        // A synchronising identity answers the pause with no preroll, and a looping file
        // needs a preroll to start its first segment: it synchronises once that is done.
        pace.set_property("sync", cfg.on_eos != OnEos::Loop);
        chain.push(pace.clone());
    }
    chain.extend([convert, facedetect.clone(), deepfake.clone()]);
    chain.extend(publish.clone());
    chain.push(sink);
    pipeline
        .add_many(&chain)
        .and_then(|_| gst::Element::link_many(&chain))
        .map_err(|e| format!("cannot link the analysis elements: {e}"))?;
    add_source(&pipeline, &cfg.input, &queue)?;
    Ok(Pipeline {
        pipeline,
        entry: queue,
        pace,
        facedetect,
        deepfake,
        publish,
    })
}

fn configure_analysis(
    cfg: &ChannelConfig,
    service: &ServiceConfig,
    facedetect: &gst::Element,
    deepfake: &gst::Element,
) -> Result<(), String> {
    let device = cfg.device.to_string();
    props::set_from_str(facedetect, "device", &device)?;
    deepfake.set_property("model", cfg.model.to_string_lossy().as_ref());
    let j = &cfg.judgement;
    for (name, value) in [
        ("device", device),
        ("queue-mode", "skip".to_owned()),
        ("batch-size", service.batch_size.to_string()),
        ("decision", j.decision.clone()),
        ("threshold", j.threshold.to_string()),
        ("hysteresis", j.hysteresis.to_string()),
    ] {
        props::set_from_str(deepfake, name, &value)?;
    }
    Ok(())
}

/// `sd2publish` with the channel's `publish` table, its name as the channel and its spool
/// under the service's spool folder.
pub fn make_publish(cfg: &ChannelConfig, service: &ServiceConfig) -> Result<gst::Element, String> {
    let publish = gst::ElementFactory::make("sd2publish")
        .build()
        .map_err(|_| {
            "this build has no sd2publish element: publish targets cannot be used".to_owned()
        })?;
    publish.set_property("channel", &cfg.name);
    let spool = service.spool_dir.join(&cfg.name);
    publish.set_property("spool-dir", spool.to_string_lossy().as_ref());
    let drain_ms = (service.drain_timeout_s * 1000.0).round() as u32;
    props::set_from_str(&publish, "drain-timeout", &drain_ms.to_string())?;
    for (key, value) in cfg.publish.iter().flatten() {
        props::set_from_str(&publish, &key.replace('_', "-"), &value.as_gst_string())
            .map_err(|e| format!("publish.{key}: {e}"))?;
    }
    Ok(publish)
}

/// Adds the source and links its video to `first`.
fn add_source(pipeline: &gst::Pipeline, input: &Input, first: &gst::Element) -> Result<(), String> {
    match input {
        Input::Uri(uri) => {
            let decode = make("uridecodebin")?;
            decode.set_property("uri", uri);
            // Only video is exposed; other streams end unlinked in the demuxer.
            decode.set_property(
                "caps",
                gst::Caps::builder("video/x-raw").any_features().build(),
            );
            decode.set_property("expose-all-streams", false);
            pipeline
                .add(&decode)
                .map_err(|e| format!("cannot add uridecodebin: {e}"))?;
            let sink = first.static_pad("sink").expect("queue has a sink pad");
            decode.connect_pad_added(move |_, pad| {
                let video = pad
                    .current_caps()
                    .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                    .unwrap_or(false);
                if video && !sink.is_linked() {
                    let _ = pad.link(&sink);
                }
            });
            Ok(())
        }
        Input::Source(description) => {
            let bin = parse_source(description)?;
            pipeline
                .add(&bin)
                .map_err(|e| format!("cannot add the source: {e}"))?;
            bin.link(first)
                .map_err(|e| format!("the source's output is not video the analysis takes: {e}"))
        }
    }
}

/// A `source` fragment as a bin with one source pad.
pub fn parse_source(description: &str) -> Result<gst::Bin, String> {
    let bin = gst::parse::bin_from_description(description, true)
        .map_err(|e| format!("source {description:?} does not parse: {e}"))?;
    if bin.static_pad("src").is_none() {
        return Err(format!(
            "source {description:?} has no unlinked source pad (it must end in raw video, as in `v4l2src ! videoconvert`)"
        ));
    }
    Ok(bin)
}
