//! A [`Scene`] drawn on a [`Canvas`]: boxes, landmarks, labels, then the banner on top.
//!
//! Sizes follow the frame height so that text reads the same on a monitoring wall at 720p
//! and 1080p: labels are 1/30 of the height (24-pixel lines at 720p, 36 at 1080p),
//! the banner about 1/20, lines 1/240 (at least 2 pixels, so that every line holds a
//! chroma sample of 4:2:0 frames). A box's outline lies inside its rectangle, its outer
//! edge on the rectangle's edge.

use super::canvas::{Canvas, Rect, Rgb};
use super::scene::{FaceMark, Layers, Scene, Verdict};
use super::text::Font;

/// Boxes and labels of real faces.
pub const REAL: Rgb = Rgb(40, 200, 70);
/// Boxes and labels of fake faces, and the banner.
pub const FAKE: Rgb = Rgb(230, 30, 30);
/// Boxes and labels of faces without a fresh verdict.
pub const UNKNOWN: Rgb = Rgb(150, 150, 150);
/// Landmark dots.
pub const LANDMARK: Rgb = Rgb(255, 220, 0);

pub fn colour(v: Verdict) -> Rgb {
    match v {
        Verdict::Real => REAL,
        Verdict::Fake => FAKE,
        Verdict::Unknown => UNKNOWN,
    }
}

/// Black or white, whichever reads on `background`.
pub fn text_colour(background: Rgb) -> Rgb {
    if background.luma() > 128.0 {
        Rgb(0, 0, 0)
    } else {
        Rgb(255, 255, 255)
    }
}

/// Sizes for one frame height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Outline width in pixels.
    pub line: u32,
    pub label_font: Font,
    pub banner_font: Font,
    /// Radius of landmark dots.
    pub dot: u32,
}

impl Style {
    /// The style of a frame `height` pixels high; `line_width` 0 picks the line width from
    /// the height.
    pub fn for_frame(height: u32, line_width: u32) -> Style {
        let line = if line_width > 0 {
            line_width
        } else {
            (height / 240).max(2)
        };
        Style {
            line,
            label_font: Font::with_line_height(height / 30),
            banner_font: Font::with_line_height(height / 20),
            dot: line + 1,
        }
    }
}

/// The horizontal padding around text on a background.
fn padding(font: &Font) -> u32 {
    font.line_height() / 4
}

/// Where the banner goes: across the top of a frame `width` pixels wide, an even number of
/// rows high so that it ends with a row of 4:2:0 chroma samples.
pub fn banner_rect(width: u32, style: &Style) -> Rect {
    let h = (style.banner_font.line_height() + padding(&style.banner_font)).next_multiple_of(2);
    Rect::new(0, 0, width as i64, h as i64)
}

/// Where a face's label goes: on top of its box, else below it, else inside the box's top
/// edge; never above `top` (the banner's bottom) when it fits below, and moved left to stay
/// inside the frame.
pub fn label_rect(face: Rect, text_width: u32, font: &Font, frame: (u32, u32), top: i64) -> Rect {
    let (w, h) = (
        (text_width + 2 * padding(font)) as i64,
        font.line_height() as i64,
    );
    let y = if face.y - h >= top {
        face.y - h
    } else if face.y + face.h + h <= frame.1 as i64 {
        face.y + face.h
    } else {
        face.y
    };
    let x = face.x.min(frame.0 as i64 - w).max(0);
    Rect::new(x, y, w, h)
}

fn face_rect(f: &FaceMark) -> Rect {
    let (x, y, w, h) = f.rect;
    Rect::new(x as i64, y as i64, w as i64, h as i64)
}

/// The outline of `r`, `line` pixels wide, inside `r`.
fn outline(canvas: &mut Canvas<'_>, r: Rect, line: u32, colour: Rgb) {
    let ink = canvas.ink(colour);
    let l = (line as i64).min(r.w).min(r.h);
    canvas.fill(Rect::new(r.x, r.y, r.w, l), ink);
    canvas.fill(Rect::new(r.x, r.y + r.h - l, r.w, l), ink);
    canvas.fill(Rect::new(r.x, r.y + l, l, r.h - 2 * l), ink);
    canvas.fill(Rect::new(r.x + r.w - l, r.y + l, l, r.h - 2 * l), ink);
}

