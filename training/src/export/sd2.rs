//! The encoder layer of the `sd2` graph: the fused graph's attention
//! (`MultiHeadAttention`) and residual sums (`SkipLayerNormalization`), with SD²'s own
//! operators (`com.sd2`, `sd2_models::kernels`) where ONNX Runtime has no fused kernel:
//!
//! - Q's projection is a `Linear`, its bias in the GEMM's epilogue (K's bias is dropped and
//!   V's folded into the output's, as in the fused graph, so theirs are plain MatMuls);
//! - fc1's bias and QuickGELU are one `BiasQuickGelu` pass over fc1's output.
//!
//! With FP8 ([`Fp8::Scales`]) every GEMM of the layer multiplies E4M3 codes: the input of
//! Q, K and V is quantised once for the three, the attention's output before the output
//! projection, LayerNorm's output before fc1, and fc2's input by the `BiasQuickGeluE4M3`
//! that computes it. Each such input is a calibration site: [`Fp8::Calibrate`] writes the
//! unquantised graph with each site's largest magnitude as an output (`amax.{site}`).

use std::collections::BTreeMap;

use burn::nn::LayerNorm;
use sd2_models::kernels::{DOMAIN, e4m3};
use sd2_models::onnx::{Attr, Precision};

use super::encoder::Stream;
use super::graph::{Builder, MS};
use super::weights::{self, bias, layer_norm_params, values};
use crate::clip::encoder::ClipEncoderLayer;

/// Each calibration site's largest magnitude over the calibration faces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calibration {
    /// Faces the amaxes were taken over.
    pub faces: usize,
    /// Site → largest magnitude.
    pub amax: BTreeMap<String, f32>,
}

/// The prefix of the calibration graph's amax outputs.
pub const AMAX: &str = "amax.";

/// What the FP8 sites of an `sd2` graph do.
#[derive(Clone, Copy)]
pub enum Fp8<'a> {
    /// Nothing: float GEMMs.
    Off,
    /// Float GEMMs, and each site's largest magnitude as an output.
    Calibrate,
    /// E4M3 GEMMs, each input scaled by its site's calibrated amax.
    Scales(&'a Calibration),
}

/// A GEMM's input: a float tensor, or E4M3 codes and the name of their scale.
enum Operand {
    Float(String),
    Codes { codes: String, scale: String },
}

impl Builder {
    fn sd2_node(&mut self, op: &str, inputs: &[&str]) -> String {
        let out = self.g.fresh_name(op);
        self.g.node_outputs(DOMAIN, op, inputs, &[&out], vec![]);
        out
    }

    /// `x` as the input of a GEMM at `site`.
    fn gemm_input(&mut self, fp8: Fp8<'_>, x: &str, site: &str) -> Operand {
        match fp8 {
            Fp8::Off => Operand::Float(x.to_owned()),
            Fp8::Calibrate => {
                self.amax_output(x, site);
                Operand::Float(x.to_owned())
            }
            Fp8::Scales(c) => {
                let scale = self.site_scale(c, site);
                let codes = self.sd2_node("QuantizeE4M3", &[x, &scale]);
                Operand::Codes { codes, scale }
            }
        }
    }

    /// `QuickGELU(x + bias)` as the input of the GEMM at `site`.
    fn gelu_input(&mut self, fp8: Fp8<'_>, x: &str, name: &str, b: &[f32], site: &str) -> Operand {
        let bn = self.weight(&format!("{name}.bias"), &[b.len()], b);
        match fp8 {
            Fp8::Scales(c) => {
                let scale = self.site_scale(c, site);
                let codes = self.sd2_node("BiasQuickGeluE4M3", &[x, &bn, &scale]);
                Operand::Codes { codes, scale }
            }
            _ => {
                let g = self.sd2_node("BiasQuickGelu", &[x, &bn]);
                self.gemm_input(fp8, &g, site)
            }
        }
    }

    /// The largest magnitude of `x` as the scalar output `amax.{site}`.
    fn amax_output(&mut self, x: &str, site: &str) {
        let abs = self.g.node("Abs", &[x], vec![]);
        let max = self
            .g
            .node("ReduceMax", &[&abs], vec![Attr::Int("keepdims", 0)]);
        self.g
            .output(&max, &format!("{AMAX}{site}"), self.io_type(), &[]);
    }

    /// The scale of `site`'s activations, a float32 scalar initializer.
    fn site_scale(&mut self, c: &Calibration, site: &str) -> String {
        let amax = c.amax.get(site).copied().unwrap_or_else(|| {
            panic!("the calibration has no site {site}: it was made for another model")
        });
        self.g.scalar(
            &format!("{site}.scale"),
            e4m3::scale_for(amax),
            Precision::F32,
        )
    }

