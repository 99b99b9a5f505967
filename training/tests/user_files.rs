//! The files a user gives `sd2-train`, random or damaged: manifests, DeepfakeBench JSON,
//! text labels, CLIP checkpoints and their `config.json`. Valid files read as written;
//! anything else is read as far as it is valid or refused with an error that names the file,
//! without a panic and holding no more memory than the file's size allows.

#[path = "../../models/tests/common/damage.rs"]
mod damage;
#[path = "../../models/tests/common/peak_memory.rs"]
mod peak_memory;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use damage::{Spots, config, damage, huge};
use peak_memory::{Counting, allowance, peak_bytes};
use proptest::prelude::*;
use sd2_models::state_dict::{HostTensor, StateDict};
use sd2_models::taxonomy::DeepfakeType;
use sd2_train::clip::config::ClipConfig;
use sd2_train::clip::load::{Checkpoint, LoadError};
use sd2_train::data::deepfakebench::{ImportReport, TypeTable, import};
use sd2_train::data::manifest::{MAX_ROW_BYTES, Manifest, Row, Split};
use sd2_train::labels::{DEFAULT_LABELS, TextLabels};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `read` on the file at `path`, checking what every read must keep: memory within
/// the allowance of `budget` bytes of input, and an error whose message begins with `names`
/// and goes on to say what is wrong.
fn checked<T, E: std::fmt::Display>(
    names: &Path,
    budget: usize,
    read: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    let (result, peak) = peak_bytes(read);
    assert!(
        peak <= allowance(budget),
        "reading {} ({budget} bytes) held {peak} bytes at once",
        names.display()
    );
    result.map_err(|e| {
        let (message, name) = (e.to_string(), names.display().to_string());
        assert!(
            message.starts_with(&name) && message.len() > name.len() + 10,
            "the error does not name {name} and the problem: {message}"
        );
        message
    })
}

/// Any JSON value, with keys that the formats read among random ones.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        huge().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9_./\\\\-]{0,10}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "train", "val", "test", "c23", "c40", "frames", "label", "FF-real", "FF-F2F", "REAL",
            "FS", "FR", "EFS", "FE",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z0-9_-]{0,8}",
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---- manifests ----

fn kind() -> impl Strategy<Value = DeepfakeType> {
    prop::sample::select(DeepfakeType::ALL.to_vec())
}

fn row() -> impl Strategy<Value = Row> {
    let text = "[^\\x00]{0,12}";
    (
        (
            "[^\\x00]{1,16}",
            kind(),
            text,
            text,
            prop::sample::select(vec![Split::Train, Split::Val, Split::Test]),
        ),
        (text, prop::option::of(text), prop::option::of(text)),
    )
        .prop_map(
            |((image, kind, dataset, method, split), (group, face, environment))| Row {
                image,
                kind,
                dataset,
                method,
                split,
                group,
                face,
                environment,
            },
        )
}

/// Rows as a manifest's lines, with blank and comment lines among them and maybe a
/// byte-order mark before them.
fn manifest_text(rows: &[Row], between: &[u8], bom: bool) -> Vec<u8> {
    let mut text = if bom {
        "\u{feff}".into()
    } else {
        String::new()
    };
    for (i, row) in rows.iter().enumerate() {
        match between.get(i).copied().unwrap_or(0) % 4 {
            1 => text.push('\n'),
            2 => text.push_str("# a comment\n"),
            3 => text.push_str("   \r\n"),
            _ => {}
        }
        text.push_str(&serde_json::to_string(row).unwrap());
        text.push('\n');
    }
    text.into_bytes()
}

