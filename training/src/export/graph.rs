//! The SD² image side as ONNX operations: the pieces `export` assembles, each mirroring a
//! module of the burn model (`clip::encoder`, `clip::vision`, `clam`).

use sd2_models::onnx::{Attr, DataType, Graph, Precision};

/// Adds ONNX nodes for the model's layers, storing weights at one precision.
pub struct Builder {
    pub g: Graph,
    pub precision: Precision,
    pub eps: f32,
}

impl Builder {
    fn data_type(&self) -> DataType {
        self.precision.data_type()
    }

    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.g.weight(name, dims, data, self.precision)
    }

    pub fn shape(&mut self, name: &str, dims: &[i64]) -> String {
        self.g.int64s(name, &[dims.len()], dims)
    }

    /// `x · W + b` with `W` as `[in, out]`.
    pub fn linear(
        &mut self,
        x: &str,
        name: &str,
        w: &[f32],
        w_dims: [usize; 2],
        b: Option<&[f32]>,
    ) -> String {
        let wn = self.weight(&format!("{name}.weight"), &w_dims, w);
        let y = self.g.node("MatMul", &[x, &wn], vec![]);
        match b {
            Some(b) => {
                let bn = self.weight(&format!("{name}.bias"), &[b.len()], b);
                self.g.node("Add", &[&y, &bn], vec![])
            }
            None => y,
        }
    }

    pub fn layer_norm(&mut self, x: &str, name: &str, gamma: &[f32], beta: &[f32]) -> String {
        let s = self.weight(&format!("{name}.gamma"), &[gamma.len()], gamma);
        let b = self.weight(&format!("{name}.beta"), &[beta.len()], beta);
        self.g.node(
            "LayerNormalization",
            &[x, &s, &b],
            vec![Attr::Int("axis", -1), Attr::Float("epsilon", self.eps)],
        )
    }

    /// `x · σ(1.702 x)`.
    pub fn quick_gelu(&mut self, x: &str) -> String {
        let k = self.g.scalar(
            &format!("quick_gelu_k_{}", self.g.node_count()),
            1.702,
            self.precision,
        );
        let scaled = self.g.node("Mul", &[x, &k], vec![]);
        let s = self.g.node("Sigmoid", &[&scaled], vec![]);
        self.g.node("Mul", &[x, &s], vec![])
    }

    /// Exact GELU, `x · ½ (1 + erf(x / √2))`.
    pub fn gelu(&mut self, x: &str) -> String {
        let n = self.g.node_count();
        let inv_sqrt2 = self.g.scalar(
            &format!("gelu_inv_sqrt2_{n}"),
            std::f32::consts::FRAC_1_SQRT_2,
            self.precision,
        );
        let one = self.g.scalar(&format!("gelu_one_{n}"), 1.0, self.precision);
        let half = self
            .g
            .scalar(&format!("gelu_half_{n}"), 0.5, self.precision);
        let t = self.g.node("Mul", &[x, &inv_sqrt2], vec![]);
        let e = self.g.node("Erf", &[&t], vec![]);
        let e1 = self.g.node("Add", &[&e, &one], vec![]);
        let y = self.g.node("Mul", &[x, &e1], vec![]);
        self.g.node("Mul", &[&y, &half], vec![])
    }

    /// Multi-head self-attention over `x` (`[N, T, D]`), projections `[D, D]` with biases;
    /// the query scaling is folded into its weights.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        x: &str,
        name: &str,
        heads: usize,
        width: usize,
        q: (&[f32], &[f32]),
        k: (&[f32], &[f32]),
        v: (&[f32], &[f32]),
        o: (&[f32], &[f32]),
    ) -> String {
        let dh = width / heads;
        let scale = (dh as f32).powf(-0.5);
        let qw: Vec<f32> = q.0.iter().map(|w| w * scale).collect();
        let qb: Vec<f32> = q.1.iter().map(|b| b * scale).collect();
        let split = self.shape(
            &format!("{name}.split_shape"),
            &[0, 0, heads as i64, dh as i64],
        );
        let merge = self.shape(&format!("{name}.merge_shape"), &[0, 0, width as i64]);
        let qh = self.linear(x, &format!("{name}.q_proj"), &qw, [width, width], Some(&qb));
        let kh = self.linear(x, &format!("{name}.k_proj"), k.0, [width, width], Some(k.1));
        let vh = self.linear(x, &format!("{name}.v_proj"), v.0, [width, width], Some(v.1));
        let qh = self.g.node("Reshape", &[&qh, &split], vec![]);
        let kh = self.g.node("Reshape", &[&kh, &split], vec![]);
        let vh = self.g.node("Reshape", &[&vh, &split], vec![]);
        let qh = self.g.node(
            "Transpose",
            &[&qh],
            vec![Attr::Ints("perm", vec![0, 2, 1, 3])],
        );
        let kt = self.g.node(
            "Transpose",
            &[&kh],
            vec![Attr::Ints("perm", vec![0, 2, 3, 1])],
        );
        let vh = self.g.node(
            "Transpose",
            &[&vh],
            vec![Attr::Ints("perm", vec![0, 2, 1, 3])],
        );
        let scores = self.g.node("MatMul", &[&qh, &kt], vec![]);
        let p = self
            .g
            .node("Softmax", &[&scores], vec![Attr::Int("axis", -1)]);
        let ctx = self.g.node("MatMul", &[&p, &vh], vec![]);
        let ctx = self.g.node(
            "Transpose",
            &[&ctx],
            vec![Attr::Ints("perm", vec![0, 2, 1, 3])],
        );
        let ctx = self.g.node("Reshape", &[&ctx, &merge], vec![]);
        self.linear(
            &ctx,
            &format!("{name}.out_proj"),
            o.0,
            [width, width],
            Some(o.1),
        )
    }

    /// Rows of `x` scaled to unit length (`[N, E]`).
    pub fn l2_normalise(&mut self, x: &str) -> String {
        let norm = self.g.node(
            "ReduceL2",
            &[x],
            vec![Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 1)],
        );
        let floor = if self.precision == Precision::F16 {
            1e-4
        } else {
            1e-6
        };
        let eps = self.g.scalar("normalise_eps", floor, self.precision);
        let norm = self.g.node("Max", &[&norm, &eps], vec![]);
        self.g.node("Div", &[x, &norm], vec![])
    }

    pub fn io_type(&self) -> DataType {
        self.data_type()
    }
}

