//! Checkpoint files a user gives, random or damaged: `StateDict::load_safetensors` and
//! `StateDict::load_pytorch` read every valid file back as written, and refuse everything
//! else with an error that names the file, without a panic and holding no more memory than
//! the file's size allows, whatever lengths it declares.

#[path = "common/damage.rs"]
mod damage;
#[path = "common/peak_memory.rs"]
mod peak_memory;

use std::io::Write;
use std::path::Path;

use damage::{Spots, config, damage, huge};
use peak_memory::{Counting, allowance, peak_bytes};
use proptest::prelude::*;
use proptest::sample::Index;
use sd2_models::state_dict::{HostTensor, SafetensorsProblem, StateDict, StateDictError};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Element types both formats store, with their names in each.
#[derive(Clone, Copy, Debug)]
enum Float {
    F32,
    F16,
    BF16,
    F64,
}

impl Float {
    fn safetensors_name(self) -> &'static str {
        match self {
            Float::F32 => "F32",
            Float::F16 => "F16",
            Float::BF16 => "BF16",
            Float::F64 => "F64",
        }
    }

    fn storage_class(self) -> &'static str {
        match self {
            Float::F32 => "FloatStorage",
            Float::F16 => "HalfStorage",
            Float::BF16 => "BFloat16Storage",
            Float::F64 => "DoubleStorage",
        }
    }

    /// Little-endian bytes of `v`, and the f32 a reader gives back for them.
    fn encode(self, v: f32) -> (Vec<u8>, f32) {
        match self {
            Float::F32 => (v.to_le_bytes().to_vec(), v),
            Float::F64 => ((v as f64).to_le_bytes().to_vec(), v),
            Float::F16 => {
                let h = half::f16::from_f32(v);
                (h.to_le_bytes().to_vec(), h.to_f32())
            }
            Float::BF16 => {
                let h = half::bf16::from_f32(v);
                (h.to_le_bytes().to_vec(), h.to_f32())
            }
        }
    }
}

