"""Exports of one model timed against each other through ONNX Runtime, in one process.

    python ort_graph_ab.py [--batches 64,1,8] [--rounds 5] [--iterations 10] A.onnx B.onnx ...

Answers "is graph B faster than graph A on this machine" without another run's numbers in
between: each file gets one session (CUDA unless SD2_PROBE_PROVIDER names another
provider, every graph optimization on), its input is bound once where the provider keeps
it (on the GPU for CUDA) and its logits stay there too, so what is timed is the graph's
kernels, not copies. The sessions are timed in turn, `rounds` times for each batch size,
and the medians printed with each file's ratio to the first. Before timing, the files'
logits on the same input are compared with the first file's (largest difference, relative
to the largest logit): the files must compute the same model.

Used by `scripts/gpu-bench.sh compare` to put the fused fp16 graph of a build beside the
one of an earlier build on a lent GPU.
"""

import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

PROVIDER = os.environ.get("SD2_PROBE_PROVIDER", "CUDAExecutionProvider")
DEVICE = "cuda" if PROVIDER == "CUDAExecutionProvider" else "cpu"


class Bound:
    """A session with its input and logits bound for one batch size."""

    def __init__(self, path):
        self.session = ort.InferenceSession(path, providers=[PROVIDER])
        if self.session.get_providers()[0] != PROVIDER:
            raise RuntimeError(f"{path} runs on {self.session.get_providers()}")
        inp = self.session.get_inputs()[0]
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.side = inp.shape[-1]
        self.io = None

    def bind(self, x):
        self.io = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(x.astype(self.dtype), DEVICE, 0)
        self.io.bind_ortvalue_input("pixel_values", value)
        self.io.bind_output("logits", DEVICE, 0)
        self.input = value  # kept alive while bound

    def run(self):
        self.session.run_with_iobinding(self.io)
        self.io.synchronize_outputs()

    def logits(self):
        return self.io.copy_outputs_to_cpu()[0].astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="64,1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    names = [os.path.basename(os.path.dirname(os.path.abspath(f))) + "/" + os.path.basename(f)
             for f in args.files]
    runs = [Bound(f) for f in args.files]
    sides = {r.side for r in runs}
    if len(sides) != 1:
        raise SystemExit(f"the files take different image sizes: {sides}")
    side = sides.pop()
    rng = np.random.default_rng(0)

    x = rng.standard_normal((4, 3, side, side)).astype(np.float32)
    for r in runs:
        r.bind(x)
        r.run()
    want = runs[0].logits()
    scale = float(np.abs(want).max()) or 1.0
    for name, r in zip(names, runs):
        d = float(np.abs(r.logits() - want).max()) / scale
        print(f"{name}: logits differ from the first file's by {d:.1e} of the largest", flush=True)

    print(f"{PROVIDER}; crops per second, median of {args.rounds} alternating timings "
          f"of {args.iterations} runs", flush=True)
    for b in [int(s) for s in args.batches.split(",")]:
        x = rng.standard_normal((b, 3, side, side)).astype(np.float32)
        for r in runs:
            r.bind(x)
            for _ in range(3):  # warm-up: plans, the arena's growth
                r.run()
        samples = [[] for _ in runs]
        for _ in range(args.rounds):
            for k, r in enumerate(runs):
                start = time.perf_counter()
                for _ in range(args.iterations):
                    r.run()
                samples[k].append(b * args.iterations / (time.perf_counter() - start))
        medians = [statistics.median(s) for s in samples]
        for name, m in zip(names, medians):
            print(f"  b{b} {name}: {m:.1f} crops/s, {m / medians[0]:.3f}x the first", flush=True)


if __name__ == "__main__":
    main()
