//! The report's tables, from the figures only (so they read as `eval`'s JSON does),
//! rendered as Markdown and as HTML. Figures are percentages with two decimals, as in the
//! paper; `n/a` where a set lacks real or fake items.

use sd2_models::taxonomy::DeepfakeType;

use super::escape_html;
use crate::eval::{EvalReport, Figures};

/// A titled table.
pub struct Table {
    pub title: String,
    /// A sentence under the title.
    pub note: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A figure as the tables print it: a percentage with two decimals.
pub fn percent(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{:.2}", 100.0 * v))
}

/// The tables of `report`, the model named `method` in the per-dataset one.
pub fn tables(report: &EvalReport, method: &str) -> Vec<Table> {
    vec![
        detection(report),
        per_dataset(report, method),
        confusion(report),
    ]
}

fn figures_row(name: &str, f: &Figures) -> Vec<String> {
    vec![
        name.to_owned(),
        f.count.to_string(),
        percent(f.auc),
        percent(Some(f.accuracy)),
        percent(f.eer),
        percent(f.average_precision),
    ]
}

fn detection(r: &EvalReport) -> Table {
    Table {
        title: "Detection".into(),
        note: "Frame level: each face; video level: each group's real faces and its fake faces, \
               judged on their mean probabilities. ACC under the decision rule; AUC, EER and AP \
               rank the fake score."
            .into(),
        header: ["", "count", "AUC", "ACC", "EER", "AP"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            figures_row("frames", &r.frame),
            figures_row("videos", &r.video),
        ],
    }
}

/// One figure of a set.
type Pick = fn(&Figures) -> Option<f64>;

fn per_dataset(r: &EvalReport, method: &str) -> Table {
    let mut header = vec!["Method".to_owned(), "Figure".to_owned()];
    header.extend(r.per_dataset.keys().cloned());
    header.push("mean".into());
    let m = &r.dataset_mean;
    let rows: [(&str, Pick, Option<f64>); 4] = [
        ("AUC", |f| f.auc, m.auc),
        ("ACC", |f| Some(f.accuracy), m.accuracy),
        ("EER", |f| f.eer, m.eer),
        ("AP", |f| f.average_precision, m.average_precision),
    ];
    let mut rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, pick, mean)| {
            let mut row = vec![method.to_owned(), (*name).to_owned()];
            row.extend(r.per_dataset.values().map(|f| percent(pick(f))));
            row.push(percent(*mean));
            row
        })
        .collect();
    let mut faces = vec![method.to_owned(), "faces".to_owned()];
    faces.extend(r.per_dataset.values().map(|f| f.count.to_string()));
    faces.push(String::new());
    rows.push(faces);
    Table {
        title: "Per dataset".into(),
        note: "Frame level, one column per dataset and their mean (mAUC, mACC, mEER, mAP), in \
               the shape of the paper's Tables 2 and 3."
            .into(),
        header,
        rows,
    }
}

fn confusion(r: &EvalReport) -> Table {
    let mut header = vec!["true \\ judged".to_owned()];
    header.extend(DeepfakeType::ALL.iter().map(|t| t.code().to_owned()));
    header.push("faces".into());
    let rows = DeepfakeType::ALL
        .iter()
        .zip(&r.confusion)
        .map(|(t, counts)| {
            let mut row = vec![t.code().to_owned()];
            row.extend(counts.iter().map(usize::to_string));
            row.push(counts.iter().sum::<usize>().to_string());
            row
        })
        .collect();
    Table {
        title: "Types".into(),
        note: format!(
            "Type accuracy {}%. Rows: the true type; columns: the label under the rule (REAL \
             for a face judged real, its likeliest manipulation for one judged fake).",
            percent(Some(r.type_accuracy))
        ),
        header,
        rows,
    }
}

impl Table {
    pub fn markdown(&self) -> String {
        let cell = |s: &String| s.replace('|', "\\|").replace('\n', " ");
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(cell).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = format!("## {}\n\n{}\n\n", self.title, self.note);
        out += &line(&self.header);
        let rule: Vec<String> = (0..self.header.len()).map(|_| "---".to_owned()).collect();
        out += &line(&rule);
        for row in &self.rows {
            out += &line(row);
        }
        out
    }

    pub fn html(&self) -> String {
        let cells = |tag: &str, cells: &[String]| {
            let inner: String = cells
                .iter()
                .map(|c| format!("<{tag}>{}</{tag}>", escape_html(c)))
                .collect();
            format!("<tr>{inner}</tr>\n")
        };
        let mut out = format!(
            "<h2>{}</h2>\n<p>{}</p>\n<table>\n<thead>\n{}</thead>\n<tbody>\n",
            escape_html(&self.title),
            escape_html(&self.note),
            cells("th", &self.header)
        );
        for row in &self.rows {
            out += &cells("td", row);
        }
        out + "</tbody>\n</table>\n"
    }
}
