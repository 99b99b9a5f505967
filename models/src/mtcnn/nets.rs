//! P-Net, R-Net and O-Net as ONNX graphs, built from facenet-pytorch's state dicts.
//!
//! Each network is described once, as a list of layers mirroring the `nn.Module`s in
//! facenet-pytorch's `models/mtcnn.py`; the expected checkpoint layout and the ONNX graph
//! are both derived from that list. Inputs are normalised pixels `[N, 3, H, W]`
//! (see [`super::area::normalise`]); outputs are named `reg`, `prob` and, for O-Net,
//! `landmarks`, with `prob` the softmax over (not face, face).

use std::path::Path;

use crate::onnx::{Attr, DataType, Dim, Graph, Model, Precision};
use crate::runtime::TensorSpec;
use crate::state_dict::{StateDict, StateDictError};

/// One layer of a trunk.
#[derive(Clone, Copy, Debug)]
enum Layer {
    /// `nn.Conv2d(in, out, kernel_size=k)`, stride 1, no padding.
    Conv(&'static str, usize, usize, usize),
    /// `nn.PReLU(channels)`.
    PRelu(&'static str, usize),
    /// `nn.MaxPool2d(k, s, ceil_mode=True)`.
    MaxPool(usize, usize),
    /// `x.permute(0, 3, 2, 1).contiguous().view(N, -1)`.
    PermuteFlatten,
    /// `nn.Linear(in, out)`.
    Dense(&'static str, usize, usize),
}

/// An output head: a layer applied to the trunk's result, and whether a softmax follows.
#[derive(Clone, Copy, Debug)]
struct Head {
    output: &'static str,
    layer: Layer,
    softmax: bool,
}

/// One of the three networks.
#[derive(Clone, Copy, Debug)]
pub struct NetSpec {
    /// `pnet`, `rnet` or `onet`: the stem of both the `.pt` and the `.onnx` file.
    pub name: &'static str,
    /// Fixed input side, or `None` for P-Net, which runs on any size.
    pub input_side: Option<usize>,
    trunk: &'static [Layer],
    heads: &'static [Head],
}

use Layer::*;

pub const PNET: NetSpec = NetSpec {
    name: "pnet",
    input_side: None,
    trunk: &[
        Conv("conv1", 3, 10, 3),
        PRelu("prelu1", 10),
        MaxPool(2, 2),
        Conv("conv2", 10, 16, 3),
        PRelu("prelu2", 16),
        Conv("conv3", 16, 32, 3),
        PRelu("prelu3", 32),
    ],
    heads: &[
        Head {
            output: "reg",
            layer: Conv("conv4_2", 32, 4, 1),
            softmax: false,
        },
        Head {
            output: "prob",
            layer: Conv("conv4_1", 32, 2, 1),
            softmax: true,
        },
    ],
};

pub const RNET: NetSpec = NetSpec {
    name: "rnet",
    input_side: Some(24),
    trunk: &[
        Conv("conv1", 3, 28, 3),
        PRelu("prelu1", 28),
        MaxPool(3, 2),
        Conv("conv2", 28, 48, 3),
        PRelu("prelu2", 48),
        MaxPool(3, 2),
        Conv("conv3", 48, 64, 2),
        PRelu("prelu3", 64),
        PermuteFlatten,
        Dense("dense4", 576, 128),
        PRelu("prelu4", 128),
    ],
    heads: &[
        Head {
            output: "reg",
            layer: Dense("dense5_2", 128, 4),
            softmax: false,
        },
        Head {
            output: "prob",
            layer: Dense("dense5_1", 128, 2),
            softmax: true,
        },
    ],
};

pub const ONET: NetSpec = NetSpec {
    name: "onet",
    input_side: Some(48),
    trunk: &[
        Conv("conv1", 3, 32, 3),
        PRelu("prelu1", 32),
        MaxPool(3, 2),
        Conv("conv2", 32, 64, 3),
        PRelu("prelu2", 64),
        MaxPool(3, 2),
        Conv("conv3", 64, 64, 3),
        PRelu("prelu3", 64),
        MaxPool(2, 2),
        Conv("conv4", 64, 128, 2),
        PRelu("prelu4", 128),
        PermuteFlatten,
        Dense("dense5", 1152, 256),
        PRelu("prelu5", 256),
    ],
    heads: &[
        Head {
            output: "reg",
            layer: Dense("dense6_2", 256, 4),
            softmax: false,
        },
        Head {
            output: "landmarks",
            layer: Dense("dense6_3", 256, 10),
            softmax: false,
        },
        Head {
            output: "prob",
            layer: Dense("dense6_1", 256, 2),
            softmax: true,
        },
    ],
};

pub const ALL: [NetSpec; 3] = [PNET, RNET, ONET];

impl NetSpec {
    fn layers(&self) -> impl Iterator<Item = Layer> + '_ {
        self.trunk
            .iter()
            .copied()
            .chain(self.heads.iter().map(|h| h.layer))
    }

    /// Tensor names and shapes the checkpoint must hold.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for layer in self.layers() {
            match layer {
                Conv(n, i, o, k) => {
                    out.push((format!("{n}.weight"), vec![o, i, k, k]));
                    out.push((format!("{n}.bias"), vec![o]));
                }
                PRelu(n, c) => out.push((format!("{n}.weight"), vec![c])),
                Dense(n, i, o) => {
                    out.push((format!("{n}.weight"), vec![o, i]));
                    out.push((format!("{n}.bias"), vec![o]));
                }
                MaxPool(..) | PermuteFlatten => {}
            }
        }
        out
    }

