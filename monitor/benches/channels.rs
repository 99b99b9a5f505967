//! How many 720p25 live channels, each analysed at one frame a second, `sd2-monitor` holds
//! in real time on this machine, and what each costs in CPU and memory.
//!
//! ```text
//! cargo bench -p sd2-monitor --bench channels -- [--max 8] [--seconds 30] [--warmup 15]
//!     [--model sd2.onnx] [--device cpu|cuda] [--analysis-fps 1]
//! ```
//!
//! Each channel is a synthetic live source: `videotestsrc is-live=true` at 1280×720, 25 fps,
//! with the six-face sample photo laid over it (six faces to classify at every analysis).
//! For N = 1, 2, … the real binary runs N such channels from a generated TOML file; after
//! the warm-up, `/metrics` and `/proc` are read at the start and the end of the measured
//! span, and the lag (how far behind the clock frames leave the analysis, the most over the
//! channels) every second. A run holds real time when no frame was skipped, every channel
//! delivered at least 97% of 25 frames a second, and the lag did not grow: its mean over
//! the span's second half is within a quarter second of its mean over the first (it swings
//! by the detector's time on each analysed frame, which the queue after the decoder
//! absorbs). It stops at the first N that does not hold, or at `--max`.
//!
//! The reference, measured in the same run: one such source alone (`gst-launch-1.0 …
//! ! fakesink`), no analysis; the table gives each channel's CPU as a multiple of it.
//! Memory per channel is what each channel after the first adds to the resident set.
//! The table goes to stdout, progress to stderr.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Most channels tried.
    #[arg(long, default_value_t = 8)]
    max: usize,
    /// Seconds measured for each N.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds before measuring (model load, first analyses).
    #[arg(long, default_value_t = 15.0)]
    warmup: f64,
    /// The SD² model (default: the demo model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 1.0)]
    analysis_fps: f64,
    /// `cargo bench` passes this to every bench.
    #[arg(long, hide = true)]
    bench: bool,
}

const FPS: f64 = 25.0;

fn source() -> String {
    let faces = sd2_models::paths::samples_dir().join("t1.jpg");
    assert!(
        faces.exists(),
        "{} is missing: run scripts/setup.sh",
        faces.display()
    );
    format!(
        "videotestsrc is-live=true ! video/x-raw,format=I420,width=1280,height=720,framerate=25/1 ! \
         gdkpixbufoverlay location={} offset-x=160 offset-y=28 overlay-width=960 overlay-height=664",
        faces.display()
    )
}

