//! The report page: a summary table, then one section per video (most suspicious first)
//! with its verdict, numbers, timeline and face thumbnails; then the files not scanned.

use html_escape::encode_quoted_attribute as escape;
use std::fmt::Write;
use std::path::Path;

use crate::record::{Record, ScanSettings, VideoReport};
use crate::table::{Row, verdict_word};

use super::plot;
use super::{PLOTS, video_id};

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 20px 28px; color: #1f2937; background: #f9fafb; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 6px; word-break: break-all; }
.settings, .path, .note { color: #6b7280; font-size: 13px; }
table.summary { border-collapse: collapse; width: 100%; margin: 16px 0 24px; background: white; }
table.summary th, table.summary td { padding: 5px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; }
table.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: white; vertical-align: middle; }
.FAKE { background: #dc2626; } .REAL { background: #2563eb; } .none { background: #9ca3af; } .error { background: #6b7280; }
section.video { background: white; border: 1px solid #e5e7eb; border-radius: 8px; padding: 14px 18px; margin: 0 0 18px; }
section.video.fake { border-left: 6px solid #dc2626; }
dl.numbers { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 8px 0; }
dl.numbers div { display: flex; gap: 6px; } dl.numbers dt { color: #6b7280; } dl.numbers dd { margin: 0; font-weight: 600; }
.faces { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 8px; }
.faces figure { margin: 0; text-align: center; font-size: 12px; }
.faces img { display: block; height: 128px; border-radius: 4px; border: 3px solid #2563eb; }
.faces figure.fake img { border-color: #dc2626; }
img.timeline { max-width: 100%; height: auto; }
"#;

/// Fake videos first, most suspicious first; then videos without faces; then errors.
fn order(rows: &[Row<'_>]) -> Vec<usize> {
    let rank = |r: &Record| match r.report() {
        Some(rep) => match &rep.verdict {
            Some(v) => (if v.fake { 0 } else { 1 }, -v.fake_score),
            None => (2, 0.0),
        },
        None => (3, 0.0),
    };
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ra, rb) = (rank(rows[a].record), rank(rows[b].record));
        ra.0.cmp(&rb.0).then(ra.1.total_cmp(&rb.1)).then(a.cmp(&b))
    });
    idx
}

/// The whole page; `dir` is the report folder (thumbnails not in it are left out).
pub fn page(dir: &Path, rows: &[Row<'_>], settings: &ScanSettings, line: f64) -> String {
    let order = order(rows);
    let scanned = rows.iter().filter(|r| r.record.report().is_some()).count();
    let fakes = rows
        .iter()
        .filter(|r| verdict_word(r.record) == "FAKE")
        .count();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>sd2-scan: {fakes} of {scanned} videos judged fake</title><style>{STYLE}</style></head><body>\n\
         <h1>Deepfake scan: {fakes} of {scanned} videos judged fake</h1>\n\
         <p class=\"settings\">Model {} · frames: {} · decision: {}{}</p>\n",
        escape(&settings.model),
        escape(&settings.sampling),
        escape(&settings.decision),
        if settings.decision == "threshold" {
            format!(" (fake score above {})", settings.threshold)
        } else {
            String::new()
        },
    );
    summary(&mut h, rows, &order);
    for &i in &order {
        if let Some(rep) = rows[i].record.report() {
            video(&mut h, dir, &rows[i], rep, line);
        }
    }
    let errors: Vec<&Row<'_>> = order
        .iter()
        .map(|&i| &rows[i])
        .filter(|r| r.record.report().is_none())
        .collect();
    if !errors.is_empty() {
        h.push_str("<section class=\"errors\"><h2>Not scanned</h2><ul>\n");
        for r in errors {
            let _ = writeln!(
                h,
                "<li><b>{}</b>: {}</li>",
                escape(r.shown),
                escape(r.record.error().unwrap_or_default())
            );
        }
        h.push_str("</ul></section>\n");
    }
    h.push_str(
        "<p class=\"note\">A video's verdict judges the mean of its faces' probabilities (every \
         face on every analysed frame) by the same rule as a face; its fake score is 1 − that \
         mean p(REAL). A frame's fake score is its most suspicious face's. Thumbnails show the faces \
         judged fake on the most frames (then the highest scores), each at its most suspicious \
         frame, red when judged fake there.</p>\n\
         </body></html>\n",
    );
    h
}

fn summary(h: &mut String, rows: &[Row<'_>], order: &[usize]) {
    h.push_str(
        "<table class=\"summary\"><thead><tr><th>file</th><th>verdict</th><th>fake score</th>\
         <th>type</th><th>faces</th><th>frames</th></tr></thead><tbody>\n",
    );
    for &i in order {
        let r = &rows[i];
        let word = verdict_word(r.record);
        let class = match word {
            "FAKE" | "REAL" | "error" => word,
            _ => "none",
        };
        let rep = r.record.report();
        let v = rep.and_then(|rep| rep.verdict.as_ref());
        let name = match rep {
            Some(_) => format!(
                "<a href=\"#{}\">{}</a>",
                video_id(&r.record.file.path),
                escape(r.shown)
            ),
            None => escape(r.shown).into_owned(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{name}</td><td><span class=\"badge {class}\">{word}</span></td>\
             <td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            v.map_or("-".into(), |v| format!("{:.3}", v.fake_score)),
            v.map_or("-", |v| v.label.code()),
            rep.map_or("-".into(), |r| r.faces.to_string()),
            rep.map_or("-".into(), |r| r.frames_analysed.to_string()),
        );
    }
    h.push_str("</tbody></table>\n");
}

fn video(h: &mut String, dir: &Path, row: &Row<'_>, rep: &VideoReport, line: f64) {
    let id = video_id(&row.record.file.path);
    let word = verdict_word(row.record);
    let fake = rep.verdict.as_ref().is_some_and(|v| v.fake);
    let class = if word == "no face" { "none" } else { word };
    let _ = write!(
        h,
        "<section class=\"video{}\" id=\"{id}\"><h2>{} <span class=\"badge {class}\">{word}</span></h2>\n\
         <p class=\"path\">{}</p>\n<dl class=\"numbers\">",
        if fake { " fake" } else { "" },
        escape(row.shown),
        escape(&row.record.file.path),
    );
    let mut number = |name: &str, value: String| {
        let _ = write!(h, "<div><dt>{name}</dt><dd>{}</dd></div>", escape(&value));
    };
    if let Some(v) = &rep.verdict {
        number("fake score", format!("{:.3}", v.fake_score));
        number("type", v.label.description().to_owned());
    }
    number("faces", rep.faces.to_string());
    number("frames analysed", rep.frames_analysed.to_string());
    number("fake frames", rep.fake_frames.to_string());
    if let (Some(s), Some(t)) = (rep.peak_frame_score, rep.peak_frame_time_s) {
        number("peak frame", format!("{s:.3} at {t:.1} s"));
    }
    if let Some(d) = rep.duration_s {
        number("duration", format!("{d:.1} s"));
    }
    let _ = write!(
        h,
        "</dl>\n<img class=\"timeline\" src=\"{PLOTS}/{id}.svg\" width=\"{}\" height=\"{}\" \
         alt=\"fake score of each analysed frame over time; dashed line at {line}\">\n",
        plot::WIDTH,
        plot::HEIGHT,
    );
    let shown: Vec<_> = rep
        .suspicious_faces
        .iter()
        .filter_map(|f| {
            f.thumbnail
                .as_ref()
                .filter(|t| dir.join(t).is_file())
                .map(|t| (f, t))
        })
        .collect();
    if !shown.is_empty() {
        h.push_str("<div class=\"faces\">");
        for (f, thumb) in shown {
            let _ = write!(
                h,
                "<figure{}><img src=\"{}\" alt=\"face {} at {:.1} s\">\
                 <figcaption>{:.3} {} at {:.1} s<br>fake on {} of {} frames</figcaption></figure>",
                if f.fake { " class=\"fake\"" } else { "" },
                escape(thumb),
                f.track_id,
                f.time_s,
                f.fake_score,
                f.label.code(),
                f.time_s,
                f.fake_frames,
                f.frames,
            );
        }
        h.push_str("</div>\n");
    } else if !rep.suspicious_faces.is_empty() {
        h.push_str("<p class=\"note\">No face thumbnails in this folder: the video was scanned without --report here.</p>\n");
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::record::tests::sample;

    #[test]
    fn text_from_file_names_cannot_become_markup() {
        assert_eq!(
            escape(r#"<b>"x" & 'y'</b>"#),
            "&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/b&gt;"
        );
    }

    #[test]
    fn the_page_puts_fake_videos_first_and_lists_errors_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = sample();
        let mut real = sample();
        real.file.path = "/videos/real.mp4".into();
        if let Outcome::Scanned(rep) = &mut real.outcome {
            let v = rep.verdict.as_mut().unwrap();
            v.fake = false;
            v.fake_score = 0.1;
        }
        let bad = Record {
            outcome: Outcome::Error {
                error: "truncated <at 4 s>".into(),
            },
            ..sample()
        };
        let rows = [
            Row {
                shown: "real.mp4",
                record: &real,
            },
            Row {
                shown: "bad.mp4",
                record: &bad,
            },
            Row {
                shown: "a <clip>.mp4",
                record: &fake,
            },
        ];
        let page = page(dir.path(), &rows, &fake.settings, 0.5);
        let at = |s: &str| {
            page.find(s)
                .unwrap_or_else(|| panic!("{s} not in the page"))
        };
        assert!(at("a &lt;clip&gt;.mp4 <span") < at("real.mp4 <span"));
        assert!(at("<h2>Not scanned</h2>") > at("real.mp4 <span"));
        assert!(page.contains("<b>bad.mp4</b>: truncated &lt;at 4 s&gt;"));
        assert!(page.contains("1 of 2 videos judged fake"));
        assert!(!page.contains("http"), "no external resources");
    }
}
