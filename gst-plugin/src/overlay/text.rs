//! Text in Noto Sans Mono Bold, from the glyphs the `noto-sans-mono-bitmap` crate ships
//! pre-rasterised with anti-aliasing at line heights of 16, 20, 24 and 32 pixels (SIL Open
//! Font License 1.1). Nothing is read from the machine's fonts. Other line heights resample
//! the nearest shipped raster bilinearly: the smallest one at least as high, or the
//! 32-pixel one for larger text.

use noto_sans_mono_bitmap::{
    FontWeight, RasterHeight, RasterizedChar, get_raster, get_raster_width,
};

use super::canvas::{Canvas, Ink};

const WEIGHT: FontWeight = FontWeight::Bold;

/// The line heights the crate ships, smallest first.
const HEIGHTS: [RasterHeight; 4] = [
    RasterHeight::Size16,
    RasterHeight::Size20,
    RasterHeight::Size24,
    RasterHeight::Size32,
];

/// The smallest line height drawn; smaller text would not read.
const MIN_LINE: u32 = 16;

/// Text of one line height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Font {
    raster: RasterHeight,
    line: u32,
}

impl Font {
    /// The font whose lines are `px` pixels high, 16 at least.
    pub fn with_line_height(px: u32) -> Font {
        let line = px.max(MIN_LINE);
        let raster = HEIGHTS
            .into_iter()
            .find(|h| h.val() as u32 >= line)
            .unwrap_or(HEIGHTS[HEIGHTS.len() - 1]);
        Font { raster, line }
    }

    /// Height of a line in pixels (ascender to descender).
    pub fn line_height(&self) -> u32 {
        self.line
    }

    /// Output pixels per raster pixel.
    fn scale(&self) -> f32 {
        self.line as f32 / self.raster.val() as f32
    }

    /// Pixels from one character to the next.
    pub fn advance(&self) -> u32 {
        (get_raster_width(WEIGHT, self.raster) as f32 * self.scale()).round() as u32
    }

    /// Width of `text` in pixels.
    pub fn width(&self, text: &str) -> u32 {
        text.chars().count() as u32 * self.advance()
    }

    /// Draws `text` with the top-left corner of its line at `(x, y)`; characters the font
    /// lacks are drawn as `?`.
    pub fn draw(&self, canvas: &mut Canvas<'_>, x: i64, y: i64, text: &str, ink: Ink) {
        let scale = self.scale();
        for (i, c) in text.chars().enumerate() {
            let Some(glyph) =
                get_raster(c, WEIGHT, self.raster).or_else(|| get_raster('?', WEIGHT, self.raster))
            else {
                continue;
            };
            let cell_x = x + (i as u32 * self.advance()) as i64;
            for ty in 0..self.line {
                let sy = (ty as f32 + 0.5) / scale - 0.5;
                for tx in 0..self.advance() {
                    let sx = (tx as f32 + 0.5) / scale - 0.5;
                    let coverage = sample(&glyph, sx, sy);
                    canvas.blend(cell_x + tx as i64, y + ty as i64, ink, coverage);
                }
            }
        }
    }
}

/// The glyph's coverage at `(x, y)` in raster pixels, bilinearly interpolated; zero outside.
fn sample(glyph: &RasterizedChar, x: f32, y: f32) -> u8 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |dx: i64, dy: i64| -> f32 {
        let (px, py) = (x0 as i64 + dx, y0 as i64 + dy);
        if px < 0 || py < 0 {
            return 0.0;
        }
        glyph.pixel(px as usize, py as usize).unwrap_or(0) as f32
    };
    let top = at(0, 0) * (1.0 - fx) + at(1, 0) * fx;
    let bottom = at(0, 1) * (1.0 - fx) + at(1, 1) * fx;
    (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::canvas::{Layout, Rgb};

    #[test]
    fn lines_are_as_high_as_asked_from_sixteen_pixels_up() {
        let h = |px| Font::with_line_height(px).line_height();
        assert_eq!(h(0), 16);
        assert_eq!(h(24), 24);
        assert_eq!(h(36), 36);
        assert_eq!(h(100), 100);
    }

    #[test]
    fn shipped_heights_are_drawn_from_their_own_raster_and_others_from_the_nearest() {
        assert_eq!(Font::with_line_height(24).raster, RasterHeight::Size24);
        assert_eq!(Font::with_line_height(24).scale(), 1.0);
        assert_eq!(Font::with_line_height(22).raster, RasterHeight::Size24);
        assert_eq!(Font::with_line_height(54).raster, RasterHeight::Size32);
    }

    #[test]
    fn text_is_as_wide_as_its_characters() {
        let f = Font::with_line_height(24);
        assert!(f.advance() > 0);
        assert_eq!(f.width("#3 FAKE FS 0.87"), 15 * f.advance());
        let (small, large) = (Font::with_line_height(32), Font::with_line_height(64));
        assert_eq!(large.advance(), 2 * small.advance());
    }

    #[test]
    fn resampling_at_scale_one_returns_the_raster() {
        let g = get_raster('A', WEIGHT, RasterHeight::Size20).unwrap();
        for y in 0..g.height() {
            for x in 0..g.width() {
                assert_eq!(sample(&g, x as f32, y as f32), g.pixel(x, y).unwrap());
            }
        }
    }

    #[test]
    fn glyphs_cover_pixels_inside_their_cell_only() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 64, 40)
            .build()
            .unwrap();
        let layout = Layout::of(&info).unwrap();
        let stride = info.stride()[0] as usize;
        for px in [20, 30] {
            let mut data = vec![0u8; info.size()];
            let font = Font::with_line_height(px);
            {
                let mut c = Canvas::new(
                    [&mut data, &mut [], &mut [], &mut []],
                    [stride, 0, 0, 0],
                    64,
                    40,
                    &layout,
                );
                let ink = c.ink(Rgb(255, 255, 255));
                font.draw(&mut c, 10, 5, "H-", ink);
            }
            let lit: Vec<(usize, usize)> = (0..40)
                .flat_map(|y| (0..64).map(move |x| (x, y)))
                .filter(|&(x, y)| data[y * stride + x * 3] > 0)
                .collect();
            let (w, h) = (font.width("H-") as usize, font.line_height() as usize);
            assert!(lit.len() > 20, "{px}: {} pixels", lit.len());
            assert!(
                lit.iter()
                    .all(|&(x, y)| (10..10 + w).contains(&x) && (5..5 + h).contains(&y)),
                "{px}"
            );
            // Both characters leave marks: the H in the first cell, the dash in the second.
            let cell = font.advance() as usize;
            assert!(lit.iter().any(|&(x, _)| x < 10 + cell), "{px}");
            assert!(lit.iter().any(|&(x, _)| x >= 10 + cell), "{px}");
        }
    }
}
