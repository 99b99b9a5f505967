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
    #[error("{path}: tensor `{name}` has element type {dtype:?}, expected a floating-point type")]
    DType {
        path: PathBuf,
        name: String,
        dtype: DType,
    },
    #[error("{path}: does not match the expected layout: {}", .problems.join("; "))]
    Layout {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Tensors by their checkpoint names, as `model.state_dict()` names them.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, HostTensor>,
}

fn to_f32(bytes: &[u8], dtype: DType) -> Option<Vec<f32>> {
    Some(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
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

/// The tensors of a safetensors file held in memory.
fn parse_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, HostTensor>, String> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or("shorter than a safetensors header")?;
    let header = 8usize
        .checked_add(n)
        .and_then(|end| bytes.get(8..end))
        .ok_or("header runs past the end of the file")?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    let data = &bytes[8 + n..];
    let mut tensors = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info["dtype"].as_str() {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("F64") => DType::F64,
            Some(_) => continue,
            None => return Err(format!("tensor `{name}` has no dtype")),
        };
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
            .map_err(|e| format!("tensor `{name}`: shape: {e}"))?;
        let [start, end]: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|e| format!("tensor `{name}`: data_offsets: {e}"))?;
        let raw = data
            .get(start..end)
            .ok_or_else(|| format!("tensor `{name}` runs past the end of the file"))?;
        if raw.len() != shape.iter().product::<usize>() * dtype.size() {
            return Err(format!(
                "tensor `{name}`: {} bytes do not hold shape {shape:?}",
                raw.len()
            ));
        }
        let values = to_f32(raw, dtype).expect("floating-point dtype");
        tensors.insert(name, HostTensor::new(shape, values));
    }
    Ok(tensors)
}

impl StateDict {
    /// Reads every floating-point tensor of a PyTorch checkpoint (`torch.save(state_dict)`).
    pub fn load_pytorch(path: &Path) -> Result<Self, StateDictError> {
        let read_err = |reason: String| StateDictError::Read {
            path: path.to_owned(),
            reason,
        };
        if !path.exists() {
            return Err(read_err("file not found".into()));
        }
        let reader = PytorchReader::new(path).map_err(|e| read_err(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, t) in reader.into_tensors() {
            let bytes = t
                .read()
                .map_err(|e| read_err(format!("tensor `{name}`: {e}")))?;
            let data = to_f32(&bytes, t.dtype()).ok_or_else(|| StateDictError::DType {
                path: path.to_owned(),
                name: name.clone(),
                dtype: t.dtype(),
            })?;
            tensors.insert(name, HostTensor::new(t.shape().to_vec(), data));
        }
        Ok(StateDict {
            path: path.to_owned(),
            tensors,
        })
    }

    /// Reads every floating-point tensor of a safetensors file (F32, F16, BF16, F64).
    pub fn load_safetensors(path: &Path) -> Result<Self, StateDictError> {
        let read_err = |reason: String| StateDictError::Read {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let tensors = parse_safetensors(&bytes).map_err(read_err)?;
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
        assert!(parse_safetensors(&[1, 0, 0]).is_err());
        let mut bytes = 200u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(
            parse_safetensors(&bytes)
                .unwrap_err()
                .contains("past the end")
        );
    }
}
