//! Training runs end to end on the demo set: the loss goes down, held-out accuracy beats
//! chance by a wide margin, a killed run resumes to the weights of an uninterrupted one,
//! and rows whose image is missing are reported and skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use sd2_train::data::manifest::{Manifest, Split};
use sd2_train::eval;
use sd2_train::labels::TextLabels;
use sd2_train::tokenizer::ClipTokenizer;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sd2-train")
}

/// Whether `sd2-train args` succeeded, and what it printed.
fn sd2_train(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run(args: &[&str]) -> String {
    let (ok, text) = sd2_train(args);
    assert!(ok, "sd2-train {args:?} failed:\n{text}");
    text
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `fit` of the tiny preset on `manifest` into `out`, one micro-batch a step, one text
/// label a type, and `extra`.
fn tiny_fit(manifest: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let (m, o) = (manifest.to_str().unwrap(), out.to_str().unwrap());
    let base = ["fit", "--manifest", m, "--out", o, "--preset", "tiny"];
    let tail = ["--accumulation", "1", "--labels-per-type", "1"];
    base.iter()
        .chain(extra)
        .chain(&tail)
        .map(|s| s.to_string())
        .collect()
}

/// What `sd2-train` says when it fails as it should.
fn run_failing(args: &[&str]) -> String {
    let (ok, text) = sd2_train(args);
    assert!(!ok, "sd2-train {args:?} succeeded:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

fn demo_set(dir: &Path, per_type: usize) -> PathBuf {
    run(&[
        "make-demo-set",
        "--out",
        dir.to_str().unwrap(),
        "--per-type",
        &per_type.to_string(),
    ]);
    dir.join("manifest.jsonl")
}

fn losses(run_dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn the_loss_goes_down_and_held_out_accuracy_beats_chance() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 400);
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let m = manifest.to_str().unwrap();
    run(&[
        "fit",
        "--manifest",
        m,
        "--out",
        o,
        "--preset",
        "tiny",
        "--lr",
        "3e-3",
        "--batch",
        "32",
        "--accumulation",
        "1",
        "--epochs",
        "5",
        "--checkpoint-every",
        "1000",
        "--labels-per-type",
        "1",
        "--no-augment",
    ]);
    let l = losses(&out);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&l[..10]), mean(&l[l.len() - 10..]));
    assert!(last < 0.5 * first, "loss from {first:.3} to {last:.3}");

    let device = Device::flex();
    let ckpt = sd2_train::train::checkpoint::latest(&out).unwrap();
    let (model, state) = eval::load_trained(&ckpt, &device).unwrap();
    let labels = TextLabels::default_labels();
    let tok = ClipTokenizer::from_vocab_file(&state.config.vocab).unwrap();
    let manifest = Arc::new(Manifest::open(&manifest, None).unwrap());
    let reading = eval::Reading {
        batch: 64,
        workers: 2,
    };
    let r = eval::evaluate(
        &model,
        &state,
        manifest,
        Split::Test,
        (&labels, &tok),
        reading,
    )
    .unwrap();
    assert_eq!(r.frame.count, 500);
    // Chance is 20% over five types and an AUC of 0.5.
    assert!(
        r.type_accuracy > 0.45,
        "type accuracy {:.3}, confusion {:?}",
        r.type_accuracy,
        r.confusion
    );
    assert!(r.frame.auc.unwrap() > 0.65, "AUC {:?}", r.frame.auc);
}

/// Every parameter's values, by visiting order.
struct Collect(Vec<Vec<f32>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0
            .push(p.val().into_data().try_to_vec::<f32>().unwrap());
    }
}