    /// Names of the outputs, in the order facenet-pytorch's `forward` returns them.
    pub fn outputs(&self) -> Vec<&'static str> {
        self.heads.iter().map(|h| h.output).collect()
    }

    /// Reads `<dir>/<name>.pt` and checks its layout.
    pub fn load_weights(&self, dir: &Path) -> Result<StateDict, StateDictError> {
        let sd = StateDict::load_pytorch(&dir.join(format!("{}.pt", self.name)))?;
        sd.check(&self.expected_tensors())?;
        Ok(sd)
    }

    /// The ONNX model for these weights (which must have passed [`StateDict::check`]).
    pub fn to_onnx(&self, sd: &StateDict) -> Model {
        let mut g = Graph::new(self.name);
        let side = |d: &'static str| match self.input_side {
            Some(s) => Dim::Fixed(s as i64),
            None => Dim::Named(d.into()),
        };
        let x = g.input(
            "input",
            DataType::Float,
            &[Dim::from("N"), 3.into(), side("H"), side("W")],
        );
        let mut spatial = true;
        let mut y = x;
        for &layer in self.trunk {
            y = apply(&mut g, sd, layer, &y, &mut spatial);
        }
        for head in self.heads {
            let mut head_spatial = spatial;
            let mut h = apply(&mut g, sd, head.layer, &y, &mut head_spatial);
            if head.softmax {
                h = g.node("Softmax", &[&h], vec![Attr::Int("axis", 1)]);
            }
            let channels = match head.layer {
                Conv(_, _, o, _) | Dense(_, _, o) => o as i64,
                _ => unreachable!("heads are convolutions or dense layers"),
            };
            let dims: Vec<Dim> = if head_spatial {
                vec!["N".into(), channels.into(), "h".into(), "w".into()]
            } else {
                vec!["N".into(), channels.into()]
            };
            g.output(&h, head.output, DataType::Float, &dims);
        }
        Model::new(g)
            .with_metadata(
                "source",
                "facenet-pytorch 2.6.0 data/".to_owned() + self.name + ".pt",
            )
            .with_metadata("input_normalisation", "(v - 127.5) * 0.0078125")
    }
}

fn apply(g: &mut Graph, sd: &StateDict, layer: Layer, x: &str, spatial: &mut bool) -> String {
    let w = |g: &mut Graph, name: String| {
        let t = sd.get(&name);
        g.weight(&name, &t.shape, &t.data, Precision::F32)
    };
    match layer {
        Conv(n, _, _, k) => {
            let wt = w(g, format!("{n}.weight"));
            let b = w(g, format!("{n}.bias"));
            g.node(
                "Conv",
                &[x, &wt, &b],
                vec![Attr::Ints("kernel_shape", vec![k as i64, k as i64])],
            )
        }
        PRelu(n, c) => {
            let name = format!("{n}.weight");
            let slope = &sd.get(&name).data;
            // PRelu broadcasts the slope from the right: [C, 1, 1] against [N, C, H, W].
            let dims = if *spatial { vec![c, 1, 1] } else { vec![c] };
            let s = g.weight(&name, &dims, slope, Precision::F32);
            g.node("PRelu", &[x, &s], vec![])
        }
        MaxPool(k, s) => g.node(
            "MaxPool",
            &[x],
            vec![
                Attr::Ints("kernel_shape", vec![k as i64, k as i64]),
                Attr::Ints("strides", vec![s as i64, s as i64]),
                Attr::Int("ceil_mode", 1),
            ],
        ),
        PermuteFlatten => {
            *spatial = false;
            let t = g.node(
                "Transpose",
                &[x],
                vec![Attr::Ints("perm", vec![0, 3, 2, 1])],
            );
            g.node("Flatten", &[&t], vec![Attr::Int("axis", 1)])
        }
        Dense(n, ..) => {
            let wt = w(g, format!("{n}.weight"));
            let b = w(g, format!("{n}.bias"));
            g.node("Gemm", &[x, &wt, &b], vec![Attr::Int("transB", 1)])
        }
    }
}

/// Converts `pnet.pt`, `rnet.pt` and `onet.pt` in `weights_dir` to ONNX files in `out_dir`.
pub fn export_all(
    weights_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<std::path::PathBuf>, ExportError> {
    let mut written = Vec::new();
    for spec in ALL {
        let sd = spec.load_weights(weights_dir)?;
        let path = out_dir.join(format!("{}.onnx", spec.name));
        spec.to_onnx(&sd)
            .write(&path)
            .map_err(|e| ExportError::Write(path.clone(), e))?;
        written.push(path);
    }
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Weights(#[from] StateDictError),
    #[error("cannot write {0}: {1}")]
    Write(std::path::PathBuf, std::io::Error),
}

impl NetSpec {
    /// The inputs and outputs the cascade feeds and reads, for [`crate::runtime::check_contract`].
    pub fn contract(&self) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
        let side = self.input_side.map(|s| s as i64);
        let input = TensorSpec::f32("input", &[None, Some(3), side, side]);
        let outputs = self
            .heads
            .iter()
            .map(|h| {
                let c = match h.layer {
                    Conv(_, _, o, _) | Dense(_, _, o) => Some(o as i64),
                    _ => unreachable!("heads are convolutions or dense layers"),
                };
                if self.input_side.is_none() {
                    TensorSpec::f32(h.output, &[None, c, None, None])
                } else {
                    TensorSpec::f32(h.output, &[None, c])
                }
            })
            .collect();
        (vec![input], outputs)
    }
}