/// Opens the manifest `bytes` at `path`; an index it gives back holds only rows that read
/// again as they were indexed.
fn open_manifest(path: &Path, bytes: &[u8]) -> Result<(Manifest, Vec<Row>), String> {
    std::fs::write(path, bytes).unwrap();
    let m = checked(path, bytes.len(), || Manifest::open(path, None))?;
    let lines = bytes.split(|&b| b == b'\n').count();
    assert!(m.entries.len() + m.skipped <= lines);
    let rows = (0..m.entries.len())
        .map(|i| {
            m.row(i)
                .unwrap_or_else(|e| panic!("row {i} was indexed: {e}"))
        })
        .collect();
    Ok((m, rows))
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn every_valid_row_is_indexed_and_read_back(
        rows in prop::collection::vec(row(), 1..12),
        between in prop::collection::vec(any::<u8>(), 12),
        bom in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        let (m, back) = open_manifest(&path, &manifest_text(&rows, &between, bom)).unwrap();
        prop_assert_eq!(m.skipped, 0);
        prop_assert_eq!(&back, &rows);
        for (e, row) in m.entries.iter().zip(&rows) {
            prop_assert_eq!(e.kind, row.kind);
            prop_assert_eq!(&m.groups[e.group as usize], row.group_or_image());
            prop_assert_eq!(&m.datasets[e.dataset as usize], &row.dataset);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn damaged_manifests_keep_their_valid_rows_or_are_refused_naming_the_file(
        rows in prop::collection::vec(row(), 1..8),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let text = manifest_text(&rows, &[], false);
        let bytes = damages.iter().fold(text, |b, d| d.apply(b, Spots::Anywhere));
        let dir = tempfile::tempdir().unwrap();
        let _ = open_manifest(&dir.path().join("train.jsonl"), &bytes);
    }

    #[test]
    fn random_manifests_are_refused_naming_the_file(
        lines in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                json_value().prop_map(|v| v.to_string().into_bytes()),
            ],
            0..8,
        ),
    ) {
        let bytes = lines.join(&b'\n');
        let dir = tempfile::tempdir().unwrap();
        if let Ok((_, rows)) = open_manifest(&dir.path().join("train.jsonl"), &bytes) {
            prop_assert!(rows.iter().all(|r| !r.image.is_empty()));
        }
    }
}

#[test]
fn a_line_longer_than_a_row_may_be_is_skipped_without_being_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let long = format!(
        "{{\"image\": \"{}.png\", \"type\": \"FS\"}}",
        "a".repeat(3 * MAX_ROW_BYTES)
    );
    let text = format!(
        "{{\"image\": \"a.png\", \"type\": \"REAL\"}}\n{long}\n{{\"image\": \"b.png\", \"type\": \"FE\"}}\n"
    );
    std::fs::write(&path, &text).unwrap();
    let (m, peak) = peak_bytes(|| Manifest::open(&path, None).unwrap());
    assert!(peak < 3 * MAX_ROW_BYTES, "held {peak} bytes at once");
    assert_eq!((m.entries.len(), m.skipped), (2, 1));
    assert_eq!(
        m.problems,
        [format!(
            "line 2: {} bytes, more than a row may have ({MAX_ROW_BYTES})",
            long.len() + 1
        )]
    );
    assert_eq!(m.row(1).unwrap().image, "b.png");
    // The digest covers every byte, the long line's too.
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, text.replacen("aaaa", "aaab", 1)).unwrap();
    assert_ne!(Manifest::open(&other, None).unwrap().digest, m.digest);
}

#[test]
fn a_manifest_of_more_datasets_than_its_index_holds_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    let text: String = (0..=u16::MAX as usize + 1)
        .map(|i| format!("{{\"image\": \"{i}.png\", \"type\": \"REAL\", \"dataset\": \"d{i}\"}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    let err = Manifest::open(&path, None).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: line 65537: a 65537th dataset name; a manifest holds at most 65536 datasets",
            path.display()
        )
    );
}

// ---- DeepfakeBench JSON ----

/// Labels with a type in the shipped table, and one without.
const LABELS: [(&str, Option<DeepfakeType>); 5] = [
    ("FF-real", Some(DeepfakeType::Real)),
    ("FF-F2F", Some(DeepfakeType::FaceReenactment)),
    ("simswap_Fake", Some(DeepfakeType::FaceSwap)),
    ("e4e_ff", Some(DeepfakeType::FaceEditing)),
    ("mystery_Fake", None),
];

/// Frame lists by video.
type Videos = BTreeMap<String, Vec<String>>;

/// A split's videos: at the c23 level and the c40 level where it nests them, else at its top.
type Levels = (Videos, Option<Videos>);

