//! The README's "Monitoring live channels": its configuration example passes
//! `sd2-monitor --check` (fields, model, every channel's pipeline built), and every metric
//! the service exposes is in its metrics table.

mod common;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The README's section on the monitor.
fn section() -> String {
    let r = readme();
    let start = r.find("## Monitoring live channels").expect("the section");
    let rest = &r[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
}

#[test]
fn the_readme_configuration_example_passes_check() {
    let s = section();
    let block = s
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let (exit, _dir) = common::run_with_config(block, &["--check"]);
    assert!(exit.status.success(), "{}", exit.stderr);
}

#[test]
fn every_metric_exposed_is_in_the_readme_table() {
    let s = common::Service::start("");
    let (_, text) = s.get("/metrics");
    let table = section();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            table.contains(&format!("`{name}`")),
            "{name} is not in the README's metrics table"
        );
    }
}
