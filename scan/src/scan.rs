//! A scan from start to end: find the videos, skip those already in the output, analyse
//! the others `--jobs` at a time (each result appended as it comes), then the table, CSV
//! and report over every video named, resumed ones included.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::analyse::{AnalyseOptions, Analysis, analyse};
use crate::cli::Cli;
use crate::inputs::{Input, expand};
use crate::progress::Progress;
use crate::record::{
    FileId, Outcome, Record, ScanSettings, SuspiciousFace, VideoReport, VideoVerdictRecord,
};
use crate::report;
use crate::store::Store;
use crate::table::{self, Row};

/// Registers the `sd2` elements in this process.
fn init_gstreamer() -> Result<()> {
    gst::init().context("cannot initialise GStreamer")?;
    // Fails when GST_PLUGIN_PATH already brought the plugin in, which serves as well.
    let registered = gstsd2::plugin_register_static();
    if gst::ElementFactory::find("sd2bin").is_none() {
        registered.context("cannot register the sd2 elements")?;
        bail!("the sd2bin element is not available");
    }
    Ok(())
}

/// Runs the scan `cli` describes; the exit status says whether it succeeded.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    let model = cli.model();
    let model = model.canonicalize().with_context(|| {
        format!(
            "{}: cannot read the model (give one with --model, or run scripts/setup.sh for the demo model)",
            model.display()
        )
    })?;
    let inputs = expand(&cli.inputs)?;
    if inputs.is_empty() {
        bail!("no video files in {}", cli.inputs.join(", "));
    }
    init_gstreamer()?;
    if let Some(dir) = &cli.report {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
    }
    let settings = ScanSettings {
        model: model.to_string_lossy().into_owned(),
        sampling: cli.sampling().describe(),
        decision: cli.decision.name().to_owned(),
        threshold: cli.threshold,
    };
    let mut store = open_store(cli)?;
    let (mut records, todo) = plan(&inputs, store.as_ref(), &settings);
    if let Some(s) = &store {
        let resumed = inputs.len() - todo.len();
        if resumed > 0 {
            eprintln!(
                "sd2-scan: {resumed} of {} videos already scanned in {}: skipped",
                inputs.len(),
                s.path().display()
            );
        }
    }
    let opts = cli.analyse_options(model);
    let progress = Progress::new(todo.len());
    let work = Work {
        inputs: &inputs,
        todo: &todo,
        opts: &opts,
        settings: &settings,
        report_dir: cli.report.as_deref(),
        progress: &progress,
    };
    let mut append_error = None;
    work.run(cli.jobs as usize, |i, record| {
        progress.log(&outcome_line(&inputs[i], &record));
        if let Some(s) = store.as_mut()
            && let Err(e) = s.append(&record)
        {
            progress.log(&format!("sd2-scan: {e}"));
            append_error.get_or_insert(e);
        }
        records[i] = Some(record);
    });
    progress.finish();
    let records: Vec<Record> = records
        .into_iter()
        .zip(&inputs)
        .map(|(r, input)| {
            r.unwrap_or_else(|| Record {
                file: unreadable_id(&input.path),
                settings: settings.clone(),
                outcome: Outcome::Error {
                    error: "the scan of this file stopped unexpectedly".into(),
                },
            })
        })
        .collect();
    let rows: Vec<Row<'_>> = inputs
        .iter()
        .zip(&records)
        .map(|(input, record)| Row {
            shown: &input.shown,
            record,
        })
        .collect();
    finish(cli, &rows, &settings)?;
    if let Some(e) = append_error {
        return Err(e.into());
    }
    let scanned = records.iter().filter(|r| r.report().is_some()).count();
    let failed = records.len() - scanned;
    Ok(if scanned == 0 || (cli.strict && failed > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The JSON lines output, with a warning on stderr for each line it cannot read.
fn open_store(cli: &Cli) -> Result<Option<Store>> {
    let Some(path) = cli.json_output() else {
        return Ok(None);
    };
    let (store, warnings) = Store::open(&path)?;
    for w in warnings {
        eprintln!("sd2-scan: {w}");
    }
    Ok(Some(store))
}

/// The videos to analyse and how.
struct Work<'a> {
    inputs: &'a [Input],
    /// Indices into `inputs`, with the files as they are now.
    todo: &'a [(usize, FileId)],
    opts: &'a AnalyseOptions,
    settings: &'a ScanSettings,
    report_dir: Option<&'a Path>,
    progress: &'a Progress,
}

impl Work<'_> {
    /// Analyses the videos on `jobs` threads; `done` gets each record, on this thread, as
    /// its video finishes.
    fn run(&self, jobs: usize, mut done: impl FnMut(usize, Record)) {
        let next = AtomicUsize::new(0);
        let (tx, rx) = channel::<(usize, Record)>();
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(self.todo.len()) {
                let (tx, next) = (tx.clone(), &next);
                scope.spawn(move || {
                    while let Some((i, id)) = self.todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let record = self.scan_one(&self.inputs[*i], id);
                        if tx.send((*i, record)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (i, record) in rx {
                done(i, record);
            }
        });
    }

    /// Analyses one video and makes its record (thumbnails written to the report folder).
    fn scan_one(&self, input: &Input, id: &FileId) -> Record {
        let bar = self.progress.file(&input.shown);
        let started = Instant::now();
        let outcome = match std::fs::File::open(&input.path) {
            Err(e) => Outcome::Error {
                error: format!("cannot open: {e}"),
            },
            Ok(_) => {
                let b = bar.clone();
                let update = Arc::new(move |f: Option<f64>, n: usize| Progress::update(&b, f, n));
                match analyse(&input.path, self.opts, update) {
                    Ok(a) => {
                        let seconds = started.elapsed().as_secs_f64();
                        let report =
                            video_report(a, &id.path, self.report_dir, seconds, self.progress);
                        Outcome::Scanned(Box::new(report))
                    }
                    Err(e) => Outcome::Error {
                        error: e.to_string(),
                    },
                }
            }
        };
        self.progress.done(&bar);
        Record {
            file: id.clone(),
            settings: self.settings.clone(),
            outcome,
        }
    }
}

/// The CSV, the report and the table.
fn finish(cli: &Cli, rows: &[Row<'_>], settings: &ScanSettings) -> Result<()> {
    if let Some(path) = &cli.csv {
        table::write_csv(path, rows).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(dir) = &cli.report {
        let line = match cli.decision {
            sd2_models::analyzer::Decision::Threshold => cli.threshold as f64,
            sd2_models::analyzer::Decision::Argmax => 0.5,
        };
        let index = report::write(dir, rows, settings, line)?;
        eprintln!("sd2-scan: report in {}", index.display());
    }
    if !cli.quiet {
        // A closed stdout (`| head`) is not an error of the scan.
        let _ = std::io::stdout()
            .lock()
            .write_all(table::render(rows).as_bytes());
    }
    Ok(())
}

/// The records of videos scanned before with these settings, and the videos to scan.
fn plan(
    inputs: &[Input],
    store: Option<&Store>,
    settings: &ScanSettings,
) -> (Vec<Option<Record>>, Vec<(usize, FileId)>) {
    let mut records = vec![None; inputs.len()];
    let mut todo = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Ok(id) = FileId::of(&input.path) else {
            // Opening it will say why.
            todo.push((i, unreadable_id(&input.path)));
            continue;
        };
        match store.and_then(|s| s.scanned(&id, settings)) {
            Some(r) => records[i] = Some(r.clone()),
            None => todo.push((i, id)),
        }
    }
    (records, todo)
}

/// A file whose metadata cannot be read.
fn unreadable_id(path: &Path) -> FileId {
    FileId {
        path: path.to_string_lossy().into_owned(),
        size: 0,
        mtime_ns: 0,
    }
}

/// The record of an analysis; thumbnails are saved when there is a report folder.
fn video_report(
    a: Analysis,
    path: &str,
    report_dir: Option<&Path>,
    scan_seconds: f64,
    progress: &Progress,
) -> VideoReport {
    let s = a.summary;
    let suspicious_faces = s
        .suspicious
        .iter()
        .enumerate()
        .map(|(rank, p)| {
            let thumbnail = match (report_dir, &p.crop) {
                (Some(dir), Some(crop)) => report::save_thumbnail(dir, path, rank, crop)
                    .map_err(|e| progress.log(&format!("sd2-scan: {e}")))
                    .ok(),
                _ => None,
            };
            SuspiciousFace {
                track_id: p.track,
                frames: p.frames,
                fake_frames: p.fake_frames,
                time_s: p.time_s,
                fake_score: p.verdict.fake_score(),
                fake: p.fake,
                label: p.label,
                rect: p.rect,
                thumbnail,
            }
        })
        .collect();
    VideoReport {
        verdict: s.verdict.map(|v| VideoVerdictRecord {
            fake: v.fake,
            label: v.label,
            fake_score: v.fake_score(),
            probabilities: v.verdict.probabilities.into(),
        }),
        faces: s.faces,
        face_verdicts: s.face_verdicts,
        frames_analysed: s.frames,
        duration_s: a.duration_s,
        peak_frame_score: s.peak_frame.map(|p| p.1),
        peak_frame_time_s: s.peak_frame.map(|p| p.0),
        fake_frames: s.fake_frames,
        suspicious_faces,
        timeline: s.timeline,
        scan_seconds,
    }
}

/// What stderr says of a finished video.
fn outcome_line(input: &Input, r: &Record) -> String {
    match &r.outcome {
        Outcome::Error { error } => format!("sd2-scan: {}: {error}; skipped", input.shown),
        Outcome::Scanned(rep) => {
            let verdict = match &rep.verdict {
                Some(v) => format!(
                    "{} (fake score {:.3}, {})",
                    table::verdict_word(r),
                    v.fake_score,
                    v.label.code()
                ),
                None => "no face".to_owned(),
            };
            format!(
                "sd2-scan: {}: {verdict}; {} faces, {} frames in {:.1} s",
                input.shown, rep.faces, rep.frames_analysed, rep.scan_seconds
            )
        }
    }
}
