//! `sd2deepfake`: SD² on the faces attached upstream.

use gst::glib;
use gst::prelude::*;

mod imp;
mod outcome;
mod queue;
mod settings;

glib::wrapper! {
    pub struct Deepfake(ObjectSubclass<imp::Deepfake>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "sd2deepfake",
        gst::Rank::NONE,
        Deepfake::static_type(),
    )
}
