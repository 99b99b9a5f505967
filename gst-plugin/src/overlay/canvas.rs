//! Painting on the planes of a raw frame, whatever its layout: every supported format is
//! described by where each colour component lies (plane, byte offset in a pixel, bytes
//! from one pixel to the next, subsampling), so one code path paints packed RGB, planar
//! and semi-planar YUV alike.
//!
//! Colours are given in RGB and turned into the frame's components once per colour: for
//! YUV with the matrix (BT.601, BT.709, BT.2020, …) and range (limited or full) of the
//! negotiated colorimetry, BT.601 when the matrix is unknown. A subsampled chroma sample belongs to
//! the top-left pixel of the block it covers: it is painted exactly when that pixel is.
//! Pixels of formats with alpha are made opaque where painted.

use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat, VideoInfo};

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// BT.601 luma in [0, 255], to choose text that reads on this colour.
    pub fn luma(self) -> f64 {
        0.299 * self.0 as f64 + 0.587 * self.1 as f64 + 0.114 * self.2 as f64
    }
}

/// A rectangle in frame pixels; it may reach outside the frame, where nothing is painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

impl Rect {
    pub fn new(x: i64, y: i64, w: i64, h: i64) -> Rect {
        Rect { x, y, w, h }
    }
}

/// Why a format cannot be painted on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error(
        "sd2overlay cannot draw on {0:?} frames: it draws on 8-bit RGB and planar or semi-planar YUV"
    )]
    Unsupported(VideoFormat),
}

/// Where one component of a pixel lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Component {
    plane: usize,
    /// Byte offset of the component in its pixel.
    offset: usize,
    /// Bytes from one sample to the next in a row.
    step: usize,
    /// log2 of the horizontal and vertical subsampling.
    x_shift: u32,
    y_shift: u32,
}

/// How colours map to component values.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Model {
    Rgb,
    /// Y′CbCr: luma weights of red and blue, and the range's offsets and scales.
    Yuv {
        kr: f64,
        kb: f64,
        offset: [f64; 3],
        scale: [f64; 3],
    },
}

/// The layout of one negotiated format: three colour components (R, G, B or Y, U, V) and
/// maybe alpha.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    colour: [Component; 3],
    alpha: Option<Component>,
    model: Model,
}

impl Layout {
    /// The layout of `info`'s format, or why it cannot be painted on.
    pub fn of(info: &VideoInfo) -> Result<Layout, LayoutError> {
        let f = info.format_info();
        let unsupported = || LayoutError::Unsupported(info.format());
        let packed_yuv = f.is_yuv() && f.n_planes() == 1;
        let eight_bits = f.bits() == 8 && f.depth().iter().all(|&d| d == 8);
        if !eight_bits
            || f.is_tiled()
            || f.n_components() < 3
            || !(f.is_rgb() || f.is_yuv())
            || packed_yuv
        {
            return Err(unsupported());
        }
        let component = |c: usize| Component {
            plane: f.plane()[c] as usize,
            offset: f.poffset()[c] as usize,
            step: f.pixel_stride()[c] as usize,
            x_shift: f.w_sub()[c],
            y_shift: f.h_sub()[c],
        };
        let model = if f.is_rgb() {
            Model::Rgb
        } else {
            let (kr, kb) = match info.colorimetry().matrix() {
                VideoColorMatrix::Unknown | VideoColorMatrix::Rgb => {
                    VideoColorMatrix::Bt601.kr_kb()
                }
                m => m.kr_kb(),
            }
            .map_err(|_| unsupported())?;
            let range = match info.colorimetry().range() {
                VideoColorRange::Range0_255 => VideoColorRange::Range0_255,
                _ => VideoColorRange::Range16_235,
            };
            let (offset, scale) = f.range_offsets(range);
            Model::Yuv {
                kr,
                kb,
                offset: [0, 1, 2].map(|i| offset[i] as f64),
                scale: [0, 1, 2].map(|i| scale[i] as f64),
            }
        };
        Ok(Layout {
            colour: [component(0), component(1), component(2)],
            alpha: f.has_alpha().then(|| component(3)),
            model,
        })
    }

    /// `rgb` as this layout's component values (alpha opaque).
    pub fn ink(&self, rgb: Rgb) -> Ink {
        let [r, g, b] = [rgb.0, rgb.1, rgb.2].map(|v| v as f64 / 255.0);
        let values = match self.model {
            Model::Rgb => [r, g, b].map(|v| v * 255.0),
            Model::Yuv {
                kr,
                kb,
                offset,
                scale,
            } => {
                let y = kr * r + (1.0 - kr - kb) * g + kb * b;
                let pb = (b - y) / (2.0 * (1.0 - kb));
                let pr = (r - y) / (2.0 * (1.0 - kr));
                [
                    offset[0] + scale[0] * y,
                    offset[1] + scale[1] * pb,
                    offset[2] + scale[2] * pr,
                ]
            }
        };
        let [c0, c1, c2] = values.map(|v| v.round().clamp(0.0, 255.0) as u8);
        Ink([c0, c1, c2, 255])
    }

