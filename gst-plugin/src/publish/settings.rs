//! `sd2publish`'s properties: what a user sets, with the defaults the property specs read.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use super::destination::{self, ConfigError, Destination, Method, MqttVersion, Options};
use super::publisher::Config;
use super::topic;

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2PublishMethod")]
pub enum MethodKind {
    #[enum_value(
        name = "File: one JSON line per message, appended to location (- for standard output)",
        nick = "file"
    )]
    File = 0,
    #[default]
    #[enum_value(
        name = "MQTT: published to the broker at location (mqtt://HOST[:PORT] or mqtts://)",
        nick = "mqtt"
    )]
    Mqtt = 1,
    #[enum_value(name = "HTTP: POSTed to location (http:// or https://)", nick = "http")]
    Http = 2,
}

impl From<MethodKind> for Method {
    fn from(m: MethodKind) -> Method {
        match m {
            MethodKind::File => Method::File,
            MethodKind::Mqtt => Method::Mqtt,
            MethodKind::Http => Method::Http,
        }
    }
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2MqttVersion")]
pub enum VersionKind {
    #[default]
    #[enum_value(name = "MQTT 3.1.1", nick = "3.1.1")]
    V311 = 4,
    #[enum_value(name = "MQTT 5", nick = "5")]
    V5 = 5,
}

/// Which messages are published.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSd2PublishWhat")]
pub enum What {
    #[default]
    #[enum_value(name = "Every frame's JSON line and every alert", nick = "all")]
    All = 0,
    #[enum_value(name = "Alerts only", nick = "alerts")]
    Alerts = 1,
    #[enum_value(name = "Frames only", nick = "frames")]
    Frames = 2,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub method: MethodKind,
    pub channel: String,
    pub location: Option<String>,
    pub topic: String,
    pub alert_topic: String,
    pub publish: What,
    pub qos: u32,
    pub mqtt_version: VersionKind,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<String>,
    pub spool_dir: Option<String>,
    pub spool_size: u64,
    pub drain_timeout_ms: u32,
    pub source: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            method: MethodKind::default(),
            channel: "default".into(),
            location: None,
            topic: topic::FRAMES.into(),
            alert_topic: topic::ALERTS.into(),
            publish: What::default(),
            qos: 1,
            mqtt_version: VersionKind::default(),
            client_id: None,
            username: None,
            password: None,
            tls_ca_file: None,
            spool_dir: None,
            spool_size: 256 << 20,
            drain_timeout_ms: 10_000,
            source: None,
        }
    }
}

/// What `start` makes of the settings.
pub struct Prepared {
    pub config: Config,
    /// The topic of frames, when frames are published.
    pub frames: Option<String>,
    /// The topic of alerts, when alerts are published.
    pub alerts: Option<String>,
}

impl Settings {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms.into())
    }

    /// The publisher's configuration and the topics, checked.
    pub fn prepare(&self) -> Result<Prepared, ConfigError> {
        topic::check_channel(&self.channel)?;
        let options = Options {
            method: self.method.into(),
            location: self.location.clone(),
            qos: self.qos,
            mqtt_version: match self.mqtt_version {
                VersionKind::V311 => MqttVersion::V311,
                VersionKind::V5 => MqttVersion::V5,
            },
            client_id: self
                .client_id
                .clone()
                .unwrap_or_else(|| format!("sd2-{}", self.channel)),
            username: self.username.clone(),
            password: self.password.clone(),
            tls_ca_file: self.tls_ca_file.as_ref().map(PathBuf::from),
        };
        let frames = matches!(self.publish, What::All | What::Frames)
            .then(|| topic::expand(&self.topic, &self.channel))
            .transpose()?;
        let alerts = matches!(self.publish, What::All | What::Alerts)
            .then(|| topic::expand(&self.alert_topic, &self.channel))
            .transpose()?;
        Ok(Prepared {
            config: Config {
                channel: self.channel.clone(),
                spool_dir: self.spool_dir.as_ref().map_or_else(
                    || destination::default_spool_dir(&self.channel),
                    PathBuf::from,
                ),
                spool_size: self.spool_size,
                destination: Destination::new(&options)?,
            },
            frames,
            alerts,
        })
    }

    pub fn set(&mut self, name: &str, v: &glib::Value) {
        let string = || v.get::<Option<String>>().expect("type checked upstream");
        match name {
            "method" => self.method = v.get().expect("type checked upstream"),
            "channel" => self.channel = string().unwrap_or_else(|| Settings::default().channel),
            "location" => self.location = string(),
            "topic" => self.topic = string().unwrap_or_else(|| topic::FRAMES.into()),
            "alert-topic" => self.alert_topic = string().unwrap_or_else(|| topic::ALERTS.into()),
            "publish" => self.publish = v.get().expect("type checked upstream"),
            "qos" => self.qos = v.get().expect("type checked upstream"),
            "mqtt-version" => self.mqtt_version = v.get().expect("type checked upstream"),
            "client-id" => self.client_id = string(),
            "username" => self.username = string(),
            "password" => self.password = string(),
            "tls-ca-file" => self.tls_ca_file = string(),
            "spool-dir" => self.spool_dir = string(),
            "spool-size" => self.spool_size = v.get().expect("type checked upstream"),
            "drain-timeout" => self.drain_timeout_ms = v.get().expect("type checked upstream"),
            "source" => self.source = string(),
            other => unreachable!("no property {other}"),
        }
    }

    /// The value of a property the settings hold (the counters are the element's).
    pub fn get(&self, name: &str) -> glib::Value {
        match name {
            "method" => self.method.to_value(),
            "channel" => self.channel.to_value(),
            "location" => self.location.to_value(),
            "topic" => self.topic.to_value(),
            "alert-topic" => self.alert_topic.to_value(),
            "publish" => self.publish.to_value(),
            "qos" => self.qos.to_value(),
            "mqtt-version" => self.mqtt_version.to_value(),
            "client-id" => self.client_id.to_value(),
            "username" => self.username.to_value(),
            "tls-ca-file" => self.tls_ca_file.to_value(),
            "spool-dir" => self.spool_dir.to_value(),
            "spool-size" => self.spool_size.to_value(),
            "drain-timeout" => self.drain_timeout_ms.to_value(),
            "source" => self.source.to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

/// The property specs, defaults from [`Settings::default`].
pub fn specs() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        let d = Settings::default();
        let mut specs = destination_specs(&d);
        specs.extend(message_specs(&d));
        specs.extend(spool_specs(&d));
        specs.extend(counter_specs());
        specs
    });
    PROPERTIES.as_ref()
}

