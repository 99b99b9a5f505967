//! Our CLIP computes what Hugging Face transformers' `CLIPModel` computes with the same
//! tiny random weights, read from either checkpoint layout (fixtures made by
//! `fixtures/make_clip_reference.py`).

mod common;

use std::path::PathBuf;

use burn::prelude::*;
use common::max_diff;
use sd2_train::clip::load::{Checkpoint, LoadError};
use sd2_train::clip::{ClipConfig, ClipModel};
use sd2_train::lora::LoraConfig;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/clip_tiny_reference.json")).unwrap()
}

fn pattern(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (((i * 7919 + seed * 104729) % 256) as f32 - 127.5) * 0.0078125)
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn check(model: &ClipModel, device: &Device) {
    let r = reference();
    let pixels = Tensor::<4>::from_data(
        TensorData::new(pattern(2 * 3 * 32 * 32, 5), [2, 3, 32, 32]),
        device,
    );
    let (vision, image_embeds) = model.encode_image(pixels);
    let got = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let d = max_diff(&got(image_embeds), &floats(&r["image_embeds"]));
    assert!(d < 1e-4, "image embeddings differ by {d}");
    let d = max_diff(&got(vision.pooled), &floats(&r["pooled"]));
    assert!(d < 1e-4, "pooled output differs by {d}");
    let layer_cls = vision.layer_cls.into_data().try_to_vec::<f32>().unwrap();
    let d = max_diff(&layer_cls, &floats(&r["layer_cls"]["data"]));
    assert!(d < 1e-4, "per-layer class tokens differ by {d}");

    let ids: Vec<Vec<i64>> = serde_json::from_value(r["input_ids"].clone()).unwrap();
    let (n, t) = (ids.len(), ids[0].len());
    let flat: Vec<i64> = ids.into_iter().flatten().collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [n, t]), device);
    let d = max_diff(&got(model.encode_text(ids)), &floats(&r["text_embeds"]));
    assert!(d < 1e-4, "text embeddings differ by {d}");
}

fn hf_config() -> ClipConfig {
    Checkpoint::read(&fixture("clip_tiny"))
        .unwrap()
        .config
        .expect("config.json")
}

#[test]
fn hugging_face_layout_matches_transformers() {
    let device = Device::flex();
    let ckpt = Checkpoint::read(&fixture("clip_tiny")).unwrap();
    let config = ckpt.config.clone().unwrap();
    assert_eq!(config.vision.num_hidden_layers, 3);
    let model = ClipModel::new(&config, LoraConfig::none(), &device)
        .load_checkpoint(&ckpt)
        .unwrap();
    check(&model, &device);
}

#[test]
fn openai_layout_matches_transformers() {
    let device = Device::flex();
    let ckpt = Checkpoint::read(&fixture("clip_tiny_openai.pt")).unwrap();
    let model = ClipModel::new(&hf_config(), LoraConfig::none(), &device)
        .load_checkpoint(&ckpt)
        .unwrap();
    check(&model, &device);
}

#[test]
fn fresh_lora_adapters_leave_the_outputs_unchanged() {
    let device = Device::flex();
    let ckpt = Checkpoint::read(&fixture("clip_tiny")).unwrap();
    let model = ClipModel::new(&hf_config(), LoraConfig::default(), &device)
        .load_checkpoint(&ckpt)
        .unwrap();
    check(&model.valid(), &device);
}

#[test]
fn a_checkpoint_of_the_wrong_shape_is_refused_listing_the_mismatches() {
    let device = Device::flex();
    let ckpt = Checkpoint::read(&fixture("clip_tiny")).unwrap();
    let err = ClipModel::new(&ClipConfig::tiny(), LoraConfig::none(), &device)
        .load_checkpoint(&ckpt)
        .unwrap_err();
    assert!(matches!(err, LoadError::Mismatch { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors does not fit this CLIP model"),
        "{msg}"
    );
    assert!(
        msg.contains("`text_model.embeddings.token_embedding.weight` has shape [1000, 32], expected [49408, 64]"),
        "{msg}"
    );
    assert!(msg.contains("more"), "{msg}");
}

#[test]
fn a_missing_checkpoint_is_named() {
    let err = Checkpoint::read(&fixture("nonexistent.safetensors"))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("nonexistent.safetensors: no such file"),
        "{err}"
    );
}
