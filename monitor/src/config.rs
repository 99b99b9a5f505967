//! The configuration: a TOML file with a `[service]` table, `[defaults]` for every channel
//! and one `[[channel]]` table per channel; `POST /channels` takes a channel's fields as
//! JSON. Checks that need no GStreamer happen here; the rest (the model loads, the source
//! parses, the publish properties exist) when the monitor prepares a channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sd2_models::paths;
use sd2_models::runtime::Device;
use serde::{Deserialize, Serialize};

/// What is wrong with a configuration or a channel's fields.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("[service] {field}: {message}")]
    Service {
        field: &'static str,
        message: String,
    },
    #[error("[defaults] may not set {0}: it belongs to one channel")]
    DefaultsField(&'static str),
    #[error("channel {name:?}: {message}")]
    Channel { name: String, message: String },
    #[error(
        "channel name {0:?}: expected 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    Name(String),
    #[error("a channel needs a name")]
    NoName,
    #[error("two channels are named {0:?}")]
    Duplicate(String),
}

/// A value of an `sd2publish` property in a channel's `publish` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl PropValue {
    /// The value as GStreamer deserialises it from a string.
    pub fn as_gst_string(&self) -> String {
        match self {
            PropValue::Bool(b) => b.to_string(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Float(f) => f.to_string(),
            PropValue::Text(s) => s.clone(),
        }
    }
}

/// What happens when a file source ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEos {
    /// The channel ends once its messages are delivered, and stays listed as `ended`.
    #[default]
    End,
    /// The file plays again from its start, without a gap.
    Loop,
}

/// The fields of a channel as written (a `[[channel]]` table, `[defaults]`, or the JSON body
/// of `POST /channels`); unset fields come from `[defaults]`, then from the built-in
/// defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Any URI `uridecodebin` reads: `rtsp://`, `srt://`, `udp://`, `http(s)://`, `file://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A `gst-launch-1.0` fragment ending in raw video, for capture cards and test sources
    /// (`decklinkvideosrc`, `v4l2src`, `videotestsrc is-live=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Frames analysed per second of video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis_fps: Option<f64>,
    /// `argmax` or `threshold` (sd2deepfake's `decision`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_eos: Option<OnEos>,
    /// `sd2publish` properties (`method`, `location`, `publish`, `topic`, …); the monitor
    /// sets `channel`, `spool-dir` and `drain-timeout` itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<BTreeMap<String, PropValue>>,
}

/// Where a channel's video comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Uri(String),
    Source(String),
}

impl Input {
    /// A file plays at its own pace and ends; everything else is live and reconnects.
    pub fn is_file(&self) -> bool {
        matches!(self, Input::Uri(u) if u.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("file://")))
    }

    pub fn describe(&self) -> &str {
        match self {
            Input::Uri(u) | Input::Source(u) => u,
        }
    }
}

/// How faces are judged: sd2deepfake's `decision`, `threshold` and `hysteresis`.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub decision: String,
    pub threshold: f64,
    pub hysteresis: f64,
}

/// A channel with every field decided and checked.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub name: String,
    pub input: Input,
    pub model: PathBuf,
    pub device: Device,
    pub analysis_fps: f64,
    pub judgement: Judgement,
    pub on_eos: OnEos,
    pub publish: Option<BTreeMap<String, PropValue>>,
    /// The fields as given, for the API to show.
    pub fields: ChannelFields,
}

/// The `[service]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address of the HTTP API.
    pub listen: String,
    /// Evidence of alerts goes under `evidence_dir/CHANNEL/`.
    pub evidence_dir: PathBuf,
    /// Each channel's publish spool is `spool_dir/CHANNEL`.
    pub spool_dir: PathBuf,
    /// On SIGTERM or removal: most seconds a channel waits for its spool to drain.
    pub drain_timeout_s: f64,
    /// The first delay before reconnecting a lost source; it doubles on every failed try.
    pub reconnect_min_s: f64,
    /// The longest delay between tries.
    pub reconnect_max_s: f64,
    /// A live channel that delivers no frame for this long is reconnected.
    pub stall_timeout_s: f64,
    /// Most faces in one run of a model, across every channel using it.
    pub batch_size: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: "127.0.0.1:9090".into(),
            evidence_dir: "evidence".into(),
            spool_dir: "spool".into(),
            drain_timeout_s: 10.0,
            reconnect_min_s: 1.0,
            reconnect_max_s: 30.0,
            stall_timeout_s: 10.0,
            batch_size: 32,
        }
    }
}