    fn components(&self) -> impl Iterator<Item = (usize, &Component)> {
        self.colour.iter().chain(self.alpha.as_ref()).enumerate()
    }
}

/// A colour as the values of a layout's components: three colour components, then alpha.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ink([u8; 4]);

/// A frame's planes, painted through its layout. Samples beyond the end of a plane are
/// skipped, never indexed.
pub struct Canvas<'a> {
    planes: [&'a mut [u8]; 4],
    strides: [usize; 4],
    width: u32,
    height: u32,
    layout: &'a Layout,
}

impl<'a> Canvas<'a> {
    /// A `width × height` frame whose planes start `strides[i]` bytes apart per row.
    pub fn new(
        planes: [&'a mut [u8]; 4],
        strides: [usize; 4],
        width: u32,
        height: u32,
        layout: &'a Layout,
    ) -> Canvas<'a> {
        Canvas {
            planes,
            strides,
            width,
            height,
            layout,
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn ink(&self, rgb: Rgb) -> Ink {
        self.layout.ink(rgb)
    }

    /// Paints the part of `r` inside the frame.
    pub fn fill(&mut self, r: Rect, ink: Ink) {
        let x0 = r.x.clamp(0, self.width as i64) as usize;
        let x1 = (r.x + r.w).clamp(0, self.width as i64) as usize;
        let y0 = r.y.clamp(0, self.height as i64) as usize;
        let y1 = (r.y + r.h).clamp(0, self.height as i64) as usize;
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for (i, c) in self.layout.components() {
            // The samples whose top-left pixel lies in [x0, x1) × [y0, y1).
            let (sx0, sx1) = (x0.div_ceil(1 << c.x_shift), x1.div_ceil(1 << c.x_shift));
            let (sy0, sy1) = (y0.div_ceil(1 << c.y_shift), y1.div_ceil(1 << c.y_shift));
            let plane = &mut *self.planes[c.plane];
            let stride = self.strides[c.plane];
            for sy in sy0..sy1 {
                let row = sy * stride + c.offset;
                for sx in sx0..sx1 {
                    if let Some(v) = plane.get_mut(row + sx * c.step) {
                        *v = ink.0[i];
                    }
                }
            }
        }
    }

    /// Mixes `ink` into the pixel at `(x, y)` with weight `coverage` (0: unchanged, 255:
    /// `ink`); pixels outside the frame are left alone.
    pub fn blend(&mut self, x: i64, y: i64, ink: Ink, coverage: u8) {
        if coverage == 0 || x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let (x, y) = (x as usize, y as usize);
        let a = coverage as u32;
        for (i, c) in self.layout.components() {
            let (mx, my) = ((1 << c.x_shift) - 1, (1 << c.y_shift) - 1);
            if x & mx != 0 || y & my != 0 {
                continue;
            }
            let at =
                (y >> c.y_shift) * self.strides[c.plane] + (x >> c.x_shift) * c.step + c.offset;
            if let Some(v) = self.planes[c.plane].get_mut(at) {
                *v = ((*v as u32 * (255 - a) + ink.0[i] as u32 * a + 127) / 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(format: VideoFormat, w: u32, h: u32) -> VideoInfo {
        gst::init().unwrap();
        VideoInfo::builder(format, w, h).build().unwrap()
    }

    /// A frame of `info`'s format, as one buffer per plane.
    fn planes(info: &VideoInfo, fill: u8) -> Vec<Vec<u8>> {
        (0..info.n_planes() as usize)
            .map(|p| {
                let end = info
                    .offset()
                    .get(p + 1)
                    .copied()
                    .filter(|&o| o > info.offset()[p])
                    .unwrap_or(info.size());
                vec![fill; end - info.offset()[p]]
            })
            .collect()
    }

    fn canvas<'a>(info: &VideoInfo, planes: &'a mut [Vec<u8>], layout: &'a Layout) -> Canvas<'a> {
        let mut slices: [&mut [u8]; 4] = [&mut [], &mut [], &mut [], &mut []];
        for (s, p) in slices.iter_mut().zip(planes.iter_mut()) {
            *s = p.as_mut_slice();
        }
        let mut strides = [0; 4];
        for (s, &v) in strides.iter_mut().zip(info.stride()) {
            *s = v as usize;
        }
        Canvas::new(slices, strides, info.width(), info.height(), layout)
    }

    #[test]
    fn bt601_limited_range_puts_primaries_where_the_standard_does() {
        let i = info(VideoFormat::I420, 16, 16);
        assert!(i.colorimetry().matrix() == VideoColorMatrix::Bt601);
        let l = Layout::of(&i).unwrap();
        assert_eq!(l.ink(Rgb(255, 255, 255)).0[..3], [235, 128, 128]);
        assert_eq!(l.ink(Rgb(0, 0, 0)).0[..3], [16, 128, 128]);
        assert_eq!(l.ink(Rgb(255, 0, 0)).0[..3], [81, 90, 240]);
    }

    #[test]
    fn rgb_formats_take_colours_as_they_are() {
        let l = Layout::of(&info(VideoFormat::Bgrx, 4, 4)).unwrap();
        assert_eq!(l.ink(Rgb(1, 2, 3)).0, [1, 2, 3, 255]);
    }

    #[test]
    fn packed_yuv_and_grey_are_refused() {
        for f in [VideoFormat::Yuy2, VideoFormat::Gray8, VideoFormat::I42010le] {
            assert_eq!(Layout::of(&info(f, 8, 8)), Err(LayoutError::Unsupported(f)));
        }
    }

    #[test]
    fn fill_paints_bgrx_pixels_inside_the_rectangle_only() {
        let i = info(VideoFormat::Bgrx, 8, 4);
        let l = Layout::of(&i).unwrap();
        let mut p = planes(&i, 7);
        let mut c = canvas(&i, &mut p, &l);
        let ink = c.ink(Rgb(10, 20, 30));
        c.fill(Rect::new(2, 1, 3, 2), ink);
        let stride = i.stride()[0] as usize;
        for y in 0..4 {
            for x in 0..8 {
                let px = &p[0][y * stride + x * 4..][..4];
                if (2..5).contains(&x) && (1..3).contains(&y) {
                    // B, G, R, x: the padding byte is left alone.
                    assert_eq!(px, [30, 20, 10, 7], "({x}, {y})");
                } else {
                    assert_eq!(px, [7; 4], "({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn fill_clips_to_the_frame() {
        let i = info(VideoFormat::Rgb, 4, 4);
        let l = Layout::of(&i).unwrap();
        let mut p = planes(&i, 0);
        let mut c = canvas(&i, &mut p, &l);
        let ink = c.ink(Rgb(255, 255, 255));
        c.fill(Rect::new(-10, -10, 12, 11), ink);
        c.fill(Rect::new(3, 3, 100, 100), ink);
        let stride = i.stride()[0] as usize;
        let lit: Vec<(usize, usize)> = (0..4)
            .flat_map(|y| (0..4).map(move |x| (x, y)))
            .filter(|&(x, y)| p[0][y * stride + x * 3] == 255)
            .collect();
        assert_eq!(lit, vec![(0, 0), (1, 0), (3, 3)]);
    }

    #[test]
    fn nv12_chroma_samples_follow_their_top_left_pixel() {
        let i = info(VideoFormat::Nv12, 8, 8);
        let l = Layout::of(&i).unwrap();
        let mut p = planes(&i, 128);
        let mut c = canvas(&i, &mut p, &l);
        let ink = c.ink(Rgb(255, 0, 0));
        // Columns 1..5 hold the top-left pixels of chroma columns 1 and 2; rows 2..4 of
        // chroma row 1.
        c.fill(Rect::new(1, 2, 4, 2), ink);
        let uv_stride = i.stride()[1] as usize;
        let painted: Vec<(usize, usize)> = (0..4)
            .flat_map(|y| (0..4).map(move |x| (x, y)))
            .filter(|&(x, y)| p[1][y * uv_stride + 2 * x] != 128)
            .collect();
        assert_eq!(painted, vec![(1, 1), (2, 1)]);
        assert_eq!(p[1][uv_stride + 2..uv_stride + 4], [90, 240]);
    }

    #[test]
    fn blend_mixes_by_coverage_and_makes_alpha_opaque() {
        let i = info(VideoFormat::Rgba, 2, 1);
        let l = Layout::of(&i).unwrap();
        let mut p = planes(&i, 0);
        let mut c = canvas(&i, &mut p, &l);
        let ink = c.ink(Rgb(255, 255, 255));
        c.blend(0, 0, ink, 255);
        c.blend(1, 0, ink, 128);
        c.blend(2, 0, ink, 255);
        assert_eq!(p[0][..8], [255, 255, 255, 255, 128, 128, 128, 128]);
    }
}
