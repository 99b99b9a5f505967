//! The vision embeddings (`CLIPVisionEmbeddings` and `pre_layrnorm`): patches, the class
//! token and positions, normalised: `[N, 3, S, S]` → `[N, T, D]`.

use sd2_models::onnx::{Attr, Precision};

use super::graph::Builder;
use super::weights::{layer_norm, values};
use crate::clip::VisionConfig;
use crate::clip::vision::ClipVisionTransformer;

/// Takes the class token `[N, 1, D]` out of `[N, T, D]`: the start, end and axis inputs of
/// a Slice.
pub struct ClassToken {
    start: String,
    end: String,
    axis: String,
}

impl ClassToken {
    pub fn take(&self, b: &mut Builder, x: &str) -> String {
        b.g.node("Slice", &[x, &self.start, &self.end, &self.axis], vec![])
    }
}

/// Writes the embeddings of the images `x`; returns them, and the slice that takes each
/// layer's class token.
pub fn write(
    b: &mut Builder,
    x: &str,
    vm: &ClipVisionTransformer,
    c: &VisionConfig,
) -> (String, ClassToken) {
    let d = c.hidden_size;
    let grid = c.image_size / c.patch_size;
    let patches = patch_embedding(b, x, vm, c.patch_size, grid);
    let cls = b.weight(
        "class_embedding",
        &[1, 1, d],
        &values(vm.embeddings.class_embedding.val()),
    );
    // One class token per face, of the batch's size (`Builder::batch_sized` over the first
    // patch token); the same Slice then takes each layer's class token.
    let token = ClassToken {
        start: b.g.int64s("cls_start", &[1], &[0]),
        end: b.g.int64s("cls_end", &[1], &[1]),
        axis: b.g.int64s("cls_axis", &[1], &[1]),
    };
    let slice = [&token.start, &token.end, &token.axis].map(String::as_str);
    let cls = b.batch_sized(&patches, slice, "cls", &cls);
    let tokens =
        b.g.node("Concat", &[&cls, &patches], vec![Attr::Int("axis", 1)]);
    let t = grid * grid + 1;
    let pos = vm.embeddings.position_embedding.weight.val();
    let pos = b.weight(
        "position_embedding",
        &[1, t, d],
        &values(pos.slice([0..t, 0..d])),
    );
    let xs = b.g.node("Add", &[&tokens, &pos], vec![]);
    (layer_norm(b, &xs, "pre_layrnorm", &vm.pre_layrnorm), token)
}

/// The patch embedding, `[N, 3, S, S]` → `[N, grid², D]`: a convolution whose stride is
/// its kernel. In fp16, the precision of the GPU graphs, it is written as what it
/// computes: the image cut into patches (Reshape, Transpose), each flattened and
/// multiplied by the kernel, because ONNX Runtime's CUDA Conv (cuDNN 9) builds new plans
/// whenever the batch size differs from the previous run's, which a live queue's batches
/// do all the time, and a MatMul keeps no such state. In fp32, the CPU's precision, it
/// stays a Conv, which ONNX Runtime's CPU provider runs a little faster.
fn patch_embedding(
    b: &mut Builder,
    x: &str,
    vm: &ClipVisionTransformer,
    patch: usize,
    grid: usize,
) -> String {
    let conv = vm.embeddings.patch_embedding.weight.val(); // [D, 3, P, P]
    let [d, ..] = conv.dims();
    let (g, p) = (grid as i64, patch as i64);
    let k = 3 * patch * patch;
    if b.precision == Precision::F16 {
        let w = values(conv.reshape([d, k]).transpose());
        let w = b.weight("patch_embedding.weight", &[k, d], &w);
        let cut = b.shape("patches_cut", &[0, 3, g, p, g, p]);
        let patches = b.g.node("Reshape", &[x, &cut], vec![]);
        let patches = b.g.node(
            "Transpose",
            &[&patches],
            vec![Attr::Ints("perm", vec![0, 2, 4, 1, 3, 5])],
        );
        let flat = b.shape("patches_shape", &[0, g * g, k as i64]);
        let patches = b.g.node("Reshape", &[&patches, &flat], vec![]);
        return b.g.node("MatMul", &[&patches, &w], vec![]);
    }
    let w = b.weight(
        "patch_embedding.weight",
        &[d, 3, patch, patch],
        &values(conv),
    );
    let patches = b.g.node(
        "Conv",
        &[x, &w],
        vec![
            Attr::Ints("kernel_shape", vec![p; 2]),
            Attr::Ints("strides", vec![p; 2]),
        ],
    );
    let flat = b.shape("patches_shape", &[0, d as i64, g * g]);
    let patches = b.g.node("Reshape", &[&patches, &flat], vec![]);
    b.g.node(
        "Transpose",
        &[&patches],
        vec![Attr::Ints("perm", vec![0, 2, 1])],
    )
}
