//! `sd2-monitor`: SD² deepfake detection on many live channels, around the clock.
//!
//! ```text
//! sd2-monitor --config channels.toml [--listen 0.0.0.0:9090] [--check]
//! ```
//!
//! One process, one pipeline per channel, one loaded model per model file shared by every
//! channel (faces batched across them); lost sources reconnected with a capped exponential
//! backoff, the other channels untouched; an HTTP API to list, add and remove channels,
//! `/healthz` and Prometheus `/metrics`; evidence (a JPEG and a JSON sidecar) of every
//! alert; SIGTERM or SIGINT ends every stream, waits (bounded) for the publish spools to
//! drain, and exits 0. Logs are JSON lines on stderr; stdout stays empty.

mod api;
mod backoff;
mod channel;
mod config;
mod evidence;
mod histogram;
mod interval;
mod logging;
mod metrics;
mod monitor;
mod pipeline;
mod probes;
mod props;
mod signals;
mod stats;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "sd2-monitor",
    version,
    about = "SD² deepfake detection on many live channels: reconnection, HTTP API, Prometheus metrics, evidence of alerts"
)]
struct Cli {
    /// The channels and the service's settings (TOML; see the README's "Monitoring live channels").
    #[arg(long)]
    config: PathBuf,
    /// Address of the HTTP API, over `[service] listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Check the configuration (fields, models, pipelines) and exit, starting nothing.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    signals::block();
    let cli = Cli::parse();
    logging::init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(event = "fatal", error = %format!("{e:#}"), "sd2-monitor stops");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut config = config::Config::load(&cli.config)?;
    if let Some(listen) = cli.listen {
        config.service.listen = listen;
    }
    gst::init().context("GStreamer does not start")?;
    gstsd2::plugin_register_static().context("the sd2 elements do not register")?;
    let (monitor, evidence_writer) =
        monitor::Monitor::new(&config).context("cannot start the evidence writer")?;
    for ch in &config.channels {
        monitor
            .prepare(ch)
            .map_err(|e| anyhow::anyhow!("{}: channel {:?}: {e}", cli.config.display(), ch.name))?;
    }
    if cli.check {
        tracing::info!(
            event = "checked",
            channels = config.channels.len(),
            "configuration checked"
        );
        return Ok(());
    }
    let api =
        api::Api::start(monitor.clone(), &config.service.listen).map_err(anyhow::Error::msg)?;
    tracing::info!(event = "listening", address = %api.address(), channels = config.channels.len(), "sd2-monitor started");
    for ch in config.channels {
        let name = ch.name.clone();
        monitor
            .add(ch)
            .with_context(|| format!("channel {name:?} does not start"))?;
    }
    let signal = signals::wait();
    tracing::info!(
        event = "shutdown",
        signal,
        "ending every stream and draining the spools"
    );
    // A second signal stops at once.
    std::thread::spawn(|| {
        let signal = signals::wait();
        tracing::warn!(event = "abort", signal, "stopped without draining");
        std::process::exit(130);
    });
    monitor.shutdown();
    api.stop();
    drop(monitor);
    // The writer ends once every channel has let go of it; one that did not stop in time
    // may hold it still.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !evidence_writer.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    tracing::info!(event = "exit", "sd2-monitor stopped");
    Ok(())
}
