"""How much faster than ONNX Runtime's default session can any scheduling of the same
exported file run on this machine's cores?

    python ort_ceiling.py MODEL.onnx [BATCH ...]

For each batch size, timed in turn for SECONDS each (median of ROUNDS), crops per second of:

- default: one session with ONNX Runtime's default options (one intra-op thread per core),
  the reference `sd2-bench` compares against;
- split: one single-threaded session per core, each batch split among them and joined,
  which is what `DeepfakeModel` does on the CPU;
- ceiling: the same sessions running free in one thread each, never waiting for each
  other: the most the cores give this graph through ONNX Runtime.

Prints each as a ratio to `default`. When `ceiling` is below a target ratio, no scheduling
of the same file reaches it on this machine.
"""

import os
import statistics
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

SECONDS = 2.0
ROUNDS = 3


def session(threads):
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])


def rate(fn, crops):
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        fn()
        n += 1
    return crops * n / (time.perf_counter() - start)


def free_running(sessions, x):
    rates = [0.0] * len(sessions)

    def work(i):
        rates[i] = rate(lambda: sessions[i].run(["logits"], {"pixel_values": x}), len(x))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(rates)


def split(sessions, x):
    parts = np.array_split(x, len(sessions))
    out = [None] * len(sessions)

    def work(i):
        out[i] = sessions[i].run(["logits"], {"pixel_values": parts[i]})

    def once():
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sessions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return rate(once, len(x))


def main():
    batches = [int(b) for b in sys.argv[2:]] or [1, 8, 32, 128]
    cores = os.cpu_count() or 1
    default = session(0)
    singles = [session(1) for _ in range(cores)]
    side = default.get_inputs()[0].shape[2]
    print(f"{sys.argv[1]}: {cores} cores, onnxruntime {ort.__version__}; crops/s, median of {ROUNDS}")
    print(f"{'batch':>6} {'default':>9} {'split':>9} {'ceiling':>9} {'split/def':>10} {'ceil/def':>9}")
    for b in batches:
        x = np.random.default_rng(0).standard_normal((b, 3, side, side), dtype=np.float32)
        runs = {"default": [], "split": [], "ceiling": []}
        for _ in range(ROUNDS):
            runs["default"].append(rate(lambda: default.run(["logits"], {"pixel_values": x}), b))
            if b >= cores:
                runs["split"].append(split(singles, x))
            runs["ceiling"].append(free_running(singles, x))
        m = {k: statistics.median(v) if v else float("nan") for k, v in runs.items()}
        print(f"{b:>6} {m['default']:>9.0f} {m['split']:>9.0f} {m['ceiling']:>9.0f} "
              f"{m['split'] / m['default']:>10.2f} {m['ceiling'] / m['default']:>9.2f}")


if __name__ == "__main__":
    main()
