//! `sd2-bench infer` on this CPU (tiny preset): what a run on a lent GPU relies on. The run goes
//! on when a reference cannot start, the JSON holds every figure, and `--deadline-s` stops
//! it from beginning batch sizes it has no time for, leaving the face path measured.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs sd2-bench with `args` after the small defaults below; returns its JSON.
fn bench(dir: &Path, args: &[&str]) -> Value {
    let json = dir.join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-bench"))
        .arg("infer")
        .args(["--frames", "1", "--rounds", "1", "--iterations", "1"])
        .args(["--batches", "64"])
        .args(["--reference-python", "/nonexistent/python3"])
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sd2-bench {args:?} failed:\n{text}");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn notes(v: &Value) -> Vec<&str> {
    v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

#[test]
fn a_reference_that_cannot_start_is_reported_and_our_paths_are_timed() {
    let dir = tempfile::tempdir().unwrap();
    // A later --batches replaces the one given first (64), as scripts/gpu/run.sh relies on.
    let v = bench(dir.path(), &["--batches", "2,1"]);
    assert_eq!(v["complete"], true);
    for row in ["ours, standard fp32", "ours, fused fp32", "ours, sd2 fp32"] {
        let r = v["crops_per_second"][row].as_object().unwrap();
        let batches: Vec<&str> = r.keys().map(|k| k.as_str()).collect();
        assert_eq!(batches, ["1", "2"], "{row}");
        assert!(
            r.values().all(|c| c.as_f64().unwrap() > 0.0),
            "{row}: {r:?}"
        );
    }
    let n = notes(&v);
    assert!(
        n.iter()
            .any(|n| n.starts_with("references not run") && n.contains("/nonexistent/python3")),
        "{n:?}"
    );
    // The fused and sd2 graphs compute what the standard graph does.
    for variant in ["fused fp32", "sd2 fp32"] {
        let drift = v["logit_drift"][variant].as_f64().unwrap();
        assert!(drift < 1e-4, "{variant}: {drift}");
    }
    assert!(v["face_path"]["crops_per_second"].as_f64().unwrap() > 0.0);
    // Where a frame's time goes accounts for the frame: MTCNN, cropping and classifying
    // add up to nearly all of it (the rest is allocating the crops' buffer).
    let face = &v["face_path"];
    let frame_ms = 1000.0 / face["frames_per_second"].as_f64().unwrap();
    let parts: f64 = ["mtcnn", "crop", "classify"]
        .iter()
        .map(|k| face["ms_per_frame"][k].as_f64().unwrap())
        .sum();
    assert!(
        parts <= frame_ms * 1.001 && parts > 0.9 * frame_ms,
        "{parts} ms of {frame_ms} ms"
    );
    assert!(face["ms_per_frame"]["mtcnn"].as_f64().unwrap() > 0.0);
    // On the CPU MTCNN holds a session per network; the other way is timed beside it.
    assert_eq!(face["mtcnn_sessions"], "per network");
    let other = &v["face_path_other_sessions"];
    assert_eq!(other["mtcnn_sessions"], "per shape");
    // Both find the same faces: as many crops per frame.
    let per_frame = |f: &Value| {
        f["crops_per_second"].as_f64().unwrap() / f["frames_per_second"].as_f64().unwrap()
    };
    assert!(per_frame(face) > 0.0);
    assert!((per_frame(other) - per_frame(face)).abs() < 1e-6 * per_frame(face));
}

#[test]
fn no_batch_size_starts_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let v = bench(dir.path(), &["--batches", "4,1", "--deadline-s", "0"]);
    assert_eq!(v["complete"], false);
    let rows = v["crops_per_second"].as_object().unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let n = notes(&v);
    assert!(
        n.iter()
            .any(|n| n.starts_with("batch sizes [4, 1] not timed")),
        "{n:?}"
    );
    // The face path runs before the timings, so a run cut short keeps it.
    assert!(v["face_path"]["frames_per_second"].as_f64().unwrap() > 0.0);
}

/// `--streams 2`: two face paths at once, each with an MTCNN of its own and the classifier
/// shared, as two `sd2facedetect` elements and one `sd2deepfake` service in a process.
#[test]
fn streams_at_once_find_the_faces_one_stream_finds() {
    let dir = tempfile::tempdir().unwrap();
    let v = bench(
        dir.path(),
        &["--frames", "2", "--streams", "2", "--deadline-s", "0"],
    );
    let one = &v["face_path"];
    let two = &v["face_path_streams"][0];
    assert_eq!(one["streams"], 1);
    assert_eq!(two["streams"], 2);
    assert_eq!(two["frames"], 2);
    // Each stream runs both frames, so the crops per frame match the single stream's.
    let per_frame = |f: &Value| {
        f["crops_per_second"].as_f64().unwrap() / f["frames_per_second"].as_f64().unwrap()
    };
    assert!(per_frame(one) > 0.0);
    assert!(
        (per_frame(two) - per_frame(one)).abs() < 1e-6 * per_frame(one),
        "{} crops a frame against {}",
        per_frame(two),
        per_frame(one)
    );
    assert!(two["ms_per_frame"]["mtcnn"].as_f64().unwrap() > 0.0);
    assert_eq!(v["face_path_streams"].as_array().unwrap().len(), 1);
}

/// `--kernel-table` prints one encoder layer's operators for each variant, from ONNX
/// Runtime's profiler: the `sd2` graph's own operators among them, with a time each.
#[test]
fn the_kernel_table_lists_one_layer_of_each_variant() {
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-bench"))
        .args(["infer", "--kernel-table", "--batches", "4", "--rounds", "2"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables: Vec<&str> = text.split("kernels of encoder layer 1, ").skip(1).collect();
    let names: Vec<&str> = tables
        .iter()
        .map(|t| t.split(" at batch").next().unwrap())
        .collect();
    assert_eq!(names, ["standard fp32", "fused fp32", "sd2 fp32"], "{text}");
    let sd2 = tables[2];
    for op in [
        "Linear",
        "BiasQuickGelu",
        "MultiHeadAttention",
        "SkipLayerNormalization",
    ] {
        let line = sd2
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{op} ")))
            .unwrap_or_else(|| panic!("no {op} in\n{sd2}"));
        let us: f64 = line
            .split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(us > 0.0, "{line}");
    }
    let ops: Vec<&str> = sd2
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        !ops.contains(&"QuickGelu") && !ops.contains(&"Concat"),
        "{sd2}"
    );
}
