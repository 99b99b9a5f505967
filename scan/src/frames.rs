//! What an analysed frame carries, read back from the metadata `sd2bin` attaches (one
//! `face` region per face with a `deepfake` param), and face thumbnails cut from its pixels.

use gstsd2::roi;
use image::RgbImage;
use image::imageops::FilterType;
use sd2_models::classifier::Verdict;
use sd2_models::taxonomy::DeepfakeType;

use crate::tally::FaceSeen;

/// The longer side of a thumbnail, in pixels.
pub const THUMBNAIL_SIZE: u32 = 128;
/// How much of the face box's size a thumbnail adds on each side, for context.
const MARGIN: f32 = 0.25;

/// The faces of `buffer` that were classified on this frame. A face the element let pass
/// unanalysed carries no probabilities, or an earlier frame's (`analysed` false): neither
/// counts.
pub fn classified_faces(buffer: &gst::BufferRef) -> Vec<FaceSeen> {
    roi::faces(buffer)
        .filter_map(|m| {
            let p = m.param(roi::DEEPFAKE)?;
            if !p.get::<bool>("analysed").unwrap_or(false) {
                return None;
            }
            let mut probabilities = [0f32; DeepfakeType::COUNT];
            for t in DeepfakeType::ALL {
                probabilities[t.index()] = p.get::<f64>(t.code()).ok()? as f32;
            }
            let (x, y, w, h) = m.rect();
            Some(FaceSeen {
                track: p.get::<u64>("track_id").ok()?,
                verdict: Verdict { probabilities },
                rect: [x, y, w, h],
            })
        })
        .collect()
}

/// A packed RGB frame: rows of `stride` bytes.
pub struct RgbFrame<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: u32,
    pub height: u32,
}

/// The face at `rect` with a margin around it, scaled so that its longer side is
/// [`THUMBNAIL_SIZE`]; `None` for an empty box.
pub fn thumbnail(frame: &RgbFrame<'_>, rect: [u32; 4]) -> Option<RgbImage> {
    let [x, y, w, h] = rect.map(|v| v as f32);
    let (mx, my) = (w * MARGIN, h * MARGIN);
    let x0 = (x - mx).max(0.0) as u32;
    let y0 = (y - my).max(0.0) as u32;
    let x1 = ((x + w + mx).ceil() as u32).min(frame.width);
    let y1 = ((y + h + my).ceil() as u32).min(frame.height);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (cw, ch) = (x1 - x0, y1 - y0);
    let mut crop = RgbImage::new(cw, ch);
    for row in 0..ch {
        let start = (y0 + row) as usize * frame.stride + x0 as usize * 3;
        let src = frame.data.get(start..start + cw as usize * 3)?;
        let dst = (row * cw * 3) as usize;
        crop.as_mut()[dst..dst + src.len()].copy_from_slice(src);
    }
    let scale = THUMBNAIL_SIZE as f32 / cw.max(ch) as f32;
    let (tw, th) = (
        ((cw as f32 * scale).round() as u32).max(1),
        ((ch as f32 * scale).round() as u32).max(1),
    );
    Some(image::imageops::resize(&crop, tw, th, FilterType::Triangle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_take_the_face_with_a_margin_inside_the_frame() {
        // A 100×80 frame, stride padded to 304 bytes: red inside the box 40..60 × 30..50.
        let (w, h, stride) = (100u32, 80u32, 304usize);
        let mut data = vec![0u8; stride * h as usize];
        for y in 30..50 {
            for x in 40..60 {
                data[y * stride + x * 3] = 255;
            }
        }
        let frame = RgbFrame {
            data: &data,
            stride,
            width: w,
            height: h,
        };
        let t = thumbnail(&frame, [40, 30, 20, 20]).unwrap();
        assert_eq!(t.dimensions(), (THUMBNAIL_SIZE, THUMBNAIL_SIZE));
        // The centre is the face, the corners the margin around it.
        assert_eq!(t.get_pixel(64, 64).0, [255, 0, 0]);
        assert_eq!(t.get_pixel(2, 2).0, [0, 0, 0]);
        // A box at the edge is cut at the frame: 10 wide plus a margin on one side only.
        let edge = thumbnail(&frame, [90, 0, 10, 20]).unwrap();
        assert!(edge.width() < edge.height(), "{:?}", edge.dimensions());
        assert!(thumbnail(&frame, [100, 80, 0, 0]).is_none());
    }
}
