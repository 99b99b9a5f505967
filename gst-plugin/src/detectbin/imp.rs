//! # sd2bin
//!
//! The common case in one element: decode (`decodebin`), convert, sample frames, find
//! faces (`sd2facedetect`) and classify them (`sd2deepfake`). Takes encoded or raw video,
//! gives raw video carrying the face and verdict metadata.
//!
//! ```text
//! gst-launch-1.0 filesrc location=clip.mp4 ! sd2bin model=sd2.onnx ! sd2json location=- ! fakesink
//! gst-launch-1.0 filesrc location=clip.mp4 ! sd2bin frames-per-video=32 ! sd2json location=- ! fakesink
//! ```
//!
//! `sample-fps` keeps at most that many frames a second; `frames-per-video` keeps that many
//! frames evenly spaced over the stream (the paper's evaluation takes 32), when its duration
//! is known. The other properties are the inner elements' main ones.

use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::sampler::{Sampler, Sampling, stream_position};
use crate::device::DeviceKind;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2bin",
        gst::DebugColorFlags::empty(),
        Some("SD² decode-detect-classify bin"),
    )
});

/// Bin properties handed to an inner element: (bin name, element, inner name).
const FORWARDED: &[(&str, Inner, &str)] = &[
    ("model", Inner::Deepfake, "model"),
    ("threshold", Inner::Deepfake, "threshold"),
    ("batch-size", Inner::Deepfake, "batch-size"),
    ("inference-interval", Inner::Deepfake, "inference-interval"),
    (
        "reclassify-interval",
        Inner::Deepfake,
        "reclassify-interval",
    ),
    ("face-threshold", Inner::FaceDetect, "threshold"),
    ("min-face-size", Inner::FaceDetect, "min-face-size"),
    ("max-faces", Inner::FaceDetect, "max-faces"),
    ("detect-interval", Inner::FaceDetect, "inference-interval"),
];

#[derive(Clone, Copy, Debug)]
enum Inner {
    FaceDetect,
    Deepfake,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    sample_fps: f64,
    frames_per_video: u32,
    device: DeviceKind,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sample_fps: 0.0,
            frames_per_video: 0,
            device: DeviceKind::default(),
        }
    }
}

impl Settings {
    fn sampling(&self) -> Sampling {
        if self.frames_per_video > 0 {
            Sampling::PerVideo(self.frames_per_video)
        } else if self.sample_fps > 0.0 {
            Sampling::PerSecond(self.sample_fps)
        } else {
            Sampling::All
        }
    }
}

pub struct DetectBin {
    decodebin: gst::Element,
    convert: gst::Element,
    facedetect: gst::Element,
    deepfake: gst::Element,
    settings: Mutex<Settings>,
    sampler: std::sync::Arc<Mutex<Sampler>>,
}

fn make(factory: &str) -> gst::Element {
    gst::ElementFactory::make(factory)
        .build()
        .unwrap_or_else(|_| panic!("element {factory} is missing (GStreamer base plugins and the sd2 plugin are needed)"))
}

#[glib::object_subclass]
impl ObjectSubclass for DetectBin {
    const NAME: &'static str = "GstSd2DetectBin";
    type Type = super::DetectBin;
    type ParentType = gst::Bin;
    type Interfaces = (gst::ChildProxy,);

    fn new() -> Self {
        DetectBin {
            decodebin: make("decodebin"),
            convert: make("videoconvert"),
            facedetect: make("sd2facedetect"),
            deepfake: make("sd2deepfake"),
            settings: Mutex::new(Settings::default()),
            sampler: std::sync::Arc::new(Mutex::new(Sampler::new(Sampling::All))),
        }
    }
}

impl DetectBin {
    fn inner(&self, which: Inner) -> &gst::Element {
        match which {
            Inner::FaceDetect => &self.facedetect,
            Inner::Deepfake => &self.deepfake,
        }
    }

    /// Links decodebin's video pad to the converter; other streams end in a fakesink.
    fn pad_added(&self, pad: &gst::Pad) {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/"));
        let sink = self
            .convert
            .static_pad("sink")
            .expect("videoconvert has a sink pad");
        if is_video && !sink.is_linked() {
            if let Err(e) = pad.link(&sink) {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ("cannot link the decoded video: {:?}", e)
                );
            }
            return;
        }
        let fakesink = match gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
        {
            Ok(f) => f,
            Err(e) => {
                gst::warning!(CAT, imp = self, "{caps} stream left unlinked: {e}");
                return;
            }
        };
        let obj = self.obj();
        if obj.add(&fakesink).is_ok() {
            let _ = fakesink.sync_state_with_parent();
            if let Some(s) = fakesink.static_pad("sink") {
                let _ = pad.link(&s);
            }
        }
        gst::debug!(CAT, imp = self, "ignoring a {} stream", caps);
    }
}