/// `{dataset: {label (an index into LABELS): {split: levels}}}`.
#[derive(Clone, Debug)]
struct Bench(BTreeMap<String, BTreeMap<usize, BTreeMap<&'static str, Levels>>>);

/// A row as imported: image, type, split and group.
type Imported = (String, DeepfakeType, Split, String);

fn videos() -> impl Strategy<Value = Videos> {
    // Frame paths of digits: no folder of theirs names a method of the table.
    prop::collection::btree_map(
        "[0-9]{3}",
        prop::collection::vec("[0-9]{1,3}[/\\\\][0-9]{1,3}\\.png", 0..3),
        0..3,
    )
}

fn bench() -> impl Strategy<Value = Bench> {
    let split = prop::sample::select(vec!["train", "val", "test"]);
    let level = (videos(), prop::option::of(videos()));
    let splits = prop::collection::btree_map(split, level, 0..3);
    let labels = prop::collection::btree_map(0..LABELS.len(), splits, 0..4);
    prop::collection::btree_map("[A-Za-z0-9+_]{1,8}", labels, 1..3).prop_map(Bench)
}

impl Bench {
    fn json(&self) -> Value {
        let videos = |v: &Videos, label: &str| -> Value {
            v.iter()
                .map(|(k, frames)| (k.clone(), json!({"label": label, "frames": frames})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut top = serde_json::Map::new();
        for (dataset, labels) in &self.0 {
            let mut l = serde_json::Map::new();
            for (&i, splits) in labels {
                let label = LABELS[i].0;
                let mut s = serde_json::Map::new();
                for (split, (c23, c40)) in splits {
                    let level = match c40 {
                        Some(c40) => json!({"c23": videos(c23, label), "c40": videos(c40, label)}),
                        None => videos(c23, label),
                    };
                    s.insert(split.to_string(), level);
                }
                l.insert(label.into(), s.into());
            }
            top.insert(dataset.clone(), l.into());
        }
        top.into()
    }

    /// The rows an import of the c23 level makes, the frames of unknown type and the videos.
    fn expected(&self) -> (Vec<Imported>, usize, usize) {
        let (mut rows, mut unknown, mut count) = (Vec::new(), 0, 0);
        for (dataset, labels) in &self.0 {
            for (&i, splits) in labels {
                let (label, kind) = LABELS[i];
                for (split, (c23, _)) in splits {
                    for (video, frames) in c23.iter().filter(|(_, f)| !f.is_empty()) {
                        count += 1;
                        for frame in frames {
                            match kind {
                                Some(kind) => rows.push((
                                    frame.replace('\\', "/"),
                                    kind,
                                    split.parse().unwrap(),
                                    format!("{dataset}/{label}/{video}"),
                                )),
                                None => unknown += 1,
                            }
                        }
                    }
                }
            }
        }
        rows.sort_by(|a, b| (&a.3, &a.0).cmp(&(&b.3, &b.0)));
        (rows, unknown, count)
    }
}

fn import_file(path: &Path, bytes: &[u8]) -> Result<ImportReport, String> {
    std::fs::write(path, bytes).unwrap();
    let mut report = ImportReport::default();
    checked(path, bytes.len(), || {
        import(path, &TypeTable::shipped(), "c23", &mut report)
    })?;
    Ok(report)
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn every_frame_of_a_valid_file_is_imported_with_its_type(bench in bench()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("FaceForensics++.json");
        let report = import_file(&path, bench.json().to_string().as_bytes()).unwrap();
        let (want, unknown, videos) = bench.expected();
        let mut got: Vec<Imported> = report
            .rows
            .iter()
            .map(|r| (r.image.clone(), r.kind, r.split, r.group.clone()))
            .collect();
        got.sort_by(|a, b| (&a.3, &a.0).cmp(&(&b.3, &b.0)));
        prop_assert_eq!(got, want);
        prop_assert_eq!(report.unknown.values().sum::<usize>(), unknown);
        prop_assert_eq!(report.videos, videos);
    }

    #[test]
    fn random_and_damaged_deepfakebench_files_import_or_are_refused_naming_the_file(
        source in prop_oneof![
            bench().prop_map(|b| b.json()),
            json_value(),
        ],
        damages in prop::collection::vec(damage(), 0..3),
    ) {
        let text = source.to_string().into_bytes();
        let bytes = damages.iter().fold(text, |b, d| d.apply(b, Spots::Anywhere));
        let dir = tempfile::tempdir().unwrap();
        let _ = import_file(&dir.path().join("simswap_ff.json"), &bytes);
    }
}

// ---- text labels ----

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_and_damaged_label_files_are_read_or_refused_naming_the_file(
        source in prop_oneof![
            Just(DEFAULT_LABELS.as_bytes().to_vec()),
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
        damages in prop::collection::vec(damage(), 0..3),
    ) {
        let bytes = damages.iter().fold(source, |b, d| d.apply(b, Spots::Anywhere));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.json");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(labels) = checked(&path, bytes.len(), || TextLabels::from_file(&path)) {
            prop_assert!(labels.sets.iter().all(|s| !s.is_empty()));
            prop_assert_eq!(labels.simple().len(), DeepfakeType::COUNT);
        }
    }
}

// ---- CLIP checkpoints and config.json ----

/// The keys of a Hugging Face CLIP `config.json` that are read.
const CONFIG_KEYS: [&str; 17] = [
    "vision_config.hidden_size",
    "vision_config.intermediate_size",
    "vision_config.num_hidden_layers",
    "vision_config.num_attention_heads",
    "vision_config.image_size",
    "vision_config.patch_size",
    "vision_config.hidden_act",
    "vision_config.layer_norm_eps",
    "text_config.hidden_size",
    "text_config.intermediate_size",
    "text_config.num_hidden_layers",
    "text_config.num_attention_heads",
    "text_config.vocab_size",
    "text_config.max_position_embeddings",
    "text_config.hidden_act",
    "projection_dim",
    "vision_config",
];

/// A value for a size: small, 0, huge, negative, fractional or not a number.
fn size_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..40).prop_map(Value::from),
        huge().prop_map(Value::from),
        (-100i64..0).prop_map(Value::from),
        prop::sample::select(vec![0.5f64, 1e-5, -1e-5, 1e300]).prop_map(Value::from),
        json_value(),
    ]
}

