//! Sessions opened at the same moment from many threads, as the first thing a process does
//! (a monitor starting its channels, a pipeline's elements reaching READY together): every
//! one opens. ONNX Runtime registers a session's custom operator domain (SD²'s `com.sd2`)
//! in a process-wide table without a lock, and two first registrations at once used to fail
//! one of the sessions ("the domain is already exist").
//!
//! The test is alone in its binary so that no session was opened in the process before it.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;

use sd2_models::runtime::{Device, SessionConfig, open_session};

#[test]
fn sessions_opened_at_once_from_many_threads_all_open() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/sd2-demo.onnx");
    let n = 16;
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (model, start) = (model.clone(), start.clone());
            thread::spawn(move || {
                let config = SessionConfig {
                    threads: Some(1),
                    ..SessionConfig::default()
                };
                start.wait();
                open_session(&model, Device::Cpu, config, "").map(|_| ())
            })
        })
        .collect();
    let failed: Vec<String> = threads
        .into_iter()
        .filter_map(|t| t.join().unwrap().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {n} failed: {failed:?}",
        failed.len()
    );
}
