//! The pad templates of the plugin's elements.

/// An always-present `sink` pad and `src` pad with the given caps.
pub fn sink_and_src(sink: &gst::Caps, src: &gst::Caps) -> Vec<gst::PadTemplate> {
    [
        ("sink", gst::PadDirection::Sink, sink),
        ("src", gst::PadDirection::Src, src),
    ]
    .into_iter()
    .map(|(name, direction, caps)| {
        gst::PadTemplate::new(name, direction, gst::PadPresence::Always, caps)
            .expect("a valid pad template")
    })
    .collect()
}