/// The fixture's `config.json` with some keys set to other values, or removed.
fn edited_config() -> impl Strategy<Value = Value> {
    let edit = (
        prop::sample::select(CONFIG_KEYS.to_vec()),
        prop::option::of(size_value()),
    );
    prop::collection::vec(edit, 1..4).prop_map(|edits| {
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(fixture("clip_tiny/config.json")).unwrap())
                .unwrap();
        for (key, value) in edits {
            let (section, field) = key.split_once('.').unwrap_or(("", key));
            let parent = if section.is_empty() {
                &mut config
            } else {
                &mut config[section]
            };
            match (value, parent.as_object_mut()) {
                (Some(v), Some(map)) => {
                    map.insert(field.to_owned(), v);
                }
                (None, Some(map)) => {
                    map.remove(field);
                }
                (_, None) => {}
            }
        }
        config
    })
}

/// Reads the checkpoint `file` as written into a directory (beside `config`, when given);
/// a config it gives back is valid and no larger than its weights.
fn read_checkpoint(file: &str, bytes: &[u8], config: Option<&[u8]>) -> Result<Checkpoint, String> {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join(file);
    std::fs::write(&weights, bytes).unwrap();
    let (path, names) = match config {
        Some(config) => {
            std::fs::write(dir.path().join("config.json"), config).unwrap();
            (dir.path().to_owned(), dir.path().to_owned())
        }
        None => (weights.clone(), weights),
    };
    let budget = bytes.len() + config.map_or(0, <[u8]>::len);
    let ckpt = checked(&names, budget, || Checkpoint::read(&path))?;
    if let Some(c) = &ckpt.config {
        assert_eq!(c.validate(), Ok(()));
        let held: usize = ckpt.tensors.values().map(|t| t.data.len()).sum();
        assert!(c.parameter_count().unwrap() <= held as u64, "{c:?}");
    }
    Ok(ckpt)
}

/// Names of both checkpoint layouts, which the conversion and the config inference read.
const TENSOR_NAMES: [&str; 20] = [
    "visual.conv1.weight",
    "visual.positional_embedding",
    "visual.proj",
    "visual.transformer.resblocks.0.attn.in_proj_weight",
    "visual.transformer.resblocks.0.attn.in_proj_bias",
    "visual.transformer.resblocks.0.ln_1.weight",
    "visual.transformer.resblocks.0.mlp.c_fc.weight",
    "transformer.resblocks.0.attn.in_proj_weight",
    "transformer.resblocks.0.mlp.c_fc.weight",
    "token_embedding.weight",
    "positional_embedding",
    "text_projection",
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.position_embedding.weight",
    "vision_model.encoder.layers.0.layer_norm1.weight",
    "vision_model.encoder.layers.0.mlp.fc1.weight",
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.0.mlp.fc1.weight",
    "visual_projection.weight",
];

