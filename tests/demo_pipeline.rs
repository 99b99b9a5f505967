//! The README's main command, run as a user runs it: the demo video through
//! `gst-launch-1.0 … sd2facedetect ! sd2json location=-`, one JSON line per frame.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The commands of the README's first code block.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split("```")
        .nth(1)
        .expect("a code block in the README");
    block
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split('#').next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn readme_starts_with_the_demo_and_the_test_command() {
    assert_eq!(
        readme_commands(),
        vec!["scripts/demo.sh", "scripts/test.sh"]
    );
}

/// The README's main command's output, run once for all the tests here.
fn demo_lines() -> &'static [Value] {
    static LINES: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    LINES.get_or_init(run_demo)
}

fn run_demo() -> Vec<Value> {
    let main = &readme_commands()[0];
    let out = Command::new(root().join(main))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{main} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Mean fake score per track over frames `range`.
fn track_scores(lines: &[Value], range: std::ops::Range<usize>) -> Vec<(u64, f64, u64)> {
    let mut tracks: std::collections::BTreeMap<u64, (f64, usize, u64)> = Default::default();
    for l in &lines[range] {
        for o in l["objects"].as_array().unwrap() {
            let t = o["deepfake"]["track_id"].as_u64().unwrap();
            let e = tracks
                .entry(t)
                .or_insert((0.0, 0, o["x"].as_u64().unwrap()));
            e.0 += o["deepfake"]["fake_score"].as_f64().unwrap();
            e.1 += 1;
        }
    }
    tracks
        .into_iter()
        .filter(|(_, v)| v.1 >= 50)
        .map(|(t, v)| (t, v.0 / v.1 as f64, v.2))
        .collect()
}

#[test]
fn demo_prints_one_classified_json_line_per_frame() {
    let lines = demo_lines();
    // 12 s at 25 fps: the astronaut for 100 frames, the six-face photo for 100, the same
    // photo with one face swapped for 100.
    assert_eq!(lines.len(), 300);
    let mut previous = None;
    for (i, l) in lines.iter().enumerate() {
        let ts = l["timestamp"].as_u64().expect("a timestamp");
        assert!(previous.is_none_or(|p| ts > p), "timestamps increase");
        previous = Some(ts);
        assert_eq!(
            l["resolution"],
            serde_json::json!({"width": 1280, "height": 720})
        );
        assert!(
            l["source"].as_str().unwrap().ends_with("faces.webm"),
            "{}",
            l["source"]
        );
        let objects = l["objects"].as_array().unwrap();
        if i < 100 {
            assert_eq!(objects.len(), 1, "frame {i}: {objects:?}");
        } else {
            // Six people face the camera; two more, small and in the back, score near 0.9
            // and come and go with compression and zoom.
            assert!(
                (6..=8).contains(&objects.len()),
                "frame {i}: {} faces",
                objects.len()
            );
        }
        let verdict = &l["frame_verdict"];
        assert_eq!(
            verdict["faces"].as_u64().unwrap() as usize,
            objects.len(),
            "frame {i}"
        );
        assert_eq!(verdict["model_name"], "sd2-demo");
        let mut best: f64 = 0.0;
        for o in objects {
            let (x, y, w, h) = (
                o["x"].as_u64().unwrap(),
                o["y"].as_u64().unwrap(),
                o["w"].as_u64().unwrap(),
                o["h"].as_u64().unwrap(),
            );
            // min-face-size bounds the pyramid's smallest window; the box
            // regression may still shrink a face a little below it.
            assert!(
                x + w <= 1280 && y + h <= 720 && w >= 10 && h >= 10,
                "frame {i}: {o}"
            );
            let d = &o["detection"];
            assert!(d["confidence"].as_f64().unwrap() > 0.9);
            let b = &d["bounding_box"];
            assert!(b["x_min"].as_f64().unwrap() < b["x_max"].as_f64().unwrap());
            let f = &o["deepfake"];
            let p: Vec<f64> = ["REAL", "FS", "FR", "EFS", "FE"]
                .iter()
                .map(|k| f[k].as_f64().unwrap())
                .collect();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-3, "frame {i}: {f}");
            assert!((f["fake_score"].as_f64().unwrap() - (1.0 - p[0])).abs() < 1e-6);
            assert!(["REAL", "FS", "FR", "EFS", "FE"].contains(&f["label"].as_str().unwrap()));
            best = best.max(f["fake_score"].as_f64().unwrap());
        }
        assert!(
            (verdict["fake_score"].as_f64().unwrap() - best).abs() < 1e-6,
            "frame {i}"
        );
    }
    // The astronaut drifts right: her face moves with her, as one track.
    let x = |i: usize| lines[i]["objects"][0]["x"].as_u64().unwrap();
    assert!(x(99) > x(0) + 300, "face x from {} to {}", x(0), x(99));
    let ids: std::collections::BTreeSet<u64> = (0..100)
        .map(|i| {
            lines[i]["objects"][0]["deepfake"]["track_id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[test]
fn the_demo_model_flags_the_swapped_face() {
    let lines = demo_lines();
    // The real astronaut reads as real.
    let real = (0..100)
        .filter(|&i| {
            lines[i]["objects"][0]["deepfake"]["fake_score"]
                .as_f64()
                .unwrap()
                < 0.5
        })
        .count();
    assert!(
        real >= 90,
        "the astronaut is judged real on {real} of 100 frames"
    );
    // The third person from the left has another's face in the last segment: that face
    // scores higher than the same person unswapped, and above the threshold.
    let third = |range| {
        let mut t = track_scores(lines, range);
        assert!(t.len() >= 6, "{t:?}");
        t.sort_by_key(|t| t.2);
        t[2]
    };
    let (before, after) = (third(100..200), third(200..300));
    assert!(
        after.1 > 0.5,
        "the swapped face (track {}) scores {:.2}",
        after.0,
        after.1
    );
    assert!(
        after.1 > before.1 + 0.2,
        "swapped {:.2}, unswapped {:.2}",
        after.1,
        before.1
    );
}
