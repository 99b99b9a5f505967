//! The HTTP API of a running `sd2-monitor`: channels added and removed while others run,
//! their state and metrics following, and bad requests answered with a 4xx and a message,
//! never a crash. The scenario runs once; each test checks one thing it showed.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Exit, Service};
use serde_json::{Value, json};

struct Seen {
    added: (u16, Value),
    names_after_add: Vec<String>,
    added_state: String,
    metrics_after_add: String,
    removed: (u16, Value),
    get_removed: (u16, Value),
    names_after_remove: Vec<String>,
    metrics_after_remove: String,
    /// `(what, status, body)` of every bad request.
    refused: Vec<(&'static str, u16, String)>,
    put_allow: (u16, String),
    /// Frames of the channels left, before and after the bad requests.
    frames_before: [u64; 2],
    frames_after: [u64; 2],
    health_after: (u16, Value),
    exit: Exit,
}

fn names(s: &Service) -> Vec<String> {
    let (_, v) = s.get_json("/channels");
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn frames(s: &Service, name: &str) -> u64 {
    s.channel(name)["frames"].as_u64().unwrap()
}

fn bad_requests(s: &Service) -> Vec<(&'static str, u16, String)> {
    let uri = common::demo_uri();
    let not_a_model = s.dir.path().join("channels.toml");
    let posts: Vec<(&'static str, String)> = vec![
        ("not JSON", "name=d".to_owned()),
        ("a name taken", json!({"name": "b", "uri": uri}).to_string()),
        ("no source", json!({"name": "d"}).to_string()),
        (
            "a bad name",
            json!({"name": "../d", "uri": uri}).to_string(),
        ),
        (
            "an unknown field",
            json!({"name": "d", "uri": uri, "colour": "red"}).to_string(),
        ),
        (
            "a model that is not there",
            json!({"name": "d", "uri": uri, "model": "/nonexistent/m.onnx"}).to_string(),
        ),
        (
            "a model that does not load",
            json!({"name": "d", "uri": uri, "model": not_a_model}).to_string(),
        ),
        (
            "a source that does not parse",
            json!({"name": "d", "source": "videotestsrc ! ! nothing"}).to_string(),
        ),
        (
            "a threshold out of range",
            json!({"name": "d", "uri": uri, "threshold": 2.0}).to_string(),
        ),
        (
            "a publish method that does not exist",
            json!({"name": "d", "uri": uri, "publish": {"method": "carrier-pigeon"}}).to_string(),
        ),
        (
            "a body too large",
            format!("{{\"name\":\"d\",\"uri\":\"{}\"}}", "x".repeat(100_000)),
        ),
    ];
    let mut refused: Vec<_> = posts
        .into_iter()
        .map(|(what, body)| {
            let (code, text) = s.request("POST", "/channels", &body);
            (what, code, text)
        })
        .collect();
    for (what, method, path) in [
        (
            "removing a channel that is not there",
            "DELETE",
            "/channels/nope",
        ),
        ("a channel that is not there", "GET", "/channels/nope"),
        ("a path that is not there", "GET", "/nope"),
    ] {
        let (code, text) = s.request(method, path, "");
        refused.push((what, code, text));
    }
    refused
}

fn scenario() -> &'static Seen {
    static SEEN: OnceLock<Result<Seen, String>> = OnceLock::new();
    common::once(&SEEN, || {
        let uri = common::demo_uri();
        let s = Service::start(&format!(
            "[service]\ndrain_timeout_s = 2.0\n[defaults]\non_eos = \"loop\"\n\
             [[channel]]\nname = \"a\"\nuri = \"{uri}\"\n\
             [[channel]]\nname = \"b\"\nuri = \"{uri}\"\n"
        ));
        let minute = Duration::from_secs(60);
        s.wait_for("a and b to play", minute, |s| {
            frames(s, "a") > 0 && frames(s, "b") > 0
        });
        let added = s.post("/channels", &json!({"name": "c", "uri": uri}).to_string());
        let names_after_add = names(&s);
        s.wait_for("c to play", minute, |s| frames(s, "c") >= 25);
        let added_state = s.channel("c")["state"].as_str().unwrap().to_owned();
        let metrics_after_add = s.get("/metrics").1;
        let removed = s.delete("/channels/a");
        let get_removed = s.get_json("/channels/a");
        let names_after_remove = names(&s);
        let metrics_after_remove = s.get("/metrics").1;
        let frames_before = [frames(&s, "b"), frames(&s, "c")];
        let refused = bad_requests(&s);
        let put_allow = s.request("PUT", "/channels", "{}");
        std::thread::sleep(Duration::from_secs(1));
        let frames_after = [frames(&s, "b"), frames(&s, "c")];
        let health_after = s.get_json("/healthz");
        let exit = s.terminate();
        Seen {
            added,
            names_after_add,
            added_state,
            metrics_after_add,
            removed,
            get_removed,
            names_after_remove,
            metrics_after_remove,
            refused,
            put_allow,
            frames_before,
            frames_after,
            health_after,
            exit,
        }
    })
}

#[test]
fn a_channel_added_while_two_run_is_listed_and_plays() {
    let s = scenario();
    assert_eq!(s.added.0, 201, "{}", s.added.1);
    assert_eq!(s.added.1["name"], "c");
    assert_eq!(s.names_after_add, ["a", "b", "c"]);
    assert_eq!(s.added_state, "playing");
}

#[test]
fn the_added_channel_has_metrics() {
    let m = &scenario().metrics_after_add;
    let frames = common::parse_metric(m, "sd2_frames_total{channel=\"c\"}").unwrap();
    assert!(frames >= 25.0, "{m}");
    assert!(m.contains("sd2_inference_latency_seconds_count{channel=\"c\"}"));
}

#[test]
fn three_channels_share_one_loaded_model() {
    let m = &scenario().metrics_after_add;
    let models: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("sd2_model_faces_total{"))
        .collect();
    assert_eq!(models.len(), 1, "{models:?}");
    let faces: f64 = models[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(faces > 0.0, "{m}");
}

#[test]
fn a_removed_channel_is_stopped_and_gone_from_state_and_metrics() {
    let s = scenario();
    assert_eq!(s.removed.0, 200, "{}", s.removed.1);
    assert_eq!(s.removed.1["state"], "stopped");
    assert_eq!(s.get_removed.0, 404);
    assert_eq!(s.get_removed.1["error"], "no channel named \"a\"");
    assert_eq!(s.names_after_remove, ["b", "c"]);
    assert!(!s.metrics_after_remove.contains("channel=\"a\""));
    assert!(
        s.metrics_after_remove
            .contains("sd2_frames_total{channel=\"b\"}")
    );
}

fn refusal(what: &str) -> (u16, String) {
    let (_, code, body) = scenario()
        .refused
        .iter()
        .find(|(w, _, _)| *w == what)
        .unwrap();
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    (
        *code,
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error: {body}"))
            .to_owned(),
    )
}

#[test]
fn bad_requests_get_a_4xx_with_a_message_that_names_the_problem() {
    let cases = [
        ("not JSON", 400, "not a channel's fields as JSON"),
        ("a name taken", 409, "a channel named \"b\" exists"),
        ("no source", 400, "needs a uri or a source"),
        ("a bad name", 400, "channel name \"../d\""),
        ("an unknown field", 400, "unknown field `colour`"),
        (
            "a model that is not there",
            400,
            "/nonexistent/m.onnx is not a file",
        ),
        ("a model that does not load", 400, "channels.toml"),
        ("a source that does not parse", 400, "does not parse"),
        (
            "a threshold out of range",
            400,
            "threshold 2 is not from 0 to 1",
        ),
        (
            "a publish method that does not exist",
            400,
            "carrier-pigeon",
        ),
        ("a body too large", 413, "larger than 65536 bytes"),
        (
            "removing a channel that is not there",
            404,
            "no channel named \"nope\"",
        ),
        (
            "a channel that is not there",
            404,
            "no channel named \"nope\"",
        ),
        ("a path that is not there", 404, "no such path \"/nope\""),
    ];
    for (what, status, words) in cases {
        let (code, message) = refusal(what);
        assert_eq!(code, status, "{what}: {message}");
        assert!(
            message.contains(words),
            "{what}: {message:?} lacks {words:?}"
        );
    }
}

#[test]
fn a_method_a_path_does_not_take_is_405_and_says_which_it_takes() {
    let (code, body) = &scenario().put_allow;
    assert_eq!(*code, 405);
    assert!(body.contains("use GET, POST"), "{body}");
}

#[test]
fn bad_requests_leave_the_running_channels_running() {
    let s = scenario();
    assert_eq!(s.health_after.0, 200);
    assert_eq!(s.health_after.1["channels"], 2);
    assert_eq!(s.health_after.1["playing"], 2);
    for i in 0..2 {
        assert!(
            s.frames_after[i] > s.frames_before[i],
            "{:?} → {:?}",
            s.frames_before,
            s.frames_after
        );
    }
}

#[test]
fn the_service_stops_cleanly_after_all_that() {
    let e = &scenario().exit;
    assert!(e.status.success(), "{:?}\n{}", e.status, e.stderr);
    assert_eq!(e.stdout, "");
    assert!(!e.stderr.contains("panicked"), "{}", e.stderr);
}
