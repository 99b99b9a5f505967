//! MQTT 3.1.1 and 5 through rumqttc (pure Rust, maintained by Bytebeam, both protocol
//! versions, rustls for TLS, a blocking client over its own event loop).
//!
//! A link is one connection with a clean session: the spool, not the client, remembers
//! what is unconfirmed, and a lost connection is replaced by a new link that sends
//! everything unconfirmed again. A QoS 1 message is confirmed by its PUBACK (in MQTT 5, one
//! whose reason is a success); a QoS 0 message once it is written to the connection.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use rumqttc::{Event, Outgoing, Packet, TlsConfiguration, Transport};

use super::destination::{MqttTarget, MqttVersion};
use super::link::{Link, LinkError};
use super::record::Record;

/// Messages sent and not yet acknowledged.
const WINDOW: usize = 64;
/// Seconds to wait for a TCP (and TLS) connection and the broker's CONNACK.
const CONNECT_TIMEOUT_S: u64 = 5;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// MQTT's largest packet.
const MAX_PACKET: usize = 268_435_455;

/// What the event loop reported, in the terms of either protocol version.
enum Happened {
    Connected,
    /// A publish was written with this packet id (0 for QoS 0).
    Published(u16),
    Acked(u16),
    /// MQTT 5: the broker acknowledged the publish and refused it.
    AckRefused(u16, String),
    Other,
}

/// A client and its event loop (boxed: the link holds one, and moves).
enum Session {
    V4(rumqttc::Client, Box<rumqttc::Connection>),
    V5(rumqttc::v5::Client, Box<rumqttc::v5::Connection>),
}