impl ObjectImpl for DetectBin {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_many([
            &self.decodebin,
            &self.convert,
            &self.facedetect,
            &self.deepfake,
        ])
        .expect("add the inner elements");
        gst::Element::link_many([&self.convert, &self.facedetect, &self.deepfake])
            .expect("link the inner elements");
        let weak = obj.downgrade();
        self.decodebin.connect_pad_added(move |_, pad| {
            if let Some(bin) = weak.upgrade() {
                bin.imp().pad_added(pad);
            }
        });
        // An input without video would otherwise preroll forever, saying nothing.
        let weak = obj.downgrade();
        self.decodebin.connect_no_more_pads(move |_| {
            if let Some(bin) = weak.upgrade() {
                let imp = bin.imp();
                let linked = imp
                    .convert
                    .static_pad("sink")
                    .is_some_and(|p| p.is_linked());
                if !linked {
                    gst::element_imp_error!(
                        imp,
                        gst::StreamError::WrongType,
                        ("the input has no video stream")
                    );
                }
            }
        });
        // Sampling happens before conversion and detection, so dropped frames cost nothing
        // downstream.
        let sampler = self.sampler.clone();
        let convert_sink = self.convert.static_pad("sink").expect("videoconvert sink");
        convert_sink.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH,
            move |pad, info| match &info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    let duration = || {
                        pad.peer_query_duration::<gst::ClockTime>()
                            .map(|d| d.nseconds())
                    };
                    let segment = pad.sticky_event::<gst::event::Segment>(0);
                    let position = buf.pts().and_then(|pts| {
                        let time = segment
                            .as_ref()
                            .and_then(|e| e.segment().downcast_ref::<gst::ClockTime>().cloned());
                        stream_position(time.as_ref(), pts)
                    });
                    let keep = sampler
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .keep(position.map(|t| t.nseconds()), duration);
                    if keep {
                        gst::PadProbeReturn::Ok
                    } else {
                        // Not Drop: gstreamer-rs has already taken the buffer out of the
                        // probe info and frees it here, and GStreamer 1.22 would then free
                        // the empty slot, a CRITICAL for every dropped frame. Handled tells
                        // GStreamer the probe disposed of the buffer.
                        gst::PadProbeReturn::Handled
                    }
                }
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                    sampler.lock().unwrap_or_else(|p| p.into_inner()).reset();
                    gst::PadProbeReturn::Ok
                }
                _ => gst::PadProbeReturn::Ok,
            },
        );
        let sink =
            gst::GhostPad::with_target(&self.decodebin.static_pad("sink").expect("decodebin sink"))
                .expect("ghost the sink pad");
        let src =
            gst::GhostPad::with_target(&self.deepfake.static_pad("src").expect("sd2deepfake src"))
                .expect("ghost the src pad");
        obj.add_pad(&sink).expect("add the sink pad");
        obj.add_pad(&src).expect("add the src pad");
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let deepfake = glib::Object::new::<crate::deepfake::Deepfake>();
            let facedetect = glib::Object::new::<crate::facedetect::FaceDetect>();
            // The forwarded properties keep the inner elements' ranges and defaults.
            let mut props: Vec<glib::ParamSpec> = FORWARDED
                .iter()
                .map(|(name, which, inner)| {
                    let obj: &glib::Object = match which {
                        Inner::FaceDetect => facedetect.upcast_ref(),
                        Inner::Deepfake => deepfake.upcast_ref(),
                    };
                    let spec = obj.find_property(inner).expect("inner property");
                    let blurb = spec.blurb().unwrap_or_default().to_owned();
                    let nick = spec.nick().to_owned();
                    rename(&spec, name, &nick, &blurb)
                })
                .collect();
            let d = Settings::default();
            props.push(
                glib::ParamSpecEnum::builder_with_default("device", d.device)
                    .nick("Device")
                    .blurb("Where both models run: cpu, cuda (fails to start if CUDA cannot be used) or auto")
                    .mutable_ready()
                    .build(),
            );
            props.push(
                glib::ParamSpecDouble::builder("sample-fps")
                    .nick("Sample rate")
                    .blurb("Analyse at most this many frames a second (the first of each slot); 0 analyses every frame. Frames not sampled are dropped")
                    .minimum(0.0)
                    .maximum(1000.0)
                    .default_value(d.sample_fps)
                    .mutable_ready()
                    .build(),
            );
            props.push(
                glib::ParamSpecUInt::builder("frames-per-video")
                    .nick("Frames per video")
                    .blurb("Analyse this many frames evenly spaced over a file, as the paper evaluates videos (32); 0 turns it off. Needs a known duration; live streams pass every frame")
                    .default_value(d.frames_per_video)
                    .mutable_ready()
                    .build(),
            );
            props
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "device" => {
                let d: DeviceKind = value.get().expect("type checked upstream");
                self.settings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .device = d;
                self.facedetect.set_property("device", d);
                self.deepfake.set_property("device", d);
            }
            "sample-fps" | "frames-per-video" => {
                let mut s = self.settings.lock().unwrap_or_else(|p| p.into_inner());
                if pspec.name() == "sample-fps" {
                    s.sample_fps = value.get().expect("type checked upstream");
                } else {
                    s.frames_per_video = value.get().expect("type checked upstream");
                }
                *self.sampler.lock().unwrap_or_else(|p| p.into_inner()) =
                    Sampler::new(s.sampling());
            }
            name => {
                let (_, which, inner) = FORWARDED
                    .iter()
                    .find(|(n, ..)| *n == name)
                    .expect("known property");
                self.inner(*which).set_property_from_value(inner, value);
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = *self.settings.lock().unwrap_or_else(|p| p.into_inner());
        match pspec.name() {
            "device" => s.device.to_value(),
            "sample-fps" => s.sample_fps.to_value(),
            "frames-per-video" => s.frames_per_video.to_value(),
            name => {
                let (_, which, inner) = FORWARDED
                    .iter()
                    .find(|(n, ..)| *n == name)
                    .expect("known property");
                self.inner(*which).property_value(inner)
            }
        }
    }
}