/// A tensor to write: its element type, shape and values.
#[derive(Clone, Debug)]
struct Spec {
    dtype: Float,
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Spec {
    fn bytes(&self) -> Vec<u8> {
        self.values
            .iter()
            .flat_map(|&v| self.dtype.encode(v).0)
            .collect()
    }

    /// What a reader gives back.
    fn expected(&self) -> HostTensor {
        let values = self
            .values
            .iter()
            .map(|&v| self.dtype.encode(v).1)
            .collect();
        HostTensor::new(self.shape.clone(), values)
    }
}

fn float() -> impl Strategy<Value = Float> {
    prop_oneof![
        Just(Float::F32),
        Just(Float::F16),
        Just(Float::BF16),
        Just(Float::F64)
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (float(), prop::collection::vec(0usize..5, 0..4)).prop_flat_map(|(dtype, shape)| {
        let n = shape.iter().product::<usize>();
        prop::collection::vec(-1e4f32..1e4, n).prop_map(move |values| Spec {
            dtype,
            shape: shape.clone(),
            values,
        })
    })
}

/// Up to four tensors under names like `encoder.1.weight`.
fn state_dict() -> impl Strategy<Value = Vec<(String, Spec)>> {
    prop::collection::btree_map("[a-z_]{1,8}(\\.[a-z0-9_]{1,5}){0,2}", spec(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

/// A safetensors file: the header names each tensor's type, shape and byte range.
fn safetensors_file(tensors: &[(String, Spec)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, spec) in tensors {
        let start = data.len();
        data.extend(spec.bytes());
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": spec.dtype.safetensors_name(),
                "shape": spec.shape,
                "data_offsets": [start, data.len()],
            }),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(data);
    out
}

/// One tensor of a `.pt` file as its pickle declares it: the storage it views (class, key,
/// element count), where the view starts, its shape and strides; and the storage's bytes.
#[derive(Clone, Debug)]
struct PtTensor {
    name: String,
    storage_class: &'static str,
    numel: u64,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
    storage: Vec<u8>,
}

impl PtTensor {
    /// A contiguous tensor over a storage of its own.
    fn contiguous(name: &str, spec: &Spec) -> Self {
        let shape: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
        let mut stride = vec![1u64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1].max(1);
        }
        PtTensor {
            name: name.to_owned(),
            storage_class: spec.dtype.storage_class(),
            numel: spec.values.len() as u64,
            offset: 0,
            shape,
            stride,
            storage: spec.bytes(),
        }
    }
}

/// Appends the pickle opcodes that push `v`: BININT up to `i32::MAX`, LONG1 beyond (nine
/// bytes from 2^63, where a sign byte is needed).
fn pickle_int(out: &mut Vec<u8>, v: u64) {
    if let Ok(small) = i32::try_from(v) {
        out.push(b'J');
        out.extend_from_slice(&small.to_le_bytes());
    } else if v < 1 << 63 {
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.extend_from_slice(&[0x8a, 9]);
        out.extend_from_slice(&v.to_le_bytes());
        out.push(0);
    }
}

fn pickle_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pickle_tuple(out: &mut Vec<u8>, items: &[u64]) {
    out.push(b'(');
    for &v in items {
        pickle_int(out, v);
    }
    out.push(b't');
}

/// The `data.pkl` of `torch.save(state_dict)` (protocol 2): an `OrderedDict` of
/// `_rebuild_tensor_v2(storage, offset, shape, stride, requires_grad, hooks)`, storage `i`
/// under key `i`.
fn pickle(tensors: &[PtTensor]) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
    for (i, t) in tensors.iter().enumerate() {
        pickle_str(&mut p, &t.name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        pickle_str(&mut p, "storage");
        p.extend_from_slice(format!("ctorch\n{}\n", t.storage_class).as_bytes());
        pickle_str(&mut p, &i.to_string());
        pickle_str(&mut p, "cpu");
        pickle_int(&mut p, t.numel);
        p.extend_from_slice(b"tQ");
        pickle_int(&mut p, t.offset);
        pickle_tuple(&mut p, &t.shape);
        pickle_tuple(&mut p, &t.stride);
        p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend_from_slice(b"u.");
    p
}

/// A `.pt` file as PyTorch 1.6 and later write it: a ZIP of stored entries under `archive/`.
fn pytorch_file(tensors: &[PtTensor]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut entry = |name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), stored).unwrap();
        zip.write_all(bytes).unwrap();
    };
    entry("data.pkl", &pickle(tensors));
    entry("byteorder", b"little");
    for (i, t) in tensors.iter().enumerate() {
        entry(&format!("data/{i}"), &t.storage);
    }
    entry("version", b"3\n");
    zip.finish().unwrap().into_inner()
}

fn pytorch_state_dict(tensors: &[(String, Spec)]) -> Vec<u8> {
    let tensors: Vec<PtTensor> = tensors
        .iter()
        .map(|(name, spec)| PtTensor::contiguous(name, spec))
        .collect();
    pytorch_file(&tensors)
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Safetensors,
    Pytorch,
}

/// Writes `bytes` to `path` and reads them back as `format`, checking what every read
/// must keep: memory within the file's allowance, and an error that names the file.
fn load(format: Format, path: &Path, bytes: &[u8]) -> Result<StateDict, StateDictError> {
    std::fs::write(path, bytes).unwrap();
    let (result, peak) = peak_bytes(|| match format {
        Format::Safetensors => StateDict::load_safetensors(path),
        Format::Pytorch => StateDict::load_pytorch(path),
    });
    assert!(
        peak <= allowance(bytes.len()),
        "reading {} bytes as {format:?} held {peak} bytes at once",
        bytes.len()
    );
    if let Err(e) = &result {
        let (message, path) = (e.to_string(), path.display().to_string());
        assert!(
            message.starts_with(&path) && message.len() > path.len() + 10,
            "the error does not name the file and the problem: {message}"
        );
    }
    result
}

/// Bytes that are no checkpoint: random, or random behind the start of one of the formats.
fn random_file() -> impl Strategy<Value = Vec<u8>> {
    let body = prop::collection::vec(any::<u8>(), 0..512);
    let prefix = prop::sample::select(vec![
        &b""[..],
        b"PK\x03\x04",
        b"PK\x05\x06",
        b"\x80\x02",
        b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":",
    ]);
    (prefix, body).prop_map(|(p, b)| [p, &b[..]].concat())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn valid_files_read_back_as_written(tensors in state_dict()) {
        let dir = tempfile::tempdir().unwrap();
        for (format, bytes) in [
            (Format::Safetensors, safetensors_file(&tensors)),
            (Format::Pytorch, pytorch_state_dict(&tensors)),
        ] {
            let sd = load(format, &dir.path().join("w"), &bytes)
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let want: Vec<(String, HostTensor)> =
                tensors.iter().map(|(n, s)| (n.clone(), s.expected())).collect();
            let got: Vec<(String, HostTensor)> = sd.tensors.into_iter().collect();
            prop_assert_eq!(got, want);
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_bytes_are_refused_naming_the_file(bytes in random_file()) {
        let dir = tempfile::tempdir().unwrap();
        for format in [Format::Safetensors, Format::Pytorch] {
            prop_assert!(load(format, &dir.path().join("random.bin"), &bytes).is_err());
        }
    }

    #[test]
    fn damaged_safetensors_files_are_read_or_refused_naming_the_file(
        tensors in state_dict(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = damages
            .iter()
            .fold(safetensors_file(&tensors), |b, d| d.apply(b, Spots::Anywhere));
        let _ = load(Format::Safetensors, &dir.path().join("model.safetensors"), &bytes);
    }

    #[test]
    fn damaged_pytorch_files_are_read_or_refused_naming_the_file(
        tensors in state_dict(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = damages
            .iter()
            .fold(pytorch_state_dict(&tensors), |b, d| d.apply(b, Spots::Anywhere));
        let _ = load(Format::Pytorch, &dir.path().join("model.pt"), &bytes);
    }

    #[test]
    fn huge_sizes_in_a_safetensors_header_are_refused(
        tensors in state_dict().prop_filter("a tensor", |t| !t.is_empty()),
        which in any::<Index>(),
        shape in prop::collection::vec(prop_oneof![0u64..8, huge()], 0..4),
        offsets in (prop_oneof![0u64..64, huge()], prop_oneof![0u64..64, huge()]),
        header_len in prop::option::of(huge()),
    ) {
        let bytes = safetensors_file(&tensors);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let name = &which.get(&tensors).0;
        header[name]["shape"] = serde_json::json!(shape);
        header[name]["data_offsets"] = serde_json::json!([offsets.0, offsets.1]);
        let head = serde_json::Value::Object(header).to_string();
        let mut out = header_len.unwrap_or(head.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&bytes[8 + n..]);
        let dir = tempfile::tempdir().unwrap();
        let _ = load(Format::Safetensors, &dir.path().join("model.safetensors"), &out);
    }

    #[test]
    fn huge_sizes_in_a_pickle_are_refused(
        tensors in state_dict().prop_filter("a tensor", |t| !t.is_empty()),
        which in any::<Index>(),
        numel in prop_oneof![0u64..64, huge()],
        offset in prop_oneof![0u64..4, huge()],
        dims in prop::collection::vec(
            (prop_oneof![0u64..8, huge()], prop_oneof![Just(0u64), 1u64..8, huge()]),
            0..4,
        ),
    ) {
        let (shape, stride): (Vec<u64>, Vec<u64>) = dims.into_iter().unzip();
        let mut pt: Vec<PtTensor> = tensors
            .iter()
            .map(|(name, spec)| PtTensor::contiguous(name, spec))
            .collect();
        let chosen = which.index(tensors.len());
        let t = &mut pt[chosen];
        // A storage of 64 elements, which the declarations may or may not fit.
        t.storage = vec![0; 64 * tensors[chosen].1.dtype.encode(0.0).0.len()];
        t.numel = numel;
        t.offset = offset;
        t.shape = shape;
        t.stride = stride;
        let dir = tempfile::tempdir().unwrap();
        let _ = load(Format::Pytorch, &dir.path().join("model.pt"), &pytorch_file(&pt));
    }
}

#[test]
fn a_shape_whose_size_overflows_is_refused() {
    let mut bytes = Vec::new();
    let header = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}}"#;
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let err = load(
        Format::Safetensors,
        &dir.path().join("w.safetensors"),
        &bytes,
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            StateDictError::Safetensors {
                problem: SafetensorsProblem::SizeMismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("its 0 bytes do not hold shape [4294967296, 4294967296, 4] of F32"),
        "{err}"
    );
}

#[test]
fn an_expanded_view_larger_than_the_file_is_refused_before_it_is_read() {
    // torch.zeros(1).expand(1 << 26): one stored value, 256 MiB once materialised.
    let view = PtTensor {
        name: "buffer".into(),
        storage_class: "FloatStorage",
        numel: 1,
        offset: 0,
        shape: vec![1 << 26],
        stride: vec![0],
        storage: 0f32.to_le_bytes().to_vec(),
    };
    let dir = tempfile::tempdir().unwrap();
    let err = load(
        Format::Pytorch,
        &dir.path().join("view.pt"),
        &pytorch_file(&[view]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, StateDictError::Oversized { name, bytes: 268_435_456, .. } if name == "buffer"),
        "{err}"
    );
}

#[test]
fn integer_buffers_are_left_out_as_in_a_safetensors_file() {
    // A Hugging Face `pytorch_model.bin` holds `position_ids` (int64) beside the weights.
    let ids = PtTensor {
        name: "position_ids".into(),
        storage_class: "LongStorage",
        numel: 2,
        offset: 0,
        shape: vec![2],
        stride: vec![1],
        storage: [0i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let weight = PtTensor {
        name: "weight".into(),
        storage_class: "FloatStorage",
        numel: 2,
        offset: 0,
        shape: vec![2],
        stride: vec![1],
        storage: [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let sd = load(
        Format::Pytorch,
        &dir.path().join("ids.pt"),
        &pytorch_file(&[ids, weight]),
    )
    .unwrap();
    assert_eq!(sd.get("weight").data, [1.5, -2.0]);
    assert!(sd.check(&[("position_ids", vec![2])]).is_err(), "left out");
}