    /// `x·W + bias` with `W` as `[in, out]`: a `Linear` with the bias in its epilogue or a
    /// MatMul without one; on codes, a `LinearE4M3` (`W` quantised per tensor and stored
    /// `[out, in]`; a bias of zeros when there is none, which the epilogue adds for free).
    fn sd2_linear(
        &mut self,
        x: &Operand,
        name: &str,
        w: &[f32],
        [input, output]: [usize; 2],
        b: Option<&[f32]>,
    ) -> String {
        match x {
            Operand::Float(x) => {
                let wn = self.weight(&format!("{name}.weight"), &[input, output], w);
                match b {
                    Some(b) => {
                        let bn = self.weight(&format!("{name}.bias"), &[output], b);
                        self.sd2_node("Linear", &[x, &wn, &bn])
                    }
                    None => self.g.node("MatMul", &[x, &wn], vec![]),
                }
            }
            Operand::Codes { codes, scale } => {
                let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let ws = e4m3::scale_for(amax);
                let mut w8 = vec![0u8; w.len()];
                let transposed =
                    (0..output).flat_map(|o| (0..input).map(move |i| w[i * output + o]));
                e4m3::quantize(transposed, ws, &mut w8);
                let wn = self
                    .g
                    .uint8s(&format!("{name}.weight_e4m3"), &[output, input], &w8);
                let wsn = self
                    .g
                    .scalar(&format!("{name}.weight_scale"), ws, Precision::F32);
                let bn = match b {
                    Some(b) => self.weight(&format!("{name}.bias"), &[output], b),
                    None => self.weight(&format!("{name}.no_bias"), &[output], &vec![0.0; output]),
                };
                self.sd2_node("LinearE4M3", &[codes, &wn, scale, &wsn, &bn])
            }
        }
    }
}

/// Layer `i` of the `sd2` graph; `next`: the following layer's first LayerNorm, which the
/// residual sum after the MLP computes when there is one.
pub fn layer(
    b: &mut Builder,
    fp8: Fp8<'_>,
    i: usize,
    layer: &ClipEncoderLayer,
    next: Option<&LayerNorm>,
    stream: Stream,
) -> Stream {
    let name = format!("layers.{i}");
    let [width, inter] = layer.mlp.fc1.weight.val().dims();
    let h = stream.layer_input(b, &name, layer);
    // Attention (see Builder::attention_fused for why K's and V's biases go).
    let attn = format!("{name}.self_attn");
    let [q, k, v, o] = weights::attention(&layer.self_attn);
    let x = b.gemm_input(fp8, &h, &format!("{attn}.input"));
    let dims = [width, width];
    let qb = (!q.1.is_empty()).then_some(q.1.as_slice());
    let qh = b.sd2_linear(&x, &format!("{attn}.q_proj"), &q.0, dims, qb);
    let kh = b.sd2_linear(&x, &format!("{attn}.k_proj"), &k.0, dims, None);
    let vh = b.sd2_linear(&x, &format!("{attn}.v_proj"), &v.0, dims, None);
    let ctx = b.g.fresh_name("mha");
    b.g.node_outputs(
        MS,
        "MultiHeadAttention",
        &[&qh, &kh, &vh],
        &[&ctx],
        vec![Attr::Int("num_heads", layer.self_attn.num_heads as i64)],
    );
    let ctx = b.gemm_input(fp8, &ctx, &format!("{attn}.out_proj.input"));
    let a = b.sd2_linear(&ctx, &format!("{attn}.out_proj"), &o.0, dims, None);
    let out_bias = super::graph::fold_value_bias(&v.1, (&o.0, &o.1), width);
    let (g, be) = layer_norm_params(&layer.layer_norm2);
    let ln2 = format!("{name}.layer_norm2");
    let (h, mid) = b.skip_layer_norm(&a, &stream.sum, &ln2, &g, &be, &out_bias);
    // MLP: fc1, then its bias and QuickGELU in one pass, then fc2.
    let (fc1, fc2) = (&layer.mlp.fc1, &layer.mlp.fc2);
    let x = b.gemm_input(fp8, &h, &format!("{name}.mlp.fc1.input"));
    let f = b.sd2_linear(
        &x,
        &format!("{name}.mlp.fc1"),
        &values(fc1.weight.val()),
        [width, inter],
        None,
    );
    let fc2_site = format!("{name}.mlp.fc2.input");
    let g = b.gelu_input(fp8, &f, &format!("{name}.mlp.fc1"), &bias(fc1), &fc2_site);
    let f = b.sd2_linear(
        &g,
        &format!("{name}.mlp.fc2"),
        &values(fc2.weight.val()),
        [inter, width],
        None,
    );
    let fc2_bias = bias(fc2);
    match next {
        Some(norm) => {
            let (g, be) = layer_norm_params(norm);
            let next_name = format!("layers.{}.layer_norm1", i + 1);
            let (h, sum) = b.skip_layer_norm(&f, &mid, &next_name, &g, &be, &fc2_bias);
            Stream {
                sum,
                normed: Some(h),
            }
        }
        None => {
            let fb = b.weight(&format!("{name}.mlp.fc2.bias"), &[width], &fc2_bias);
            let f = b.g.node("Add", &[&f, &fb], vec![]);
            let sum = b.g.node("Add", &[&f, &mid], vec![]);
            Stream { sum, normed: None }
        }
    }
}

/// Every calibration site of a graph of `layers` layers, in graph order.
pub fn sites(layers: usize) -> Vec<String> {
    (0..layers)
        .flat_map(|i| {
            [
                format!("layers.{i}.self_attn.input"),
                format!("layers.{i}.self_attn.out_proj.input"),
                format!("layers.{i}.mlp.fc1.input"),
                format!("layers.{i}.mlp.fc2.input"),
            ]
        })
        .collect()
}
