//! Raw video frames as packed RGB, whatever their format: RGB frames are read in place,
//! every other format goes through a `GstVideoConverter` into a buffer reused per frame.

use gst_video::prelude::*;
use sd2_models::image::RgbView;

/// Formats the face elements accept.
pub const FORMATS: &[gst_video::VideoFormat] = &[
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Rgba,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Argb,
    gst_video::VideoFormat::Abgr,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Xrgb,
    gst_video::VideoFormat::Xbgr,
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Yv12,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Nv21,
    gst_video::VideoFormat::Y42b,
    gst_video::VideoFormat::Y444,
    gst_video::VideoFormat::Yuy2,
    gst_video::VideoFormat::Uyvy,
    gst_video::VideoFormat::Gray8,
];

/// Caps for the face elements' pads.
pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS.iter().copied())
        .build()
}

/// Why a frame could not be read as RGB.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot map the frame for reading (buffer smaller than the negotiated caps?)")]
    Unreadable,
    #[error("cannot map the RGB frame")]
    RgbUnmappable,
    #[error("RGB frame buffer is shared")]
    RgbShared,
    #[error("{0}")]
    Plane(String),
}

/// Turns frames of one negotiated format into RGB.
pub struct RgbConverter {
    info: gst_video::VideoInfo,
    /// `None` when the input is RGB already.
    convert: Option<(gst_video::VideoConverter, gst_video::VideoInfo, gst::Buffer)>,
}

impl RgbConverter {
    pub fn new(info: &gst_video::VideoInfo) -> Result<Self, glib::BoolError> {
        let convert = if info.format() == gst_video::VideoFormat::Rgb {
            None
        } else {
            let out = gst_video::VideoInfo::builder(
                gst_video::VideoFormat::Rgb,
                info.width(),
                info.height(),
            )
            .fps(info.fps())
            .par(info.par())
            .interlace_mode(info.interlace_mode())
            .build()?;
            let converter = gst_video::VideoConverter::new(info, &out, None)?;
            let buffer = gst::Buffer::with_size(out.size())
                .map_err(|_| glib::bool_error!("cannot allocate an RGB frame"))?;
            Some((converter, out, buffer))
        };
        Ok(RgbConverter {
            info: info.clone(),
            convert,
        })
    }

    pub fn info(&self) -> &gst_video::VideoInfo {
        &self.info
    }

    /// Calls `f` with the frame in `buffer` as RGB.
    pub fn with_rgb<R>(
        &mut self,
        buffer: &gst::BufferRef,
        f: impl FnOnce(RgbView<'_>) -> R,
    ) -> Result<R, FrameError> {
        let src = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &self.info)
            .map_err(|_| FrameError::Unreadable)?;
        let plane = |e: &dyn std::fmt::Display| FrameError::Plane(e.to_string());
        let (w, h) = (self.info.width() as usize, self.info.height() as usize);
        match &mut self.convert {
            None => {
                let view = RgbView::new(
                    w,
                    h,
                    src.plane_stride()[0] as usize,
                    src.plane_data(0).map_err(|e| plane(&e))?,
                )
                .map_err(|e| plane(&e))?;
                Ok(f(view))
            }
            Some((converter, out, rgb)) => {
                let rgb = rgb.get_mut().ok_or(FrameError::RgbShared)?;
                let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(rgb, out)
                    .map_err(|_| FrameError::RgbUnmappable)?;
                converter.frame_ref(&src, &mut dst);
                let view = RgbView::new(
                    w,
                    h,
                    dst.plane_stride()[0] as usize,
                    dst.plane_data(0).map_err(|e| plane(&e))?,
                )
                .map_err(|e| plane(&e))?;
                Ok(f(view))
            }
        }
    }
}

use gst::glib;
