//! `sd2bin`: decode, sample, detect faces and classify them, in one element.

use gst::glib;
use gst::prelude::*;

mod imp;
mod sampler;

glib::wrapper! {
    pub struct DetectBin(ObjectSubclass<imp::DetectBin>) @extends gst::Bin, gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "sd2bin",
        gst::Rank::NONE,
        DetectBin::static_type(),
    )
}
