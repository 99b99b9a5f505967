//! `sd2publish` to a broker that wants TLS and a password, over MQTT 5: the right CA file
//! and credentials deliver; a wrong password or an unknown CA delivers nothing and says why.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use gst::prelude::*;
use mosquitto::*;

fn sh(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate it signed for localhost and 127.0.0.1 (`server.pem`,
/// `server.key`), made with openssl in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    sh(
        "openssl",
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sd2 test CA",
            ],
        ]
        .concat(),
        dir,
    );
    sh(
        "openssl",
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
        dir,
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        dir,
    );
}

/// 20 frames to `mqtts://localhost:port` over MQTT 5; the element's counters and the
/// warnings it posted.
fn publish(port: u16, extra: &str) -> (u64, u64, Vec<String>) {
    let spool = tempfile::tempdir().unwrap();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=20 ! video/x-raw,width=64,height=48,framerate=25/1 ! \
         sd2publish name=pub mqtt-version=5 location=mqtts://localhost:{port} channel=cam1 \
         spool-dir={} drain-timeout=3000 {extra} ! fakesink",
        spool.path().display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let mut warnings = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(30))
            .expect("the pipeline ends");
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    let publisher = p
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("pub")
        .unwrap();
    let counts = (
        publisher.property::<u64>("published"),
        publisher.property::<u64>("spooled"),
    );
    p.set_state(gst::State::Null).unwrap();
    (counts.0, counts.1, warnings)
}

#[test]
fn tls_and_a_password_over_mqtt_5_deliver_and_a_wrong_one_is_refused() {
    init();
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let c = certs.path().display();
    sh(
        "mosquitto_passwd",
        &["-c", "-b", "passwd", "sd2", "s3cret"],
        certs.path(),
    );
    let tls_port = free_port();
    // The first listener (plain, for the consumer) and a TLS one, both with passwords.
    let broker = Broker::with_config(&format!(
        "allow_anonymous false\npassword_file {c}/passwd\n\
         listener {tls_port} 127.0.0.1\ncafile {c}/ca.pem\ncertfile {c}/server.pem\nkeyfile {c}/server.key\n"
    ));
    wait_listening(tls_port);
    let consumer = Subscriber::connect_with(
        broker.port,
        "consumer",
        "sd2/cam1/#",
        Some(("sd2", "s3cret")),
    );
    let ca = format!("tls-ca-file={c}/ca.pem");

    let (published, spooled, warnings) =
        publish(tls_port, &format!("{ca} username=sd2 password=s3cret"));
    assert_eq!((published, spooled), (20, 0), "{warnings:?}");
    let got = consumer.wait_until(Duration::from_secs(10), |m| m.len() >= 20);
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, m)| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());

    let (published, spooled, warnings) =
        publish(tls_port, &format!("{ca} username=sd2 password=wrong"));
    assert_eq!((published, spooled), (0, 20));
    assert!(
        warnings.iter().any(|w| w.contains("refused")),
        "{warnings:?}"
    );

    // Without the CA file the server's certificate leads to no known root.
    let (published, spooled, warnings) = publish(tls_port, "username=sd2 password=s3cret");
    assert_eq!((published, spooled), (0, 20));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("TLS") || w.contains("certificate")),
        "{warnings:?}"
    );
    assert_eq!(consumer.count(), 20, "nothing more arrived");
}
