//! Logs: one JSON object per line on stderr, one line per event, with `timestamp`,
//! `level`, `message`, an `event` name and, for a channel's events, its `channel`.
//! `SD2_LOG` filters them (`info` by default; `debug`, `warn`, …). Standard output stays
//! empty: the monitor is a service.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("SD2_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
