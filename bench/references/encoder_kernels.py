"""One ViT-L/14 encoder layer's kernels, one by one, through ONNX Runtime and PyTorch.

    python encoder_kernels.py [--batch 64] [--tokens 257] [--width 1024] [--heads 16]

Says where the fused fp16 graph's time goes against `torch.compile`'s, kernel by kernel,
instead of by subtraction. Each operation of a layer of the fused export (the MatMuls,
`QuickGelu`, `SkipLayerNormalization`, the Q-bias Add, the bias-lanes Concat, attention)
runs in ONNX Runtime as a graph of `--copies` copies of that one node reading the same
inputs, bound on the GPU, so that the host's share of a run is spread over the copies;
beside it the same operation in PyTorch, eager, and compiled where `torch.compile` makes
one kernel of several (QuickGELU, the residual with LayerNorm). Microseconds a call,
median of 5 timings. Attention runs under each of ONNX Runtime's choices (cuDNN's flash
attention, its own port of flash attention, the memory-efficient kernel: switches read
once a process, so each in a process of its own) and each of PyTorch's SDPA backends.

At the end, a layer's sum both ways (ONNX Runtime: the fused graph's nodes; PyTorch: the
same layer as `torch.compile` runs it, bias added inside the GEMM) times the layers, for
a batch. Used by `scripts/gpu-bench.sh compare`; SD2_PROBE_PROVIDER=CPUExecutionProvider
tries the ONNX Runtime side on the CPU.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

PROVIDER = os.environ.get("SD2_PROBE_PROVIDER", "CUDAExecutionProvider")
DEVICE = "cuda" if PROVIDER == "CUDAExecutionProvider" else "cpu"
LANES = 8  # BIAS_LANES in training/src/export/graph.rs

ATTENTION_CHOICES = [
    ("cuDNN flash (default)", {}),
    ("own flash", {"ORT_ENABLE_CUDNN_FLASH_ATTENTION": "0"}),
    ("memory-efficient", {"ORT_ENABLE_CUDNN_FLASH_ATTENTION": "0", "ORT_DISABLE_FLASH_ATTENTION": "1"}),
]


def timed(call, sync, per_call=1):
    for _ in range(3):
        call()
    sync()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            call()
        sync()
        times.append((time.perf_counter() - start) / 10 / per_call)
    return statistics.median(times)


def ort_op(a, op, inputs, weights=(), attrs=None, outputs=1, domain=""):
    """Microseconds a node of `op` takes: `a.copies` copies over the same bound inputs.
    `inputs` and `weights` are (name, array) pairs; weights become initializers.
    `outputs`: how many outputs a node has, or which of them it produces (fp16 all)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    f16 = TensorProto.FLOAT16
    ins = [helper.make_tensor_value_info(n, f16, list(x.shape)) for n, x in inputs]
    inits = [numpy_helper.from_array(w, n) for n, w in weights]
    names = [n for n, _ in inputs] + [n for n, _ in weights]
    nodes, outs = [], []
    slots = range(outputs) if isinstance(outputs, int) else outputs
    for c in range(a.copies):
        produced = [f"y{c}_{k}" if k in slots else "" for k in range(max(slots) + 1)]
        nodes.append(helper.make_node(op, names, produced, domain=domain, **(attrs or {})))
        outs += [helper.make_tensor_value_info(p, f16, None) for p in produced if p]
    graph = helper.make_graph(nodes, op, ins, outs, initializer=inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "op.onnx")
        onnx.save(model, path)
        s = ort.InferenceSession(path, providers=[PROVIDER])
    io = s.io_binding()
    keep = []
    for n, x in inputs:
        v = ort.OrtValue.ortvalue_from_numpy(x, DEVICE, 0)
        keep.append(v)
        io.bind_ortvalue_input(n, v)
    for o in s.get_outputs():
        io.bind_output(o.name, DEVICE, 0)
    return timed(lambda: s.run_with_iobinding(io), io.synchronize_outputs, a.copies) * 1e6


