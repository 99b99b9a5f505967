//! `index.html`: the report's page. Plain HTML and CSS, no script, nothing fetched from
//! elsewhere; every link is relative to the report's folder.

use super::{About, Figure, SIZE, Table, escape_html, rule};
use crate::eval::EvalReport;

const STYLE: &str = "
body { font-family: system-ui, 'DejaVu Sans', sans-serif; margin: 24px auto; max-width: 1320px;
       padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 4px; }
h2 { font-size: 1.15em; margin: 22px 0 4px; }
p { margin: 4px 0 8px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 8px 0; }
dt { font-weight: 600; }
dd { margin: 0; font-family: 'DejaVu Sans Mono', monospace; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 10px; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f3f7; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 16px; }
figure { margin: 0; border: 1px solid #ddd; padding: 6px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9em; margin-top: 4px; }
.tables { display: flex; flex-wrap: wrap; gap: 0 40px; }
.tables section { max-width: 560px; }
";

/// The page of a report.
pub fn page(about: &About, report: &EvalReport, tables: &[Table], figures: &[Figure]) -> String {
    let e = escape_html;
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Evaluation of {method}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Evaluation of {method}</h1>\n<dl>\n\
         <dt>checkpoint</dt><dd>{checkpoint}</dd>\n\
         <dt>manifest</dt><dd>{manifest} (split {split})</dd>\n\
         <dt>decision</dt><dd>{rule}</dd>\n\
         <dt>rows skipped</dt><dd>{skipped} (unreadable images)</dd>\n</dl>\n\
         <div class=\"tables\">\n",
        method = e(&about.method),
        checkpoint = e(&about.checkpoint),
        manifest = e(&about.manifest),
        split = e(&about.split),
        rule = e(&rule(report)),
        skipped = report.skipped_rows,
    );
    for t in tables {
        out += &format!("<section>\n{}</section>\n", t.html());
    }
    out += "</div>\n<h2>Plots</h2>\n<div class=\"plots\">\n";
    let (w, h) = SIZE;
    for f in figures {
        out += &format!(
            "<figure>\n<img src=\"{stem}.svg\" width=\"{w}\" height=\"{h}\" alt=\"{caption}\">\n\
             <figcaption>{caption} <a href=\"{stem}.png\">PNG</a> · \
             <a href=\"{stem}.svg\">SVG</a></figcaption>\n</figure>\n",
            stem = f.stem,
            caption = e(&f.caption),
        );
    }
    out += "</div>\n<h2>Data</h2>\n<p><a href=\"report.md\">report.md</a> (these tables in \
            Markdown) · <a href=\"eval.json\">eval.json</a> (the figures, as \
            <code>sd2-train eval --json</code> writes them) · <a href=\"faces.jsonl\">faces.jsonl</a> \
            (each face's probabilities and judgement)</p>\n</body>\n</html>\n";
    out
}
