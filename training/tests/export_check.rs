//! `export --check`: a file agrees with the model it was exported from, run as the elements
//! run it, and not with another model; the command prints the agreement, or fails.

use std::process::Command;

use burn::prelude::*;
use sd2_models::onnx::Precision;
use sd2_models::paths;
use sd2_train::clip::ClipConfig;
use sd2_train::export::check::check;
use sd2_train::export::{ExportInfo, Kernels, Variant, export};
use sd2_train::labels::TextLabels;
use sd2_train::model::Sd2Model;
use sd2_train::tokenizer::ClipTokenizer;
use sd2_train::train::checkpoint::RunState;

#[test]
fn a_file_agrees_with_its_own_model_and_not_with_another() {
    let st = RunState::untrained(ClipConfig::tiny(), paths::clip_vocab());
    let tok = ClipTokenizer::from_vocab_file(&st.config.vocab).expect("run scripts/setup.sh");
    let labels = TextLabels::default_labels();
    let device = Device::flex();
    device.seed(1);
    let model = Sd2Model::new(&st.config.model, &device);
    let other = Sd2Model::new(&st.config.model, &device);
    let dir = tempfile::tempdir().unwrap();
    let info = ExportInfo {
        model_name: "check".into(),
        model_version: "1".into(),
    };
    // The standard graph in both precisions, and the graph of SD²'s own operators, whose
    // CPU kernels compute what the fused graph computes.
    let variants = [
        (Precision::F32, Kernels::Ort),
        (Precision::F16, Kernels::Ort),
        (Precision::F32, Kernels::Sd2),
    ];
    for (precision, kernels) in variants {
        let path = dir.path().join(format!("{precision:?}-{kernels:?}.onnx"));
        let variant = Variant {
            precision,
            fused: kernels == Kernels::Sd2,
            kernels,
        };
        export(&model, &st, &labels, &tok, variant, &info)
            .write(&path)
            .unwrap();
        let own = check(&model, &labels, &tok, &path, precision, 3).unwrap();
        assert!(own.holds(), "{precision:?} {kernels:?}: {own:?}");
        let wrong = check(&other, &labels, &tok, &path, precision, 3).unwrap();
        assert!(!wrong.holds(), "{precision:?} {kernels:?}: {wrong:?}");
    }
}

#[test]
fn export_check_prints_the_agreement_of_a_trained_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sd2-train");
    let run = |args: &[&str]| {
        let out = Command::new(bin).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    run(&["make-demo-set", "--out", &p("data"), "--per-type", "4"]);
    let manifest = p("data/manifest.jsonl");
    run(&[
        "fit",
        "--manifest",
        &manifest,
        "--out",
        &p("run"),
        "--preset",
        "tiny",
        "--batch",
        "8",
        "--accumulation",
        "1",
        "--max-steps",
        "1",
        "--labels-per-type",
        "1",
    ]);
    let text = run(&[
        "export",
        "--checkpoint",
        &p("run"),
        "--out",
        &p("m.onnx"),
        "--check",
        "2",
    ]);
    assert!(
        text.contains("on 2 crops its logits are within") && text.contains("(tolerance 1e-4·τ)"),
        "{text}"
    );
}
