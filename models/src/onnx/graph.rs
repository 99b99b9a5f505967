//! Building ONNX graphs from weights held in memory.
//!
//! [`Graph`] collects inputs, outputs, initializers and nodes; every node method returns the
//! name of the value it produces, so a forward pass reads like the computation it encodes.
//! [`Model`] wraps a graph with opset imports and `metadata_props` and serialises it.

use std::io;
use std::path::Path;

use prost::Message;

use super::proto::{
    AttributeProto, AttributeType, DataType, Dimension, DimensionValue, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// ONNX IR version written: 9 (ONNX 1.15), read by every ONNX Runtime since 1.16.
pub const IR_VERSION: i64 = 9;
/// Default-domain opset written unless a model asks for another: 17 has `LayerNormalization`.
pub const DEFAULT_OPSET: i64 = 17;

/// One dimension of a graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension such as the batch, `"N"`.
    Named(String),
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Fixed(v)
    }
}

impl From<&str> for Dim {
    fn from(v: &str) -> Self {
        Dim::Named(v.to_owned())
    }
}

/// Storage precision of floating-point initializers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

impl Precision {
    pub fn data_type(self) -> DataType {
        match self {
            Precision::F32 => DataType::Float,
            Precision::F16 => DataType::Float16,
        }
    }
}

/// A node attribute.
#[derive(Clone, Debug)]
pub enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
    Float(&'static str, f32),
    Floats(&'static str, Vec<f32>),
    Str(&'static str, String),
}

impl Attr {
    fn to_proto(&self) -> AttributeProto {
        let mut a = AttributeProto::default();
        match self {
            Attr::Int(n, v) => {
                a.name = (*n).into();
                a.r#type = AttributeType::Int as i32;
                a.i = *v;
            }
            Attr::Ints(n, v) => {
                a.name = (*n).into();
                a.r#type = AttributeType::Ints as i32;
                a.ints = v.clone();
            }
            Attr::Float(n, v) => {
                a.name = (*n).into();
                a.r#type = AttributeType::Float as i32;
                a.f = *v;
            }
            Attr::Floats(n, v) => {
                a.name = (*n).into();
                a.r#type = AttributeType::Floats as i32;
                a.floats = v.clone();
            }
            Attr::Str(n, v) => {
                a.name = (*n).into();
                a.r#type = AttributeType::String as i32;
                a.s = v.clone().into_bytes();
            }
        }
        a
    }
}

/// A graph under construction.
#[derive(Debug, Default)]
pub struct Graph {
    proto: GraphProto,
    counter: usize,
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => DimensionValue::DimValue(*v),
                Dim::Named(s) => DimensionValue::DimParam(s.clone()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

impl Graph {
    pub fn new(name: &str) -> Self {
        Graph {
            proto: GraphProto {
                name: name.to_owned(),
                ..Default::default()
            },
            counter: 0,
        }
    }

    /// Declares a graph input and returns its name.
    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        self.proto.input.push(value_info(name, elem, dims));
        name.to_owned()
    }

    /// Declares `value` (produced by a node) as the graph output `name`.
    pub fn output(&mut self, value: &str, name: &str, elem: DataType, dims: &[Dim]) {
        if value != name {
            self.node_into("Identity", &[value], name, vec![]);
        }
        self.proto.output.push(value_info(name, elem, dims));
    }

    fn tensor(&mut self, name: &str, dims: &[usize], data_type: DataType, raw: Vec<u8>) -> String {
        self.proto.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type as i32,
            name: name.to_owned(),
            raw_data: raw,
        });
        name.to_owned()
    }

    /// Adds a floating-point initializer stored at `precision`.
    pub fn weight(
        &mut self,
        name: &str,
        dims: &[usize],
        data: &[f32],
        precision: Precision,
    ) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {name}: shape {dims:?} does not match {} values",
            data.len()
        );
        let raw = match precision {
            Precision::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::F16 => data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        };
        self.tensor(name, dims, precision.data_type(), raw)
    }

    /// Adds an `int64` initializer (shapes, axes, indices).
    pub fn int64s(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, DataType::Int64, raw)
    }

    /// Adds a `uint8` initializer (FP8 E4M3 codes, see `crate::kernels::e4m3`).
    pub fn uint8s(&mut self, name: &str, dims: &[usize], data: &[u8]) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            data.len(),
            "initializer {name}"
        );
        self.tensor(name, dims, DataType::Uint8, data.to_vec())
    }

    /// Adds a scalar (rank-0) floating-point constant.
    pub fn scalar(&mut self, name: &str, value: f32, precision: Precision) -> String {
        self.weight(name, &[], &[value], precision)
    }

    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        format!("{}_{}", op.to_lowercase(), self.counter)
    }

    /// Adds a node of the default domain with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        let out = self.fresh(op);
        self.node_into(op, inputs, &out, attrs);
        out
    }

    /// Adds a node of the default domain whose single output is named `output`.
    pub fn node_into(&mut self, op: &str, inputs: &[&str], output: &str, attrs: Vec<Attr>) {
        self.push_node("", op, inputs, &[output.to_owned()], attrs);
    }

    /// Adds a node in `domain` with the given output names; an empty name leaves an
    /// optional output out.
    pub fn node_outputs(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attr>,
    ) {
        let outs: Vec<String> = outputs.iter().map(|s| (*s).to_owned()).collect();
        self.push_node(domain, op, inputs, &outs, attrs);
    }

    /// A fresh value name for `op`'s output.
    pub fn fresh_name(&mut self, op: &str) -> String {
        self.fresh(op)
    }

    /// Adds a node with `n` outputs, in `domain` (`""` for the ONNX default domain).
    pub fn node_multi(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<Attr>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(op)).collect();
        self.push_node(domain, op, inputs, &outs, attrs);
        outs
    }

    fn push_node(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[String],
        attrs: Vec<Attr>,
    ) {
        let name = format!("{op}_node_{}", self.proto.node.len());
        self.proto.node.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: outputs.to_vec(),
            name,
            op_type: op.to_owned(),
            domain: domain.to_owned(),
            attribute: attrs.iter().map(Attr::to_proto).collect(),
            doc_string: String::new(),
        });
    }

    /// Number of nodes so far.
    pub fn node_count(&self) -> usize {
        self.proto.node.len()
    }
}

