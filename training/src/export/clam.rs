//! CLAM and the adapter (paper §4.1, Eq. 1–2), as `crate::clam` computes them.

use sd2_models::onnx::Attr;

use super::encoder::self_attention;
use super::graph::Builder;
use super::weights::{bias, values};
use crate::clam::{Adapter, Clam};

/// CLAM (Eq. 1): self-attention across the layers' class tokens (`[N, 1, D]` each), then
/// their mean: `[N, D]`.
pub fn write(b: &mut Builder, layer_cls: &[String], clam: &Clam, fused: bool) -> String {
    let [width, _] = clam.attention.q_proj.base.weight.val().dims();
    let refs: Vec<&str> = layer_cls.iter().map(String::as_str).collect();
    let stacked = b.g.node("Concat", &refs, vec![Attr::Int("axis", 1)]);
    let sat = match self_attention(b, fused, &stacked, "clam", &clam.attention, width) {
        (sat, None) => sat,
        (sat, Some(out_bias)) => {
            let ob = b.weight("clam.out_proj.bias", &[width], &out_bias);
            b.g.node("Add", &[&sat, &ob], vec![])
        }
    };
    b.g.node(
        "ReduceMean",
        &[&sat],
        vec![Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 0)],
    )
}

/// The adapter (Eq. 2): `fc2(GELU(fc1([sat, embeds])))`, `[N, P]`. In the fused graph fc1's
/// bias goes into `BiasGelu`.
pub fn adapter(b: &mut Builder, sat: &str, embeds: &str, adapter: &Adapter, fused: bool) -> String {
    let joined =
        b.g.node("Concat", &[sat, embeds], vec![Attr::Int("axis", 1)]);
    let dims = adapter.fc1.weight.val().dims();
    let (w, fc1_bias) = (values(adapter.fc1.weight.val()), bias(&adapter.fc1));
    let h = if fused {
        let w = b.weight("adapter.fc1.weight", &dims, &w);
        let h = b.g.node("MatMul", &[&joined, &w], vec![]);
        b.bias_gelu(&h, "adapter.fc1", &fc1_bias)
    } else {
        let h = b.linear(&joined, "adapter.fc1", &w, dims, Some(&fc1_bias));
        b.gelu(&h)
    };
    let w = values(adapter.fc2.weight.val());
    let dims = adapter.fc2.weight.val().dims();
    b.linear(&h, "adapter.fc2", &w, dims, Some(&bias(&adapter.fc2)))
}
