//! The encoder (`CLIPEncoderLayer` × L), one writer for both graphs. A layer is
//! LayerNorm → self-attention → residual → LayerNorm → MLP (fc1, QuickGELU, fc2) →
//! residual; the graphs differ in which operators compute each step:
//!
//! - standard: LayerNormalization, MatMul + Add, and the attention spelled out;
//! - fused: `MultiHeadAttention`, and `SkipLayerNormalization` for each residual sum with
//!   the LayerNorm after it (the attention's output bias, then fc2's bias and the next
//!   layer's first LayerNorm), fc1's bias carried by its MatMul into `QuickGelu`;
//! - sd2: the fused graph with SD²'s own operators, written by [`super::sd2`].

use burn::nn::{LayerNorm, Linear};

use super::embeddings::ClassToken;
use super::graph::Builder;
use super::sd2::{self, Fp8};
use super::weights::{self, bias, layer_norm, layer_norm_params, values};
use crate::clip::encoder::{ClipAttention, ClipEncoderLayer};

/// Which operators a layer is written with.
#[derive(Clone, Copy)]
enum Ops<'a> {
    Standard,
    /// `lanes`: the [`Builder::bias_lanes`] block that fc1's input is given.
    Fused {
        lanes: &'a str,
    },
}

/// The residual stream between two layers: the sum, and, where the SkipLayerNormalization
/// that made it also normalised it, the next layer's first LayerNorm of it.
pub(super) struct Stream {
    pub sum: String,
    pub normed: Option<String>,
}

impl Stream {
    /// Layer `name`'s input: its first LayerNorm of the residual sum, unless the previous
    /// layer's residual sum computed it already.
    pub fn layer_input(&self, b: &mut Builder, name: &str, layer: &ClipEncoderLayer) -> String {
        match &self.normed {
            Some(h) => h.clone(),
            None => layer_norm(
                b,
                &self.sum,
                &format!("{name}.layer_norm1"),
                &layer.layer_norm1,
            ),
        }
    }
}

/// Which graph's layers to write.
#[derive(Clone, Copy)]
pub enum Layers<'a> {
    Standard,
    Fused,
    Sd2(Fp8<'a>),
}

/// Writes every layer over `xs` (`[N, T, D]`); returns each layer's class token
/// (`[N, 1, D]`), in layer order.
pub fn write(
    b: &mut Builder,
    xs: String,
    layers: &[ClipEncoderLayer],
    cls: &ClassToken,
    kind: Layers<'_>,
) -> Vec<String> {
    let lanes = matches!(kind, Layers::Fused).then(|| b.bias_lanes(&xs));
    let ops = match &lanes {
        Some(lanes) => Ops::Fused { lanes },
        None => Ops::Standard,
    };
    let mut stream = Stream {
        sum: xs,
        normed: None,
    };
    let mut layer_cls = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let next = layers.get(i + 1).map(|l| &l.layer_norm1);
        stream = match kind {
            Layers::Sd2(fp8) => sd2::layer(b, fp8, i, layer, next, stream),
            _ => encoder_layer(b, ops, i, layer, next, stream),
        };
        layer_cls.push(cls.take(b, &stream.sum));
    }
    layer_cls
}