/// Tensors under those names with shapes of any rank, some as wide as OpenAI's towers.
fn named_shapes() -> impl Strategy<Value = BTreeMap<String, Vec<usize>>> {
    let dim = prop_oneof![4 => 0usize..8, 1 => prop::sample::select(vec![257, 512, 768, 1024])];
    let shape = prop::collection::vec(dim, 0..5)
        .prop_filter("small", |s| s.iter().product::<usize>() <= 1 << 16);
    prop::collection::btree_map(
        prop::sample::select(TENSOR_NAMES.to_vec()).prop_map(str::to_owned),
        shape,
        0..12,
    )
}

fn safetensors_of(shapes: &BTreeMap<String, Vec<usize>>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut sd = StateDict::default();
    for (name, shape) in shapes {
        let n = shape.iter().product();
        sd.tensors
            .insert(name.clone(), HostTensor::new(shape.clone(), vec![0.5; n]));
    }
    sd.save_safetensors(&path).unwrap();
    std::fs::read(path).unwrap()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn tensors_of_any_shape_are_converted_or_refused_naming_the_file(
        shapes in named_shapes(),
    ) {
        let _ = read_checkpoint("open_clip_model.safetensors", &safetensors_of(&shapes), None);
    }

    #[test]
    fn edited_configs_are_read_or_refused_naming_the_file(config in edited_config()) {
        let weights = std::fs::read(fixture("clip_tiny/model.safetensors")).unwrap();
        let text = config.to_string();
        let _ = read_checkpoint("model.safetensors", &weights, Some(text.as_bytes()));
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn damaged_checkpoints_are_read_or_refused_naming_the_file(
        openai in any::<bool>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let file = if openai { "clip_tiny_openai.pt" } else { "clip_tiny/model.safetensors" };
        let bytes = std::fs::read(fixture(file)).unwrap();
        // Their structure: the safetensors header and data.pkl lie in the first 12 KiB, the
        // ZIP's central directory in the last 10 KiB.
        let spots = Spots::Ends { head: 12 << 10, tail: 10 << 10 };
        let bytes = damages.iter().fold(bytes, |b, d| d.apply(b, spots));
        let name = if openai { "clip.pt" } else { "model.safetensors" };
        let _ = read_checkpoint(name, &bytes, None);
    }
}

#[test]
fn a_fused_attention_projection_that_does_not_split_in_three_is_refused_naming_it() {
    for shape in [vec![], vec![5, 2], vec![6, 2, 2]] {
        let shapes = BTreeMap::from([
            ("visual.conv1.weight".to_owned(), vec![4, 3, 2, 2]),
            (
                "visual.transformer.resblocks.0.attn.in_proj_weight".to_owned(),
                shape.clone(),
            ),
        ]);
        let err = read_checkpoint("clip.safetensors", &safetensors_of(&shapes), None)
            .err()
            .unwrap();
        assert!(
            err.ends_with(&format!(
                "clip.safetensors: tensor `visual.transformer.resblocks.0.attn.in_proj_weight` \
                 has shape {shape:?}; expected [3 × width, width] or [3 × width] (query, key \
                 and value stacked)"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_config_larger_than_its_weights_is_refused_naming_it() {
    let weights = std::fs::read(fixture("clip_tiny/model.safetensors")).unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(fixture("clip_tiny/config.json")).unwrap()).unwrap();
    config["text_config"]["vocab_size"] = json!(1u64 << 40);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &weights).unwrap();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let err = Checkpoint::read(dir.path()).err().unwrap();
    assert!(matches!(err, LoadError::ConfigTooLarge { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&dir.path().join("config.json").display().to_string())
            && message.contains("this config does not belong to these weights"),
        "{message}"
    );
}

#[test]
fn a_config_with_a_zero_size_is_refused_naming_the_key() {
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(fixture("clip_tiny/config.json")).unwrap()).unwrap();
    config["vision_config"]["patch_size"] = json!(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let err = ClipConfig::read_hf(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: `vision_config.patch_size` is 0; every size must be at least 1",
            path.display()
        )
    );
}

#[test]
fn the_parameters_counted_from_a_config_are_those_its_checkpoint_holds() {
    let ckpt = Checkpoint::read(&fixture("clip_tiny")).unwrap();
    let held: usize = ckpt
        .tensors
        .iter()
        .filter(|(name, _)| name.as_str() != "logit_scale")
        .map(|(_, t)| t.data.len())
        .sum();
    assert_eq!(ckpt.config.unwrap().parameter_count(), Some(held as u64));
}
