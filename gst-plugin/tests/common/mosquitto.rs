//! A Mosquitto broker started by a test on a free local port, and an MQTT subscriber that
//! keeps its session across the broker's restarts.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port nothing listens on at the moment.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_listening(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A broker whose state (subscriptions of persistent sessions, their queued messages) is
/// saved when it stops, as a broker restarted for maintenance keeps it.
pub struct Broker {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// A broker taking anonymous clients on `127.0.0.1:port`.
    pub fn start() -> Broker {
        Broker::with_config("allow_anonymous true\n")
    }

    /// A broker with `extra` configuration after its first listener's.
    pub fn with_config(extra: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = format!(
            "per_listener_settings false\npersistence true\npersistence_location {}/\n\
             autosave_interval 0\nmax_queued_messages 100000\nuser root\n\
             log_dest file {}/broker.log\nlog_type all\nlistener {port} 127.0.0.1\n{extra}",
            dir.path().display(),
            dir.path().display(),
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut broker = Broker {
            port,
            dir,
            child: None,
        };
        broker.run();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (scripts/setup.sh installs it)");
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Stops the broker as a service manager does (SIGTERM: it saves its state and exits).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("a running broker");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
    }

    /// Starts it again on the same port with the state it saved.
    pub fn restart(&mut self) {
        self.run();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A message received: its topic and JSON payload.
pub type Received = (String, Value);

/// An MQTT 3.1.1 subscriber with a persistent session (QoS 1), collecting every message
/// under a topic filter; it reconnects when the broker goes away.
pub struct Subscriber {
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Connects to `127.0.0.1:port` as `client_id` and subscribes to `filter`; returns
    /// once the broker confirmed the subscription.
    pub fn connect(port: u16, client_id: &str, filter: &str) -> Subscriber {
        Subscriber::connect_with(port, client_id, filter, None)
    }

    pub fn connect_with(
        port: u16,
        client_id: &str,
        filter: &str,
        credentials: Option<(&str, &str)>,
    ) -> Subscriber {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 24, 1 << 24);
        if let Some((u, p)) = credentials {
            o.set_credentials(u, p);
        }
        let (client, mut connection) = rumqttc::Client::new(o, 16);
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop, subscribed) = (received.clone(), stop.clone(), subscribed.clone());
            let filter = filter.to_owned();
            std::thread::spawn(move || {
                use rumqttc::{Event, Packet, QoS};
                while !stop.load(Ordering::SeqCst) {
                    match connection.recv_timeout(Duration::from_millis(100)) {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) if !ack.session_present => {
                            client
                                .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
                                .unwrap()
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            subscribed.store(true, Ordering::SeqCst)
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            let v = serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
                                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&p.payload))
                            });
                            received.lock().unwrap().push((p.topic, v));
                        }
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                        _ => {}
                    }
                }
                let _ = client.try_disconnect();
                let _ = connection.recv_timeout(Duration::from_millis(100));
            })
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !subscribed.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < end,
                "no SUBACK from the broker on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Subscriber {
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits up to `timeout` for `done` to hold of the messages received; returns them.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            let m = self.messages();
            if done(&m) || Instant::now() >= end {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The messages in order of first arrival, each `seq` once: what a consumer keeps after
/// removing QoS 1 duplicates.
pub fn first_arrivals(received: &[Received]) -> Vec<Received> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .filter(|(_, v)| seen.insert(v["seq"].as_u64().expect("a seq")))
        .cloned()
        .collect()
}

/// The JSON lines of a file.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The folder of the plugin built with these tests (`target/<profile>/deps`, where cargo
/// writes the library's cdylib), linked alone into a folder of its own for
/// `GST_PLUGIN_PATH`.
pub fn plugin_dir() -> tempfile::TempDir {
    let exe = std::env::current_exe().unwrap();
    let so: PathBuf = exe.parent().unwrap().join("libgstsd2.so");
    assert!(so.exists(), "{} is missing", so.display());
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&so, dir.path().join("libgstsd2.so")).unwrap();
    dir
}
