//! # sd2facedetect
//!
//! Finds faces in raw video with MTCNN (facenet-pytorch's P-, R- and O-Net, converted to
//! ONNX by `scripts/setup.sh` and run by ONNX Runtime) and attaches one
//! `GstVideoRegionOfInterestMeta` of type `face` per face, with a `detection` param
//! (normalised box, confidence, five landmarks; see [`crate::roi`]). The buffer's pixels
//! pass unchanged.
//!
//! ```text
//! gst-launch-1.0 filesrc location=clip.webm ! decodebin ! videoconvert ! \
//!     sd2facedetect threshold=0.9 ! sd2json location=- ! fakesink
//! ```
//!
//! With `inference-interval=N` the detector runs on every Nth frame and the frames in
//! between carry the last faces, their `frames_ago` saying how old they are.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use sd2_models::mtcnn::{Face, Mtcnn, MtcnnConfig};
use sd2_models::paths;
use sd2_models::runtime::SessionConfig;

use crate::device::DeviceKind;
use crate::frame::{self, RgbConverter};
use crate::roi;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "sd2facedetect",
        gst::DebugColorFlags::empty(),
        Some("SD² face detection"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    threshold: f32,
    min_face_size: u32,
    max_faces: u32,
    inference_interval: u32,
    device: DeviceKind,
    model_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        let c = MtcnnConfig::default();
        Settings {
            threshold: c.face_threshold,
            min_face_size: c.min_face_size as u32,
            max_faces: c.max_faces as u32,
            inference_interval: 1,
            device: DeviceKind::default(),
            model_dir: paths::model_dir().join("mtcnn"),
        }
    }
}

impl Settings {
    fn mtcnn(&self) -> MtcnnConfig {
        MtcnnConfig {
            min_face_size: self.min_face_size as f64,
            face_threshold: self.threshold,
            max_faces: self.max_faces as usize,
            ..MtcnnConfig::default()
        }
    }
}

struct State {
    detector: Mtcnn,
    converter: Option<RgbConverter>,
    /// Frames seen since start, caps change or flush.
    frame: u64,
    /// The last detection and the frame it ran on.
    last: Option<(u64, Vec<Face>)>,
    /// Frames whose detection failed.
    failures: u64,
}

impl State {
    fn reset(&mut self) {
        self.frame = 0;
        self.last = None;
    }
}

