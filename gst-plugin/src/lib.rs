//! GStreamer plugin `sd2`: SD² deepfake detection in pipelines.
//!
//! - `sd2facedetect`: finds faces (MTCNN) and attaches one `GstVideoRegionOfInterestMeta`
//!   of type `face` per face, with a `detection` param.
//! - `sd2json`: writes one JSON line per frame with every face and its params.

use gst::glib;

mod device;
mod facedetect;
mod frame;
mod json;
pub mod roi;

pub use device::DeviceKind;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    facedetect::register(plugin)?;
    json::register(plugin)?;
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
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
