//! The `device` property shared by the elements that run models.

use gst::glib;
use gst::prelude::*;
use sd2_models::runtime::{Device, Placement};

/// Where an element runs its model.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2Device")]
pub enum DeviceKind {
    #[default]
    #[enum_value(name = "CPU: ONNX Runtime's CPU execution provider", nick = "cpu")]
    Cpu = 0,
    #[enum_value(
        name = "CUDA: ONNX Runtime's CUDA execution provider; the element fails to start if CUDA cannot be used",
        nick = "cuda"
    )]
    Cuda = 1,
    #[enum_value(
        name = "Auto: CUDA when it can be used, else the CPU (the choice is logged and posted)",
        nick = "auto"
    )]
    Auto = 2,
}

impl From<DeviceKind> for Device {
    fn from(d: DeviceKind) -> Device {
        match d {
            DeviceKind::Cpu => Device::Cpu,
            DeviceKind::Cuda => Device::Cuda,
            DeviceKind::Auto => Device::Auto,
        }
    }
}

/// Says where `element` runs `what`: when `device=auto` fell back to the CPU, a warning and
/// an `sd2-device` element message with the reason; otherwise a log line.
pub fn report_placement(
    element: &gst::Element,
    cat: gst::DebugCategory,
    what: &str,
    placement: Placement,
    fallback_reason: Option<&str>,
) {
    match fallback_reason {
        Some(reason) => {
            gst::warning!(
                cat,
                obj = element,
                "device=auto: CUDA cannot be used ({reason}); running on the CPU"
            );
            let msg = gst::message::Element::builder(
                gst::Structure::builder("sd2-device")
                    .field("device", "cpu")
                    .field("reason", reason)
                    .build(),
            )
            .src(element)
            .build();
            let _ = element.post_message(msg);
        }
        None => gst::info!(cat, obj = element, "{what} running on {placement}"),
    }
}