/// Layer `i`; `next`: the following layer's first LayerNorm, if there is one.
fn encoder_layer(
    b: &mut Builder,
    ops: Ops<'_>,
    i: usize,
    layer: &ClipEncoderLayer,
    next: Option<&LayerNorm>,
    stream: Stream,
) -> Stream {
    let name = format!("layers.{i}");
    let [width, inter] = layer.mlp.fc1.weight.val().dims();
    let h = stream.layer_input(b, &name, layer);
    let fused = matches!(ops, Ops::Fused { .. });
    let attn = format!("{name}.self_attn");
    let (a, out_bias) = self_attention(b, fused, &h, &attn, &layer.self_attn, width);
    let ln2 = format!("{name}.layer_norm2");
    let (h, mid) = match out_bias {
        None => {
            let sum = b.g.node("Add", &[&stream.sum, &a], vec![]);
            (layer_norm(b, &sum, &ln2, &layer.layer_norm2), sum)
        }
        Some(out_bias) => {
            let (g, be) = layer_norm_params(&layer.layer_norm2);
            b.skip_layer_norm(&a, &stream.sum, &ln2, &g, &be, &out_bias)
        }
    };
    let fc1 = &layer.mlp.fc1;
    let m = match ops {
        Ops::Standard => {
            let fc1_bias = bias(fc1);
            let w = values(fc1.weight.val());
            let h = b.linear(
                &h,
                &format!("{name}.mlp.fc1"),
                &w,
                [width, inter],
                Some(&fc1_bias),
            );
            b.quick_gelu(&h)
        }
        Ops::Fused { lanes } => {
            let w = values(fc1.weight.val());
            let (fc1_name, dims) = (format!("{name}.mlp.fc1"), [width, inter]);
            b.linear_quick_gelu(&h, lanes, &fc1_name, &w, dims, &bias(fc1))
        }
    };
    let next = next.map(|n| (format!("layers.{}.layer_norm1", i + 1), n));
    mlp_out(b, ops, &name, &layer.mlp.fc2, &m, mid, next)
}

/// fc2 of the MLP over `m` and the residual sum with `mid`; in the fused graph, with the
/// next layer's first LayerNorm (`next`: its name and module) when there is one.
fn mlp_out(
    b: &mut Builder,
    ops: Ops<'_>,
    name: &str,
    fc2: &Linear,
    m: &str,
    mid: String,
    next: Option<(String, &LayerNorm)>,
) -> Stream {
    let [inter, width] = fc2.weight.val().dims();
    let w = values(fc2.weight.val());
    if let Ops::Standard = ops {
        let h = b.linear(
            m,
            &format!("{name}.mlp.fc2"),
            &w,
            [inter, width],
            Some(&bias(fc2)),
        );
        let sum = b.g.node("Add", &[&mid, &h], vec![]);
        return Stream { sum, normed: None };
    }
    let w = b.weight(&format!("{name}.mlp.fc2.weight"), &[inter, width], &w);
    let f = b.g.node("MatMul", &[m, &w], vec![]);
    match next {
        Some((next_name, norm)) => {
            let (g, be) = layer_norm_params(norm);
            let (h, sum) = b.skip_layer_norm(&f, &mid, &next_name, &g, &be, &bias(fc2));
            Stream {
                sum,
                normed: Some(h),
            }
        }
        None => {
            let fb = b.weight(&format!("{name}.mlp.fc2.bias"), &[width], &bias(fc2));
            let f = b.g.node("Add", &[&f, &fb], vec![]);
            let sum = b.g.node("Add", &[&f, &mid], vec![]);
            Stream { sum, normed: None }
        }
    }
}

/// Self-attention of `a` over `x` (`[N, T, width]`). Standard: the output with its bias,
/// and `None`. Fused: the output without its bias, and that bias (with V's folded in, see
/// [`Builder::attention_fused`]) for the caller to add where it costs nothing.
pub fn self_attention(
    b: &mut Builder,
    fused: bool,
    x: &str,
    name: &str,
    a: &ClipAttention,
    width: usize,
) -> (String, Option<Vec<f32>>) {
    let [q, k, v, o] = weights::attention(a);
    let heads = a.num_heads;
    if !fused {
        let out = b.attention(
            x,
            name,
            heads,
            width,
            (&q.0, &q.1),
            (&k.0, &k.1),
            (&v.0, &v.1),
            (&o.0, &o.1),
        );
        return (out, None);
    }
    let (out, out_bias) = b.attention_fused(
        x,
        name,
        heads,
        width,
        (&q.0, &q.1),
        &k.0,
        (&v.0, &v.1),
        (&o.0, &o.1),
    );
    (out, Some(out_bias))
}
