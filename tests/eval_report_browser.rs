//! The report of `sd2-train eval --report DIR` opens in a real browser: Debian's headless
//! Chromium loads its `index.html`, every image loads, no script fails, no request fails,
//! and a screenshot is taken. The check itself is shown to catch a broken image and a
//! script error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sd2_e2e::browser::{Options, PageCheck, check_page};

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn sd2_train(args: &[&str]) {
    let out = Command::new(root().join("target/release/sd2-train"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sd2-train {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A report of a tiny model trained for a few steps on a small demo set, as a user makes
/// one: the project's own commands.
fn report() -> &'static Path {
    static REPORT: OnceLock<PathBuf> = OnceLock::new();
    REPORT.get_or_init(|| {
        // Built with the workspace's features, as `cargo test --workspace` builds it, so
        // that this is a no-op there rather than a second build of the dependencies.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--release",
                "--workspace",
                "--bin",
                "sd2-train",
            ])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(built.success(), "building sd2-train failed");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-report-browser");
        let _ = std::fs::remove_dir_all(&dir);
        let (set, run, report) = (dir.join("set"), dir.join("run"), dir.join("report"));
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        let manifest = s(&set.join("manifest.jsonl"));
        sd2_train(&["make-demo-set", "--out", &s(&set), "--per-type", "16"]);
        sd2_train(&[
            "fit",
            "--manifest",
            &manifest,
            "--out",
            &s(&run),
            "--preset",
            "tiny",
            "--lr",
            "3e-3",
            "--batch",
            "16",
            "--accumulation",
            "1",
            "--epochs",
            "2",
            "--labels-per-type",
            "1",
            "--no-augment",
            "--workers",
            "2",
        ]);
        sd2_train(&[
            "eval",
            "--checkpoint",
            &s(&run),
            "--manifest",
            &manifest,
            "--report",
            &s(&report),
            "--workers",
            "2",
        ]);
        report
    })
}

fn check(page: &Path, shot: &Path) -> PageCheck {
    let options = Options {
        width: 1280,
        height: 1800,
        ..Options::default()
    };
    check_page(page, shot, &options).unwrap_or_else(|e| panic!("{e}"))
}

/// Width and height of a PNG file, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_report_opens_in_chromium_with_every_image_loaded_and_no_error() {
    let report = report();
    let shot = report.with_file_name("screenshot.png");
    let c = check(&report.join("index.html"), &shot);
    assert!(c.problems().is_empty(), "{:#?}", c.problems());
    assert!(c.title.starts_with("Evaluation of SD²"), "{}", c.title);
    let loaded: Vec<&str> = c
        .images_loaded
        .iter()
        .map(|s| s.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(loaded, ["roc.svg", "pr.svg", "confusion.svg", "scores.svg"]);
    assert_eq!(png_size(&shot), (1280, 1800));
    let bytes = std::fs::metadata(&shot).unwrap().len();
    assert!(
        bytes > 50_000,
        "a {bytes}-byte screenshot shows next to nothing"
    );
}

#[test]
fn a_plot_missing_from_the_report_is_a_broken_image() {
    let report = report();
    let copy = report.with_file_name("report-without-roc");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(report).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "roc.svg" {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let c = check(&copy.join("index.html"), &copy.join("shot.png"));
    assert_eq!(c.broken_images.len(), 1, "{:?}", c.broken_images);
    assert!(
        c.broken_images[0].ends_with("/roc.svg"),
        "{:?}",
        c.broken_images
    );
    assert_eq!(c.images_loaded.len(), 3);
    assert!(!c.problems().is_empty());
}

#[test]
fn a_script_error_and_an_undecodable_image_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.png"), "not a PNG").unwrap();
    let page = dir.path().join("index.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><title>t</title><img src=\"bad.png\">\
         <script>undefinedFunction()</script>",
    )
    .unwrap();
    let c = check(&page, &dir.path().join("shot.png"));
    assert!(
        c.broken_images[0].ends_with("/bad.png"),
        "{:?}",
        c.broken_images
    );
    assert_eq!(c.script_errors.len(), 1, "{:?}", c.script_errors);
    assert!(
        c.script_errors[0].contains("undefinedFunction"),
        "{:?}",
        c.script_errors
    );
}