impl ServiceConfig {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.drain_timeout_s)
    }

    pub fn reconnect_min(&self) -> Duration {
        Duration::from_secs_f64(self.reconnect_min_s)
    }

    pub fn reconnect_max(&self) -> Duration {
        Duration::from_secs_f64(self.reconnect_max_s)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.stall_timeout_s)
    }

    /// Checks the values and makes relative paths relative to `base`.
    fn check(mut self, base: &Path) -> Result<ServiceConfig, ConfigError> {
        let seconds = |field: &'static str, v: f64, min: f64| {
            if v.is_finite() && v >= min && v <= 86_400.0 {
                Ok(())
            } else {
                Err(ConfigError::Service {
                    field,
                    message: format!("{v} is not a number of seconds from {min} to 86400"),
                })
            }
        };
        seconds("drain_timeout_s", self.drain_timeout_s, 0.0)?;
        seconds("reconnect_min_s", self.reconnect_min_s, 0.01)?;
        seconds("reconnect_max_s", self.reconnect_max_s, 0.01)?;
        seconds("stall_timeout_s", self.stall_timeout_s, 0.1)?;
        if self.reconnect_max_s < self.reconnect_min_s {
            return Err(ConfigError::Service {
                field: "reconnect_max_s",
                message: format!(
                    "{} is below reconnect_min_s ({})",
                    self.reconnect_max_s, self.reconnect_min_s
                ),
            });
        }
        if !(1..=1024).contains(&self.batch_size) {
            return Err(ConfigError::Service {
                field: "batch_size",
                message: format!("{} is not from 1 to 1024", self.batch_size),
            });
        }
        self.evidence_dir = base.join(&self.evidence_dir);
        self.spool_dir = base.join(&self.spool_dir);
        Ok(self)
    }
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: ServiceConfig,
    #[serde(default)]
    defaults: ChannelFields,
    #[serde(default, rename = "channel")]
    channels: Vec<ChannelFields>,
}

/// A configuration file read and checked.
#[derive(Debug)]
pub struct Config {
    pub service: ServiceConfig,
    pub defaults: ChannelFields,
    /// Relative paths in channels (models) are relative to this folder: the config file's.
    pub base: PathBuf,
    pub channels: Vec<ChannelConfig>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &base).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses a configuration whose relative paths are relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let service = file.service.check(base)?;
        check_defaults(&file.defaults)?;
        let mut channels: Vec<ChannelConfig> = Vec::new();
        for fields in file.channels {
            let channel = resolve(fields, &file.defaults, base)?;
            if channels.iter().any(|c| c.name == channel.name) {
                return Err(ConfigError::Duplicate(channel.name));
            }
            channels.push(channel);
        }
        Ok(Config {
            service,
            defaults: file.defaults,
            base: base.to_owned(),
            channels,
        })
    }
}

fn check_defaults(d: &ChannelFields) -> Result<(), ConfigError> {
    for (set, field) in [
        (d.name.is_some(), "name"),
        (d.uri.is_some(), "uri"),
        (d.source.is_some(), "source"),
    ] {
        if set {
            return Err(ConfigError::DefaultsField(field));
        }
    }
    Ok(())
}

/// Checks a channel name: it names folders, metric labels and MQTT topics.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Name(name.to_owned()))
    }
}

