//! `sd2-monitor --config FILE` with a mistake in FILE: it exits 1 before starting anything,
//! with one log line naming the file or the channel and the problem; `--check` checks a
//! good file and exits 0.

mod common;

use std::time::Duration;

use serde_json::Value;

/// The error line of a run that failed.
fn fatal(config: &str) -> String {
    let (exit, _dir) = common::run_with_config(config, &[]);
    assert_eq!(exit.status.code(), Some(1), "{config}\n{}", exit.stderr);
    assert_eq!(exit.stdout, "");
    assert!(exit.took < Duration::from_secs(30), "{:?}", exit.took);
    let lines = common::log_lines(&exit.stderr);
    let last: &Value = lines.last().expect("a log line");
    assert_eq!(last["level"], "ERROR", "{}", exit.stderr);
    assert_eq!(last["event"], "fatal");
    last["error"].as_str().unwrap().to_owned()
}

fn file_channel(extra: &str) -> String {
    format!(
        "[[channel]]\nname = \"a\"\nuri = \"{}\"\n{extra}\n",
        common::demo_uri()
    )
}

#[test]
fn a_syntax_error_names_the_file_and_the_line() {
    let e = fatal("[service]\nlisten = \n");
    assert!(
        e.contains("channels.toml: TOML parse error at line 2"),
        "{e}"
    );
}

#[test]
fn an_unknown_field_is_named() {
    let e = fatal(&file_channel("colour = \"red\""));
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[test]
fn two_channels_with_one_name_are_refused() {
    let e = fatal(&format!("{}{}", file_channel(""), file_channel("")));
    assert!(e.contains("two channels are named \"a\""), "{e}");
}

#[test]
fn a_model_that_is_not_there_is_named() {
    let e = fatal(&file_channel("model = \"missing.onnx\""));
    assert!(
        e.contains("channel \"a\": model ") && e.contains("missing.onnx is not a file"),
        "{e}"
    );
}

#[test]
fn a_model_that_does_not_load_is_named_with_its_channel() {
    // The configuration file itself, which is no ONNX model.
    let e = fatal(&file_channel("model = \"channels.toml\""));
    assert!(
        e.contains("channels.toml: channel \"a\": model ") && e.contains("channels.toml: "),
        "{e}"
    );
}

#[test]
fn a_source_that_does_not_parse_is_named_with_its_channel() {
    let e = fatal("[[channel]]\nname = \"s\"\nsource = \"videotestsrc ! ! x\"\n");
    assert!(
        e.contains("channel \"s\": source \"videotestsrc ! ! x\" does not parse"),
        "{e}"
    );
}

#[test]
fn an_address_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = fatal(&format!("[service]\nlisten = \"{addr}\"\n"));
    assert!(e.contains(&format!("cannot listen on {addr}")), "{e}");
}

#[test]
fn check_exits_zero_on_a_good_file_without_starting_anything() {
    let (exit, dir) = common::run_with_config(&file_channel(""), &["--check"]);
    assert!(exit.status.success(), "{}", exit.stderr);
    assert_eq!(exit.stdout, "");
    let lines = common::log_lines(&exit.stderr);
    assert!(
        lines.iter().any(|l| l["event"] == "checked"),
        "{}",
        exit.stderr
    );
    assert!(
        !lines.iter().any(|l| l["event"] == "starting"),
        "{}",
        exit.stderr
    );
    assert!(!dir.path().join("evidence").exists());
}
