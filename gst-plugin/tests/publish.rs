//! `sd2publish` to MQTT on the demo video: every frame and alert reaches a subscriber in
//! order, and a broker restarted in the middle of the video costs nothing.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use mosquitto::*;
use serde_json::Value;

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_millis(1500);

/// The demo video through detection and classification into three publishers of one
/// channel: a file (the reference), a broker that stays up and a broker that is restarted.
fn pipeline(
    reference: &std::path::Path,
    steady: &Broker,
    restarted: &Broker,
    spools: &std::path::Path,
) -> gst::Element {
    let video = installed("demo/faces.webm");
    let publisher = |name: &str, method: &str, location: &str| {
        format!(
            "t. ! queue ! sd2publish name={name} method={method} location={location} channel=cam1 \
             spool-dir={}/{name} drain-timeout=60000 ! fakesink",
            spools.display()
        )
    };
    gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! sd2facedetect inference-interval=5 ! \
         sd2deepfake model={} ! tee name=t {} {} {}",
        video.display(),
        demo_model().display(),
        publisher("reference", "file", &reference.display().to_string()),
        publisher("steady", "mqtt", &steady.url()),
        publisher("restarted", "mqtt", &restarted.url()),
    ))
    .unwrap()
}

fn seqs_of(messages: &[Received]) -> Vec<u64> {
    messages
        .iter()
        .map(|(_, m)| m["seq"].as_u64().unwrap())
        .collect()
}

fn property(p: &gst::Element, element: &str, name: &str) -> u64 {
    p.downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name(element)
        .unwrap()
        .property(name)
}

/// What the bus said while the pipeline ran to EOS: the alerts sd2deepfake posted (track,
/// timestamp), and whether the restarted broker's publisher reported the outage.
struct Run {
    bus_alerts: Vec<(u64, u64)>,
    outage_reported: bool,
}

/// Plays `p` to EOS, stopping `broker` once `consumer` has 40 messages and starting it
/// again OUTAGE later.
fn run_with_outage(p: &gst::Element, broker: &mut Broker, consumer: &Subscriber) -> Run {
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let mut bus_alerts = Vec::new();
    let mut outage_reported = false;
    let mut stopped_at: Option<Instant> = None;
    let mut restarted_after_outage = false;
    let end = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < end,
            "the pipeline ends within three minutes"
        );
        // The broker goes down once the consumer has some of the video, and comes back
        // after OUTAGE.
        if stopped_at.is_none() && consumer.count() >= 40 {
            broker.stop();
            stopped_at = Some(Instant::now());
        }
        if !restarted_after_outage && stopped_at.is_some_and(|t| t.elapsed() >= OUTAGE) {
            broker.restart();
            restarted_after_outage = true;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure().unwrap();
                if s.name() == "sd2-deepfake-alert" {
                    bus_alerts.push((
                        s.get::<u64>("track_id").unwrap(),
                        s.get::<u64>("timestamp").unwrap(),
                    ));
                }
            }
            gst::MessageView::Warning(w) => {
                let from = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                assert!(
                    from != "steady" && from != "reference",
                    "{from} has nothing to warn about: {}",
                    w.error()
                );
                outage_reported |=
                    from == "restarted" && w.error().to_string().contains("unreachable");
            }
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    assert!(
        restarted_after_outage,
        "the broker was restarted before the end of the stream"
    );
    Run {
        bus_alerts,
        outage_reported,
    }
}

