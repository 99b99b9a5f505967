//! `sd2json`: one JSON line per frame with the faces and their params.

use gst::glib;
use gst::prelude::*;

mod imp;
pub(crate) mod line;
mod writer;

glib::wrapper! {
    pub struct Json(ObjectSubclass<imp::Json>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "sd2json",
        gst::Rank::NONE,
        Json::static_type(),
    )
}