/// ONNX Runtime's contrib operators (`com.microsoft`), which its CUDA provider runs as
/// fused kernels (flash attention among them) and its CPU provider also implements.
pub const MS: &str = "com.microsoft";

impl Builder {
    /// Self-attention as one `MultiHeadAttention` node over a packed Q/K/V projection; the
    /// output projection's bias is left for the caller to fuse (`[N, T, D]` without it).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_fused(
        &mut self,
        x: &str,
        name: &str,
        heads: usize,
        width: usize,
        q: (&[f32], &[f32]),
        k: (&[f32], &[f32]),
        v: (&[f32], &[f32]),
        o: &[f32],
    ) -> String {
        // Pack [D, D] × 3 into [D, 3D], row by row.
        let mut w = Vec::with_capacity(3 * width * width);
        for r in 0..width {
            for part in [q.0, k.0, v.0] {
                w.extend_from_slice(&part[r * width..(r + 1) * width]);
            }
        }
        let bias: Vec<f32> = [q.1, k.1, v.1].concat();
        let wn = self.weight(&format!("{name}.qkv.weight"), &[width, 3 * width], &w);
        let bn = self.weight(&format!("{name}.qkv.bias"), &[3 * width], &bias);
        let qkv = self.g.node("MatMul", &[x, &wn], vec![]);
        let sizes = self
            .g
            .int64s(&format!("{name}.split"), &[3], &[width as i64; 3]);
        let parts = self
            .g
            .node_multi("", "Split", &[&qkv, &sizes], 3, vec![Attr::Int("axis", -1)]);
        let ctx = self.g.fresh_name("mha");
        self.g.node_outputs(
            MS,
            "MultiHeadAttention",
            &[&parts[0], &parts[1], &parts[2], &bn],
            &[&ctx],
            vec![Attr::Int("num_heads", heads as i64)],
        );
        let on = self.weight(&format!("{name}.out_proj.weight"), &[width, width], o);
        self.g.node("MatMul", &[&ctx, &on], vec![])
    }

    /// `SkipLayerNormalization`: returns (LayerNorm(input + skip + bias), input + skip + bias).
    pub fn skip_layer_norm(
        &mut self,
        input: &str,
        skip: &str,
        name: &str,
        gamma: &[f32],
        beta: &[f32],
        bias: &[f32],
    ) -> (String, String) {
        let g = self.weight(&format!("{name}.gamma"), &[gamma.len()], gamma);
        let b = self.weight(&format!("{name}.beta"), &[beta.len()], beta);
        let bias = self.weight(&format!("{name}.skip_bias"), &[bias.len()], bias);
        let (y, sum) = (self.g.fresh_name("skipln"), self.g.fresh_name("residual"));
        self.g.node_outputs(
            MS,
            "SkipLayerNormalization",
            &[input, skip, &g, &b, &bias],
            &[&y, "", "", &sum],
            vec![Attr::Float("epsilon", self.eps)],
        );
        (y, sum)
    }

    /// `QuickGelu(x + b)` from the contrib operators.
    pub fn bias_quick_gelu(&mut self, x: &str, name: &str, bias: &[f32]) -> String {
        let b = self.weight(&format!("{name}.bias"), &[bias.len()], bias);
        let y = self.g.node("Add", &[x, &b], vec![]);
        let out = self.g.fresh_name("quick_gelu");
        self.g.node_outputs(
            MS,
            "QuickGelu",
            &[&y],
            &[&out],
            vec![Attr::Float("alpha", 1.702)],
        );
        out
    }

    /// `BiasGelu(x, b)`: exact GELU of `x + b`.
    pub fn bias_gelu(&mut self, x: &str, name: &str, bias: &[f32]) -> String {
        let b = self.weight(&format!("{name}.bias"), &[bias.len()], bias);
        let out = self.g.fresh_name("bias_gelu");
        self.g
            .node_outputs(MS, "BiasGelu", &[x, &b], &[&out], vec![]);
        out
    }
}
