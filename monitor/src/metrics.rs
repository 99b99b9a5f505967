//! `/metrics`: Prometheus' text exposition format (version 0.0.4), written by hand.

use std::fmt::Write;

use crate::channel::{Channel, State};
use crate::histogram::Histogram;
use crate::monitor::Monitor;
use crate::stats::{self, ChannelStats};

/// Per-channel counters: name, help, how to read them.
type Read = fn(&ChannelStats) -> u64;
const COUNTERS: [(&str, &str, Read); 10] = [
    ("sd2_frames_total", "Frames that left the analysis.", |s| {
        stats::get(&s.frames)
    }),
    (
        "sd2_analysed_frames_total",
        "Frames with at least one face classified on that frame.",
        |s| stats::get(&s.analysed_frames),
    ),
    (
        "sd2_faces_total",
        "Faces classified (one per classification).",
        |s| stats::get(&s.faces),
    ),
    (
        "sd2_fake_faces_total",
        "Classifications that judged the face fake.",
        |s| stats::get(&s.fake_faces),
    ),
    (
        "sd2_alerts_total",
        "Alerts: tracks that turned fake.",
        |s| stats::get(&s.alerts),
    ),
    (
        "sd2_skipped_frames_total",
        "Frames let through unanalysed because the model was behind.",
        |s| stats::get(&s.skipped_frames),
    ),
    (
        "sd2_reconnects_total",
        "Times the channel's pipeline was built again after its source was lost.",
        |s| stats::get(&s.reconnects),
    ),
    (
        "sd2_evidence_written_total",
        "Evidence images (with their JSON sidecars) written.",
        |s| stats::get(&s.evidence_written),
    ),
    (
        "sd2_evidence_failed_total",
        "Evidence not written: the writer was behind or a write failed.",
        |s| stats::get(&s.evidence_failed),
    ),
    (
        "sd2_analysis_interval_frames",
        "The analysis runs on every Nth frame: N (0 until the stream's frame rate is known).",
        |s| s.interval().unwrap_or(0) as u64,
    ),
];

/// Writes a family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value, escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name}{{{labels}}} {value}");
}

/// A float as Prometheus reads it.
fn float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

pub fn render(monitor: &Monitor) -> String {
    let channels = monitor.channels();
    let mut out = String::new();
    family(&mut out, "sd2_channels", "gauge", "Channels configured.");
    let _ = writeln!(out, "sd2_channels {}", channels.len());
    family(
        &mut out,
        "sd2_uptime_seconds",
        "gauge",
        "Seconds since the monitor started.",
    );
    let _ = writeln!(
        out,
        "sd2_uptime_seconds {:.3}",
        monitor.started.elapsed().as_secs_f64()
    );
    channel_gauges(&mut out, &channels);
    for (name, help, read) in COUNTERS {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        family(&mut out, name, kind, help);
        for ch in &channels {
            sample(&mut out, name, &label(ch), read(&ch.stats));
        }
    }
    family(
        &mut out,
        "sd2_inference_latency_seconds",
        "histogram",
        "Time a frame with faces to classify spends in sd2deepfake (queue and model), from its sink pad to its source pad.",
    );
    for ch in &channels {
        histogram(
            &mut out,
            "sd2_inference_latency_seconds",
            &label(ch),
            &ch.stats.latency(),
        );
    }
    publish(&mut out, &channels);
    models(&mut out, monitor);
    out
}

fn label(ch: &Channel) -> String {
    format!("channel=\"{}\"", escape(ch.name()))
}

fn channel_gauges(out: &mut String, channels: &[std::sync::Arc<Channel>]) {
    family(
        out,
        "sd2_channel_up",
        "gauge",
        "1 while the channel's frames flow, else 0.",
    );
    for ch in channels {
        sample(
            out,
            "sd2_channel_up",
            &label(ch),
            u8::from(ch.state() == State::Playing),
        );
    }
    family(
        out,
        "sd2_queue_depth",
        "gauge",
        "Frames waiting in sd2deepfake now.",
    );
    for ch in channels {
        sample(out, "sd2_queue_depth", &label(ch), ch.queued_frames());
    }
    family(
        out,
        "sd2_lag_seconds",
        "gauge",
        "How far behind the pipeline clock the last frame left the analysis (a live channel that keeps up stays near its source's latency).",
    );
    for ch in channels {
        sample(
            out,
            "sd2_lag_seconds",
            &label(ch),
            format!("{:.3}", ch.stats.lag_seconds()),
        );
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (bound, count) in h.cumulative() {
        sample(
            out,
            &format!("{name}_bucket"),
            &format!("{labels},le=\"{}\"", float(bound)),
            count,
        );
    }
    sample(out, &format!("{name}_sum"), labels, float(h.sum()));
    sample(out, &format!("{name}_count"), labels, h.count());
}

fn publish(out: &mut String, channels: &[std::sync::Arc<Channel>]) {
    let totals: Vec<_> = channels
        .iter()
        .filter_map(|ch| Some((label(ch), ch.publish_totals()?)))
        .collect();
    family(
        out,
        "sd2_publish_backlog",
        "gauge",
        "Messages in the channel's spool, waiting for the destination to confirm them.",
    );
    for (l, t) in &totals {
        sample(out, "sd2_publish_backlog", l, t.backlog);
    }
    family(
        out,
        "sd2_publish_dropped_total",
        "counter",
        "Messages lost: dropped, oldest first, from a full spool.",
    );
    for (l, t) in &totals {
        sample(out, "sd2_publish_dropped_total", l, t.dropped);
    }
    family(
        out,
        "sd2_publish_published_total",
        "counter",
        "Messages the destination confirmed.",
    );
    for (l, t) in &totals {
        sample(out, "sd2_publish_published_total", l, t.published);
    }
}

fn models(out: &mut String, monitor: &Monitor) {
    let models = monitor.models();
    family(
        out,
        "sd2_model_runs_total",
        "counter",
        "Runs of a shared model (each a batch of faces from any channels).",
    );
    for m in &models {
        let l = format!("model=\"{}\"", escape(m.name()));
        sample(out, "sd2_model_runs_total", &l, m.stats().runs);
    }
    family(
        out,
        "sd2_model_faces_total",
        "counter",
        "Faces a shared model classified.",
    );
    for m in &models {
        let l = format!("model=\"{}\"", escape(m.name()));
        sample(out, "sd2_model_faces_total", &l, m.stats().faces);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_histogram_has_buckets_up_to_inf_a_sum_and_a_count() {
        let mut h = Histogram::new(&[0.5]);
        h.observe(0.25);
        h.observe(2.0);
        let mut out = String::new();
        histogram(&mut out, "x", "channel=\"a\"", &h);
        assert_eq!(
            out,
            "x_bucket{channel=\"a\",le=\"0.5\"} 1\n\
             x_bucket{channel=\"a\",le=\"+Inf\"} 2\n\
             x_sum{channel=\"a\"} 2.25\n\
             x_count{channel=\"a\"} 2\n"
        );
    }
}