/// A filled disc of radius `radius` centred on `(cx, cy)`.
fn dot(canvas: &mut Canvas<'_>, cx: i64, cy: i64, radius: u32, colour: Rgb) {
    let ink = canvas.ink(colour);
    let r = radius as i64;
    for dy in -r..=r {
        let half = ((r * r - dy * dy) as f64).sqrt().round() as i64;
        canvas.fill(Rect::new(cx - half, cy + dy, 2 * half + 1, 1), ink);
    }
}

/// `text` on a `background` rectangle, with the text's line starting `padding` pixels in.
fn text_box(canvas: &mut Canvas<'_>, r: Rect, font: &Font, text: &str, background: Rgb) {
    let ink = canvas.ink(background);
    canvas.fill(r, ink);
    let ink = canvas.ink(text_colour(background));
    let dy = (r.h - font.line_height() as i64) / 2;
    font.draw(canvas, r.x + padding(font) as i64, r.y + dy, text, ink);
}

/// Draws what `layers` asks for of `scene`.
pub fn draw(canvas: &mut Canvas<'_>, scene: &Scene, layers: Layers, style: &Style) {
    let (width, height) = (canvas.width(), canvas.height());
    let banner = scene
        .banner
        .as_ref()
        .filter(|_| layers.banner)
        .map(|text| (banner_rect(width, style), text));
    for face in &scene.faces {
        if layers.boxes {
            outline(canvas, face_rect(face), style.line, colour(face.verdict));
        }
        if layers.landmarks {
            for [x, y] in &face.landmarks {
                let (x, y) = ((x * width as f64) as i64, (y * height as f64) as i64);
                dot(canvas, x, y, style.dot, LANDMARK);
            }
        }
    }
    if layers.labels {
        let top = banner.as_ref().map_or(0, |(r, _)| r.y + r.h);
        let font = &style.label_font;
        for face in &scene.faces {
            let r = label_rect(
                face_rect(face),
                font.width(&face.label),
                font,
                (width, height),
                top,
            );
            text_box(canvas, r, font, &face.label, colour(face.verdict));
        }
    }
    if let Some((r, text)) = banner {
        text_box(canvas, r, &style.banner_font, text, FAKE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_frame_height() {
        let size = |s: Style| {
            (
                s.line,
                s.label_font.line_height(),
                s.banner_font.line_height(),
            )
        };
        assert_eq!(size(Style::for_frame(720, 0)), (3, 24, 36));
        assert_eq!(size(Style::for_frame(1080, 0)), (4, 36, 54));
        assert_eq!(size(Style::for_frame(2160, 0)), (9, 72, 108));
        assert_eq!(size(Style::for_frame(240, 0)), (2, 16, 16));
        assert_eq!(Style::for_frame(1080, 7).line, 7);
    }

    #[test]
    fn labels_sit_on_top_of_the_box_unless_the_banner_or_the_frame_edge_is_there() {
        let font = Font::with_line_height(24);
        let frame = (1280, 720);
        let pad = 2 * padding(&font) as i64;
        let above = label_rect(Rect::new(100, 200, 80, 100), 50, &font, frame, 0);
        assert_eq!(above, Rect::new(100, 176, 50 + pad, 24));
        let below = label_rect(Rect::new(100, 30, 80, 100), 50, &font, frame, 40);
        assert_eq!(below, Rect::new(100, 130, 50 + pad, 24));
        let inside = label_rect(Rect::new(100, 10, 80, 700), 50, &font, frame, 0);
        assert_eq!(inside.y, 10);
        let right = label_rect(Rect::new(1250, 200, 30, 30), 100, &font, frame, 0);
        assert_eq!(right.x + right.w, 1280);
    }

    #[test]
    fn the_banner_spans_the_width_and_ends_on_an_even_row() {
        assert_eq!(
            banner_rect(1280, &Style::for_frame(720, 0)),
            Rect::new(0, 0, 1280, 46)
        );
        assert_eq!(
            banner_rect(1920, &Style::for_frame(1080, 0)),
            Rect::new(0, 0, 1920, 68)
        );
    }

    #[test]
    fn text_is_black_on_light_and_white_on_dark_backgrounds() {
        assert_eq!(text_colour(REAL), Rgb(0, 0, 0));
        assert_eq!(text_colour(UNKNOWN), Rgb(0, 0, 0));
        assert_eq!(text_colour(FAKE), Rgb(255, 255, 255));
    }
}