fn weights(ckpt: &Path) -> Vec<Vec<f32>> {
    let (model, _) = eval::load_trained(ckpt, &Device::flex()).unwrap();
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 24);
    let m = manifest.to_str().unwrap().to_owned();
    let args = |out: &Path| -> Vec<String> {
        [
            "fit",
            "--manifest",
            &m,
            "--out",
            out.to_str().unwrap(),
            "--preset",
            "tiny",
            "--lr",
            "1e-3",
            "--batch",
            "8",
            "--accumulation",
            "2",
            "--epochs",
            "3",
            "--checkpoint-every",
            "2",
            "--keep-checkpoints",
            "100",
            "--workers",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Uninterrupted.
    let straight = dir.path().join("straight");
    let a: Vec<String> = args(&straight);
    run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // Killed once the second checkpoint is on disk, then resumed.
    let killed = dir.path().join("killed");
    let mut child = Command::new(bin())
        .args(args(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker = killed.join("checkpoints/step-00000004/state.json");
    let start = std::time::Instant::now();
    while !marker.exists() {
        assert!(start.elapsed().as_secs() < 300, "no checkpoint at step 4");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Resume from the first checkpoint, so the steps the killed run had logged after it are
    // done again.
    for (step, dir) in sd2_train::train::checkpoint::list(&killed) {
        if step > 2 {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    let out = run(&["fit", "--out", killed.to_str().unwrap(), "--resume"]);
    assert!(out.contains("resuming from"), "{out}");
    // One metrics line per step, as if the run had never stopped.
    assert_eq!(losses(&killed), losses(&straight));

    let last = |run: &Path| sd2_train::train::checkpoint::latest(run).unwrap();
    let (s1, s2) = (
        sd2_train::train::checkpoint::read_state(&last(&straight)).unwrap(),
        sd2_train::train::checkpoint::read_state(&last(&killed)).unwrap(),
    );
    assert_eq!(
        (s1.step, s1.epoch, s1.images),
        (s2.step, s2.epoch, s2.images)
    );
    let (w1, w2) = (weights(&last(&straight)), weights(&last(&killed)));
    assert_eq!(w1.len(), w2.len());
    for (i, (a, b)) in w1.iter().zip(&w2).enumerate() {
        assert_eq!(a, b, "parameter {i} differs after resuming");
    }
    // The runs did train: the final weights differ from the first checkpoint's.
    let first = sd2_train::train::checkpoint::list(&straight)[0].1.clone();
    assert_ne!(weights(&first), w1);
}

#[test]
fn rows_with_missing_images_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 4);
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("{\"image\": \"images/REAL/nope.png\", \"type\": \"REAL\"}\n");
    text.push_str("this line is not JSON\n");
    std::fs::write(&manifest, text).unwrap();
    let out = dir.path().join("run");
    let log = run(&[
        "fit",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--preset",
        "tiny",
        "--lr",
        "1e-3",
        "--batch",
        "8",
        "--accumulation",
        "1",
        "--epochs",
        "1",
    ]);
    assert!(
        log.contains("1 lines skipped") && log.contains("line 22"),
        "{log}"
    );
    assert!(
        log.contains("nope.png") && log.contains("rows skipped"),
        "{log}"
    );
}

#[test]
fn two_devices_share_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 16);
    let out = dir.path().join("run");
    let args = |out: &Path| {
        let flags = ["--lr", "3e-3", "--batch", "8", "--epochs", "2"];
        tiny_fit(
            &manifest,
            out,
            &[&flags[..], &["--devices", "flex,flex"]].concat(),
        )
    };
    let log = run(&strs(&args(&out)));
    assert!(log.contains("trained"), "{log}");
    let l = losses(&out);
    assert!(l.last().unwrap() < l.first().unwrap(), "{l:?}");
    // 60 training images, 16 per step over two devices: 4 steps an epoch.
    assert_eq!(l.len(), 8);
    // Each device's dropout masks are keyed by the seed, the batch and the shard, whatever
    // the threads' timing: the same run again computes the same losses (so a resumed one
    // can too).
    let again = dir.path().join("again");
    run(&strs(&args(&again)));
    assert_eq!(losses(&again), l);
}

#[test]
fn a_run_folder_is_not_overwritten_and_a_resume_keeps_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 4);
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let started = tiny_fit(
        &manifest,
        &out,
        &["--batch", "8", "--epochs", "1", "--lr", "1e-3"],
    );
    run(&strs(&started));
    let first = sd2_train::train::checkpoint::latest(&out).unwrap();

    // A new run into the same folder would replace the first run's checkpoints.
    let e = run_failing(&strs(&started));
    assert!(
        e.contains("holds a run already") && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(sd2_train::train::checkpoint::latest(&out).unwrap(), first);

    // Settings that change what the run computes are refused by name, not ignored.
    let e = run_failing(&["fit", "--out", o, "--resume", "--lr", "1", "--no-clam"]);
    assert!(e.contains("--lr, --no-clam would change"), "{e}");

    // Another manifest, even under the same settings, would draw another data order.
    let other = dir.path().join("other.jsonl");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    let first_row = text.lines().next().unwrap().to_owned();
    text.push_str(&first_row);
    text.push('\n');
    std::fs::write(&other, text).unwrap();
    let image_root = manifest.parent().unwrap().to_str().unwrap();
    let e = run_failing(&[
        "fit",
        "--out",
        o,
        "--resume",
        "--manifest",
        other.to_str().unwrap(),
        "--image-root",
        image_root,
    ]);
    assert!(e.contains("not the manifest this run started with"), "{e}");

    // When it stops may change: the run goes on for a second epoch.
    let log = run(&["fit", "--out", o, "--resume", "--epochs", "2"]);
    assert!(log.contains("resuming from"), "{log}");
    let steps = losses(&out).len();
    let state = sd2_train::train::checkpoint::read_state(
        &sd2_train::train::checkpoint::latest(&out).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (state.step, state.epoch, state.config.epochs),
        (steps, 2, 2)
    );
    assert_eq!(state.config.learning_rate, 1e-3);
}

#[test]
fn a_diverging_run_stops_before_saving_nan_weights() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 4);
    let out = dir.path().join("run");
    let flags = ["--batch", "4", "--epochs", "4", "--checkpoint-every", "1"];
    let e = run_failing(&strs(&tiny_fit(
        &manifest,
        &out,
        &[&flags[..], &["--lr", "1e4"]].concat(),
    )));
    assert!(e.contains("training diverged") && e.contains("--lr"), "{e}");
    // Every checkpoint it left holds finite weights.
    let saved = sd2_train::train::checkpoint::list(&out);
    for (_, c) in &saved {
        assert!(
            weights(c).iter().flatten().all(|w| w.is_finite()),
            "{}",
            c.display()
        );
    }
    assert!(losses(&out).iter().all(|l| l.is_finite()));

    // A run that can read none of its images says so instead of training on nothing.
    let out2 = dir.path().join("run2");
    let bad_root = ["--lr", "1e-3", "--image-root", "/nonexistent"];
    let e = run_failing(&strs(&tiny_fit(
        &manifest,
        &out2,
        &[&flags[..], &bad_root].concat(),
    )));
    assert!(
        e.contains("not one image of the train split could be read"),
        "{e}"
    );
    assert!(sd2_train::train::checkpoint::list(&out2).is_empty());
}

