//! GStreamer plugin `sd2`: SD² deepfake detection in pipelines.
//!
//! - `sd2facedetect`: finds faces (MTCNN) and attaches one `GstVideoRegionOfInterestMeta`
//!   of type `face` per face, with a `detection` param.
//! - `sd2deepfake`: classifies the faces with an exported SD² model, tracks them across
//!   frames and attaches a `deepfake` param per face and a verdict per frame.
//! - `sd2json`: writes one JSON line per frame with every face and its params.
//! - `sd2bin`: decode, sample, detect and classify in one element.
//! - `sd2overlay`: draws each face's box, verdict and label, and a banner on fake frames.

use gst::glib;

mod deepfake;
mod detectbin;
mod device;
mod facedetect;
mod frame;
mod json;
mod overlay;
mod pads;
pub mod publish;
pub mod roi;

pub use device::DeviceKind;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    roi::register_metas();
    deepfake::register(plugin)?;
    detectbin::register(plugin)?;
    facedetect::register(plugin)?;
    json::register(plugin)?;
    overlay::register(plugin)?;
    publish::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    sd2,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // The origin: the project has no public address yet.
    "unreleased",
    env!("BUILD_REL_DATE")
);
