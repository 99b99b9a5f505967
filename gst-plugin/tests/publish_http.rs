//! `sd2publish method=http`: a webhook on a local HTTP server receives the demo video's
//! alerts, the one it first refused included.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use serde_json::Value;

/// A request the webhook received, and the status it answered.
#[derive(Debug, Clone)]
struct Request {
    status: u16,
    path: String,
    content_type: String,
    topic: String,
    body: Value,
}

/// A webhook receiver on a free local port: it answers its first request 503 (a receiver
/// restarting), every later one 200.
struct Webhook {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let log = log.clone();
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        Webhook { port, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection (kept alive) until the client closes it.
fn serve(stream: TcpStream, log: &Mutex<Vec<Request>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let (mut length, mut content_type, mut topic) = (0, String::new(), String::new());
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_owned(),
                "x-sd2-topic" => topic = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let status = {
            let mut log = log.lock().unwrap();
            let status = if log.is_empty() { 503 } else { 200 };
            log.push(Request {
                status,
                path,
                content_type,
                topic,
                body: serde_json::from_slice(&body).unwrap(),
            });
            status
        };
        let reason = if status == 200 {
            "OK"
        } else {
            "Service Unavailable"
        };
        write!(
            writer,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
    }
}

#[test]
fn a_webhook_receives_every_alert_once_it_accepts_them() {
    init();
    let hook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! sd2facedetect inference-interval=5 ! \
         sd2deepfake model={} ! sd2publish method=http location=http://127.0.0.1:{}/hooks/sd2 \
         publish=alerts channel=cam1 spool-dir={} ! fakesink",
        installed("demo/faces.webm").display(),
        demo_model().display(),
        hook.port,
        dir.path().join("spool").display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let mut bus_alerts = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(120))
            .expect("the pipeline ends");
        match msg.view() {
            gst::MessageView::Element(e)
                if e.structure().unwrap().name() == "sd2-deepfake-alert" =>
            {
                let s = e.structure().unwrap();
                bus_alerts.push((
                    s.get::<u64>("track_id").unwrap(),
                    s.get::<u64>("timestamp").unwrap(),
                ));
            }
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();

    assert!(!bus_alerts.is_empty(), "the swapped face raises alerts");
    let requests = hook.requests();
    assert_eq!(requests[0].status, 503);
    let accepted: Vec<&Request> = requests.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        accepted[0].body, requests[0].body,
        "the refused alert is sent again"
    );
    assert_eq!(accepted.len(), bus_alerts.len(), "each alert accepted once");
    for (i, (r, (track, ts))) in accepted.iter().zip(&bus_alerts).enumerate() {
        assert_eq!(r.path, "/hooks/sd2");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.topic, "sd2/cam1/alerts");
        let a = &r.body;
        assert_eq!(a["channel"], "cam1");
        assert_eq!(a["kind"], "alert");
        assert_eq!(
            a["seq"], i as u64,
            "alerts only: the channel's messages are the alerts"
        );
        assert_eq!(
            (&a["track_id"], &a["timestamp"]),
            (&Value::from(*track), &Value::from(*ts))
        );
        assert!(a["source"].as_str().unwrap().ends_with("faces.webm"), "{a}");
        for k in [
            "label",
            "fake_type",
            "fake_score",
            "confidence",
            "x_min",
            "y_min",
            "x_max",
            "y_max",
        ] {
            assert!(!a[k].is_null(), "{k} in {a}");
        }
    }
}
