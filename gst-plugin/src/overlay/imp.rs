//! # sd2overlay
//!
//! Draws what `sd2facedetect` and `sd2deepfake` attached on the video itself, for a
//! monitoring wall: each face's box, green when real, red when fake, grey when the face has
//! no fresh verdict (not analysed on this frame, or never); a label line such as
//! `#3 FAKE FS 0.87` (track, verdict, most likely manipulation, fake score) or
//! `#1 REAL 0.12`; a red banner across the top on a frame whose verdict is fake
//! (`FAKE: face swapping (0.87)`); and, when asked, the five landmarks as dots. Text is
//! Noto Sans Mono Bold, shipped in the plugin, sized from the frame height.
//!
//! ```text
//! gst-launch-1.0 filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect ! sd2deepfake model=sd2.onnx ! sd2overlay draw-landmarks=true ! \
//!     videoconvert ! autovideosink
//! ```
//!
//! The frame is drawn on in place, in RGB (any byte order, with or without alpha) or
//! planar or semi-planar 8-bit YUV (colours converted with the negotiated colorimetry).
//! A frame with nothing to draw (no face and no fake verdict) passes untouched: it is not
//! even mapped for writing, so its bytes stay shared with upstream.

use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::VideoFormat;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use super::canvas::{Canvas, Layout};
use super::draw::{self, Style};
use super::scene::{Layers, Scene};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2overlay",
        gst::DebugColorFlags::empty(),
        Some("SD² verdict overlay"),
    )
});

/// The formats drawn on.
const FORMATS: &[VideoFormat] = &[
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::I420,
    VideoFormat::Yv12,
    VideoFormat::Nv12,
    VideoFormat::Nv21,
    VideoFormat::Y42b,
    VideoFormat::Y444,
];

#[derive(Debug, Clone)]
struct Settings {
    draw_boxes: bool,
    draw_labels: bool,
    draw_landmarks: bool,
    draw_banner: bool,
    line_width: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            draw_boxes: true,
            draw_labels: true,
            draw_landmarks: false,
            draw_banner: true,
            line_width: 0,
        }
    }
}

impl Settings {
    fn layers(&self) -> Layers {
        Layers {
            boxes: self.draw_boxes,
            labels: self.draw_labels,
            landmarks: self.draw_landmarks,
            banner: self.draw_banner,
        }
    }
}

#[derive(Default)]
pub struct Overlay {
    settings: Mutex<Settings>,
    /// The negotiated format's layout.
    layout: Mutex<Option<Layout>>,
}

impl Overlay {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layout(&self) -> MutexGuard<'_, Option<Layout>> {
        self.layout.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for Overlay {
    const NAME: &'static str = "GstSd2Overlay";
    type Type = super::Overlay;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for Overlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecBoolean::builder("draw-boxes")
                    .nick("Draw boxes")
                    .blurb("Outline each face: green when real, red when fake, grey without a fresh verdict")
                    .default_value(d.draw_boxes)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-labels")
                    .nick("Draw labels")
                    .blurb("Write each face's track, verdict, most likely manipulation and fake score beside its box, e.g. '#3 FAKE FS 0.87'")
                    .default_value(d.draw_labels)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-landmarks")
                    .nick("Draw landmarks")
                    .blurb("Mark each face's eyes, nose and mouth corners, as the detector found them, with dots")
                    .default_value(d.draw_landmarks)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-banner")
                    .nick("Draw banner")
                    .blurb("Put a red banner across the top of frames whose verdict is fake, naming the manipulation and the fake score")
                    .default_value(d.draw_banner)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("line-width")
                    .nick("Line width")
                    .blurb("Width of the boxes' outlines in pixels; 0 picks it from the frame height (3 at 720p, 4 at 1080p)")
                    .maximum(64)
                    .default_value(d.line_width)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        match pspec.name() {
            "draw-boxes" => s.draw_boxes = value.get().expect("type checked upstream"),
            "draw-labels" => s.draw_labels = value.get().expect("type checked upstream"),
            "draw-landmarks" => s.draw_landmarks = value.get().expect("type checked upstream"),
            "draw-banner" => s.draw_banner = value.get().expect("type checked upstream"),
            "line-width" => s.line_width = value.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set", pspec.name());
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "draw-boxes" => s.draw_boxes.to_value(),
            "draw-labels" => s.draw_labels.to_value(),
            "draw-landmarks" => s.draw_landmarks.to_value(),
            "draw-banner" => s.draw_banner.to_value(),
            "line-width" => s.line_width.to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

impl GstObjectImpl for Overlay {}

impl ElementImpl for Overlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² verdict overlay",
                "Filter/Effect/Video",
                "Draws each face's box, verdict and label, and a banner on fake frames, from the metadata of sd2facedetect and sd2deepfake",
                "SD² GStreamer developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS.iter().copied())
                .build();
            crate::pads::sink_and_src(&caps, &caps)
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for Overlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.layout() = None;
        Ok(())
    }

    /// Frames with nothing to draw leave here, before `VideoFilter` maps them for writing.
    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let layers = self.settings().layers();
        if Scene::read(buf, layers).is_empty() {
            gst::trace!(CAT, imp = self, "nothing to draw on {:?}", buf.pts());
            return Ok(gst::FlowSuccess::Ok);
        }
        self.parent_transform_ip(buf)
    }
}

impl VideoFilterImpl for Overlay {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let layout = Layout::of(in_info).map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
        *self.layout() = Some(layout);
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings().clone();
        let scene = Scene::read(frame.buffer(), settings.layers());
        let Some(layout) = self.layout().clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("no caps were negotiated before the first buffer")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let (width, height) = (frame.width(), frame.height());
        let mut strides = [0usize; 4];
        for (s, &v) in strides.iter_mut().zip(frame.plane_stride()) {
            *s = v.max(0) as usize;
        }
        let style = Style::for_frame(height, settings.line_width);
        let mut canvas = Canvas::new(frame.planes_data_mut(), strides, width, height, &layout);
        draw::draw(&mut canvas, &scene, settings.layers(), &style);
        gst::trace!(
            CAT,
            imp = self,
            "drew {} faces{}",
            scene.faces.len(),
            if scene.banner.is_some() {
                " and the banner"
            } else {
                ""
            }
        );
        Ok(gst::FlowSuccess::Ok)
    }
}