#[test]
fn every_frame_and_alert_arrives_in_order_and_a_broker_restart_loses_none() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.jsonl");
    let steady = Broker::start();
    let mut restarted = Broker::start();
    let steady_sub = Subscriber::connect(steady.port, "steady-consumer", "sd2/cam1/#");
    let restarted_sub = Subscriber::connect(restarted.port, "restarted-consumer", "sd2/cam1/#");
    let p = pipeline(&reference, &steady, &restarted, dir.path());

    let run = run_with_outage(&p, &mut restarted, &restarted_sub);
    assert!(run.outage_reported, "the outage is reported on the bus");
    for name in ["steady", "restarted"] {
        assert_eq!(
            property(&p, name, "spooled"),
            0,
            "{name} delivered everything before EOS"
        );
        assert_eq!(property(&p, name, "dropped"), 0, "{name}");
    }
    let published = property(&p, "restarted", "published");
    p.set_state(gst::State::Null).unwrap();

    let expected = json_lines(&reference);
    let frames = expected.iter().filter(|m| m["kind"] == "frame").count();
    let alerts: Vec<&Value> = expected.iter().filter(|m| m["kind"] == "alert").collect();
    assert_eq!(frames, 300, "one message per frame");
    assert!(!alerts.is_empty(), "the swapped face raises alerts");
    assert_eq!(published, expected.len() as u64);
    for (i, m) in expected.iter().enumerate() {
        assert_eq!(m["seq"], i as u64, "seq counts the channel's messages");
        assert_eq!(m["channel"], "cam1");
    }
    // The alerts published are those sd2deepfake posted on the bus.
    let published_alerts: Vec<(u64, u64)> = alerts
        .iter()
        .map(|a| {
            (
                a["track_id"].as_u64().unwrap(),
                a["timestamp"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(published_alerts, run.bus_alerts);
    // An alert follows the frame it was raised on.
    for a in &alerts {
        let frame = &expected[a["seq"].as_u64().unwrap() as usize - 1];
        assert_eq!(frame["timestamp"], a["timestamp"]);
        assert!(
            frame["frame_verdict"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["track_id"] == a["track_id"])
        );
    }

    let want = expected.len();
    let steady_got = steady_sub.wait_until(Duration::from_secs(20), |m| m.len() >= want);
    let topics_and_messages: Vec<(String, Value)> = expected
        .iter()
        .map(|m| {
            let kind = if m["kind"] == "frame" {
                "frames"
            } else {
                "alerts"
            };
            (format!("sd2/cam1/{kind}"), m.clone())
        })
        .collect();
    let all: Vec<u64> = (0..want as u64).collect();
    assert_eq!(
        seqs_of(&steady_got),
        all,
        "the steady broker's consumer gets every message once, in order"
    );
    assert_eq!(steady_got, topics_and_messages);

    let restarted_got =
        restarted_sub.wait_until(Duration::from_secs(20), |m| first_arrivals(m).len() >= want);
    let firsts = first_arrivals(&restarted_got);
    assert_eq!(seqs_of(&firsts), all, "nothing lost");
    assert_eq!(
        firsts, topics_and_messages,
        "after removing duplicates by seq, the same messages in the same order"
    );
    for (topic, m) in &restarted_got {
        let original = &topics_and_messages[m["seq"].as_u64().unwrap() as usize];
        assert_eq!(
            &(topic.clone(), m.clone()),
            original,
            "a duplicate is the same message"
        );
    }
    eprintln!(
        "restarted broker: {} messages received for {} published ({} duplicates)",
        restarted_got.len(),
        want,
        restarted_got.len() - want
    );
}

#[test]
fn messages_in_flight_when_the_broker_stops_are_sent_again() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start();
    let consumer = Subscriber::connect(broker.port, "burst-consumer", "sd2/cam2/#");
    broker.stop();
    // 2,000 frames spooled while the broker is down...
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2000 ! video/x-raw,width=64,height=48,framerate=25/1 ! \
         sd2publish name=pub location={} channel=cam2 spool-dir={} drain-timeout=60000 ! fakesink",
        broker.url(),
        dir.path().display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let publisher = p
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("pub")
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while publisher.property::<u64>("spooled") < 2000 {
        assert!(Instant::now() < end, "2,000 frames spooled");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... go out in a burst when it returns, and it stops again in the middle of it.
    broker.restart();
    consumer.wait_until(Duration::from_secs(30), |m| m.len() >= 300);
    broker.stop();
    let received_before = consumer.count();
    broker.restart();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS once everything is delivered");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();

    assert!(
        received_before < 2000,
        "the broker stopped in the middle of the burst"
    );
    let got = consumer.wait_until(Duration::from_secs(20), |m| first_arrivals(m).len() >= 2000);
    let seqs: Vec<u64> = first_arrivals(&got)
        .iter()
        .map(|(_, m)| m["seq"].as_u64().unwrap())
        .collect();
    let missing: Vec<u64> = (0..2000).filter(|s| !seqs.contains(s)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    eprintln!(
        "burst: {} received before the stop, {} in all ({} duplicates)",
        received_before,
        got.len(),
        got.len() - 2000
    );
}
