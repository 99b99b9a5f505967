//! The results as a table on stdout and as CSV.
//!
//! Table columns: the file; the verdict (FAKE or REAL, `no face` when no face was
//! classified, `error` for a file that could not be scanned); the video's fake score (1 −
//! the mean p(REAL) of its faces); its type (REAL, or the likeliest manipulation of a fake
//! video); distinct faces seen; frames analysed.

use std::path::Path;

use crate::record::Record;

/// A video of this run and its record.
pub struct Row<'a> {
    pub shown: &'a str,
    pub record: &'a Record,
}

const HEADER: [&str; 6] = ["file", "verdict", "fake score", "type", "faces", "frames"];

/// The verdict column's word for a record.
pub fn verdict_word(r: &Record) -> &'static str {
    match r.report() {
        None => "error",
        Some(rep) => match &rep.verdict {
            None => "no face",
            Some(v) if v.fake => "FAKE",
            Some(_) => "REAL",
        },
    }
}

fn cells(row: &Row<'_>) -> [String; 6] {
    let dash = || "-".to_owned();
    let file = row.shown.to_owned();
    let verdict = verdict_word(row.record).to_owned();
    match row.record.report() {
        None => [file, verdict, dash(), dash(), dash(), dash()],
        Some(rep) => {
            let (score, kind) = rep.verdict.as_ref().map_or((dash(), dash()), |v| {
                (format!("{:.3}", v.fake_score), v.label.code().to_owned())
            });
            let (faces, frames) = (rep.faces.to_string(), rep.frames_analysed.to_string());
            [file, verdict, score, kind, faces, frames]
        }
    }
}

/// The table, columns aligned (numbers to the right), one line per row after the header.
pub fn render(rows: &[Row<'_>]) -> String {
    let body: Vec<[String; 6]> = rows.iter().map(cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &body {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric = [false, false, true, false, true, true];
    let line = |cells: [&str; 6]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .zip(numeric)
            .map(|((c, w), right)| {
                if right {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(HEADER);
    for r in &body {
        out.push_str(&line(r.each_ref().map(String::as_str)));
    }
    out
}

/// Writes the rows as CSV to `path`.
pub fn write_csv(path: &Path, rows: &[Row<'_>]) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "file",
        "path",
        "status",
        "verdict",
        "fake_score",
        "type",
        "REAL",
        "FS",
        "FR",
        "EFS",
        "FE",
        "faces",
        "face_verdicts",
        "frames_analysed",
        "peak_frame_score",
        "peak_frame_time_s",
        "fake_frames",
        "duration_s",
        "error",
    ])?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for row in rows {
        let r = row.record;
        let status = if r.report().is_some() {
            "scanned"
        } else {
            "error"
        };
        let mut fields = vec![
            row.shown.to_owned(),
            r.file.path.clone(),
            status.to_owned(),
            verdict_word(r).to_owned(),
        ];
        match r.report() {
            Some(rep) => {
                let v = rep.verdict.as_ref();
                fields.push(opt(v.map(|v| v.fake_score.to_string())));
                fields.push(opt(v.map(|v| v.label.code().to_owned())));
                let p = v.map(|v| v.probabilities);
                let p = p.map(|p| [p.REAL, p.FS, p.FR, p.EFS, p.FE]);
                for i in 0..5 {
                    fields.push(opt(p.map(|p| p[i].to_string())));
                }
                fields.push(rep.faces.to_string());
                fields.push(rep.face_verdicts.to_string());
                fields.push(rep.frames_analysed.to_string());
                fields.push(opt(rep.peak_frame_score.map(|s| s.to_string())));
                fields.push(opt(rep.peak_frame_time_s.map(|t| format!("{t:.3}"))));
                fields.push(rep.fake_frames.to_string());
                fields.push(opt(rep.duration_s.map(|d| format!("{d:.3}"))));
                fields.push(String::new());
            }
            None => {
                fields.extend(std::iter::repeat_n(String::new(), 14));
                fields.push(r.error().unwrap_or_default().to_owned());
            }
        }
        w.write_record(&fields)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::record::tests::sample;

    #[test]
    fn the_table_aligns_columns_and_marks_errors() {
        let ok = sample();
        let bad = Record {
            outcome: Outcome::Error {
                error: "truncated".into(),
            },
            ..sample()
        };
        let rows = [
            Row {
                shown: "clips/a clip.mp4",
                record: &ok,
            },
            Row {
                shown: "b.mp4",
                record: &bad,
            },
        ];
        let t = render(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            [
                "file              verdict  fake score  type  faces  frames",
                "clips/a clip.mp4  FAKE          0.600  FS        1       2",
                "b.mp4             error             -  -         -       -",
            ]
        );
    }

    #[test]
    fn csv_has_a_header_and_one_quoted_row_per_video() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let ok = sample();
        let bad = Record {
            outcome: Outcome::Error {
                error: "not a video, \"really\"".into(),
            },
            ..sample()
        };
        let rows = [
            Row {
                shown: "a clip.mp4",
                record: &ok,
            },
            Row {
                shown: "b,c.mp4",
                record: &bad,
            },
        ];
        write_csv(&path, &rows).unwrap();
        let mut r = csv::Reader::from_path(&path).unwrap();
        let headers = r.headers().unwrap().clone();
        let records: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        let col = |i: usize, name: &str| {
            records[i][headers.iter().position(|h| h == name).unwrap()].to_owned()
        };
        assert_eq!(col(0, "verdict"), "FAKE");
        assert_eq!(col(0, "REAL"), "0.4");
        assert_eq!(col(0, "frames_analysed"), "2");
        assert_eq!(col(1, "file"), "b,c.mp4");
        assert_eq!(col(1, "status"), "error");
        assert_eq!(col(1, "error"), "not a video, \"really\"");
        assert_eq!(records[1].len(), headers.len());
    }
}
