//! `sd2-train import-deepfakebench`: DeepfakeBench dataset JSON files as a manifest.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sd2_train::data::deepfakebench::{ImportReport, TypeTable, import};

#[derive(Args)]
pub struct Import {
    /// DeepfakeBench dataset JSON files.
    #[arg(long = "json", required = true)]
    json: Vec<PathBuf>,
    /// Folder the frame paths in the JSON files start from (kept relative when unset).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The manifest to write.
    #[arg(long)]
    out: PathBuf,
    /// Compression level to take where a file has several.
    #[arg(long, default_value = "c23")]
    compression: String,
    /// Type of a label or method the table does not know (or a different one): LABEL=TYPE.
    #[arg(long = "type", value_name = "LABEL=TYPE")]
    types: Vec<String>,
}

pub fn run(i: &Import) -> Result<()> {
    let mut table = TypeTable::shipped();
    for t in &i.types {
        let (label, kind) = t
            .split_once('=')
            .with_context(|| format!("--type {t}: expected LABEL=TYPE"))?;
        table.set(label, kind.parse().map_err(anyhow::Error::msg)?);
    }
    let mut report = ImportReport::default();
    for j in &i.json {
        import(j, &table, &i.compression, &mut report).map_err(anyhow::Error::msg)?;
    }
    let mut text = String::new();
    for mut row in report.rows.iter().cloned() {
        if let Some(root) = &i.root {
            row.image = root
                .join(row.image.trim_start_matches("./"))
                .display()
                .to_string();
        }
        text.push_str(&serde_json::to_string(&row)?);
        text.push('\n');
    }
    sd2_models::atomic_write::write_atomic(&i.out, text.as_bytes())?;
    let mut per_type = [0usize; 5];
    for r in &report.rows {
        per_type[r.kind.index()] += 1;
    }
    println!(
        "wrote {} frames of {} videos to {} (REAL {}, FS {}, FR {}, EFS {}, FE {})",
        report.rows.len(),
        report.videos,
        i.out.display(),
        per_type[0],
        per_type[1],
        per_type[2],
        per_type[3],
        per_type[4]
    );
    for (label, n) in &report.unknown {
        eprintln!(
            "skipped {n} frames of label `{label}`: its type is unknown (give it with --type {label}=FS|FR|EFS|FE|REAL)"
        );
    }
    Ok(())
}
