//! A video's timeline as SVG: each analysed frame's fake score (its most suspicious face's)
//! over time, frames judged fake in red, a dashed line at the score that marks fake.

use plotters::prelude::*;

use crate::tally::FramePoint;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 220;

const REAL_COLOUR: RGBColor = RGBColor(37, 99, 235);
const FAKE_COLOUR: RGBColor = RGBColor(220, 38, 38);

/// The SVG of `timeline` over `duration_s` seconds (the last frame's time when unknown),
/// with the dashed line at `line`.
pub fn timeline_svg(
    timeline: &[FramePoint],
    duration_s: Option<f64>,
    line: f64,
) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, timeline, duration_s, line).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw<'a>(
    svg: &'a mut String,
    timeline: &[FramePoint],
    duration_s: Option<f64>,
    line: f64,
) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let end = duration_s
        .or_else(|| timeline.last().map(|p| p.t))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..end, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("fake score")
        .y_labels(6)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(DashedLineSeries::new(
        [(0.0, line), (end, line)],
        6,
        4,
        ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1),
    ))?;
    // Frames without a classified face break the line.
    for run in timeline.split(|p| p.score.is_none()) {
        let points = run.iter().filter_map(|p| p.score.map(|s| (p.t, s as f64)));
        chart.draw_series(LineSeries::new(points, REAL_COLOUR.stroke_width(1)))?;
    }
    chart.draw_series(timeline.iter().filter_map(|p| {
        let colour = if p.fake { FAKE_COLOUR } else { REAL_COLOUR };
        p.score
            .map(|s| Circle::new((p.t, s as f64), 3, colour.filled()))
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, score: Option<f32>, fake: bool) -> FramePoint {
        FramePoint {
            t,
            score,
            faces: score.map_or(0, |_| 1),
            fake,
        }
    }

    #[test]
    fn the_timeline_marks_each_scored_frame_and_fake_ones_in_red() {
        let t = [
            point(0.0, Some(0.1), false),
            point(1.0, None, false),
            point(2.0, Some(0.9), true),
            point(3.0, Some(0.2), false),
        ];
        let svg = timeline_svg(&t, Some(4.0), 0.5).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("fill=\"#DC2626\"").count(), 1, "one fake frame");
        assert!(svg.contains("fake score") && svg.contains("seconds"));
    }
}
