//! Evidence of alerts: for every alert on a frame, `EVIDENCE/<channel>/<time>-track<id>.jpg`
//! (the frame, converted to RGB, with the alerted face's box drawn in red) and a `.json`
//! sidecar beside it (channel, wall-clock time, PTS, track, label, fake type, scores, box).
//!
//! One thread writes for every channel, so a streaming thread never encodes a JPEG: it
//! hands over a copy of the frame and goes on. When more than
//! [`QUEUE_FRAMES`] frames wait, further evidence is not written and is counted as failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use image::RgbImage;
use serde::Serialize;

use crate::stats::{self, ChannelStats};

/// Frames waiting for the writer at most.
pub const QUEUE_FRAMES: usize = 16;

/// One alert on a frame: the `sd2-deepfake-alert` structure and the face's probabilities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRecord {
    pub track_id: u64,
    pub label: String,
    pub fake_type: String,
    pub fake_score: f64,
    pub confidence: f64,
    /// Probability of each type (REAL, FS, FR, EFS, FE), from the face's `deepfake` param.
    pub scores: BTreeMap<String, f64>,
    /// Normalised `[x_min, y_min, x_max, y_max]`.
    pub bbox: [f64; 4],
    pub model_name: String,
}

/// A frame with alerts, to be written.
pub struct Job {
    pub channel: String,
    pub source: String,
    pub buffer: gst::Buffer,
    pub info: gst_video::VideoInfo,
    pub time: DateTime<Utc>,
    pub pts: Option<gst::ClockTime>,
    pub alerts: Vec<AlertRecord>,
    pub stats: Arc<ChannelStats>,
}

/// The sidecar of one piece of evidence.
#[derive(Debug, Serialize)]
pub struct Sidecar<'a> {
    pub channel: &'a str,
    pub source: &'a str,
    /// Wall-clock time the frame left the analysis (RFC 3339, UTC).
    pub time: String,
    /// The frame's presentation timestamp in nanoseconds (null when it has none).
    pub pts: Option<u64>,
    #[serde(flatten)]
    pub alert: &'a AlertRecord,
    /// The box in pixels of the frame: `x`, `y`, `width`, `height`.
    pub pixels: [u32; 4],
    pub image: String,
    pub frame: [u32; 2],
}

/// Hands frames to the writer thread.
#[derive(Clone)]
pub struct Evidence {
    jobs: SyncSender<Job>,
}

impl Evidence {
    /// Starts the writer; it writes under `dir` and ends when every [`Evidence`] is dropped.
    pub fn start(dir: PathBuf) -> std::io::Result<(Evidence, JoinHandle<()>)> {
        let (jobs, rx) = sync_channel(QUEUE_FRAMES);
        let writer = std::thread::Builder::new()
            .name("sd2-evidence".into())
            .spawn(move || write_all(&dir, rx))?;
        Ok((Evidence { jobs }, writer))
    }

    /// Queues a frame; when the writer is that far behind, counts its alerts as failed.
    pub fn submit(&self, job: Job) {
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                stats::add(&job.stats.evidence_failed, job.alerts.len() as u64);
                tracing::warn!(
                    channel = %job.channel,
                    event = "evidence_dropped",
                    alerts = job.alerts.len(),
                    "evidence not written: the writer is {QUEUE_FRAMES} frames behind"
                );
            }
        }
    }
}

fn write_all(dir: &Path, jobs: Receiver<Job>) {
    for job in jobs {
        let frame = match rgb_frame(&job.buffer, &job.info) {
            Ok(f) => f,
            Err(e) => {
                stats::add(&job.stats.evidence_failed, job.alerts.len() as u64);
                tracing::warn!(channel = %job.channel, event = "evidence_failed", error = %e, "frame not converted");
                continue;
            }
        };
        for alert in &job.alerts {
            match write_one(dir, &job, &frame, alert) {
                Ok(path) => {
                    stats::add(&job.stats.evidence_written, 1);
                    tracing::info!(
                        channel = %job.channel,
                        event = "evidence",
                        track = alert.track_id,
                        path = %path.display(),
                        "evidence written"
                    );
                }
                Err(e) => {
                    stats::add(&job.stats.evidence_failed, 1);
                    tracing::warn!(channel = %job.channel, event = "evidence_failed", track = alert.track_id, error = %e, "evidence not written");
                }
            }
        }
    }
}

/// The file name of evidence without its extension: `20260412T101502.123Z-track7`.
pub fn stem(time: &DateTime<Utc>, track: u64) -> String {
    format!("{}-track{track}", time.format("%Y%m%dT%H%M%S%.3fZ"))
}