/// A channel's fields over the defaults, checked; relative model paths are relative to
/// `base`.
pub fn resolve(
    fields: ChannelFields,
    defaults: &ChannelFields,
    base: &Path,
) -> Result<ChannelConfig, ConfigError> {
    let name = fields.name.clone().ok_or(ConfigError::NoName)?;
    check_name(&name)?;
    let bad = |message: String| ConfigError::Channel {
        name: name.clone(),
        message,
    };
    let input = match (&fields.uri, &fields.source) {
        (Some(u), None) => {
            check_uri(u).map_err(bad)?;
            Input::Uri(u.clone())
        }
        (None, Some(s)) if !s.trim().is_empty() => Input::Source(s.clone()),
        (None, Some(_)) => return Err(bad("source is empty".into())),
        (None, None) => return Err(bad("needs a uri or a source".into())),
        (Some(_), Some(_)) => return Err(bad("has both a uri and a source; keep one".into())),
    };
    let model = fields
        .model
        .clone()
        .or_else(|| defaults.model.clone())
        .map(|m| base.join(m))
        .unwrap_or_else(|| paths::model_dir().join("sd2-demo.onnx"));
    if !model.is_file() {
        return Err(bad(format!("model {} is not a file", model.display())));
    }
    let device = fields
        .device
        .as_ref()
        .or(defaults.device.as_ref())
        .map(|d| Device::from_str(d))
        .transpose()
        .map_err(|e| bad(e.to_string()))?
        .unwrap_or_default();
    let analysis_fps = fields.analysis_fps.or(defaults.analysis_fps).unwrap_or(1.0);
    if !(analysis_fps.is_finite() && analysis_fps > 0.0 && analysis_fps <= 1000.0) {
        return Err(bad(format!(
            "analysis_fps {analysis_fps} is not a rate above 0 and at most 1000 frames per second"
        )));
    }
    let judgement = judgement(&fields, defaults).map_err(bad)?;
    let on_eos = fields.on_eos.or(defaults.on_eos).unwrap_or_default();
    let publish = merge_publish(defaults.publish.as_ref(), fields.publish.as_ref());
    if let Some(p) = &publish {
        if p.get("location") == Some(&PropValue::Text("-".into())) {
            return Err(bad(
                "publish.location \"-\" (standard output): the monitor's standard output stays empty; name a file".into(),
            ));
        }
        for key in p.keys() {
            let prop = key.replace('_', "-");
            if matches!(prop.as_str(), "channel" | "spool-dir" | "drain-timeout") {
                return Err(bad(format!(
                    "publish.{key} is set by the monitor (from the channel's name and [service])"
                )));
            }
        }
    }
    Ok(ChannelConfig {
        name,
        input,
        model,
        device,
        analysis_fps,
        judgement,
        on_eos,
        publish,
        fields,
    })
}

fn check_uri(uri: &str) -> Result<(), String> {
    let scheme = uri.split_once("://").map(|(s, _)| s).unwrap_or("");
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid && uri.len() > scheme.len() + 3 {
        Ok(())
    } else {
        Err(format!(
            "uri {uri:?} is not a URI (expected SCHEME://…, such as rtsp://host/path or file:///path)"
        ))
    }
}

fn judgement(fields: &ChannelFields, defaults: &ChannelFields) -> Result<Judgement, String> {
    let decision = fields
        .decision
        .clone()
        .or_else(|| defaults.decision.clone())
        .unwrap_or_else(|| "argmax".into());
    if !matches!(decision.as_str(), "argmax" | "threshold") {
        return Err(format!("decision {decision:?} is not argmax or threshold"));
    }
    let unit = |field: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{field} {v} is not from 0 to 1"))
        }
    };
    Ok(Judgement {
        decision,
        threshold: unit(
            "threshold",
            fields.threshold.or(defaults.threshold).unwrap_or(0.5),
        )?,
        hysteresis: unit(
            "hysteresis",
            fields.hysteresis.or(defaults.hysteresis).unwrap_or(0.1),
        )?,
    })
}

