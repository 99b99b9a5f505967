//! `sd2facedetect`: MTCNN face detection that attaches face regions to video buffers.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FaceDetect(ObjectSubclass<imp::FaceDetect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "sd2facedetect",
        gst::Rank::NONE,
        FaceDetect::static_type(),
    )
}