fn write_one(
    dir: &Path,
    job: &Job,
    frame: &RgbImage,
    alert: &AlertRecord,
) -> Result<PathBuf, String> {
    let folder = dir.join(&job.channel);
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let stem = stem(&job.time, alert.track_id);
    let jpg = folder.join(format!("{stem}.jpg"));
    let mut marked = frame.clone();
    let pixels = mark(&mut marked, alert.bbox);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&marked)
        .map_err(|e| format!("cannot encode {}: {e}", jpg.display()))?;
    write_atomically(&jpg, &bytes)?;
    let sidecar = Sidecar {
        channel: &job.channel,
        source: &job.source,
        time: job
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        pts: job.pts.map(|t| t.nseconds()),
        alert,
        pixels,
        image: format!("{stem}.jpg"),
        frame: [frame.width(), frame.height()],
    };
    let json = serde_json::to_vec_pretty(&sidecar).expect("a sidecar serialises");
    write_atomically(&folder.join(format!("{stem}.json")), &json)?;
    Ok(jpg)
}

/// Writes `bytes` to `path` through a temporary file, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The frame in RGB, converted by GStreamer's video converter (only this frame).
pub fn rgb_frame(buffer: &gst::Buffer, info: &gst_video::VideoInfo) -> Result<RgbImage, String> {
    let (w, h) = (info.width(), info.height());
    let input = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info)
        .map_err(|_| "the frame cannot be mapped".to_owned())?;
    let out_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, h)
        .fps(info.fps())
        .par(info.par())
        .build()
        .map_err(|e| format!("no RGB format for {w}x{h}: {e}"))?;
    let mut out = gst::Buffer::with_size(out_info.size()).map_err(|e| e.to_string())?;
    {
        let out_ref = out.get_mut().expect("a new buffer is writable");
        let mut output = gst_video::VideoFrameRef::from_buffer_ref_writable(out_ref, &out_info)
            .map_err(|_| "the RGB frame cannot be mapped".to_owned())?;
        let converter = gst_video::VideoConverter::new(info, &out_info, None)
            .map_err(|e| format!("no conversion from {:?} to RGB: {e}", info.format()))?;
        converter.frame_ref(&input, &mut output);
    }
    let map = out.map_readable().map_err(|e| e.to_string())?;
    let stride = out_info.stride()[0] as usize;
    let row = w as usize * 3;
    let mut data = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        data.extend_from_slice(&map[y * stride..y * stride + row]);
    }
    RgbImage::from_raw(w, h, data).ok_or_else(|| "the RGB frame has the wrong size".to_owned())
}

/// Draws the normalised box `bbox` in red, with lines 1/240 of the frame height thick
/// (at least 2 pixels); returns it in pixels as `[x, y, width, height]`.
pub fn mark(img: &mut RgbImage, bbox: [f64; 4]) -> [u32; 4] {
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return [0; 4];
    }
    let px = |v: f64, size: u32| ((v.clamp(0.0, 1.0) * size as f64).round() as u32).min(size - 1);
    let (x0, y0, x1, y1) = (
        px(bbox[0], w),
        px(bbox[1], h),
        px(bbox[2], w),
        px(bbox[3], h),
    );
    let t = (h / 240).max(2);
    const RED: image::Rgb<u8> = image::Rgb([255, 0, 0]);
    for y in y0..=y1.max(y0) {
        for x in x0..=x1.max(x0) {
            let edge = x < x0 + t || x + t > x1 || y < y0 + t || y + t > y1;
            if edge {
                img.put_pixel(x, y, RED);
            }
        }
    }
    [x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_is_drawn_on_its_edges_only() {
        let mut img = RgbImage::new(480, 240);
        let pixels = mark(&mut img, [0.25, 0.25, 0.75, 0.75]);
        assert_eq!(pixels, [120, 60, 240, 120]);
        assert_eq!(img.get_pixel(120, 100).0, [255, 0, 0], "left edge");
        assert_eq!(img.get_pixel(200, 180).0, [255, 0, 0], "bottom edge");
        assert_eq!(img.get_pixel(240, 120).0, [0, 0, 0], "inside");
        assert_eq!(img.get_pixel(10, 10).0, [0, 0, 0], "outside");
    }

    #[test]
    fn a_box_outside_the_frame_is_clamped_to_it() {
        let mut img = RgbImage::new(100, 100);
        assert_eq!(mark(&mut img, [-1.0, 0.5, 2.0, f64::NAN]), [0, 50, 99, 0]);
    }

    #[test]
    fn names_sort_by_time_and_carry_the_track() {
        let t = DateTime::parse_from_rfc3339("2026-04-12T10:15:02.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(stem(&t, 7), "20260412T101502.123Z-track7");
    }

    #[test]
    fn a_yuv_frame_converts_to_rgb() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 64, 32)
            .build()
            .unwrap();
        let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
        {
            let b = buffer.get_mut().unwrap();
            let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &info).unwrap();
            // Pure red in BT.601 limited range: Y 81, U 90, V 240.
            for (plane, v) in [(0, 81u8), (1, 90), (2, 240)] {
                frame.plane_data_mut(plane).unwrap().fill(v);
            }
        }
        let rgb = rgb_frame(&buffer, &info).unwrap();
        assert_eq!((rgb.width(), rgb.height()), (64, 32));
        let p = rgb.get_pixel(10, 10).0;
        assert!(p[0] > 230 && p[1] < 25 && p[2] < 25, "{p:?}");
    }
}
