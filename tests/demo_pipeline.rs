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

#[test]
fn demo_prints_one_json_line_per_frame_with_the_faces() {
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
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // 8 s at 25 fps: the astronaut for 100 frames, the six-face photo for 100.
    assert_eq!(lines.len(), 200);
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
        for o in objects {
            let (x, y, w, h) = (
                o["x"].as_u64().unwrap(),
                o["y"].as_u64().unwrap(),
                o["w"].as_u64().unwrap(),
                o["h"].as_u64().unwrap(),
            );
            assert!(
                x + w <= 1280 && y + h <= 720 && w >= 20 && h >= 20,
                "frame {i}: {o}"
            );
            let d = &o["detection"];
            assert!(d["confidence"].as_f64().unwrap() > 0.9);
            let b = &d["bounding_box"];
            assert!(b["x_min"].as_f64().unwrap() < b["x_max"].as_f64().unwrap());
        }
    }
    // The astronaut drifts right: her face moves with her.
    let x = |i: usize| lines[i]["objects"][0]["x"].as_u64().unwrap();
    assert!(x(99) > x(0) + 300, "face x from {} to {}", x(0), x(99));
}
