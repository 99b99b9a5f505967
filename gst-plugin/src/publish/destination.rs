//! Where messages go: a file, an MQTT broker or an HTTP endpoint, read from a method and a
//! location.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::FileLink;
use super::http::HttpLink;
use super::link::{Link, LinkError};
use super::mqtt::MqttLink;
use super::tls::Roots;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("location {location:?} is not {expected}")]
    Location {
        location: String,
        expected: &'static str,
    },
    #[error("method={method} needs a location: {expected}")]
    NoLocation {
        method: &'static str,
        expected: &'static str,
    },
    #[error("cannot read the TLS CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("topic template {template:?}: {reason}")]
    Topic {
        template: String,
        reason: &'static str,
    },
    #[error("channel {channel:?}: {reason}")]
    Channel {
        channel: String,
        reason: &'static str,
    },
    #[error("MQTT QoS {0} is not offered: 0 (at most once) or 1 (at least once)")]
    Qos(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    File,
    Mqtt,
    Http,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::File => "file",
            Method::Mqtt => "mqtt",
            Method::Http => "http",
        }
    }

    /// What `location` holds for this method.
    fn expected(self) -> &'static str {
        match self {
            Method::File => "a file path (appended to), or - for standard output",
            Method::Mqtt => "mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883)",
            Method::Http => "an http:// or https:// URL to POST to",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

/// What the publisher's user chose, before it is checked.
#[derive(Debug, Clone)]
pub struct Options {
    pub method: Method,
    /// `None`: `mqtt://localhost:1883` for MQTT; required otherwise.
    pub location: Option<String>,
    pub qos: u32,
    pub mqtt_version: MqttVersion,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub version: MqttVersion,
    /// 0 or 1.
    pub qos: u8,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
}

#[derive(Clone)]
pub struct HttpTarget {
    pub url: String,
    pub roots: Roots,
}

#[derive(Clone)]
pub enum Destination {
    /// A file appended to; `None` is standard output.
    File(Option<PathBuf>),
    Mqtt(MqttTarget),
    Http(HttpTarget),
}

impl Destination {
    /// Checks `options` and reads the CA file; nothing is connected yet.
    pub fn new(options: &Options) -> Result<Destination, ConfigError> {
        let method = options.method;
        let location = match (&options.location, method) {
            (Some(l), _) => l.clone(),
            (None, Method::Mqtt) => "mqtt://localhost:1883".into(),
            (None, m) => {
                return Err(ConfigError::NoLocation {
                    method: m.name(),
                    expected: m.expected(),
                });
            }
        };
        let bad_location = || ConfigError::Location {
            location: location.clone(),
            expected: method.expected(),
        };
        let roots = match &options.tls_ca_file {
            Some(path) => Roots::from_ca_file(path)?,
            None => Roots::WebPki,
        };
        match method {
            Method::File if location.is_empty() => Err(bad_location()),
            Method::File if location == "-" => Ok(Destination::File(None)),
            Method::File => Ok(Destination::File(Some(PathBuf::from(location)))),
            Method::Http => {
                let uri: ureq::http::Uri = location.parse().map_err(|_| bad_location())?;
                let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
                if !scheme_ok || uri.host().is_none_or(str::is_empty) {
                    return Err(bad_location());
                }
                Ok(Destination::Http(HttpTarget {
                    url: location,
                    roots,
                }))
            }
            Method::Mqtt => {
                let (tls, host, port) = parse_mqtt_location(&location).ok_or_else(bad_location)?;
                let qos = match options.qos {
                    q @ (0 | 1) => q as u8,
                    q => return Err(ConfigError::Qos(q)),
                };
                Ok(Destination::Mqtt(MqttTarget {
                    host,
                    port,
                    tls: if tls {
                        Some(roots.rustls_config()?)
                    } else {
                        None
                    },
                    version: options.mqtt_version,
                    qos,
                    client_id: options.client_id.clone(),
                    credentials: options
                        .username
                        .clone()
                        .map(|u| (u, options.password.clone().unwrap_or_default())),
                }))
            }
        }
    }

    /// Connects (for HTTP, prepares a client; requests connect when they are sent).
    pub fn connect(&self) -> Result<Box<dyn Link>, LinkError> {
        Ok(match self {
            Destination::File(path) => Box::new(FileLink::open(path.as_deref())?),
            Destination::Mqtt(t) => Box::new(MqttLink::connect(t)?),
            Destination::Http(t) => Box::new(HttpLink::new(t)),
        })
    }

    /// The destination as a user wrote it, for messages.
    pub fn describe(&self) -> String {
        describe(self)
    }
}

fn describe(d: &Destination) -> String {
    match d {
        Destination::File(None) => "standard output".into(),
        Destination::File(Some(p)) => p.display().to_string(),
        Destination::Mqtt(t) => {
            let scheme = if t.tls.is_some() { "mqtts" } else { "mqtt" };
            if t.host.contains(':') {
                format!("{scheme}://[{}]:{}", t.host, t.port)
            } else {
                format!("{scheme}://{}:{}", t.host, t.port)
            }
        }
        Destination::Http(t) => t.url.clone(),
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]` (an IPv6 host in brackets): whether TLS is
/// on, the host and the port.
fn parse_mqtt_location(location: &str) -> Option<(bool, String, u16)> {
    let (tls, rest) = if let Some(r) = location.strip_prefix("mqtts://") {
        (true, r)
    } else {
        (false, location.strip_prefix("mqtt://")?)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (host, after) = r.split_once(']')?;
        if !after.is_empty() && !after.starts_with(':') {
            return None;
        }
        (host, after.strip_prefix(':'))
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.contains(['/', '@', ':']) {
            return None;
        }
        (host, port)
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None if tls => 8883,
        None => 1883,
    };
    Some((tls, host.to_owned(), port))
}

/// Where a channel's spool lives when none is set: `$XDG_STATE_HOME/sd2/publish/CHANNEL`
/// (`~/.local/state/…` without it).
pub fn default_spool_dir(channel: &str) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("sd2/publish").join(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_locations_name_a_host_and_a_port() {
        let p = |l| parse_mqtt_location(l);
        assert_eq!(p("mqtt://broker"), Some((false, "broker".into(), 1883)));
        assert_eq!(
            p("mqtts://broker:8884/"),
            Some((true, "broker".into(), 8884))
        );
        assert_eq!(p("mqtts://broker"), Some((true, "broker".into(), 8883)));
        assert_eq!(p("mqtt://[::1]:1884"), Some((false, "::1".into(), 1884)));
        for bad in [
            "tcp://broker",
            "mqtt://",
            "mqtt://broker:x",
            "mqtt://u@broker",
            "mqtt://a/b",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    fn options(method: Method, location: Option<&str>) -> Options {
        Options {
            method,
            location: location.map(Into::into),
            qos: 1,
            mqtt_version: MqttVersion::V311,
            client_id: "sd2-test".into(),
            username: None,
            password: None,
            tls_ca_file: None,
        }
    }

    #[test]
    fn a_location_that_does_not_fit_the_method_is_refused_naming_both() {
        let e = Destination::new(&options(Method::Http, Some("mqtt://broker")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("mqtt://broker") && e.contains("http://"), "{e}");
        let e = Destination::new(&options(Method::File, None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("method=file needs a location"), "{e}");
        assert_eq!(
            Destination::new(&options(Method::Mqtt, None))
                .unwrap()
                .describe(),
            "mqtt://localhost:1883"
        );
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let mut o = options(Method::Mqtt, Some("mqtts://broker"));
        o.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let e = Destination::new(&o).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