fn destination_specs(d: &Settings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecEnum::builder_with_default("method", d.method)
            .nick("Method")
            .blurb("Where messages go: file, mqtt or http; location says which file, broker or URL")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("location")
            .nick("Location")
            .blurb("method=file: a file appended to, or - for standard output; method=mqtt: mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883, TLS), default mqtt://localhost:1883; method=http: the http:// or https:// URL each message is POSTed to")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("qos")
            .nick("MQTT QoS")
            .blurb("1: a message leaves the spool when the broker acknowledges it (PUBACK), and may arrive twice after a reconnection; 0: once it is written to the connection, and is lost if the connection drops before the broker has it")
            .maximum(1)
            .default_value(d.qos)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("mqtt-version", d.mqtt_version)
            .nick("MQTT version")
            .blurb("The protocol spoken to the broker: 3.1.1 or 5 (with MQTT 5, a PUBACK with an error reason is retried)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("client-id")
            .nick("MQTT client id")
            .blurb("The client identifier; unset, sd2-CHANNEL. Two clients with one id take the connection from each other")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("username")
            .nick("Username")
            .blurb("MQTT username (sent only when set)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("password")
            .nick("Password")
            .blurb("MQTT password, sent with username (write-only)")
            .write_only()
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-ca-file")
            .nick("TLS CA file")
            .blurb("PEM file of the certificates the server's certificate must lead to (mqtts:// and https://); unset, Mozilla's root certificates")
            .mutable_ready()
            .build(),
    ]
}

fn message_specs(d: &Settings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("channel")
            .nick("Channel")
            .blurb("Name of the stream, in every message's channel field and in topics ({channel}); not empty, without / + # or braces")
            .default_value(Some(d.channel.as_str()))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("publish", d.publish)
            .nick("Publish")
            .blurb("Which messages: all (every frame's JSON line and every alert), alerts or frames")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("topic")
            .nick("Frames topic")
            .blurb("MQTT topic of the frames' JSON lines ({channel} is replaced; no wildcards); for HTTP, the X-Sd2-Topic header")
            .default_value(Some(d.topic.as_str()))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("alert-topic")
            .nick("Alerts topic")
            .blurb("MQTT topic of the alerts ({channel} is replaced; no wildcards); for HTTP, the X-Sd2-Topic header")
            .default_value(Some(d.alert_topic.as_str()))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("source")
            .nick("Source")
            .blurb("Value of the messages' source field; unset, the element asks upstream for the stream's URI")
            .mutable_ready()
            .build(),
    ]
}

fn spool_specs(d: &Settings) -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("spool-dir")
            .nick("Spool directory")
            .blurb("Where messages wait until the destination confirms them, kept across restarts (what a stopped or killed run left is sent first); one publisher at a time. Unset: $XDG_STATE_HOME/sd2/publish/CHANNEL (~/.local/state/sd2/publish/CHANNEL)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder("spool-size")
            .nick("Spool size")
            .blurb("Most bytes the spool holds on disk. When it is full the oldest messages are dropped (counted in dropped, reported by sd2-publish-dropped messages); the stream never waits")
            .minimum(4096)
            .default_value(d.spool_size)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("drain-timeout")
            .nick("Drain timeout")
            .blurb("At end of stream, most milliseconds to wait for every message to be delivered before passing the end on (what is left stays in the spool for the next run); 0: do not wait")
            .default_value(d.drain_timeout_ms)
            .mutable_playing()
            .build(),
    ]
}

fn counter_specs() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecUInt64::builder("published")
            .nick("Published")
            .blurb("Messages the destination confirmed since start")
            .read_only()
            .build(),
        glib::ParamSpecUInt64::builder("spooled")
            .nick("Spooled")
            .blurb("Messages waiting in the spool for the destination's confirmation, an earlier run's included")
            .read_only()
            .build(),
        glib::ParamSpecUInt64::builder("dropped")
            .nick("Dropped")
            .blurb("Messages lost since start: dropped, oldest first, from a full spool, or not written to it")
            .read_only()
            .build(),
    ]
}
