//! `sd2json` writes one line per frame with every face, where it was told to.

mod common;

use common::*;
use gst::prelude::*;

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn one_line_per_frame_with_the_faces() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("faces.jsonl");
    let sample = installed("samples/astronaut.png");
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! pngdec ! imagefreeze num-buffers=5 ! videoconvert ! video/x-raw,framerate=25/1 ! sd2facedetect ! sd2json location={} source=astronaut ! fakesink",
        sample.display(),
        out.display()
    ))
    .unwrap();
    run_to_eos(&p);
    let lines = lines(&out);
    assert_eq!(lines.len(), 5);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["timestamp"], serde_json::json!(i as u64 * 40_000_000));
        assert_eq!(
            l["resolution"],
            serde_json::json!({"width": 512, "height": 512})
        );
        assert_eq!(l["source"], "astronaut");
        let objects = l["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 1);
        let o = &objects[0];
        assert_eq!(o["roi_type"], "face");
        let b = &o["detection"]["bounding_box"];
        let bbox = ["x_min", "y_min", "x_max", "y_max"].map(|k| b[k].as_f64().unwrap());
        assert!(iou(bbox, astronaut_box()) > 0.9, "{bbox:?}");
        assert!(o["detection"]["confidence"].as_f64().unwrap() > 0.99);
        assert_eq!(o["detection"]["landmarks"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn frames_without_faces_still_get_a_line() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("none.jsonl");
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240 ! sd2facedetect ! sd2json location={} ! fakesink",
        out.display()
    ))
    .unwrap();
    run_to_eos(&p);
    let lines = lines(&out);
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["objects"].as_array().unwrap().is_empty())
    );
}

#[test]
fn an_unwritable_location_fails_the_state_change_naming_it() {
    init();
    let p = gst::parse::launch(
        "videotestsrc num-buffers=1 ! sd2json location=/nonexistent-dir/out.jsonl ! fakesink",
    )
    .unwrap();
    let err = start_error(&p).expect("an error");
    assert!(
        err.contains("cannot open /nonexistent-dir/out.jsonl for writing"),
        "{err}"
    );
}

#[test]
fn a_slow_output_is_reported_and_loses_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("slow.jsonl");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A reader that takes a line, stalls for two seconds, then reads the rest.
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(std::fs::File::open(reader_path).unwrap()).lines();
        let first = lines.next();
        std::thread::sleep(std::time::Duration::from_secs(2));
        first.into_iter().chain(lines).count()
    });
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3000 ! video/x-raw,width=32,height=32,framerate=1000/1 ! sd2json location={} ! fakesink",
        fifo.display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let mut warned = false;
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(60))
            .expect("the pipeline ends");
        match msg.view() {
            gst::MessageView::Warning(w) => {
                warned |= w.error().to_string().contains("slower than the stream")
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    p.set_state(gst::State::Null).unwrap();
    assert!(warned, "a warning says the output is behind");
    assert_eq!(reader.join().unwrap(), 3000, "every line arrives");
}