#[test]
fn a_damaged_checkpoint_or_a_lost_image_folder_costs_no_training() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 4);
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let flags = ["--batch", "4", "--epochs", "1", "--lr", "1e-3"];
    let keep = ["--checkpoint-every", "1", "--keep-checkpoints", "100"];
    run(&strs(&tiny_fit(
        &manifest,
        &out,
        &[&flags[..], &keep].concat(),
    )));
    let saved = sd2_train::train::checkpoint::list(&out);
    assert!(saved.len() >= 3, "{saved:?}");

    // The image folder is gone when the run resumes: it stops, and saves nothing that
    // would move the data position past rows it never trained on.
    let e = run_failing(&[
        "fit",
        "--out",
        o,
        "--resume",
        "--epochs",
        "2",
        "--image-root",
        "/nonexistent",
    ]);
    assert!(e.contains("not one image"), "{e}");
    assert_eq!(sd2_train::train::checkpoint::list(&out), saved);

    // The newest checkpoint is damaged: the run resumes from the one before, sets the
    // damaged one aside, and keeps what it saves even with one checkpoint kept.
    let (newest_step, newest) = saved.last().unwrap().clone();
    std::fs::write(newest.join("model.bpk"), b"truncated").unwrap();
    let log = run(&[
        "fit",
        "--out",
        o,
        "--resume",
        "--epochs",
        "2",
        "--keep-checkpoints",
        "1",
    ]);
    assert!(
        log.contains("cannot be resumed from") && log.contains("set aside"),
        "{log}"
    );
    let left = sd2_train::train::checkpoint::list(&out);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].0 > newest_step);
    assert!(weights(&left[0].1).iter().flatten().all(|w| w.is_finite()));
    assert!(
        out.join(format!("checkpoints/.damaged-step-{newest_step:08}"))
            .exists()
    );
}

#[test]
fn a_resumed_run_at_its_end_says_so_on_one_line_and_trains_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 4);
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let flags = ["--batch", "8", "--epochs", "1", "--lr", "1e-3"];
    run(&strs(&tiny_fit(&manifest, &out, &flags)));
    let saved = sd2_train::train::checkpoint::list(&out);
    let (step, newest) = saved.last().unwrap().clone();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();

    // At the end of its epochs, and past a --max-steps lowered below where it is.
    for extra in [&[][..], &["--max-steps", "1"]] {
        let args = [&["fit", "--out", o, "--resume"][..], extra].concat();
        let done = Command::new(bin()).args(&args).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr),
        );
        assert!(done.status.success(), "{args:?}: {stdout}{stderr}");
        assert_eq!(stdout, "", "{args:?}: nothing was trained to report");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&newest.display().to_string())
                && stderr.contains(&format!("step {step}"))
                && stderr.contains("finished"),
            "{args:?}: {stderr}"
        );
        assert_eq!(sd2_train::train::checkpoint::list(&out), saved);
        assert_eq!(
            std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
            metrics
        );
    }
}

#[test]
fn bf16_mixed_precision_follows_the_f32_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = demo_set(&dir.path().join("data"), 16);
    let fit = |precision: &str| {
        let out = dir.path().join(precision);
        let flags = ["--lr", "3e-3", "--batch", "16", "--epochs", "3"];
        let args = tiny_fit(
            &manifest,
            &out,
            &[&flags[..], &["--precision", precision]].concat(),
        );
        run(&strs(&args));
        out
    };
    let (full, mixed) = (fit("f32"), fit("bf16"));
    let (lf, lm) = (losses(&full), losses(&mixed));
    assert_eq!(lf.len(), lm.len());
    assert!(lm.last().unwrap() < &(0.6 * lm[0]), "{lm:?}");
    // bfloat16 products (8 significant bits) move each step's loss by well under 1%.
    for (f, m) in lf.iter().zip(&lm) {
        assert!((f - m).abs() < 0.01 * f, "f32 {lf:?}\nbf16 {lm:?}");
    }
    assert_ne!(lf, lm, "the bf16 run computed in f32");
    let state = sd2_train::train::checkpoint::read_state(
        &sd2_train::train::checkpoint::latest(&mixed).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state.config.precision,
        sd2_train::precision::Precision::Bf16
    );
}
