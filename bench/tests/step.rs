//! `sd2-bench step` on this CPU (tiny preset): the trainer's step is timed, and a reference
//! that cannot start is reported without losing ours.

use std::process::Command;

#[test]
fn the_training_step_is_timed_and_a_missing_reference_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-bench"))
        .args(["step", "--batch", "4", "--warmup", "1", "--steps", "1"])
        .args([
            "--rounds",
            "2",
            "--reference-python",
            "/nonexistent/python3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = stdout
        .lines()
        .find(|l| l.starts_with("sd2-train (burn, flex)"))
        .unwrap_or_else(|| panic!("no row of ours in:\n{stdout}"));
    let images: f64 = ours.split_whitespace().last().unwrap().parse().unwrap();
    assert!(images > 0.0, "{ours}");
    assert!(
        stdout.contains("PyTorch reference not run") && stdout.contains("/nonexistent/python3"),
        "{stdout}"
    );
}

#[test]
fn one_thread_and_bf16_products_are_what_the_step_is_timed_with() {
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-bench"))
        .args(["step", "--batch", "4", "--warmup", "1", "--steps", "1"])
        .args(["--rounds", "1", "--threads", "1", "--precision", "bf16"])
        .args(["--reference-python", "/nonexistent/python3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("training step, tiny preset, batch 4, bf16 mixed precision;"),
        "{stdout}"
    );
    // The CPU keeps no memory pool: no peak memory is claimed for it.
    assert!(!stdout.contains("peak device memory"), "{stdout}");
}
