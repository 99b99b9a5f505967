//! `sd2-train eval` on the demo set with a tiny model trained here: ACC follows the decision
//! rule, and `--report DIR` writes valid plots, tables that carry the JSON's figures, and a
//! page that links only to files that exist.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const PLOTS: [&str; 4] = ["roc", "pr", "confusion", "scores"];

fn sd2_train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sd2-train"))
        .args(args)
        .output()
        .unwrap()
}

fn run(args: &[&str]) -> String {
    let out = sd2_train(args);
    assert!(
        out.status.success(),
        "sd2-train {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A demo set whose test rows are spread over two datasets and grouped three faces a
/// video, and a tiny model trained on it for a few steps. (Each type has 24 rows, every
/// fourth one a test row.)
struct Trained {
    dir: PathBuf,
    manifest: String,
    run: String,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-report");
        let _ = std::fs::remove_dir_all(&dir);
        let set = dir.join("set");
        run(&[
            "make-demo-set",
            "--out",
            set.to_str().unwrap(),
            "--per-type",
            "24",
        ]);
        let manifest = set.join("manifest.jsonl");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let rows: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let mut row: Value = serde_json::from_str(l).unwrap();
                let dataset = if (i / 4) % 2 == 0 { "alpha" } else { "beta" };
                row["dataset"] = dataset.into();
                row["group"] = format!("{}-{}", row["type"].as_str().unwrap(), i / 12).into();
                row.to_string()
            })
            .collect();
        std::fs::write(&manifest, rows.join("\n") + "\n").unwrap();
        let out = dir.join("run");
        let m = manifest.to_str().unwrap();
        let o = out.to_str().unwrap();
        run(&[
            "fit",
            "--manifest",
            m,
            "--out",
            o,
            "--preset",
            "tiny",
            "--lr",
            "3e-3",
            "--batch",
            "16",
            "--accumulation",
            "1",
            "--epochs",
            "3",
            "--checkpoint-every",
            "1000",
            "--labels-per-type",
            "1",
            "--no-augment",
            "--workers",
            "2",
        ]);
        Trained {
            dir,
            manifest: m.to_owned(),
            run: o.to_owned(),
        }
    })
}

/// `eval` of the trained model with `extra` flags, its report in `name`: (stdout, the
/// JSON, the report's folder).
fn eval(name: &str, extra: &[&str]) -> (String, Value, PathBuf) {
    let t = trained();
    let report = t.dir.join(name);
    let json = t.dir.join(format!("{name}.json"));
    let mut args = vec!["eval", "--checkpoint", &t.run, "--manifest", &t.manifest];
    let (r, j) = (report.to_str().unwrap(), json.to_str().unwrap());
    args.extend(["--report", r, "--json", j, "--workers", "2"]);
    args.extend(extra);
    let stdout = run(&args);
    let value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (stdout, value, report)
}

