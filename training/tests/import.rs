//! `sd2-train import-deepfakebench` turns DeepfakeBench JSON files into a manifest.

use std::process::Command;

use sd2_models::taxonomy::DeepfakeType;
use sd2_train::data::manifest::{Manifest, Split};

#[test]
fn faceforensics_and_df40_files_become_typed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ff = dir.path().join("FaceForensics++.json");
    std::fs::write(
        &ff,
        r#"{"FaceForensics++": {
            "FF-real": {"train": {"c23": {"000": {"label": "FF-real", "frames": ["FF\\000\\0.png", "FF\\000\\1.png"]}},
                                  "c40": {"000": {"label": "FF-real", "frames": ["c40/000/0.png"]}}},
                        "test": {"c23": {"001": {"label": "FF-real", "frames": ["FF/001/0.png"]}}}},
            "FF-F2F": {"train": {"c23": {"000_003": {"label": "FF-F2F", "frames": ["F2F/000_003/0.png"]}}}},
            "FF-NEW": {"train": {"c23": {"x": {"label": "FF-NEW", "frames": ["NEW/x/0.png", "NEW/x/1.png"]}}}}
        }}"#,
    )
    .unwrap();
    let df40 = dir.path().join("simswap_ff.json");
    std::fs::write(
        &df40,
        r#"{"simswap_ff": {"simswap_Fake": {"train": {"000_003": {"label": "simswap_Fake", "frames": ["DF40/simswap/ff/000_003/0.png"]}},
                                             "val": {"001_004": {"label": "simswap_Fake", "frames": ["DF40/simswap/ff/001_004/0.png"]}}}}}"#,
    )
    .unwrap();
    let out = dir.path().join("manifest.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_sd2-train"))
        .args(["import-deepfakebench", "--json"])
        .arg(&ff)
        .arg("--json")
        .arg(&df40)
        .arg("--root")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped 2 frames of label `FF-NEW`"),
        "{stderr}"
    );
    let m = Manifest::open(&out, None).unwrap();
    assert_eq!(m.entries.len(), 6);
    let rows: Vec<_> = (0..6).map(|i| m.row(i).unwrap()).collect();
    let kinds: Vec<DeepfakeType> = rows.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == DeepfakeType::Real).count(),
        3
    );
    assert!(
        kinds.contains(&DeepfakeType::FaceReenactment) && kinds.contains(&DeepfakeType::FaceSwap)
    );
    assert!(
        rows.iter()
            .all(|r| !r.image.contains('\\') && r.image.starts_with(dir.path().to_str().unwrap()))
    );
    assert!(
        rows.iter().all(|r| !r.image.contains("c40")),
        "the c23 level is taken"
    );
    assert_eq!(m.split(Split::Test).len(), 1);
    assert_eq!(m.split(Split::Val).len(), 1);
    assert!(
        rows.iter()
            .any(|r| r.group == "simswap_ff/simswap_Fake/000_003")
    );
    assert!(
        rows.iter()
            .any(|r| r.group == "FaceForensics++/FF-F2F/000_003")
    );
}