/// The defaults' publish table with the channel's keys over it.
fn merge_publish(
    defaults: Option<&BTreeMap<String, PropValue>>,
    channel: Option<&BTreeMap<String, PropValue>>,
) -> Option<BTreeMap<String, PropValue>> {
    match (defaults, channel) {
        (None, None) => None,
        (d, c) => {
            let mut merged = d.cloned().unwrap_or_default();
            merged.extend(c.cloned().unwrap_or_default());
            Some(merged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), b"not read here").unwrap();
        dir
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = model_dir();
        Config::parse(text, dir.path())
    }

    #[test]
    fn channels_take_unset_fields_from_the_defaults() {
        let c = parse(
            r#"
            [defaults]
            model = "m.onnx"
            analysis_fps = 2.0
            threshold = 0.7
            publish = { method = "mqtt", location = "mqtt://broker:1883" }

            [[channel]]
            name = "news"
            uri = "rtsp://camera/stream"
            threshold = 0.9
            publish = { topic = "news/frames" }
            "#,
        )
        .unwrap();
        let ch = &c.channels[0];
        assert_eq!(ch.analysis_fps, 2.0);
        assert_eq!(ch.judgement.threshold, 0.9);
        assert_eq!(ch.judgement.decision, "argmax");
        let p = ch.publish.as_ref().unwrap();
        assert_eq!(p["method"], PropValue::Text("mqtt".into()));
        assert_eq!(p["topic"], PropValue::Text("news/frames".into()));
        assert!(ch.model.ends_with("m.onnx") && ch.model.is_absolute());
    }

    #[test]
    fn relative_service_paths_are_relative_to_the_config_folder() {
        let dir = model_dir();
        let c = Config::parse("[service]\nevidence_dir = \"ev\"\n", dir.path()).unwrap();
        assert_eq!(c.service.evidence_dir, dir.path().join("ev"));
        assert_eq!(c.service.spool_dir, dir.path().join("spool"));
    }

    #[test]
    fn a_file_uri_is_a_file_and_anything_else_is_live() {
        assert!(Input::Uri("file:///v/a.webm".into()).is_file());
        assert!(Input::Uri("FILE:///v/a.webm".into()).is_file());
        assert!(!Input::Uri("rtsp://cam/a".into()).is_file());
        assert!(!Input::Source("videotestsrc is-live=true".into()).is_file());
    }

    fn channel_error(body: &str) -> String {
        let text = format!("[defaults]\nmodel = \"m.onnx\"\n[[channel]]\n{body}\n");
        parse(&text).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_in_a_channel_are_named() {
        let cases = [
            (
                "name = \"a/b\"\nuri = \"rtsp://x/y\"",
                "channel name \"a/b\"",
            ),
            ("uri = \"rtsp://x/y\"", "a channel needs a name"),
            ("name = \"a\"", "needs a uri or a source"),
            (
                "name = \"a\"\nuri = \"rtsp://x\"\nsource = \"videotestsrc\"",
                "both a uri and a source",
            ),
            ("name = \"a\"\nuri = \"camera\"", "is not a URI"),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\nanalysis_fps = 0.0",
                "analysis_fps 0 is not a rate",
            ),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\nthreshold = 1.5",
                "threshold 1.5 is not from 0 to 1",
            ),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\ndecision = \"vote\"",
                "decision \"vote\" is not argmax or threshold",
            ),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\ndevice = \"tpu\"",
                "unknown device `tpu`",
            ),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\nmodel = \"missing.onnx\"",
                "missing.onnx is not a file",
            ),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\npublish = { spool_dir = \"/tmp\" }",
                "publish.spool_dir is set by the monitor",
            ),
            (
                "name = \"a\"\nuri = \"rtsp://x/y\"\npublish = { method = \"file\", location = \"-\" }",
                "standard output stays empty",
            ),
            ("name = \"a\"\nurl = \"rtsp://x/y\"", "unknown field `url`"),
        ];
        for (body, expected) in cases {
            let e = channel_error(body);
            assert!(e.contains(expected), "{body:?}: {e:?} lacks {expected:?}");
        }
    }

    #[test]
    fn two_channels_may_not_share_a_name() {
        let e = channel_error(
            "name = \"a\"\nuri = \"rtsp://x/y\"\n[[channel]]\nname = \"a\"\nuri = \"rtsp://x/z\"",
        );
        assert_eq!(e, "two channels are named \"a\"");
    }

    #[test]
    fn service_values_out_of_range_are_refused() {
        for (text, expected) in [
            ("reconnect_min_s = 0.0", "[service] reconnect_min_s"),
            (
                "reconnect_min_s = 5.0\nreconnect_max_s = 2.0",
                "reconnect_max_s: 2 is below reconnect_min_s (5)",
            ),
            ("batch_size = 0", "[service] batch_size"),
            ("listen = 9090", "invalid type"),
        ] {
            let e = parse(&format!("[service]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn defaults_cannot_name_a_source() {
        let e = parse("[defaults]\nuri = \"rtsp://x/y\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "[defaults] may not set uri: it belongs to one channel"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_the_line() {
        let dir = model_dir();
        let path = dir.path().join("channels.toml");
        std::fs::write(&path, "[service]\nlisten = \n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
