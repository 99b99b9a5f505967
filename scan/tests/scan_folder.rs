//! `sd2-scan` as a user runs it, on a folder of real files: the demo video (its last four
//! seconds show a swapped face), a copy of it cut before the swap (made here by GStreamer),
//! a truncated copy, and a text file named `.mp4`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use gst::prelude::*;
use sd2_e2e::browser::{Options, check_page};
use serde_json::Value;

fn demo_video() -> PathBuf {
    let p = sd2_models::paths::cache_dir().join("demo/faces.webm");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh first",
        p.display()
    );
    p
}

fn sd2_scan(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-scan"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "sd2-scan was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `pipeline` to its end.
fn run_pipeline(pipeline: &str) {
    gst::init().unwrap();
    let p = gst::parse::launch(pipeline).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline ends");
    p.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{pipeline}: {}", e.error());
    }
}

/// The demo video's first eight seconds (the astronaut, then the six people before the
/// swap), cut at the keyframe at 8 s without re-encoding.
fn cut_before_the_swap(dir: &Path) -> PathBuf {
    run_pipeline(&format!(
        "filesrc location=\"{}\" ! matroskademux ! splitmuxsink muxer=webmmux \
         max-size-time=8000000000 location=\"{}/part%02d.webm\"",
        demo_video().display(),
        dir.display()
    ));
    let cut = dir.join("faces-cut.webm");
    std::fs::rename(dir.join("part00.webm"), &cut).unwrap();
    std::fs::remove_file(dir.join("part01.webm")).unwrap();
    cut
}

struct Scan {
    _dir: tempfile::TempDir,
    videos: PathBuf,
    report: PathBuf,
    out: Output,
    records: Vec<Value>,
}

impl Scan {
    fn record(&self, name: &str) -> &Value {
        self.records
            .iter()
            .find(|r| r["path"].as_str().unwrap().ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("no record of {name}"))
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// One scan of the folder with a report, shared by the tests here.
fn scan() -> &'static Scan {
    static SCAN: OnceLock<Scan> = OnceLock::new();
    SCAN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let videos = dir.path().join("videos");
        std::fs::create_dir(&videos).unwrap();
        let demo = std::fs::read(demo_video()).unwrap();
        std::fs::write(videos.join("faces.webm"), &demo).unwrap();
        cut_before_the_swap(&videos);
        std::fs::write(videos.join("truncated.webm"), &demo[..demo.len() * 2 / 5]).unwrap();
        std::fs::write(videos.join("notes.mp4"), "meeting notes, not a video\n").unwrap();
        let report = dir.path().join("report");
        let out = sd2_scan(&[
            videos.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--csv",
            dir.path().join("results.csv").to_str().unwrap(),
        ]);
        let records = read_records(&report.join("results.jsonl"));
        Scan {
            _dir: dir,
            videos,
            report,
            out,
            records,
        }
    })
}

/// The demo video's RGB frames stamped `times` (seconds), 1280×720.
fn demo_frames(times: &[f64]) -> Vec<Vec<u8>> {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
        demo_video().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut frames = vec![Vec::new(); times.len()];
    while let Ok(sample) = sink.pull_sample() {
        let b = sample.buffer().unwrap();
        let t = b.pts().unwrap().seconds_f64();
        for (k, want) in times.iter().enumerate() {
            if (t - want).abs() < 0.02 {
                frames[k] = b.map_readable().unwrap().to_vec();
            }
        }
    }
    p.set_state(gst::State::Null).unwrap();
    assert!(
        frames.iter().all(|f| f.len() == 1280 * 720 * 3),
        "frames at {times:?} decoded"
    );
    frames
}

