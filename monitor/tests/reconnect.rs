//! A live channel whose RTSP server goes away for 5 seconds and comes back, beside a
//! channel on a file, in one `sd2-monitor` started as a user starts it. The scenario runs
//! once; each test checks one thing it showed.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::rtsp::RtspServer;
use common::{Exit, Service};
use serde_json::Value;

/// What the scenario saw.
struct Seen {
    /// The live channel's state while its server was away.
    live_state_during_outage: String,
    /// Frames of the live channel when the server came back, and at the end.
    live_frames_at_resume: u64,
    live_frames_at_end: u64,
    live_state_at_end: String,
    live_reconnects: u64,
    /// Frames of the file channel when the server went away and when it came back.
    file_frames_at_stop: u64,
    file_frames_at_resume: u64,
    file_reconnects: u64,
    file_state_at_resume: String,
    metrics: String,
    /// The live channel's published lines when the server came back, and at the end.
    published_at_resume: usize,
    published_at_end: usize,
    evidence: Vec<(String, Vec<u8>)>,
    exit: Exit,
}

const OUTAGE: Duration = Duration::from_secs(5);

fn config(rtsp: &str, publish: &str) -> String {
    format!(
        r#"
[service]
reconnect_min_s = 0.5
reconnect_max_s = 2.0
stall_timeout_s = 4.0
drain_timeout_s = 5.0

[defaults]
analysis_fps = 1.0

[[channel]]
name = "live"
uri = "{rtsp}"
publish = {{ method = "file", location = "{publish}" }}

[[channel]]
name = "file"
uri = "{file}"
on_eos = "loop"
"#,
        file = common::demo_uri(),
    )
}