impl Session {
    fn open(t: &MqttTarget) -> Session {
        let transport = || match &t.tls {
            Some(config) => Transport::Tls(TlsConfiguration::Rustls(config.clone())),
            None => Transport::Tcp,
        };
        match t.version {
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(&t.client_id, &t.host, t.port);
                o.set_keep_alive(KEEP_ALIVE)
                    .set_clean_session(true)
                    .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                    .set_inflight(WINDOW as u16)
                    .set_transport(transport());
                if let Some((user, password)) = &t.credentials {
                    o.set_credentials(user, password);
                }
                let (client, mut connection) = rumqttc::Client::new(o, WINDOW * 2);
                let mut network = rumqttc::NetworkOptions::new();
                network.set_connection_timeout(CONNECT_TIMEOUT_S);
                connection.eventloop.set_network_options(network);
                Session::V4(client, Box::new(connection))
            }
            MqttVersion::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(&t.client_id, &t.host, t.port);
                o.set_keep_alive(KEEP_ALIVE)
                    .set_clean_start(true)
                    .set_max_packet_size(Some(MAX_PACKET as u32))
                    .set_outgoing_inflight_upper_limit(WINDOW as u16)
                    .set_connection_timeout(CONNECT_TIMEOUT_S)
                    .set_transport(transport());
                if let Some((user, password)) = &t.credentials {
                    o.set_credentials(user, password);
                }
                let (client, connection) = rumqttc::v5::Client::new(o, WINDOW * 2);
                Session::V5(client, Box::new(connection))
            }
        }
    }

    fn publish(&self, topic: &str, qos: u8, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Session::V4(c, _) => {
                let qos = if qos == 0 {
                    rumqttc::QoS::AtMostOnce
                } else {
                    rumqttc::QoS::AtLeastOnce
                };
                c.try_publish(topic, qos, false, payload)
                    .map_err(|e| e.to_string())
            }
            Session::V5(c, _) => {
                use rumqttc::v5::mqttbytes::QoS;
                let qos = if qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                c.try_publish(topic, qos, false, payload)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The next event within `timeout` (`None` when there was none); an error is the
    /// connection's end, refused (true) or lost (false).
    fn next(&mut self, timeout: Duration) -> Result<Option<Happened>, (bool, String)> {
        match self {
            Session::V4(_, c) => match c.recv_timeout(timeout) {
                Err(_) => Ok(None),
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok(Some(Happened::Connected)),
                Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => Ok(Some(Happened::Acked(a.pkid))),
                Ok(Ok(Event::Outgoing(Outgoing::Publish(id)))) => Ok(Some(Happened::Published(id))),
                Ok(Ok(_)) => Ok(Some(Happened::Other)),
                Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
                    Err((true, format!("the broker refused the connection: {code:?}")))
                }
                Ok(Err(e)) => Err((false, e.to_string())),
            },
            Session::V5(_, c) => match c.recv_timeout(timeout) {
                Err(_) => Ok(None),
                Ok(Ok(rumqttc::v5::Event::Incoming(Packet5::ConnAck(_)))) => {
                    Ok(Some(Happened::Connected))
                }
                Ok(Ok(rumqttc::v5::Event::Incoming(Packet5::PubAck(a)))) => {
                    Ok(Some(match a.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                            Happened::Acked(a.pkid)
                        }
                        reason => Happened::AckRefused(a.pkid, format!("{reason:?}")),
                    }))
                }
                Ok(Ok(rumqttc::v5::Event::Outgoing(Outgoing::Publish(id)))) => {
                    Ok(Some(Happened::Published(id)))
                }
                Ok(Ok(_)) => Ok(Some(Happened::Other)),
                Ok(Err(rumqttc::v5::ConnectionError::ConnectionRefused(code))) => {
                    Err((true, format!("the broker refused the connection: {code:?}")))
                }
                Ok(Err(e)) => Err((false, e.to_string())),
            },
        }
    }

    fn disconnect(&self) {
        let _ = match self {
            Session::V4(c, _) => c.try_disconnect().map_err(|e| e.to_string()),
            Session::V5(c, _) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

pub struct MqttLink {
    destination: String,
    session: Session,
    qos: u8,
    /// Sent to the client, not yet given a packet id.
    unassigned: VecDeque<u64>,
    /// Packet id to sequence number, for the publishes awaiting their PUBACK.
    awaiting: HashMap<u16, u64>,
    /// The connection ended (polling again would connect anew).
    ended: bool,
}

impl MqttLink {
    /// Connects and waits for the broker's CONNACK.
    pub fn connect(t: &MqttTarget) -> Result<MqttLink, LinkError> {
        let destination = super::destination::Destination::Mqtt(t.clone()).describe();
        let mut link = MqttLink {
            destination,
            session: Session::open(t),
            qos: t.qos,
            unassigned: VecDeque::new(),
            awaiting: HashMap::new(),
            ended: false,
        };
        // rumqttc gives up after CONNECT_TIMEOUT_S; this bound only guards against a hang.
        let deadline = Instant::now() + Duration::from_secs(CONNECT_TIMEOUT_S + 2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LinkError::Unreachable {
                    destination: link.destination.clone(),
                    reason: "no CONNACK in time".into(),
                });
            }
            match link.session.next(left).map_err(|e| link.error(e))? {
                Some(Happened::Connected) => return Ok(link),
                _ => continue,
            }
        }
    }

    fn error(&mut self, (refused, reason): (bool, String)) -> LinkError {
        self.ended = true;
        let destination = self.destination.clone();
        if refused {
            LinkError::Refused {
                destination,
                reason,
            }
        } else {
            LinkError::Unreachable {
                destination,
                reason,
            }
        }
    }

    fn handle(&mut self, event: Happened, confirmed: &mut Vec<u64>) -> Result<(), LinkError> {
        match event {
            Happened::Published(id) => {
                if let Some(seq) = self.unassigned.pop_front() {
                    if id == 0 {
                        confirmed.push(seq);
                    } else {
                        self.awaiting.insert(id, seq);
                    }
                }
            }
            Happened::Acked(id) => confirmed.extend(self.awaiting.remove(&id)),
            Happened::AckRefused(id, reason) => {
                let seq = self.awaiting.get(&id).copied().unwrap_or_default();
                return Err(LinkError::Refused {
                    destination: self.destination.clone(),
                    reason: format!("message {seq} was refused: {reason}"),
                });
            }
            Happened::Connected | Happened::Other => {}
        }
        Ok(())
    }
}

impl Link for MqttLink {
    fn window(&self) -> usize {
        WINDOW
    }

    fn send(&mut self, record: &Record) -> Result<(), LinkError> {
        self.session
            .publish(&record.topic, self.qos, record.payload.clone())
            .map_err(|reason| LinkError::Unreachable {
                destination: self.destination.clone(),
                reason,
            })?;
        self.unassigned.push_back(record.seq);
        Ok(())
    }

    fn poll(&mut self, timeout: Duration, confirmed: &mut Vec<u64>) -> Result<(), LinkError> {
        let deadline = Instant::now() + timeout;
        let before = confirmed.len();
        // Events already there are taken without waiting; then, until something is
        // confirmed, up to the deadline.
        for _ in 0..4 * WINDOW {
            let wait = if confirmed.len() > before {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            match self.session.next(wait).map_err(|e| self.error(e))? {
                Some(event) => self.handle(event, confirmed)?,
                None => break,
            }
        }
        Ok(())
    }
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        // A polite goodbye, when the connection is still up; the broker copes without.
        if self.ended {
            return;
        }
        self.session.disconnect();
        for _ in 0..8 {
            if !matches!(self.session.next(Duration::from_millis(20)), Ok(Some(_))) {
                break;
            }
        }
    }
}
