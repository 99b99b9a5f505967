//! On an NVIDIA GPU, in a build with `--features cuda`: `fit` on `cuda:0` computes what it
//! computes on the CPU (`flex`): the losses of the same steps on the same batches, and the
//! weights after them, within 1e-3. Dropout is off in both runs: each device draws its masks
//! from a generator of its own. Without a CUDA driver (no `libcuda.so.1` to load) the test
//! says so on stderr and passes, having nothing to compare.
#![cfg(feature = "cuda")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use common::max_diff;
use sd2_train::eval;

/// Why CUDA cannot run here, if it cannot.
fn no_cuda_driver() -> Option<String> {
    // SAFETY: loading the driver library runs only its initialisers, as any CUDA program does.
    match unsafe { libloading::Library::new("libcuda.so.1") } {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn sd2_train(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sd2-train"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sd2-train {args:?} failed:\n{text}");
    text
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

struct Collect(Vec<f32>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0
            .extend(p.val().into_data().try_to_vec::<f32>().unwrap());
    }
}

/// Every weight of the run's newest checkpoint, in visiting order.
fn weights(run: &Path) -> Vec<f32> {
    let dir = sd2_train::train::checkpoint::latest(run).unwrap();
    let (model, _) = eval::load_trained(&dir, &Device::flex()).unwrap();
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn steps_on_cuda_compute_what_they_compute_on_the_cpu() {
    if let Some(why) = no_cuda_driver() {
        // Written past the test harness's capture, so that the skip shows in the log.
        let _ = writeln!(
            std::io::stderr(),
            "steps_on_cuda_compute_what_they_compute_on_the_cpu: skipped, no CUDA driver ({why})"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sd2_train(&[
        "make-demo-set",
        "--out",
        data.to_str().unwrap(),
        "--per-type",
        "8",
    ]);
    let manifest = data.join("manifest.jsonl");
    let fit = |device: &str| -> PathBuf {
        let out = dir.path().join(device.replace(':', "-"));
        sd2_train(&[
            "fit",
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--preset",
            "tiny",
            "--labels-per-type",
            "1",
            "--batch",
            "8",
            "--accumulation",
            "1",
            "--max-steps",
            "3",
            "--lr",
            "1e-3",
            "--lora-dropout",
            "0",
            "--devices",
            device,
        ]);
        out
    };
    let (cpu, gpu) = (fit("flex"), fit("cuda:0"));
    let (lc, lg) = (losses(&cpu), losses(&gpu));
    assert_eq!(lc.len(), 3);
    for (c, g) in lc.iter().zip(&lg) {
        assert!(
            (c - g).abs() <= 1e-3 * c.abs().max(1.0),
            "flex {lc:?}\ncuda {lg:?}"
        );
    }
    // AdamW's first steps move every trained weight by about the learning rate (1e-3), the
    // sign of its gradient deciding which way: a gradient of the wrong sign on the GPU would
    // put a weight 2e-3 from the CPU's.
    let d = max_diff(&weights(&cpu), &weights(&gpu));
    assert!(d < 1e-3, "the weights differ by {d}");
}