/// CPU seconds and resident memory of a process.
#[derive(Clone, Copy, Debug)]
struct Usage {
    cpu_s: f64,
    rss_mib: f64,
    at: Instant,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_s = (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    Usage {
        cpu_s,
        rss_mib: rss_kib / 1024.0,
        at: Instant::now(),
    }
}

/// CPU cores used between two samples.
fn cores(a: Usage, b: Usage) -> f64 {
    (b.cpu_s - a.cpu_s) / b.at.duration_since(a.at).as_secs_f64()
}

fn stop(mut child: Child) {
    // SAFETY: kill with a valid pid and signal.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
}

/// One source without analysis: CPU cores and resident MiB.
fn reference(args: &Args) -> (f64, f64) {
    eprintln!("reference: one source alone, {} s", args.seconds);
    let child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(shell_words(&format!("{} ! fakesink", source())))
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs");
    std::thread::sleep(Duration::from_secs(3));
    let a = usage(child.id());
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let b = usage(child.id());
    stop(child);
    (cores(a, b), b.rss_mib)
}

/// A launch line's words (no quoting in ours).
fn shell_words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// What `/metrics` said of all channels together.
#[derive(Debug, Default)]
struct Totals {
    /// Each channel's.
    frames: Vec<f64>,
    skipped: f64,
    max_lag: f64,
}

fn totals(agent: &ureq::Agent, port: u16, n: usize) -> Totals {
    let text = agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let value = |name: &str, ch: usize| -> f64 {
        let prefix = format!("{name}{{channel=\"c{ch}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let mut t = Totals::default();
    for ch in 0..n {
        t.frames.push(value("sd2_frames_total", ch));
        t.skipped += value("sd2_skipped_frames_total", ch);
        t.max_lag = t.max_lag.max(value("sd2_lag_seconds", ch));
    }
    t
}

struct Row {
    n: usize,
    fps: f64,
    skipped: f64,
    mean_lag: f64,
    max_lag: f64,
    lag_growth: f64,
    cores: f64,
    rss_mib: f64,
    real_time: bool,
}

fn config(args: &Args, n: usize) -> String {
    let mut c = format!(
        "[defaults]\nanalysis_fps = {}\ndevice = \"{}\"\n",
        args.analysis_fps, args.device
    );
    if let Some(m) = &args.model {
        c += &format!("model = \"{}\"\n", m.canonicalize().unwrap().display());
    }
    for i in 0..n {
        c += &format!("[[channel]]\nname = \"c{i}\"\nsource = \"{}\"\n", source());
    }
    c
}

fn run(args: &Args, n: usize) -> Row {
    eprintln!(
        "{n} channels: {} s warm-up, {} s measured",
        args.warmup, args.seconds
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channels.toml");
    std::fs::write(&path, config(args, n)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_sd2-monitor"))
        .arg("--config")
        .arg(&path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("SD2_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    let (t0, m0, u0) = (Instant::now(), totals(&agent, port, n), usage(child.id()));
    let mut lags = Vec::new();
    while u0.at.elapsed().as_secs_f64() < args.seconds {
        std::thread::sleep(Duration::from_secs(1));
        lags.push(totals(&agent, port, n).max_lag);
    }
    let (t1, m1, u1) = (Instant::now(), totals(&agent, port, n), usage(child.id()));
    stop(child);
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len().max(1) as f64;
    let (first, second) = lags.split_at(lags.len() / 2);
    let lag_growth = mean(second) - mean(first);
    // Frames are counted between the two reads of /metrics, each timed as it was asked.
    let span = t1.duration_since(t0).as_secs_f64();
    let rates: Vec<f64> = m0
        .frames
        .iter()
        .zip(&m1.frames)
        .map(|(a, b)| (b - a) / span)
        .collect();
    let fps = rates.iter().sum::<f64>() / n as f64;
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let skipped = m1.skipped - m0.skipped;
    Row {
        n,
        fps,
        skipped,
        mean_lag: mean(&lags),
        max_lag: lags.iter().copied().fold(0.0, f64::max),
        lag_growth,
        cores: cores(u0, u1),
        rss_mib: u1.rss_mib,
        real_time: skipped == 0.0 && slowest >= 0.97 * FPS && lag_growth.abs() <= 0.25,
    }
}

fn main() {
    let args = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "{} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (ref_cores, ref_rss) = reference(&args);
    let mut rows: Vec<Row> = Vec::new();
    for n in 1..=args.max {
        let row = run(&args, n);
        let held = row.real_time;
        eprintln!(
            "  {n}: {:.2} fps per channel, {} skipped, lag {:.2} s (most {:.2}, grew {:+.2}), {:.2} cores, {:.0} MiB: {}",
            row.fps,
            row.skipped,
            row.mean_lag,
            row.max_lag,
            row.lag_growth,
            row.cores,
            row.rss_mib,
            if held { "real time" } else { "behind" }
        );
        rows.push(row);
        if !held {
            break;
        }
    }
    println!(
        "reference (one source alone, no analysis): {ref_cores:.3} cores, {ref_rss:.0} MiB resident"
    );
    println!();
    println!(
        "| channels | fps per channel | skipped frames | lag: mean, most, growth (s) | CPU (cores) | CPU per channel / reference | resident (MiB) | MiB added per channel | real time |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let added = if r.n > 1 {
            format!("{:.0}", (r.rss_mib - rows[0].rss_mib) / (r.n - 1) as f64)
        } else {
            "—".into()
        };
        println!(
            "| {} | {:.2} | {} | {:.2}, {:.2}, {:+.2} | {:.2} | {:.1} | {:.0} | {added} | {} |",
            r.n,
            r.fps,
            r.skipped,
            r.mean_lag,
            r.max_lag,
            r.lag_growth,
            r.cores,
            r.cores / r.n as f64 / ref_cores,
            r.rss_mib,
            if r.real_time { "yes" } else { "no" }
        );
    }
}
