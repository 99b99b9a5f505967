//! `sd2overlay`: draws each face's box, verdict and label, and a banner on fake frames, on
//! the video itself.

use gst::glib;
use gst::prelude::*;

mod canvas;
mod draw;
mod imp;
mod scene;
mod text;

glib::wrapper! {
    pub struct Overlay(ObjectSubclass<imp::Overlay>) @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "sd2overlay",
        gst::Rank::NONE,
        Overlay::static_type(),
    )
}
