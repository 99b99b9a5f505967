//! `sd2publish` in pipelines: the file target, a full spool, and settings it refuses.

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use common::*;
use gst::prelude::*;
use gstsd2::publish::spool::Spool;
use mosquitto::{free_port, json_lines};

/// Runs `pipeline` to EOS; returns the element messages and warnings it posted.
fn run(pipeline: &gst::Element) -> (Vec<gst::Structure>, Vec<String>) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let (mut messages, mut warnings) = (Vec::new(), Vec::new());
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(60))
            .expect("the pipeline ends within a minute");
        match msg.view() {
            gst::MessageView::Element(e) => messages.push(e.structure().unwrap().to_owned()),
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            gst::MessageView::Eos(_) => return (messages, warnings),
            _ => {}
        }
    }
}

fn element(p: &gst::Element, name: &str) -> gst::Element {
    p.downcast_ref::<gst::Bin>().unwrap().by_name(name).unwrap()
}

#[test]
fn frames_go_to_a_file_as_sd2json_writes_them_and_numbering_continues_after_a_restart() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (out, reference) = (dir.path().join("out.jsonl"), dir.path().join("ref.jsonl"));
    let launch = || {
        gst::parse::launch(&format!(
            "filesrc location={} ! pngdec ! imagefreeze num-buffers=5 ! videoconvert ! \
             video/x-raw,framerate=25/1 ! sd2facedetect ! sd2deepfake model={} ! tee name=t \
             t. ! queue ! sd2json location={} source=astronaut ! fakesink \
             t. ! queue ! sd2publish method=file location={} channel=cam1 source=astronaut spool-dir={} ! fakesink",
            installed("samples/astronaut.png").display(),
            demo_model().display(),
            reference.display(),
            out.display(),
            dir.path().join("spool").display()
        ))
        .unwrap()
    };
    for run_ in 0..2u64 {
        let p = launch();
        let (_, warnings) = run(&p);
        assert!(warnings.is_empty(), "{warnings:?}");
        p.set_state(gst::State::Null).unwrap();
        let published = json_lines(&out);
        let lines = json_lines(&reference);
        assert_eq!(
            published.len() as u64,
            5 * (run_ + 1),
            "appended, not truncated"
        );
        for (i, (m, line)) in published[5 * run_ as usize..]
            .iter()
            .zip(&lines)
            .enumerate()
        {
            let mut m = m.clone();
            let o = m.as_object_mut().unwrap();
            assert_eq!(o.remove("seq").unwrap(), 5 * run_ + i as u64);
            assert_eq!(o.remove("channel").unwrap(), "cam1");
            assert_eq!(o.remove("kind").unwrap(), "frame");
            assert_eq!(&m, line, "the frame message is sd2json's line");
        }
        assert_eq!(
            lines[0]["objects"].as_array().unwrap().len(),
            1,
            "the astronaut's face"
        );
    }
}

#[test]
fn a_full_spool_drops_the_oldest_reports_it_and_never_holds_the_stream() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    // Nothing listens on the port: every message stays in the spool.
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=500 ! video/x-raw,width=64,height=48,framerate=25/1 ! \
         sd2publish name=pub location=mqtt://127.0.0.1:{} channel=cam1 spool-dir={} \
         spool-size=16384 drain-timeout=0 ! fakesink",
        free_port(),
        spool_dir.display()
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let (messages, warnings) = run(&p);
    let seconds = started.elapsed().as_secs();
    let publisher = element(&p, "pub");
    let dropped: u64 = publisher.property("dropped");
    let spooled: u64 = publisher.property("spooled");
    p.set_state(gst::State::Null).unwrap();

    assert!(dropped > 0);
    assert_eq!(
        dropped + spooled,
        500,
        "every message is spooled or counted dropped"
    );
    let reports: Vec<&gst::Structure> = messages
        .iter()
        .filter(|s| s.name() == "sd2-publish-dropped")
        .collect();
    assert!(!reports.is_empty(), "the drops are reported on the bus");
    // One when the drops start, at most one a second after, one at the end.
    assert!(
        reports.len() as u64 <= seconds + 2,
        "{} reports in {seconds} s",
        reports.len()
    );
    let last = reports.last().unwrap();
    assert_eq!(last.get::<u64>("dropped").unwrap(), dropped);
    assert_eq!(
        last.get::<String>("spool-dir").unwrap(),
        spool_dir.display().to_string()
    );
    assert_eq!(last.get::<u64>("spool-size").unwrap(), 16384);
    assert!(
        warnings.iter().any(|w| w.contains("is full")),
        "{warnings:?}"
    );

    // What is left is the newest messages, within the size.
    let spool = Spool::open(&spool_dir, 16384).unwrap();
    assert!(spool.bytes() <= 16384);
    let mut r = spool.reader();
    let mut seqs = Vec::new();
    while let Some(rec) = r.next(&spool).unwrap() {
        seqs.push(rec.seq);
    }
    assert_eq!(seqs, (dropped..500).collect::<Vec<_>>());
}

#[test]
fn a_location_that_does_not_fit_the_method_fails_the_state_change_naming_it() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! sd2publish method=http location=ftp://example.org/hook spool-dir={} ! fakesink",
        dir.path().display()
    ))
    .unwrap();
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("ftp://example.org/hook") && err.contains("http://"),
        "{err}"
    );
}

#[test]
fn two_publishers_on_one_spool_are_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! tee name=t \
         t. ! queue ! sd2publish method=file location={0}/a.jsonl spool-dir={0}/spool ! fakesink \
         t. ! queue ! sd2publish method=file location={0}/b.jsonl spool-dir={0}/spool ! fakesink",
        dir.path().display()
    ))
    .unwrap();
    let err = start_error(&p).expect("an error");
    assert!(err.contains("in use by another publisher"), "{err}");
}

#[test]
fn a_wildcard_topic_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! sd2publish topic=sd2/+/frames spool-dir={} ! fakesink",
        dir.path().display()
    ))
    .unwrap();
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("sd2/+/frames") && err.contains("wildcard"),
        "{err}"
    );
}

#[test]
fn stopping_the_pipeline_ends_a_drain_at_once_and_keeps_the_messages() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=48 ! \
         sd2publish location=mqtt://127.0.0.1:{} spool-dir={} drain-timeout=600000 ! fakesink",
        free_port(),
        spool_dir.display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(30))
            .expect("the element drains at the end of the stream");
        if let gst::MessageView::Element(e) = msg.view()
            && e.structure().unwrap().name() == "sd2-publish-draining"
        {
            break;
        }
    }
    let started = std::time::Instant::now();
    p.set_state(gst::State::Null).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
    let spool = Spool::open(&spool_dir, 1 << 20).unwrap();
    assert_eq!(spool.counts().waiting, 5);
}