def attention_child(a, label):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((a.batch, a.tokens, a.width)).astype(np.float16) for _ in range(3))
    us = ort_op(a, "MultiHeadAttention", [("q", q), ("k", k), ("v", v)],
                attrs={"num_heads": a.heads}, domain="com.microsoft")
    print(f"RESULT {us:.1f}", flush=True)


def ort_ops(a):
    rng = np.random.default_rng(0)
    b, t, d, f = a.batch, a.tokens, a.width, 4 * a.width

    def act(*dims):
        return rng.standard_normal(dims).astype(np.float16)

    def weight(*dims):
        return (rng.standard_normal(dims) / np.sqrt(dims[0])).astype(np.float16)

    results = {
        "MatMul, projection (D x D)": ort_op(a, "MatMul", [("x", act(b, t, d))], [("w", weight(d, d))]),
        "MatMul, fc1 with bias lanes (D+8 x 4D)": ort_op(
            a, "MatMul", [("x", act(b, t, d + LANES))], [("w", weight(d + LANES, f))]),
        "MatMul, fc2 (4D x D)": ort_op(a, "MatMul", [("x", act(b, t, f))], [("w", weight(f, d))]),
        "QuickGelu over [B, T, 4D]": ort_op(a, "QuickGelu", [("x", act(b, t, f))],
                                            attrs={"alpha": 1.702}, domain="com.microsoft"),
        "SkipLayerNormalization": ort_op(
            a, "SkipLayerNormalization", [("x", act(b, t, d)), ("skip", act(b, t, d))],
            [("gamma", weight(d)), ("beta", weight(d)), ("bias", weight(d))],
            attrs={"epsilon": 1e-5}, outputs=[0, 3], domain="com.microsoft"),
        "Add, Q's bias": ort_op(a, "Add", [("x", act(b, t, d))], [("b", weight(d))]),
        "Concat, bias lanes": ort_op(a, "Concat", [("x", act(b, t, d)), ("l", act(b, t, LANES))],
                                     attrs={"axis": -1}),
        "Add, fc1's bias (what the lanes replace)": ort_op(a, "Add", [("x", act(b, t, f))],
                                                           [("b", weight(f))]),
    }
    for label, env in ATTENTION_CHOICES:
        cmd = [sys.executable, __file__, "--batch", str(b), "--tokens", str(t), "--width", str(d),
               "--heads", str(a.heads), "--copies", str(a.copies), "--attention-child", label]
        done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=120, check=False)
        found = [ln.split()[1] for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
        if found:
            results[f"MultiHeadAttention, {label}"] = float(found[0])
        else:
            print(f"attention, {label}: failed: {done.stderr.strip()[-300:]}", flush=True)
    return results


def torch_ops(a):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, t, d, f, h = a.batch, a.tokens, a.width, 4 * a.width, a.heads
    m = b * t

    def act(*dims):
        return torch.randn(*dims, device="cuda", dtype=torch.float16)

    def us(fn):
        return timed(fn, torch.cuda.synchronize) * 1e6

    x, x4, skip = act(m, d), act(m, f), act(m, d)
    wd, w1, w2 = act(d, d), act(d, f), act(f, d)
    bd, b4, g = act(d), act(f), act(d)

    def quick_gelu(y):
        return y * torch.sigmoid(1.702 * y)

    def residual_norm(y, s, bias, gamma, beta):
        r = y + s + bias
        return F.layer_norm(r, (d,), gamma, beta), r

    gelu_c = torch.compile(quick_gelu)
    norm_c = torch.compile(residual_norm)
    results = {
        "GEMM, projection (D x D)": us(lambda: x @ wd),
        "GEMM + bias, projection (addmm)": us(lambda: torch.addmm(bd, x, wd)),
        "GEMM + bias, fc1 (addmm)": us(lambda: torch.addmm(b4, x, w1)),
        "GEMM, fc2": us(lambda: x4 @ w2),
        "QuickGELU, eager": us(lambda: quick_gelu(x4)),
        "QuickGELU, compiled": us(lambda: gelu_c(x4)),
        "residual + LayerNorm, compiled": us(lambda: norm_c(x, skip, bd, g, bd)),
    }
    q, k, v = (act(b, t, d).view(b, t, h, d // h).transpose(1, 2) for _ in range(3))
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                          ("cuDNN", SDPBackend.CUDNN_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                results[f"SDPA, {name}"] = us(lambda: F.scaled_dot_product_attention(q, k, v))
        except RuntimeError as e:
            print(f"SDPA, {name}: not run: {str(e).splitlines()[0][:200]}", flush=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=257)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--attention-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.attention_child:
        attention_child(a, a.attention_child)
        return
    print(f"one encoder layer's kernels, batch {a.batch} x {a.tokens} tokens, width {a.width}, "
          f"fp16; microseconds a call", flush=True)
    ort_us = ort_ops(a)
    for k, v in ort_us.items():
        print(f"  ONNX Runtime  {k:48s} {v:8.1f}", flush=True)
    try:
        torch_us = torch_ops(a)
    except (ImportError, RuntimeError, AssertionError) as e:
        print(f"PyTorch not run: {str(e).splitlines()[0][:200]}", flush=True)
        return
    for k, v in torch_us.items():
        print(f"  PyTorch       {k:48s} {v:8.1f}", flush=True)

    # A layer as each runs it: the fused graph's nodes; torch.compile's kernels.
    attention = ort_us.get("MultiHeadAttention, cuDNN flash (default)", float("nan"))
    ours = {
        "Q, K, V, out projections": 4 * ort_us["MatMul, projection (D x D)"],
        "Q's bias": ort_us["Add, Q's bias"],
        "attention": attention,
        "bias lanes": ort_us["Concat, bias lanes"],
        "fc1": ort_us["MatMul, fc1 with bias lanes (D+8 x 4D)"],
        "QuickGELU": ort_us["QuickGelu over [B, T, 4D]"],
        "fc2": ort_us["MatMul, fc2 (4D x D)"],
        "two residual norms": 2 * ort_us["SkipLayerNormalization"],
    }
    best_sdpa = min(v for k, v in torch_us.items() if k.startswith("SDPA"))
    theirs = {
        "Q, K, V, out projections": 4 * torch_us["GEMM + bias, projection (addmm)"],
        "Q's bias": 0.0,
        "attention": best_sdpa,
        "bias lanes": 0.0,
        "fc1": torch_us["GEMM + bias, fc1 (addmm)"],
        "QuickGELU": torch_us["QuickGELU, compiled"],
        "fc2": torch_us["GEMM, fc2"],
        "two residual norms": 2 * torch_us["residual + LayerNorm, compiled"],
    }
    print(f"a layer, microseconds (x {a.layers} layers = a batch of {a.batch}):", flush=True)
    print(f"  {'':28s} {'ONNX Runtime':>14s} {'PyTorch':>10s}", flush=True)
    for k in ours:
        print(f"  {k:28s} {ours[k]:14.1f} {theirs[k]:10.1f}", flush=True)
    so, st = sum(ours.values()), sum(theirs.values())
    print(f"  {'sum':28s} {so:14.1f} {st:10.1f}", flush=True)
    print(f"  a batch: {so * a.layers / 1000:.1f} ms against {st * a.layers / 1000:.1f} ms, "
          f"{a.batch * 1e6 / (so * a.layers):.0f} against {a.batch * 1e6 / (st * a.layers):.0f} "
          f"crops/s for the encoder's layers alone: ONNX Runtime at {st / so:.2f}x PyTorch's speed",
          flush=True)


if __name__ == "__main__":
    main()
