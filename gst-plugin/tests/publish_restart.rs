//! A `gst-launch-1.0` running `sd2publish`, killed with SIGKILL while the broker is down:
//! started again on the same spool, it delivers what the killed run spooled, numbering on.

#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mosquitto::*;

/// `gst-launch-1.0 -m PIPELINE` with this build's plugin and a registry of its own; its
/// standard output (the bus messages) comes line by line through the receiver.
fn gst_launch(plugins: &Path, registry: &Path, pipeline: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new("gst-launch-1.0")
        .arg("-m")
        .args(pipeline.split_whitespace())
        .env("GST_PLUGIN_PATH", plugins)
        .env("GST_REGISTRY", registry)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gst-launch-1.0 runs (scripts/setup.sh installs it)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The first line holding `needle`, within `timeout`.
fn wait_line(lines: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let end = std::time::Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} ({e:?})"),
        }
    }
}

#[test]
fn a_publisher_killed_while_the_broker_is_down_delivers_its_spool_when_started_again() {
    let plugins = plugin_dir();
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.bin");
    let spool = dir.path().join("spool");
    let mut broker = Broker::start();
    let consumer = Subscriber::connect(broker.port, "consumer", "sd2/cam1/#");
    broker.stop();
    let url = broker.url();
    let publish = |frames: u32, drain_ms: u32| {
        format!(
            "videotestsrc num-buffers={frames} ! video/x-raw,width=64,height=48,framerate=25/1 ! \
             sd2publish location={} channel=cam1 spool-dir={} drain-timeout={drain_ms} ! fakesink",
            url,
            spool.display()
        )
    };

    // 100 frames while the broker is down; killed while it waits for them to drain.
    let (mut first, lines) = gst_launch(plugins.path(), &registry, &publish(100, 600_000));
    let draining = wait_line(&lines, "sd2-publish-draining", Duration::from_secs(60));
    assert!(draining.contains("waiting=(guint64)100"), "{draining}");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(consumer.count(), 0);
    // The killed run's lock is gone with it; its messages are in the spool.
    let left = gstsd2::publish::spool::Spool::open(&spool, 256 << 20).unwrap();
    assert_eq!(left.counts().waiting, 100);
    drop(left);

    broker.restart();
    // Started again on the same spool with one frame more: it exits once all is delivered.
    let (mut second, lines) = gst_launch(plugins.path(), &registry, &publish(1, 60_000));
    wait_line(&lines, "sd2-publish-delivering", Duration::from_secs(30));
    assert!(second.wait().unwrap().success());

    let got = consumer.wait_until(Duration::from_secs(20), |m| first_arrivals(m).len() >= 101);
    let firsts = first_arrivals(&got);
    assert_eq!(firsts.len(), 101, "the 100 spooled frames and the new one");
    for (i, (topic, m)) in firsts.iter().enumerate() {
        assert_eq!(topic, "sd2/cam1/frames");
        assert_eq!(
            m["seq"], i as u64,
            "in order, numbering on after the restart"
        );
        // The killed run's frames are 40 ms apart; the new run starts at 0 again.
        let ts = if i < 100 { i as u64 * 40_000_000 } else { 0 };
        assert_eq!(m["timestamp"], ts, "message {i}");
    }
}
