//! The report's plots, each drawn once through plotters onto any backend: an SVG file, and
//! an RGB buffer encoded as PNG. Text is set in DejaVu Sans from the `dejavu` crate,
//! registered with plotters as `sans-serif`, so no system font is needed.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use sd2_models::taxonomy::DeepfakeType;

use super::ReportError;

type Drawn = Result<(), Box<dyn Error>>;

/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (640, 480);

const FONT: &str = "sans-serif";
const FRAME_COLOUR: RGBColor = RGBColor(31, 119, 180);
const VIDEO_COLOUR: RGBColor = RGBColor(255, 127, 14);
const REAL_COLOUR: RGBColor = RGBColor(44, 160, 44);
const FAKE_COLOUR: RGBColor = RGBColor(214, 39, 40);
const GUIDE_COLOUR: RGBColor = RGBColor(150, 150, 150);

/// A line of a ROC or precision–recall plot.
pub struct Curve {
    /// The legend's text.
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Video level (else frame level): sets the colour.
    pub video: bool,
}

/// What a plot shows.
pub enum Plot {
    /// ROC (`roc`: with the chance diagonal) or precision–recall curves on the unit square.
    Curves {
        title: String,
        x: &'static str,
        y: &'static str,
        curves: Vec<Curve>,
        roc: bool,
    },
    /// Counts, rows the true type, columns the label under the rule.
    Confusion {
        title: String,
        counts: [[usize; DeepfakeType::COUNT]; DeepfakeType::COUNT],
    },
    /// Shares of real and of fake faces per fake-score bin, and the threshold when one
    /// judges.
    Histogram {
        title: String,
        real: Vec<f64>,
        fake: Vec<f64>,
        threshold: Option<f32>,
    },
}

/// `plot` as `dir/stem.svg` and `dir/stem.png`.
pub fn save(plot: &Plot, dir: &Path, stem: &str) -> Result<[PathBuf; 2], ReportError> {
    fonts()?;
    let svg = dir.join(format!("{stem}.svg"));
    let failed = |path: &Path, e: Box<dyn Error>| ReportError::Plot {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(plot, &root).map_err(|e| failed(&svg, e))?;
        root.present().map_err(|e| failed(&svg, e.into()))?;
    }
    let png = dir.join(format!("{stem}.png"));
    let (w, h) = SIZE;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(plot, &root).map_err(|e| failed(&png, e))?;
        root.present().map_err(|e| failed(&png, e.into()))?;
    }
    image::RgbImage::from_raw(w, h, rgb)
        .expect("the buffer holds the plot's pixels")
        .save_with_format(&png, image::ImageFormat::Png)
        .map_err(|e| failed(&png, e.into()))?;
    Ok([svg, png])
}

/// Registers DejaVu Sans as plotters' `sans-serif`, once.
fn fonts() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    ok.then_some(()).ok_or(ReportError::Font)
}