#[derive(Default)]
pub struct FaceDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl FaceDetect {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for FaceDetect {
    const NAME: &'static str = "GstSd2FaceDetect";
    type Type = super::FaceDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for FaceDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecFloat::builder("threshold")
                    .nick("Face threshold")
                    .blurb("Keep faces whose O-Net confidence is above this. SD² crops faces above 0.9 (paper, Appendix A.3); lower it to find harder faces at the cost of false ones")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("min-face-size")
                    .nick("Minimum face size")
                    .blurb("Smallest face searched for, in pixels. Larger values skip small faces and make detection faster")
                    .minimum(12)
                    .maximum(4096)
                    .default_value(d.min_face_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-faces")
                    .nick("Maximum faces")
                    .blurb("Attach at most this many faces per frame, the most confident first; 0 attaches every face found")
                    .default_value(d.max_faces)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("inference-interval")
                    .nick("Inference interval")
                    .blurb("Run the detector on every Nth frame; the frames in between carry the last faces found, with frames_ago set to their age")
                    .minimum(1)
                    .default_value(d.inference_interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("device", d.device)
                    .nick("Device")
                    .blurb("Where the detector runs: cpu, cuda (fails to start if CUDA cannot be used) or auto (CUDA when it works, else the CPU; the choice is logged)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model-dir")
                    .nick("Model directory")
                    .blurb("Directory holding pnet.onnx, rnet.onnx and onet.onnx, as scripts/setup.sh writes them (default: $SD2_MODEL_DIR/mtcnn, else the project cache)")
                    .default_value(Some(d.model_dir.to_string_lossy().as_ref()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("active-device")
                    .nick("Active device")
                    .blurb("Where the detector runs once started (cpu or cuda); unset before")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        match pspec.name() {
            "threshold" => s.threshold = value.get().expect("type checked upstream"),
            "min-face-size" => s.min_face_size = value.get().expect("type checked upstream"),
            "max-faces" => s.max_faces = value.get().expect("type checked upstream"),
            "inference-interval" => {
                s.inference_interval = value.get().expect("type checked upstream")
            }
            "device" => s.device = value.get().expect("type checked upstream"),
            "model-dir" => {
                s.model_dir = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map_or_else(|| Settings::default().model_dir, PathBuf::from)
            }
            other => unreachable!("no property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set", pspec.name());
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "active-device" {
            return self
                .state()
                .as_ref()
                .map(|st| st.detector.placement().to_string())
                .to_value();
        }
        let s = self.settings();
        match pspec.name() {
            "threshold" => s.threshold.to_value(),
            "min-face-size" => s.min_face_size.to_value(),
            "max-faces" => s.max_faces.to_value(),
            "inference-interval" => s.inference_interval.to_value(),
            "device" => s.device.to_value(),
            "model-dir" => s.model_dir.to_string_lossy().to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

impl GstObjectImpl for FaceDetect {}

impl ElementImpl for FaceDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "SD² face detection",
                "Filter/Analyzer/Video",
                "Finds faces with MTCNN and attaches them as GstVideoRegionOfInterestMeta of type face",
                "SD² GStreamer developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = frame::caps();
            crate::pads::sink_and_src(&caps, &caps)
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for FaceDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings().clone();
        let detector = Mtcnn::load(
            &s.model_dir,
            s.device.into(),
            SessionConfig::default(),
            s.mtcnn(),
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("sd2facedetect: {}", e)))?;
        crate::device::report_placement(
            self.obj().upcast_ref(),
            *CAT,
            "detector",
            detector.placement(),
            detector.fallback_reason(),
        );
        *self.state() = Some(State {
            detector,
            converter: None,
            frame: 0,
            last: None,
            failures: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(st) = self.state().take().filter(|st| st.failures > 0) {
            gst::warning!(
                CAT,
                imp = self,
                "{} frames could not be analysed",
                st.failures
            );
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        let converter = RgbConverter::new(&info)
            .map_err(|e| gst::loggable_error!(CAT, "cannot convert {incaps} to RGB: {e}"))?;
        if let Some(st) = self.state().as_mut() {
            st.converter = Some(converter);
            st.reset();
        }
        self.parent_set_caps(incaps, outcaps)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view()
            && let Some(st) = self.state().as_mut()
        {
            st.reset();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings().clone();
        // Messages are posted once the state is unlocked: a bus sync handler may read a
        // property that locks it.
        let mut guard = self.state();
        let Some(st) = guard.as_mut() else {
            drop(guard);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("sd2facedetect is not started")
            );
            return Err(gst::FlowError::Error);
        };
        let Some(converter) = st.converter.as_mut() else {
            drop(guard);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("no caps were negotiated before the first buffer")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let mut failed = None;
        st.detector.config = settings.mtcnn();
        let interval = settings.inference_interval.max(1) as u64;
        let due = st
            .last
            .as_ref()
            .is_none_or(|(at, _)| st.frame - at >= interval);
        if due {
            let detector = &mut st.detector;
            let found = converter
                .with_rgb(buf, |rgb| detector.detect(rgb))
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match found {
                Ok(faces) => {
                    gst::trace!(CAT, imp = self, "frame {}: {} faces", st.frame, faces.len());
                    st.last = Some((st.frame, faces));
                }
                Err(e) => {
                    st.failures += 1;
                    st.last = None;
                    failed = Some((st.frame, e, st.failures));
                }
            }
        }
        let (width, height) = (converter.info().width(), converter.info().height());
        if let Some((at, faces)) = &st.last {
            let age = (st.frame - at) as u32;
            for (i, face) in faces.iter().enumerate() {
                roi::attach_face(buf, face, i as i32, width, height, age);
            }
        }
        st.frame += 1;
        drop(guard);
        if let Some((frame, e, failures)) = failed {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                ("frame {} not analysed: {}", frame, e),
                ["{} frames not analysed so far", failures]
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