#[test]
fn the_video_with_the_swap_scores_higher_and_its_most_suspicious_face_is_the_swapped_one() {
    let s = scan();
    let (full, cut) = (s.record("faces.webm"), s.record("faces-cut.webm"));
    for (r, seconds) in [(full, 12.0), (cut, 8.0)] {
        assert_eq!(r["status"], "scanned", "{r}");
        assert_eq!(r["frames_analysed"], 32, "the paper's 32 frames a video");
        assert!(
            (r["duration_s"].as_f64().unwrap() - seconds).abs() < 0.1,
            "{}",
            r["duration_s"]
        );
        assert_eq!(r["timeline"].as_array().unwrap().len(), 32);
    }
    let score = |r: &Value| r["verdict"]["fake_score"].as_f64().unwrap();
    assert!(
        score(full) > score(cut),
        "with the swap {:.3}, without {:.3}",
        score(full),
        score(cut)
    );

    // The most suspicious face is in the last segment, and it is where the demo's frames
    // with and without the swap differ: the swapped face.
    let top = &full["suspicious_faces"][0];
    let t = top["time_s"].as_f64().unwrap();
    assert!(t >= 8.0 && top["fake"] == true, "{top}");
    let frames = demo_frames(&[t, t - 4.0]);
    let (mut n, mut sx, mut sy) = (0u64, 0u64, 0u64);
    for (i, (a, b)) in frames[0].chunks(3).zip(frames[1].chunks(3)).enumerate() {
        let d: u32 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u32).sum();
        if d > 60 {
            n += 1;
            sx += (i % 1280) as u64;
            sy += (i / 1280) as u64;
        }
    }
    assert!(n > 500, "the swap changes {n} pixels");
    let (cx, cy) = (sx / n, sy / n);
    let r: Vec<u64> = top["rect"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        (r[0]..r[0] + r[2]).contains(&cx) && (r[1]..r[1] + r[3]).contains(&cy),
        "the swap is centred at ({cx}, {cy}), the most suspicious face is {r:?}"
    );
}

#[test]
fn a_truncated_file_and_a_text_file_are_reported_on_stderr_and_skipped() {
    let s = scan();
    assert!(
        s.out.status.success(),
        "two videos were scanned: {}",
        s.stderr()
    );
    let err = s.stderr();
    assert!(
        err.contains("truncated.webm: truncated: its video stops at"),
        "{err}"
    );
    assert!(
        err.contains("notes.mp4: ") && err.contains("; skipped"),
        "{err}"
    );
    for name in ["truncated.webm", "notes.mp4"] {
        let r = s.record(name);
        assert_eq!(r["status"], "error", "{r}");
        assert!(!r["error"].as_str().unwrap().is_empty());
    }
    // stdout is the table: a header and a row per file, errors marked, nothing else.
    let table = String::from_utf8(s.out.stdout.clone()).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("file") && lines[0].contains("fake score"),
        "{table}"
    );
    let row = |name: &str| *lines.iter().find(|l| l.contains(name)).unwrap();
    assert!(row("notes.mp4").contains(" error "), "{table}");
    assert!(row("truncated.webm").contains(" error "), "{table}");
    assert!(row("faces-cut.webm").contains(" 32"), "{table}");
    let csv = std::fs::read_to_string(s.report.parent().unwrap().join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.lines()
            .any(|l| l.contains("notes.mp4") && l.contains(",error,")),
        "{csv}"
    );
}

#[test]
fn a_second_run_skips_the_videos_already_scanned() {
    let s = scan();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("again.jsonl");
    std::fs::copy(s.report.join("results.jsonl"), &json).unwrap();
    let videos = s.videos.to_str().unwrap();
    let started = std::time::Instant::now();
    let out = sd2_scan(&[videos, "--json", json.to_str().unwrap(), "--strict"]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 4 videos already scanned"), "{err}");
    assert!(
        !err.contains("faces.webm: REAL") && !err.contains("faces.webm: FAKE"),
        "{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "--strict fails on the two unreadable files"
    );
    // Only the unreadable files were tried again.
    let records = read_records(&json);
    assert_eq!(records.len(), s.records.len() + 2);
    assert!(
        records[s.records.len()..]
            .iter()
            .all(|r| r["status"] == "error")
    );
    // The table still has every video, the resumed ones with their scores.
    let table = String::from_utf8(out.stdout).unwrap();
    let first = String::from_utf8(s.out.stdout.clone()).unwrap();
    assert_eq!(table, first);
    assert!(took.as_secs() < 30, "resuming took {took:?}");
    let quiet = sd2_scan(&[videos, "--json", json.to_str().unwrap(), "--quiet"]);
    assert!(quiet.status.success());
    assert!(quiet.stdout.is_empty(), "--quiet prints no table");
}

#[test]
fn the_report_opens_in_a_browser_with_every_image_loaded() {
    let s = scan();
    let index = s.report.join("index.html");
    let shot = s.report.join("screenshot.png");
    let options = Options {
        full_page: true,
        ..Options::default()
    };
    let check = check_page(&index, &shot, &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(check.is_clean(), "{:?}", check.problems());
    // Two timelines and six face thumbnails for each scanned video.
    assert_eq!(check.images_loaded.len(), 2 + 2 * 6);
    assert!(
        check.title.contains("of 2 videos judged fake"),
        "{}",
        check.title
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.contains("Not scanned") && html.contains("truncated.webm"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resources"
    );
}
