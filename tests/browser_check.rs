//! The browser check itself: Debian's headless Chromium opens local pages, and what a
//! person would see broken (a missing or undecodable image, a script error) is reported.

use std::path::{Path, PathBuf};

use sd2_e2e::browser::{Options, PageCheck, check_page};

/// Writes `files` (name, content) into a new folder and checks `index.html` there.
fn check(files: &[(&str, &[u8])]) -> (PageCheck, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let shot = dir.path().join("shot.png");
    let c = check_page(&dir.path().join("index.html"), &shot, &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    (c, dir)
}

/// Width and height of a PNG file, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[1..4], b"PNG", "{} is not a PNG", path.display());
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

const SVG: &[u8] = br#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="teal"/></svg>"#;

#[test]
fn a_clean_page_passes_and_its_screenshot_is_saved() {
    let page = br#"<!doctype html><title>Clean page</title><body style="background:#fed">
        <img src="a.svg" alt="a"> <img src="sub%20dir.svg" alt="b"><p>hello</p>
        <script>document.body.append("script ran")</script></body>"#;
    let (c, dir) = check(&[("index.html", page), ("a.svg", SVG), ("sub dir.svg", SVG)]);
    assert!(c.is_clean(), "{:?}", c.problems());
    assert_eq!(c.images_loaded.len(), 2);
    assert_eq!(c.title, "Clean page");
    assert_eq!(png_size(&dir.path().join("shot.png")), (1280, 800));
}

#[test]
fn a_missing_image_is_reported() {
    let page = br#"<!doctype html><title>t</title><img src="a.svg"><img src="thumbs/missing.png">"#;
    let (c, _dir) = check(&[("index.html", page), ("a.svg", SVG)]);
    assert!(!c.is_clean());
    assert_eq!(c.images_loaded.len(), 1);
    assert_eq!(c.broken_images.len(), 1, "{:?}", c.broken_images);
    assert!(
        c.broken_images[0].ends_with("/thumbs/missing.png"),
        "{:?}",
        c.broken_images
    );
    assert!(c.script_errors.is_empty(), "{:?}", c.script_errors);
}

#[test]
fn an_image_that_does_not_decode_is_reported() {
    let page = br#"<!doctype html><title>t</title><img src="face.png">"#;
    let (c, _dir) = check(&[("index.html", page), ("face.png", b"not a PNG at all")]);
    assert_eq!(c.images_loaded.len(), 0);
    assert_eq!(c.broken_images.len(), 1, "{:?}", c.broken_images);
    assert!(c.broken_images[0].ends_with("/face.png"));
}

#[test]
fn a_script_error_is_reported() {
    let page = br#"<!doctype html><title>t</title><p>text</p>
        <script>const plot = undefinedPlotFunction(3);</script>"#;
    let (c, _dir) = check(&[("index.html", page)]);
    assert!(!c.is_clean());
    assert!(c.broken_images.is_empty());
    assert_eq!(c.script_errors.len(), 1, "{:?}", c.script_errors);
    assert!(
        c.script_errors[0].contains("undefinedPlotFunction"),
        "{:?}",
        c.script_errors
    );
}

#[test]
fn a_page_that_does_not_exist_is_an_error_not_a_report() {
    let e = check_page(
        &PathBuf::from("/nonexistent/index.html"),
        Path::new("/tmp/never.png"),
        &Options::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/index.html"), "{e}");
}
