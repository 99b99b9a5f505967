//! `sd2-train make-demo-set`: the demo training set, made from the sample faces.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use sd2_models::crop::CropRecipe;
use sd2_models::paths;
use sd2_train::data::synthetic;

#[derive(Args)]
pub struct DemoSet {
    /// Output folder (images/ and manifest.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// Crops of each manipulation type.
    #[arg(long, default_value_t = 160)]
    per_type: usize,
    /// REAL crops per manipulation type's count (4 makes real and fake equally common).
    #[arg(long, default_value_t = 1)]
    real_factor: usize,
    /// Side of the crops in pixels.
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(d: &DemoSet) -> Result<()> {
    let (photos, people) =
        synthetic::sample_photos(&paths::samples_dir(), &paths::model_dir().join("mtcnn"))
            .context("finding the faces in the sample photos (run scripts/setup.sh first)")?;
    let recipe = CropRecipe {
        input_size: d.size,
        ..CropRecipe::default()
    };
    let size = synthetic::SetSize {
        per_type: d.per_type,
        real_factor: d.real_factor,
    };
    let manifest = synthetic::write_set(&d.out, &photos, &people, &recipe, size, d.seed)?;
    println!(
        "wrote {} ({} crops of {} people)",
        manifest.display(),
        (4 + d.real_factor.max(1)) * d.per_type,
        people.len()
    );
    Ok(())
}