/// A model: a graph plus the opsets it imports and its `metadata_props`.
#[derive(Debug)]
pub struct Model {
    pub graph: Graph,
    pub opsets: Vec<(String, i64)>,
    pub metadata: Vec<(String, String)>,
    pub producer: String,
    pub doc: String,
}

impl Model {
    /// A model of the default ONNX domain at [`DEFAULT_OPSET`].
    pub fn new(graph: Graph) -> Self {
        Model {
            graph,
            opsets: vec![(String::new(), DEFAULT_OPSET)],
            metadata: Vec::new(),
            producer: "sd2".into(),
            doc: String::new(),
        }
    }

    /// Imports another operator domain, e.g. `("com.microsoft", 1)`.
    pub fn with_opset(mut self, domain: &str, version: i64) -> Self {
        self.opsets.retain(|(d, _)| d != domain);
        self.opsets.push((domain.to_owned(), version));
        self
    }

    /// Adds one `metadata_props` entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.push((key.to_owned(), value.into()));
        self
    }

    /// The message for this model; the graph is moved, not copied (a ViT-L/14 is 1.2 GB).
    pub fn into_proto(self) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: self
                .opsets
                .iter()
                .map(|(d, v)| OperatorSetIdProto {
                    domain: d.clone(),
                    version: *v,
                })
                .collect(),
            producer_name: self.producer,
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: String::new(),
            model_version: 1,
            doc_string: self.doc,
            graph: Some(self.graph.proto),
            metadata_props: self
                .metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
        }
    }

    /// The serialised model.
    pub fn into_bytes(self) -> Vec<u8> {
        self.into_proto().encode_to_vec()
    }

    /// Writes the model to `path` atomically (a temporary file beside it, then a rename).
    pub fn write(self, path: &Path) -> io::Result<()> {
        crate::atomic_write::write_atomic(path, &self.into_bytes())
    }
}
