"""References for `sd2-bench`, as a server so that the benchmark can alternate between our
path and each reference and compare medians: ONNX Runtime's Python API on the same
exported files, and the same inference graph in PyTorch (eager with SDPA attention, and
`torch.compile`).

    python reference_infer.py CONFIG_JSON DEVICE

then one command per line on standard input, one answer (seconds per iteration, or
`error: …`) per line on standard output:

    ort FILE BATCH ITERATIONS
    torch eager|compile BATCH ITERATIONS

DEVICE is cpu or cuda. The PyTorch model has the exported model's sizes (CLIP vision tower
with QuickGELU, CLAM over the class tokens of every layer, the adapter, the cosine head),
random weights, fp16 on CUDA.
"""

import json
import os
import sys
import time

import numpy as np


def timed(fn, iterations, sync=lambda: None, label=None):
    start = time.perf_counter()
    fn()
    sync()
    warm = time.perf_counter() - start
    if label and warm > 1.0:  # a compilation: worth knowing where a run's time went
        print(f"{label}: first call {warm:.1f} s", file=sys.stderr, flush=True)
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    sync()
    return (time.perf_counter() - start) / iterations


class Ort:
    def __init__(self, device):
        import onnxruntime as ort
        self.ort = ort
        self.providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.sessions = {}

    def time(self, path, batch, iterations):
        if path not in self.sessions:
            s = self.ort.InferenceSession(path, providers=self.providers)
            # ONNX Runtime falls back to the CPU, with a warning only, when the provider asked
            # for is missing (a CPU-only wheel) or fails to load (CUDA libraries not found):
            # a reference timed that way would be wrong by orders of magnitude.
            if s.get_providers()[0] != self.providers[0]:
                raise RuntimeError(f"onnxruntime {self.ort.__version__} ({self.ort.__file__}) runs "
                                   f"{path} on {s.get_providers()}, not {self.providers[0]}")
            self.sessions[path] = s
        s = self.sessions[path]
        inp = s.get_inputs()[0]
        dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        side = inp.shape[2]
        x = np.random.randn(batch, 3, side, side).astype(dtype)
        return timed(lambda: s.run(["logits"], {"pixel_values": x}), iterations)


class Torch:
    def __init__(self, c, device):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.torch = torch
        v = c["vision"]
        self.side = v["image_size"]
        cfg = CLIPVisionConfig(hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
                               num_hidden_layers=v["num_hidden_layers"], num_attention_heads=v["num_attention_heads"],
                               image_size=v["image_size"], patch_size=v["patch_size"], hidden_act="quick_gelu",
                               projection_dim=c["projection_dim"], attn_implementation="sdpa")

        class SD2(nn.Module):
            def __init__(self):
                super().__init__()
                self.clip = CLIPVisionModelWithProjection(cfg)
                d, p = v["hidden_size"], c["projection_dim"]
                self.clam = nn.MultiheadAttention(d, v["num_attention_heads"], batch_first=True)
                self.fc1, self.fc2 = nn.Linear(d + p, p), nn.Linear(p, p)
                self.labels = nn.Parameter(F.normalize(torch.randn(5, p), dim=1))

            def forward(self, x):
                out = self.clip(pixel_values=x, output_hidden_states=True)
                cls = torch.stack([h[:, 0] for h in out.hidden_states[1:]], dim=1)
                sat = self.clam(cls, cls, cls, need_weights=False)[0].mean(1)
                f = self.fc2(F.gelu(self.fc1(torch.cat([sat, out.image_embeds], 1))))
                return 14.3 * F.normalize(f) @ self.labels.T

        self.device = torch.device(device)
        self.dtype = torch.float16 if device == "cuda" else torch.float32
        self.eager = SD2().to(self.device, self.dtype).eval()
        self.compiled = None
        self.sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)

    def time(self, kind, batch, iterations):
        torch = self.torch
        model = self.eager
        if kind == "compile":
            # Default settings, as a user would call it: the first batch size compiles a
            # static graph, the second one a graph with a dynamic batch that the rest reuse
            # (batch 1 is always specialised). Compilation happens in `timed`'s warm-up call.
            if self.compiled is None:
                self.compiled = torch.compile(self.eager)
            model = self.compiled
        x = torch.randn(batch, 3, self.side, self.side, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            return timed(lambda: model(x), iterations, self.sync, f"torch {kind}, batch {batch}")


def main():
    # Answers go to a private copy of standard output; whatever else writes there (a library,
    # a compiler worker, C code) goes to standard error, so answers and commands stay paired.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    c = json.loads(open(sys.argv[1]).read())
    device = sys.argv[2]
    ort_runner = torch_runner = None
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        parts = line.split()
        try:
            if parts[0] == "ort":
                if ort_runner is None:
                    ort_runner = Ort(device)
                t = ort_runner.time(parts[1], int(parts[2]), int(parts[3]))
            elif parts[0] == "torch":
                if torch_runner is None:
                    torch_runner = Torch(c, device)
                t = torch_runner.time(parts[1], int(parts[2]), int(parts[3]))
            else:
                raise ValueError(f"unknown command {parts[0]}")
            print(t, file=answers, flush=True)
        except Exception as e:  # reported to the benchmark, which goes on without it
            print("error: " + str(e).replace("\n", " ")[:300], file=answers, flush=True)


if __name__ == "__main__":
    main()