fn faces(report: &Path) -> Vec<Value> {
    std::fs::read_to_string(report.join("faces.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether `face` is fake under `rule`, from its probabilities.
fn judged_fake(face: &Value, rule: &str, threshold: f64) -> bool {
    let p = |t: &str| face[t].as_f64().unwrap();
    let best_fake = ["FS", "FR", "EFS", "FE"]
        .map(p)
        .into_iter()
        .fold(0.0, f64::max);
    match rule {
        "argmax" => best_fake > p("REAL"),
        _ => 1.0 - p("REAL") > threshold,
    }
}

#[test]
fn accuracy_follows_the_decision_rule_and_the_json_names_it() {
    for (rule, threshold) in [("argmax", 0.5), ("threshold", 0.5), ("threshold", 0.3)] {
        let t = threshold.to_string();
        let (stdout, json, report) = eval(
            &format!("rule-{rule}-{t}"),
            &["--decision", rule, "--threshold", &t],
        );
        assert_eq!(json["decision"], rule);
        assert_eq!(json["threshold"].as_f64().unwrap() as f32, threshold as f32);
        assert!(stdout.contains(&format!("decision: {rule}")), "{stdout}");
        let faces = faces(&report);
        assert_eq!(
            faces.len(),
            json["frame"]["count"].as_u64().unwrap() as usize
        );
        let right = faces
            .iter()
            .filter(|f| {
                let fake = judged_fake(f, rule, threshold);
                assert_eq!(f["fake"], fake, "{f}");
                fake == (f["type"] != "REAL")
            })
            .count();
        let acc = right as f64 / faces.len() as f64;
        let reported = json["frame"]["accuracy"].as_f64().unwrap();
        assert!(
            (acc - reported).abs() < 1e-12,
            "{rule} {threshold}: {acc} vs {reported}"
        );
    }
}

#[test]
fn argmax_is_the_default_rule() {
    let (_, json, _) = eval("default", &[]);
    assert_eq!(json["decision"], "argmax");
}

#[test]
fn every_plot_is_a_valid_png_and_svg() {
    let (_, _, report) = eval("plots", &[]);
    for stem in PLOTS {
        let png = report.join(format!("{stem}.png"));
        let img = image::open(&png)
            .unwrap_or_else(|e| panic!("{}: {e}", png.display()))
            .to_rgb8();
        assert_eq!(img.dimensions(), (640, 480), "{}", png.display());
        let colours: std::collections::HashSet<_> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{} is nearly blank", png.display());
        let svg_path = report.join(format!("{stem}.svg"));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{}: not XML: {e}", svg_path.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("width"), Some("640"));
        let texts = doc.descendants().filter(|n| n.has_tag_name("text")).count();
        assert!(texts >= 5, "{}: {texts} texts", svg_path.display());
    }
}

/// The values of `attr="…"` in `html`.
fn attributes<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let key = format!(" {attr}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            let rest = &html[i + key.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[test]
fn the_page_links_only_to_files_of_the_report_and_shows_every_plot() {
    let (_, _, report) = eval("page", &[]);
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let src = attributes(&html, "src");
    let href = attributes(&html, "href");
    assert_eq!(src.len(), PLOTS.len());
    for link in src.iter().chain(&href) {
        assert!(
            !link.contains(':') && !link.starts_with('/') && !link.contains(".."),
            "{link} is not a relative link inside the report"
        );
        assert!(report.join(link).is_file(), "{link} does not exist");
    }
    for stem in PLOTS {
        assert!(
            src.contains(&format!("{stem}.svg").as_str()),
            "{stem}.svg not shown"
        );
        assert!(
            href.contains(&format!("{stem}.png").as_str()),
            "{stem}.png not linked"
        );
    }
    for name in ["report.md", "eval.json", "faces.jsonl"] {
        assert!(href.contains(&name), "{name} not linked");
    }
    assert!(!html.contains("<script"), "the page has a script");
}

/// The Markdown tables of `md`, by title: header and rows of cells.
fn markdown_tables(md: &str) -> std::collections::HashMap<String, Vec<Vec<String>>> {
    let mut tables = std::collections::HashMap::new();
    let mut title = String::new();
    for line in md.lines() {
        if let Some(t) = line.strip_prefix("## ") {
            title = t.to_owned();
        } else if line.starts_with('|') && !line.starts_with("| ---") {
            let cells = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned());
            let table: &mut Vec<Vec<String>> = tables.entry(title.clone()).or_default();
            table.push(cells.collect());
        }
    }
    tables
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("n/a".to_owned(), |v| format!("{:.2}", 100.0 * v))
}

#[test]
fn the_tables_carry_the_figures_of_the_json_in_markdown_and_html() {
    let (_, json, report) = eval("tables", &["--decision", "threshold", "--threshold", "0.4"]);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let tables = markdown_tables(&md);
    let figures = |f: &Value| {
        vec![
            f["count"].to_string(),
            pct(&f["auc"]),
            pct(&f["accuracy"]),
            pct(&f["eer"]),
            pct(&f["average_precision"]),
        ]
    };
    let detection = &tables["Detection"];
    assert_eq!(detection[1][1..], figures(&json["frame"]));
    assert_eq!(detection[2][1..], figures(&json["video"]));
    assert_ne!(
        json["video"]["count"], json["frame"]["count"],
        "three faces a video"
    );

    let per_dataset = &tables["Per dataset"];
    let datasets = &per_dataset[0][2..per_dataset[0].len() - 1];
    assert_eq!(datasets, ["alpha", "beta"]);
    let keys = [
        ("AUC", "auc"),
        ("ACC", "accuracy"),
        ("EER", "eer"),
        ("AP", "average_precision"),
    ];
    for (row, (name, key)) in per_dataset[1..5].iter().zip(keys) {
        assert_eq!(row[1], name);
        for (cell, d) in row[2..].iter().zip(datasets) {
            assert_eq!(*cell, pct(&json["per_dataset"][d][key]), "{name} of {d}");
        }
        assert_eq!(
            *row.last().unwrap(),
            pct(&json["dataset_mean"][key]),
            "mean {name}"
        );
    }
    let mean_auc = datasets
        .iter()
        .map(|d| json["per_dataset"][d]["auc"].as_f64().unwrap())
        .sum::<f64>()
        / 2.0;
    assert!((json["dataset_mean"]["auc"].as_f64().unwrap() - mean_auc).abs() < 1e-12);

    let types = &tables["Types"];
    for (t, row) in types[1..].iter().enumerate() {
        let counts: Vec<String> = (0..5)
            .map(|p| json["confusion"][t][p].to_string())
            .collect();
        assert_eq!(row[1..6], counts);
    }
    let accuracy = format!("Type accuracy {}%", pct(&json["type_accuracy"]));
    assert!(
        md.contains(&accuracy) && html.contains(&accuracy),
        "{accuracy}"
    );

    // The page shows the same rows.
    for row in tables.values().flat_map(|t| &t[1..]) {
        let cells: String = row.iter().map(|c| format!("<td>{c}</td>")).collect();
        assert!(
            html.contains(&format!("<tr>{cells}</tr>")),
            "{cells} not in the page"
        );
    }
}

#[test]
fn an_unknown_rule_or_a_threshold_outside_0_to_1_is_refused_by_name() {
    let t = trained();
    let base = ["eval", "--checkpoint", &t.run, "--manifest", &t.manifest];
    for (flags, words) in [
        (["--decision", "median"], ["median", "argmax"]),
        (["--threshold", "1.5"], ["--threshold", "1.5"]),
    ] {
        let out = sd2_train(&[&base[..], &flags].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} accepted");
        assert!(words.iter().all(|w| err.contains(w)), "{flags:?}: {err}");
    }
}

#[test]
fn a_report_folder_that_cannot_be_made_is_named() {
    let t = trained();
    let file = t.dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let target = file.join("report");
    let args = [
        "eval",
        "--checkpoint",
        &t.run,
        "--manifest",
        &t.manifest,
        "--report",
    ];
    let out = sd2_train(&[&args[..], &[target.to_str().unwrap()]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(target.to_str().unwrap()) && !err.contains("panicked"),
        "{err}"
    );
}