/// A copy of `spec` under another name.
fn rename(spec: &glib::ParamSpec, name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    if let Some(p) = spec.downcast_ref::<glib::ParamSpecFloat>() {
        return glib::ParamSpecFloat::builder(name)
            .nick(nick)
            .blurb(blurb)
            .minimum(p.minimum())
            .maximum(p.maximum())
            .default_value(p.default_value())
            .flags(p.flags())
            .build();
    }
    if let Some(p) = spec.downcast_ref::<glib::ParamSpecUInt>() {
        return glib::ParamSpecUInt::builder(name)
            .nick(nick)
            .blurb(blurb)
            .minimum(p.minimum())
            .maximum(p.maximum())
            .default_value(p.default_value())
            .flags(p.flags())
            .build();
    }
    if let Some(p) = spec.downcast_ref::<glib::ParamSpecString>() {
        return glib::ParamSpecString::builder(name)
            .nick(nick)
            .blurb(blurb)
            .default_value(p.default_value())
            .flags(p.flags())
            .build();
    }
    unreachable!("forwarded properties are floats, uints and strings")
}

impl GstObjectImpl for DetectBin {}

impl ElementImpl for DetectBin {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² decode, sample, detect and classify",
                "Filter/Analyzer/Video/Bin",
                "Decodes video, samples frames, finds faces and classifies them with SD²; outputs raw video with the metadata",
                "SD² GStreamer developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            crate::pads::sink_and_src(&gst::Caps::new_any(), &crate::frame::caps())
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.sampler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reset();
        }
        self.parent_change_state(transition)
    }
}

impl BinImpl for DetectBin {}

impl ChildProxyImpl for DetectBin {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        [
            &self.decodebin,
            &self.convert,
            &self.facedetect,
            &self.deepfake,
        ]
        .get(index as usize)
        .map(|e| (*e).clone().upcast())
    }

    fn children_count(&self) -> u32 {
        4
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        [
            &self.decodebin,
            &self.convert,
            &self.facedetect,
            &self.deepfake,
        ]
        .into_iter()
        .find(|e| e.name() == name)
        .map(|e| (*e).clone().upcast())
    }
}
