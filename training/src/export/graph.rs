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

/// Columns appended to a MatMul's input to carry its bias ([`Builder::bias_lanes`]): one
/// would do, eight keep the fp16 row length a multiple of 16 bytes, as tensor cores want.
pub const BIAS_LANES: usize = 8;

/// `b_o + b_v · W_o` (`W_o` as `[in, out]`), summed in f64: the output projection's bias
/// once V's bias has passed through attention and the projection. A projection without a
/// bias has none (an empty slice): zero.
pub(super) fn fold_value_bias(bv: &[f32], o: (&[f32], &[f32]), width: usize) -> Vec<f32> {
    (0..width)
        .map(|j| {
            let through: f64 = (0..width)
                .map(|i| f64::from(at(bv, i)) * f64::from(o.0[i * width + j]))
                .sum();
            (f64::from(at(o.1, j)) + through) as f32
        })
        .collect()
}

fn at(bias: &[f32], i: usize) -> f32 {
    bias.get(i).copied().unwrap_or(0.0)
}

impl Builder {
    /// Self-attention as one `MultiHeadAttention` node that reads the projections as they
    /// are: Q, K and V each from a MatMul of its own, and no bias given to the node. With
    /// a bias, ONNX Runtime's CUDA kernel first copies Q, K and V into a workspace adding
    /// it (and a packed projection needs a Split before that): two passes over three
    /// activations a layer. Here only Q's bias is added, and K's and V's go where they are
    /// exact for free:
    /// - K's bias adds `q·b_k` to every score of a query's row, the same for every key, and
    ///   softmax does not see a constant added to its row: it is dropped.
    /// - V's bias comes out of attention unchanged (each row of attention weights sums to
    ///   one) and then through the output projection: it is `b_v · W_o`, folded into the
    ///   output bias.
    ///
    /// Returns the output projection without its bias (`[N, T, D]`) and that bias, with V's
    /// folded in, for the caller to fuse.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_fused(
        &mut self,
        x: &str,
        name: &str,
        heads: usize,
        width: usize,
        q: (&[f32], &[f32]),
        k: &[f32],
        v: (&[f32], &[f32]),
        o: (&[f32], &[f32]),
    ) -> (String, Vec<f32>) {
        let qb = (!q.1.is_empty()).then_some(q.1);
        let qh = self.linear(x, &format!("{name}.q_proj"), q.0, [width, width], qb);
        let kh = self.linear(x, &format!("{name}.k_proj"), k, [width, width], None);
        let vh = self.linear(x, &format!("{name}.v_proj"), v.0, [width, width], None);
        let ctx = self.g.fresh_name("mha");
        self.g.node_outputs(
            MS,
            "MultiHeadAttention",
            &[&qh, &kh, &vh],
            &[&ctx],
            vec![Attr::Int("num_heads", heads as i64)],
        );
        let out = self.linear(&ctx, &format!("{name}.out_proj"), o.0, [width, width], None);
        (out, fold_value_bias(v.1, o, width))
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

    /// `constant` broadcast to the batch's size: the first entry of `x` along an axis
    /// (`slice`: the start, end and axis inputs of a Slice taking it) times zero, plus
    /// `constant`. No Shape node: with no shape arithmetic in the graph, every node can
    /// run on the GPU and nothing is computed on the host between kernels, the safe case
    /// for capturing the graph as a CUDA graph.
    pub fn batch_sized(&mut self, x: &str, slice: [&str; 3], name: &str, constant: &str) -> String {
        let [start, end, axis] = slice;
        let first = self.g.node("Slice", &[x, start, end, axis], vec![]);
        let zero = self.g.scalar(&format!("{name}_zero"), 0.0, self.precision);
        let first = self.g.node("Mul", &[&first, &zero], vec![]);
        self.g.node("Add", &[&first, constant], vec![])
    }

    /// A block of [`BIAS_LANES`] columns, `[1, 0, …, 0]` in every row of `x` (`[N, T, D]`),
    /// made once and given to every [`Builder::linear_quick_gelu`]
    /// ([`Builder::batch_sized`] over a column of `x`).
    pub fn bias_lanes(&mut self, x: &str) -> String {
        let (start, end, axis) = (
            self.g.int64s("bias_lanes_start", &[1], &[0]),
            self.g.int64s("bias_lanes_end", &[1], &[1]),
            self.g.int64s("bias_lanes_axis", &[1], &[-1]),
        );
        let mut row = vec![0.0; BIAS_LANES];
        row[0] = 1.0;
        let row = self.weight("bias_lanes_row", &[BIAS_LANES], &row);
        self.batch_sized(x, [&start, &end, &axis], "bias_lanes", &row)
    }

    /// `QuickGelu(x · W + b)`, the bias carried by the MatMul: `x` gets the
    /// [`Builder::bias_lanes`] columns appended and `W` the bias as the row they select
    /// (then zero rows). ONNX Runtime has no CUDA kernel that adds a bias to a MatMul's
    /// output or before `QuickGelu`; a separate Add reads and writes the MLP's widest
    /// activation (`[N, T, 4D]`), where appending to the input copies a quarter of that.
    pub fn linear_quick_gelu(
        &mut self,
        x: &str,
        lanes: &str,
        name: &str,
        w: &[f32],
        w_dims: [usize; 2],
        bias: &[f32],
    ) -> String {
        let [input, output] = w_dims;
        let mut wb = Vec::with_capacity((input + BIAS_LANES) * output);
        wb.extend_from_slice(w);
        wb.extend_from_slice(bias);
        wb.resize((input + BIAS_LANES) * output, 0.0);
        let wn = self.weight(
            &format!("{name}.weight_and_bias"),
            &[input + BIAS_LANES, output],
            &wb,
        );
        let xb = self
            .g
            .node("Concat", &[x, lanes], vec![Attr::Int("axis", -1)]);
        let y = self.g.node("MatMul", &[&xb, &wn], vec![]);
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