fn frames(s: &Service, channel: &str) -> u64 {
    s.channel(channel)["frames"].as_u64().unwrap()
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn scenario() -> &'static Seen {
    static SEEN: OnceLock<Result<Seen, String>> = OnceLock::new();
    common::once(&SEEN, || {
        let mut rtsp = RtspServer::start(&common::demo_video());
        let out = tempfile::tempdir().unwrap();
        let published = out.path().join("live.jsonl");
        let s = Service::start(&config(&rtsp.uri(), &published.display().to_string()));
        let minute = Duration::from_secs(60);
        s.wait_for("both channels to play", minute, |s| {
            frames(s, "live") >= 50 && frames(s, "file") >= 25
        });

        rtsp.stop();
        let stopped = Instant::now();
        let file_frames_at_stop = frames(&s, "file");
        s.wait_for("the live channel to notice", Duration::from_secs(15), |s| {
            s.channel("live")["state"] != "playing"
        });
        let live_state_during_outage = s.channel("live")["state"].as_str().unwrap().to_owned();
        std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
        let file_frames_at_resume = frames(&s, "file");
        let file_state_at_resume = s.channel("file")["state"].as_str().unwrap().to_owned();
        let live_frames_at_resume = frames(&s, "live");
        let published_at_resume = lines(&published);
        rtsp.resume();

        s.wait_for("the live channel to play again", minute, |s| {
            frames(s, "live") >= live_frames_at_resume + 50
        });
        // The file channel plays its fake segment (after 8 s) at least once.
        s.wait_for("evidence of an alert", minute, |s| {
            s.channel("file")["evidence_written"].as_u64().unwrap() > 0
        });
        let live = s.channel("live");
        let file = s.channel("file");
        let metrics = s.get("/metrics").1;
        let evidence_dir = s.dir.path().join("evidence/file");
        let evidence = std::fs::read_dir(&evidence_dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        let exit = s.terminate();
        Seen {
            live_state_during_outage,
            live_frames_at_resume,
            live_frames_at_end: live["frames"].as_u64().unwrap(),
            live_state_at_end: live["state"].as_str().unwrap().to_owned(),
            live_reconnects: live["reconnects"].as_u64().unwrap(),
            file_frames_at_stop,
            file_frames_at_resume,
            file_reconnects: file["reconnects"].as_u64().unwrap(),
            file_state_at_resume,
            metrics,
            published_at_resume,
            published_at_end: lines(&published),
            evidence,
            exit,
        }
    })
}

#[test]
fn a_live_channel_whose_server_goes_away_is_reconnecting() {
    assert_eq!(scenario().live_state_during_outage, "reconnecting");
}

#[test]
fn the_live_channel_plays_again_when_its_server_returns() {
    let s = scenario();
    assert_eq!(s.live_state_at_end, "playing");
    assert!(s.live_frames_at_end >= s.live_frames_at_resume + 50);
    assert!(s.live_reconnects >= 1);
}

#[test]
fn the_live_channel_publishes_again_after_reconnecting() {
    let s = scenario();
    assert!(
        s.published_at_resume > 0,
        "nothing published before the outage"
    );
    assert!(
        s.published_at_end > s.published_at_resume + 25,
        "{} lines at resume, {} at the end",
        s.published_at_resume,
        s.published_at_end
    );
}

#[test]
fn the_file_channel_keeps_playing_throughout() {
    let s = scenario();
    assert_eq!(s.file_state_at_resume, "playing");
    assert_eq!(s.file_reconnects, 0);
    // Real time is 25 frames a second; allow a loaded machine a fifth less.
    let played = s.file_frames_at_resume - s.file_frames_at_stop;
    assert!(
        played as f64 >= OUTAGE.as_secs_f64() * 25.0 * 0.8,
        "{played} frames in {OUTAGE:?}"
    );
}

#[test]
fn metrics_show_the_reconnect_of_the_live_channel_only() {
    let m = &scenario().metrics;
    let live = common::parse_metric(m, "sd2_reconnects_total{channel=\"live\"}").unwrap();
    assert!(live >= 1.0, "{m}");
    assert_eq!(
        common::parse_metric(m, "sd2_reconnects_total{channel=\"file\"}"),
        Some(0.0)
    );
    assert_eq!(
        common::parse_metric(m, "sd2_channel_up{channel=\"live\"}"),
        Some(1.0)
    );
}

#[test]
fn metrics_count_what_the_live_channel_published() {
    let m = &scenario().metrics;
    let sample = |name: &str| common::parse_metric(m, &format!("{name}{{channel=\"live\"}}"));
    assert!(sample("sd2_publish_published_total").unwrap() > 25.0, "{m}");
    assert_eq!(sample("sd2_publish_dropped_total"), Some(0.0));
    assert!(sample("sd2_publish_backlog").is_some());
    assert_eq!(
        common::parse_metric(m, "sd2_publish_backlog{channel=\"file\"}"),
        None,
        "a channel that does not publish has no publish metrics"
    );
}

#[test]
fn an_alert_leaves_a_marked_jpeg_and_a_sidecar() {
    let s = scenario();
    let (name, json) = s
        .evidence
        .iter()
        .find(|(n, _)| n.ends_with(".json"))
        .expect("a sidecar");
    let sidecar: Value = serde_json::from_slice(json).unwrap();
    assert_eq!(sidecar["channel"], "file");
    let track = sidecar["track_id"].as_u64().unwrap();
    assert!(name.ends_with(&format!("-track{track}.json")), "{name}");
    for field in [
        "time",
        "pts",
        "label",
        "fake_type",
        "fake_score",
        "scores",
        "bbox",
        "pixels",
    ] {
        assert!(!sidecar[field].is_null(), "{field} missing: {sidecar}");
    }
    assert!(sidecar["scores"]["REAL"].is_f64());
    let jpg_name = sidecar["image"].as_str().unwrap();
    let (_, jpg) = s
        .evidence
        .iter()
        .find(|(n, _)| n == jpg_name)
        .expect("the sidecar's image beside it");
    let img = image::load_from_memory(jpg).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (1280, 720));
    // The box's left edge, halfway down, is red.
    let p = &sidecar["pixels"];
    let (x, y, h) = (
        p[0].as_u64().unwrap() as u32,
        p[1].as_u64().unwrap() as u32,
        p[3].as_u64().unwrap() as u32,
    );
    let c = img.get_pixel(x + 1, y + h / 2).0;
    assert!(
        c[0] > 200 && c[1] < 80 && c[2] < 80,
        "{c:?} at the box's edge"
    );
}

#[test]
fn sigterm_exits_zero_with_nothing_on_stdout() {
    let e = &scenario().exit;
    assert!(e.status.success(), "{:?}\n{}", e.status, e.stderr);
    assert_eq!(e.stdout, "");
    assert!(
        e.took < Duration::from_secs(15),
        "{:?}\n{}",
        e.took,
        e.stderr
    );
}

#[test]
fn logs_are_json_lines_and_a_channel_event_names_its_channel() {
    let lines = common::log_lines(&scenario().exit.stderr);
    let event = |name: &str| {
        lines
            .iter()
            .find(|l| l["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event"))
    };
    assert_eq!(event("source_lost")["channel"], "live");
    assert_eq!(event("reconnecting")["channel"], "live");
    assert_eq!(event("alert")["channel"], "file");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    for name in ["starting", "playing", "stopped"] {
        let channels: Vec<&Value> = lines
            .iter()
            .filter(|l| l["event"] == name)
            .map(|l| &l["channel"])
            .collect();
        assert!(
            channels.contains(&&Value::from("live")),
            "{name}: {channels:?}"
        );
        assert!(
            channels.contains(&&Value::from("file")),
            "{name}: {channels:?}"
        );
    }
}
