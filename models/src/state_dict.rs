//! Named f32 tensors read from checkpoint files, with shape checks that say what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pytorch_reader::{DType, PytorchReader};

/// A dense row-major f32 tensor held on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} does not hold {} values",
            data.len()
        );
        HostTensor { shape, data }
    }

    /// The transpose of a 2-D tensor.
    pub fn transposed(&self) -> HostTensor {
        assert_eq!(
            self.shape.len(),
            2,
            "transposed() needs a 2-D tensor, got {:?}",
            self.shape
        );
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        HostTensor::new(vec![c, r], data)
    }
}

/// What went wrong reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum StateDictError {
    #[error("{path}: cannot read the checkpoint: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: not a valid safetensors file: {problem}")]
    Safetensors {
        path: PathBuf,
        problem: SafetensorsProblem,
    },
    #[error(
        "{path}: tensor `{name}` of shape {shape:?} would take {bytes} bytes, more than the \
         {file_len} bytes of the file: a state dict stores every tensor's values"
    )]
    Oversized {
        path: PathBuf,
        name: String,
        shape: Vec<usize>,
        bytes: u128,
        file_len: u64,
    },
    #[error("{path}: does not match the expected layout: {}", .problems.join("; "))]
    Layout {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Why the bytes of a safetensors file are not one: an 8-byte little-endian header length,
/// a JSON header `{name: {"dtype", "shape", "data_offsets": [start, end]}}`, then the data
/// the offsets point into.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SafetensorsProblem {
    #[error("its {len} bytes are fewer than the 8 of the header length")]
    TooShort { len: usize },
    #[error("the header length is {declared} bytes, but only {available} bytes follow it")]
    HeaderPastEnd { declared: u64, available: usize },
    #[error("the header is not a JSON object: {reason}")]
    HeaderNotJson { reason: String },
    #[error("tensor `{name}` is not an object with a string `dtype`")]
    NoDtype { name: String },
    #[error("tensor `{name}`: `shape` is not a list of sizes ({reason})")]
    Shape { name: String, reason: String },
    #[error("tensor `{name}`: `data_offsets` is not [start, end] ({reason})")]
    Offsets { name: String, reason: String },
    #[error("tensor `{name}`: data_offsets [{start}, {end}] end before they start")]
    OffsetsReversed {
        name: String,
        start: usize,
        end: usize,
    },
    #[error("tensor `{name}`: data_offsets [{start}, {end}] run past the {data_len} bytes of data")]
    OffsetsPastEnd {
        name: String,
        start: usize,
        end: usize,
        data_len: usize,
    },
    #[error(
        "tensor `{name}`: its {bytes} bytes do not hold shape {shape:?} of {dtype} \
         ({element_size} bytes each)"
    )]
    SizeMismatch {
        name: String,
        bytes: usize,
        shape: Vec<usize>,
        dtype: &'static str,
        element_size: usize,
    },
}

/// Tensors by their checkpoint names, as `model.state_dict()` names them.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, HostTensor>,
}

/// Whether [`to_f32`] reads `dtype`.
fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// The values of little-endian `bytes` of a floating-point `dtype` (`None` for any other);
/// trailing bytes short of a whole element are ignored.
fn to_f32(bytes: &[u8], dtype: DType) -> Option<Vec<f32>> {
    Some(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// The number of elements of `shape`, or `None` when it does not fit a `usize`.
fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The tensors of a safetensors file held in memory. Tensors of other element types than
/// F32, F16, BF16 and F64 (integer buffers such as `position_ids`) are left out.
fn parse_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, HostTensor>, SafetensorsProblem> {
    let (len_bytes, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(SafetensorsProblem::TooShort { len: bytes.len() })?;
    let declared = u64::from_le_bytes(*len_bytes);
    let header = usize::try_from(declared)
        .ok()
        .and_then(|n| rest.get(..n))
        .ok_or(SafetensorsProblem::HeaderPastEnd {
            declared,
            available: rest.len(),
        })?;
    let data = &rest[header.len()..];
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| SafetensorsProblem::HeaderNotJson {
            reason: e.to_string(),
        })?;
    let mut tensors = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info.get("dtype").and_then(|d| d.as_str()) {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F64") => DType::F64,
            Some(_) => continue,
            None => return Err(SafetensorsProblem::NoDtype { name }),
        };
        let field = |key: &str| info.get(key).cloned().unwrap_or_default();
        let shape: Vec<usize> = match serde_json::from_value(field("shape")) {
            Ok(shape) => shape,
            Err(e) => {
                let reason = e.to_string();
                return Err(SafetensorsProblem::Shape { name, reason });
            }
        };
        let [start, end]: [usize; 2] = match serde_json::from_value(field("data_offsets")) {
            Ok(offsets) => offsets,
            Err(e) => {
                let reason = e.to_string();
                return Err(SafetensorsProblem::Offsets { name, reason });
            }
        };
        if start > end {
            return Err(SafetensorsProblem::OffsetsReversed { name, start, end });
        }
        let Some(raw) = data.get(start..end) else {
            let data_len = data.len();
            return Err(SafetensorsProblem::OffsetsPastEnd {
                name,
                start,
                end,
                data_len,
            });
        };
        let fits = element_count(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .is_some_and(|n| n == raw.len());
        if !fits {
            return Err(SafetensorsProblem::SizeMismatch {
                name,
                bytes: raw.len(),
                shape,
                dtype: safetensors_dtype_name(dtype),
                element_size: dtype.size(),
            });
        }
        let values = to_f32(raw, dtype).unwrap_or_default();
        tensors.insert(name, HostTensor::new(shape, values));
    }
    Ok(tensors)
}

/// The name safetensors gives one of the element types read here.
fn safetensors_dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F64 => "F64",
        _ => "F32",
    }
}