fn draw<DB: DrawingBackend>(plot: &Plot, root: &DrawingArea<DB, Shift>) -> Drawn
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    match plot {
        Plot::Curves {
            title,
            x,
            y,
            curves,
            roc,
        } => draw_curves(root, title, (x, y), curves, *roc),
        Plot::Confusion { title, counts } => draw_confusion(root, title, counts),
        Plot::Histogram {
            title,
            real,
            fake,
            threshold,
        } => draw_histogram(root, title, (real, fake), *threshold),
    }
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (x, y): (&str, &str),
    curves: &[Curve],
    roc: bool,
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    if roc {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            GUIDE_COLOUR.stroke_width(1),
        ))?;
    }
    for c in curves {
        // Videos dashed, so that a video curve on top of the frame curve leaves it visible.
        let colour = if c.video { VIDEO_COLOUR } else { FRAME_COLOUR };
        let points = c.points.iter().copied();
        let drawn = if c.video {
            chart.draw_series(DashedLineSeries::new(points, 8, 6, colour.stroke_width(2)))?
        } else {
            chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?
        };
        drawn
            .label(&c.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    if curves.is_empty() {
        let note = "no curve: the split lacks real or fake faces";
        chart.plotting_area().draw(&Text::new(
            note,
            (0.5, 0.5),
            TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    } else {
        chart
            .configure_series_labels()
            .position(if roc {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::LowerLeft
            })
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}

fn draw_confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    counts: &[[usize; DeepfakeType::COUNT]; DeepfakeType::COUNT],
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let n = DeepfakeType::COUNT as i32;
    let area = root.titled(title, (FONT, 20))?;
    let (w, h) = area.dim_in_pixel();
    // The grid's square, with room for the labels on the left and at the bottom.
    let cell = ((w as i32 - 150) / n).min((h as i32 - 80) / n);
    let (left, top) = ((w as i32 - cell * n) / 2 + 30, 10);
    let label = TextStyle::from((FONT, 15).into_font());
    let centred = Pos::new(HPos::Center, VPos::Center);
    for (t, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        let y = top + t as i32 * cell;
        for (p, &count) in row.iter().enumerate() {
            let x = left + p as i32 * cell;
            let share = count as f64 / total;
            let fill = RGBColor(
                (255.0 - 224.0 * share) as u8,
                (255.0 - 136.0 * share) as u8,
                (255.0 - 75.0 * share) as u8,
            );
            area.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                fill.filled(),
            ))?;
            area.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                GUIDE_COLOUR,
            ))?;
            let ink = if share > 0.6 { WHITE } else { BLACK };
            let text = format!("{count}\n{:.0}%", 100.0 * share);
            for (k, line) in text.lines().enumerate() {
                let at = (x + cell / 2, y + cell / 2 - 9 + 18 * k as i32);
                area.draw(&Text::new(
                    line.to_owned(),
                    at,
                    label.color(&ink).pos(centred),
                ))?;
            }
        }
        let code = DeepfakeType::ALL[t].code();
        let right = Pos::new(HPos::Right, VPos::Center);
        area.draw(&Text::new(code, (left - 8, y + cell / 2), label.pos(right)))?;
    }
    for (p, kind) in DeepfakeType::ALL.iter().enumerate() {
        let at = (left + p as i32 * cell + cell / 2, top + n * cell + 14);
        area.draw(&Text::new(kind.code(), at, label.pos(centred)))?;
    }
    let below = (left + n * cell / 2, top + n * cell + 40);
    area.draw(&Text::new(
        "judged (label under the rule)",
        below,
        label.pos(centred),
    ))?;
    let beside = (left - 70, top + n * cell / 2);
    let vertical = label.transform(FontTransform::Rotate270).pos(centred);
    area.draw(&Text::new("true type", beside, vertical))?;
    Ok(())
}

fn draw_histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (real, fake): (&[f64], &[f64]),
    threshold: Option<f32>,
) -> Drawn
where
    DB::ErrorType: 'static,
{
    let top = real.iter().chain(fake).fold(0.0f64, |a, &b| a.max(b));
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(54)
        .build_cartesian_2d(0f64..1f64, 0f64..(top * 1.1).max(0.05))?;
    chart
        .configure_mesh()
        .x_desc("fake score, 1 − p(REAL)")
        .y_desc("share of the faces")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (shares, colour, name) in [
        (real, REAL_COLOUR, "real faces"),
        (fake, FAKE_COLOUR, "fake faces"),
    ] {
        let width = 1.0 / shares.len().max(1) as f64;
        let bars = shares.iter().enumerate().map(|(i, &s)| {
            let x = i as f64 * width;
            Rectangle::new([(x, 0.0), (x + width, s)], colour.mix(0.45).filled())
        });
        chart.draw_series(bars)?.label(name).legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.45).filled())
        });
    }
    if let Some(t) = threshold {
        let t = t as f64;
        let line = DashedLineSeries::new([(t, 0.0), (t, top * 1.1)], 6, 4, BLACK.stroke_width(2));
        chart
            .draw_series(line)?
            .label(format!("threshold {t:.2}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}
