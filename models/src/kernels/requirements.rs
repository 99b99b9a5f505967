//! What a model file's graph needs from the device it is asked to run on, checked before a
//! session opens: an `sd2` graph (SD²'s own operators) needs their CUDA kernels on CUDA
//! (NVRTC, cuBLASLt, a driver and a device), an FP8 graph a GPU of compute capability 8.9
//! or newer, or, on the CPU, emulation allowed for it.
//!
//! The graph's kind and precision are read from the file's `metadata_props` without
//! reading its graph ([`peek_metadata`]: a ViT-L/14 file is 1.2 GB), so a file that cannot
//! run is refused at once, naming what is missing.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use prost::Message;

use super::cuda::{self, FP8_ARCH, Missing};
use crate::contract::{GraphInfo, GraphKind, GraphPrecision};
use crate::onnx::proto::StringStringEntryProto;
use crate::runtime::{Device, Placement};

/// The environment variable that allows FP8 graphs on the CPU, emulated (`1`).
pub const EMULATION_VARIABLE: &str = "SD2_FP8_EMULATION";

/// Whether FP8 graphs may run emulated on the CPU: asked for by the caller, or by
/// [`EMULATION_VARIABLE`] for programs that have no setting for it (the elements).
pub fn emulation_allowed(asked: bool) -> bool {
    asked || std::env::var(EMULATION_VARIABLE).is_ok_and(|v| v == "1")
}

/// Why a model's graph cannot run where it was asked to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    #[error(
        "its graph uses SD²'s own operators (`sd2`, domain com.sd2), whose CUDA kernels cannot run on this machine: {0}. Install what is missing, or export the `fused` graph for this machine"
    )]
    Kernels(Missing),
    #[error(
        "its encoder multiplies in FP8 (E4M3), which needs a GPU of compute capability {}.{} or newer (Ada, Hopper); this GPU's is {major}.{minor}. Export it without --fp8",
        FP8_ARCH / 10,
        FP8_ARCH % 10
    )]
    Fp8Gpu { major: i32, minor: i32 },
    #[error(
        "its encoder multiplies in FP8 (E4M3), which needs a GPU of compute capability {}.{} or newer; the CPU can only emulate it, slowly, which is allowed for measuring its accuracy with {EMULATION_VARIABLE}=1",
        FP8_ARCH / 10,
        FP8_ARCH % 10
    )]
    Fp8Cpu,
}

/// What the graph needs of CUDA, if anything.
fn needs(graph: Option<GraphInfo>) -> (bool, bool) {
    graph.map_or((false, false), |g| {
        (g.kind == GraphKind::Sd2, g.precision == GraphPrecision::Fp8)
    })
}

/// Whether CUDA can run `graph`.
fn on_cuda(graph: Option<GraphInfo>) -> Result<(), Unmet> {
    let (kernels, fp8) = needs(graph);
    if !kernels && !fp8 {
        return Ok(());
    }
    let gpu = cuda::available().map_err(|m| Unmet::Kernels(m.clone()))?;
    if fp8 && !gpu.has_fp8() {
        return Err(Unmet::Fp8Gpu {
            major: gpu.major,
            minor: gpu.minor,
        });
    }
    Ok(())
}

/// Whether `placement` can run `graph`, FP8 emulation allowed or not.
pub fn check(graph: Option<GraphInfo>, placement: Placement, emulate: bool) -> Result<(), Unmet> {
    match placement {
        Placement::Cuda => on_cuda(graph),
        Placement::Cpu if needs(graph).1 && !emulate => Err(Unmet::Fp8Cpu),
        Placement::Cpu => Ok(()),
    }
}

/// The device to open `graph` on when `device` is asked for: the same, or for
/// [`Device::Auto`] the CPU when CUDA cannot run the graph (with why, for the fallback
/// reason); or why neither can.
pub fn resolve(
    graph: Option<GraphInfo>,
    device: Device,
    emulate: bool,
) -> Result<(Device, Option<String>), Unmet> {
    match device {
        Device::Cpu => check(graph, Placement::Cpu, emulate).map(|_| (device, None)),
        Device::Cuda => on_cuda(graph).map(|_| (device, None)),
        Device::Auto => match on_cuda(graph) {
            Ok(()) => Ok((device, None)),
            Err(why) => {
                check(graph, Placement::Cpu, emulate)?;
                Ok((Device::Cpu, Some(why.to_string())))
            }
        },
    }
}

/// `ModelProto.metadata_props`' field number, and `graph`'s.
const METADATA_PROPS: u64 = 14;

/// The `metadata_props` of the ONNX file at `path`, read without reading the rest: every
/// other top-level field is skipped over. Errors are I/O errors, a malformed file
/// `InvalidData`.
pub fn peek_metadata(path: &Path) -> io::Result<HashMap<String, String>> {
    let mut r = BufReader::new(File::open(path)?);
    let end = r.get_ref().metadata()?.len();
    let mut props = HashMap::new();
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    while r.stream_position()? < end {
        let key = varint(&mut r)?;
        match key & 7 {
            0 => {
                varint(&mut r)?;
            }
            1 => {
                r.seek_relative(8)?;
            }
            5 => {
                r.seek_relative(4)?;
            }
            2 => {
                let len = varint(&mut r)?;
                if len > end {
                    return Err(bad("a field longer than the file"));
                }
                if key >> 3 == METADATA_PROPS {
                    let mut buf = vec![0; len as usize];
                    r.read_exact(&mut buf)?;
                    let e = StringStringEntryProto::decode(buf.as_slice())
                        .map_err(|_| bad("a metadata entry that does not decode"))?;
                    props.insert(e.key, e.value);
                } else {
                    r.seek_relative(len as i64)?;
                }
            }
            _ => return Err(bad("not an ONNX model (unknown protobuf wire type)")),
        }
    }
    Ok(props)
}

fn varint(r: &mut impl Read) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b)?;
        v |= u64::from(b[0] & 0x7F) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "a varint longer than 10 bytes",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Graph, Model};

    #[test]
    fn metadata_is_read_without_the_graph() {
        let mut g = Graph::new("g");
        g.weight("w", &[1000], &[0.5; 1000], crate::onnx::Precision::F32);
        let m = Model::new(g)
            .with_metadata("graph", "sd2")
            .with_metadata("precision", "fp8");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        m.write(&path).unwrap();
        let props = peek_metadata(&path).unwrap();
        assert_eq!(props["graph"], "sd2");
        assert_eq!(props["precision"], "fp8");
        assert_eq!(props.len(), 2);
        std::fs::write(&path, b"\xff\xff\xff").unwrap();
        assert!(peek_metadata(&path).is_err());
    }

    #[test]
    fn an_fp8_graph_runs_on_the_cpu_only_with_emulation_allowed() {
        let fp8 = Some(GraphInfo {
            kind: GraphKind::Sd2,
            precision: GraphPrecision::Fp8,
        });
        assert_eq!(check(fp8, Placement::Cpu, false), Err(Unmet::Fp8Cpu));
        assert_eq!(check(fp8, Placement::Cpu, true), Ok(()));
        let fp16 = Some(GraphInfo {
            kind: GraphKind::Sd2,
            precision: GraphPrecision::Fp16,
        });
        assert_eq!(check(fp16, Placement::Cpu, false), Ok(()));
        assert_eq!(check(None, Placement::Cuda, false), Ok(()));
    }
}