impl StateDict {
    /// Reads every floating-point tensor of a PyTorch checkpoint (`torch.save(state_dict)`).
    /// Tensors of other element types (integer buffers such as a Hugging Face
    /// `pytorch_model.bin`'s `position_ids`) are left out, as in a safetensors file.
    ///
    /// A tensor whose values would take more bytes than the whole file is refused before
    /// they are read: a state dict stores each tensor's values, and only a view (an
    /// `expand`) could declare more, which no checkpoint we read holds.
    pub fn load_pytorch(path: &Path) -> Result<Self, StateDictError> {
        let read_err = |reason: String| StateDictError::Read {
            path: path.to_owned(),
            reason,
        };
        if !path.exists() {
            return Err(read_err("file not found".into()));
        }
        let file_len = std::fs::metadata(path)
            .map_err(|e| read_err(e.to_string()))?
            .len();
        let reader = PytorchReader::new(path).map_err(|e| read_err(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, t) in reader.into_tensors() {
            let dtype = t.dtype();
            if !is_float(dtype) {
                continue;
            }
            let shape = t.shape().to_vec();
            let bytes = shape
                .iter()
                .fold(dtype.size() as u128, |n, &d| n.saturating_mul(d as u128));
            if bytes > u128::from(file_len) {
                return Err(StateDictError::Oversized {
                    path: path.to_owned(),
                    name,
                    shape,
                    bytes,
                    file_len,
                });
            }
            // The reader's errors name the tensor.
            let raw = t.read().map_err(|e| read_err(e.to_string()))?;
            let data = to_f32(&raw, dtype).unwrap_or_default();
            if element_count(&shape) != Some(data.len()) {
                return Err(read_err(format!(
                    "tensor `{name}`: {} values do not fill shape {shape:?}",
                    data.len()
                )));
            }
            tensors.insert(name, HostTensor::new(shape, data));
        }
        Ok(StateDict {
            path: path.to_owned(),
            tensors,
        })
    }

    /// Reads every floating-point tensor of a safetensors file (F32, F16, BF16, F64).
    pub fn load_safetensors(path: &Path) -> Result<Self, StateDictError> {
        let bytes = std::fs::read(path).map_err(|e| StateDictError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let tensors = parse_safetensors(&bytes).map_err(|problem| StateDictError::Safetensors {
            path: path.to_owned(),
            problem,
        })?;
        Ok(StateDict {
            path: path.to_owned(),
            tensors,
        })
    }

    /// Writes the tensors as an F32 safetensors file, atomically.
    pub fn save_safetensors(&self, path: &Path) -> std::io::Result<()> {
        let mut header = serde_json::Map::new();
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            let end = offset + 4 * t.data.len();
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut head = serde_json::Value::Object(header).to_string().into_bytes();
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + head.len() + offset);
        out.extend_from_slice(&(head.len() as u64).to_le_bytes());
        out.extend_from_slice(&head);
        for t in self.tensors.values() {
            for v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        crate::atomic_write::write_atomic(path, &out)
    }

    /// Checks that every expected tensor is present with its shape; the error lists up to
    /// the first eight problems (missing tensors, wrong shapes) and the tensors not expected.
    pub fn check<S: AsRef<str>>(&self, expected: &[(S, Vec<usize>)]) -> Result<(), StateDictError> {
        let mut problems = Vec::new();
        for (name, shape) in expected {
            let name = name.as_ref();
            match self.tensors.get(name) {
                None => problems.push(format!("`{name}` is missing (expected shape {shape:?})")),
                Some(t) if &t.shape != shape => problems.push(format!(
                    "`{name}` has shape {:?}, expected {shape:?}",
                    t.shape
                )),
                Some(_) => {}
            }
        }
        let unexpected: Vec<&str> = self
            .tensors
            .keys()
            .filter(|k| !expected.iter().any(|(n, _)| n.as_ref() == k.as_str()))
            .map(String::as_str)
            .collect();
        if !unexpected.is_empty() {
            problems.push(format!("unexpected tensors: {}", unexpected.join(", ")));
        }
        if problems.is_empty() {
            return Ok(());
        }
        if problems.len() > 8 {
            let more = problems.len() - 8;
            problems.truncate(8);
            problems.push(format!("and {more} more"));
        }
        Err(StateDictError::Layout {
            path: self.path.clone(),
            problems,
        })
    }

    /// The tensor `name`; call [`check`](Self::check) first.
    pub fn get(&self, name: &str) -> &HostTensor {
        self.tensors.get(name).unwrap_or_else(|| {
            panic!(
                "{}: `{name}` not present; check() was not called",
                self.path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip() {
        let dir = std::env::temp_dir().join(format!("sd2-st-{}", std::process::id()));
        let path = dir.join("t.safetensors");
        let mut sd = StateDict::default();
        sd.tensors.insert(
            "a.weight".into(),
            HostTensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
        );
        sd.tensors
            .insert("b".into(), HostTensor::new(vec![], vec![4.5]));
        sd.save_safetensors(&path).unwrap();
        let back = StateDict::load_safetensors(&path).unwrap();
        assert_eq!(back.tensors, sd.tensors);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_truncated_safetensors_file_is_refused() {
        assert_eq!(
            parse_safetensors(&[1, 0, 0]),
            Err(SafetensorsProblem::TooShort { len: 3 })
        );
        let mut bytes = 200u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert_eq!(
            parse_safetensors(&bytes),
            Err(SafetensorsProblem::HeaderPastEnd {
                declared: 200,
                available: 2
            })
        );
    }
}
