//! `sd2publish`: frames' JSON lines and alerts to MQTT, HTTP or a file, through an on-disk
//! spool; and the library under it, which a service publishing many channels uses
//! without the element: [`publisher::Publisher`] over [`spool::Spool`] and
//! [`sender::Sender`], which delivers through a [`link::Link`] (MQTT, HTTP or a file).

use gst::glib;
use gst::prelude::*;

pub mod destination;
pub mod file;
pub mod http;
mod imp;
pub mod link;
pub mod mqtt;
pub mod payload;
pub mod publisher;
pub mod record;
pub mod sender;
mod settings;
pub mod spool;
pub mod tls;
pub mod topic;

glib::wrapper! {
    pub struct Publish(ObjectSubclass<imp::Publish>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "sd2publish",
        gst::Rank::NONE,
        Publish::static_type(),
    )
}
