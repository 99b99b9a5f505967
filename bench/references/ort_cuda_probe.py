"""Which ways of running an exported SD² model work on ONNX Runtime's CUDA provider, and
where its time goes.

    python ort_cuda_probe.py OUT_DIR MODEL.onnx [MODEL.onnx ...]
    python ort_cuda_probe.py --profile BATCH OUT_DIR MODEL.onnx

For each model: plain `run` and I/O binding with device tensors, under each graph
optimization level and with the settings that change where ONNX Runtime keeps
initializers; one line per try (`ok` with the largest |logit|, or the error's first line).
For the first model it also writes ONNX Runtime's verbose session log (node placement,
copies between devices) to OUT_DIR/verbose-<name>.log and the optimized graph to
OUT_DIR/optimized-<name>.onnx when the model is small. Used to find out, on a lent GPU,
why a run fails there (`scripts/gpu-bench.sh probe`).

With --profile: ONNX Runtime's profiler over a few runs at BATCH, and the time per run of
each operator type, largest first (OUT_DIR/profile-<name>.txt), which says what to fuse
next. A node's time in that profiler is host time, and CUDA kernels are launched
asynchronously, so the profile runs with CUDA_LAUNCH_BLOCKING=1: each launch waits for its
kernel, and a node's time includes its GPU time (the run as a whole gets slower; the
report gives both). Where the build records GPU kernels themselves ("Kernel" events),
those are used instead. SD2_PROBE_PROVIDER names another provider (CPUExecutionProvider
to try it here).
"""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
# Session settings worth trying beside the optimization level (config key, value).
SETTINGS = [
    None,
    ("session.use_device_allocator_for_initializers", "1"),
    ("session.disable_prepacking", "1"),
]


PROVIDER = os.environ.get("SD2_PROBE_PROVIDER", "CUDAExecutionProvider")


def session(path, level, setting=None, log=None, optimized=None, profile=None):
    so = ort.SessionOptions()
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    so.graph_optimization_level = LEVELS[level]
    if setting:
        so.add_session_config_entry(*setting)
    if log:
        so.log_severity_level = 0
    if optimized:
        so.optimized_model_filepath = optimized
    s = ort.InferenceSession(path, so, providers=[PROVIDER])
    if s.get_providers()[0] != PROVIDER:
        raise RuntimeError(f"runs on {s.get_providers()}")
    return s


def inputs(s, batch=2):
    inp = s.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    side = inp.shape[-1]
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, 3, side, side)).astype(dtype)


def plain(s, x):
    return s.run(["logits"], {"pixel_values": x})[0]


def bound(s, x):
    io = s.io_binding()
    io.bind_ortvalue_input("pixel_values", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    io.bind_output("logits", "cuda", 0)
    s.run_with_iobinding(io)
    return io.copy_outputs_to_cpu()[0]


def attempt(label, fn):
    try:
        y = fn()
        print(f"{label}: ok, max |logit| {float(np.abs(y.astype(np.float32)).max()):.3f}", flush=True)
        return True
    except Exception as e:  # noqa: BLE001 - every failure is the finding here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{label}: FAIL {first[:300]}", flush=True)
        return False


def verbose(out, path):
    """The verbose log of one session and one run, in a process of its own (the log goes
    to the C++ side's stderr)."""
    name = os.path.basename(path).removesuffix(".onnx")
    small = os.path.getsize(path) < 50 << 20
    optimized = os.path.join(out, f"optimized-{name}.onnx") if small else ""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import ort_cuda_probe as p; "
        "s = p.session(sys.argv[2], 'all', log=True, optimized=sys.argv[3] or None); "
        "p.attempt('verbose run', lambda: p.plain(s, p.inputs(s)))"
    )
    with open(os.path.join(out, f"verbose-{name}.log"), "w") as log:
        subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__), path, optimized],
                       stdout=log, stderr=subprocess.STDOUT, timeout=300, check=False)


def profile(out, path, batch, runs=5):
    """Time per run of each operator type at `batch`, from ONNX Runtime's profiler."""
    name = os.path.basename(path).removesuffix(".onnx")
    os.environ.setdefault("CUDA_LAUNCH_BLOCKING", "1")  # read when CUDA starts, below
    s = session(path, "all", profile=os.path.join(out, f"trace-{name}"))
    x = inputs(s, batch)
    for _ in range(3):  # warm-up: cuDNN's searches, the arena's growth
        plain(s, x)
    for _ in range(runs):
        plain(s, x)
    trace = s.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    # The warm-up runs are in the trace too: count from the first timed run on.
    model_runs = sorted((e["ts"], e["dur"]) for e in events
                        if e.get("cat") == "Session" and e.get("name") == "model_run")
    timed = model_runs[-runs:]
    start = timed[0][0]
    gpu = [e for e in events if e.get("cat") == "Kernel"]
    nodes = [e for e in events
             if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_op = collections.Counter()
    for e in gpu or nodes:
        if e["ts"] >= start:
            per_op[e.get("args", {}).get("op_name", e.get("name", "?"))] += e["dur"]
    total = sum(per_op.values()) or 1
    run_ms = sum(d for _, d in timed) / runs / 1000
    what = ("GPU kernel time" if gpu else
            f"node time, CUDA_LAUNCH_BLOCKING={os.environ.get('CUDA_LAUNCH_BLOCKING')}")
    lines = [f"{name}, batch {batch}, {PROVIDER}: {run_ms:.2f} ms a run, of which "
             f"{total / runs / 1000:.2f} ms in nodes; {what} by operator type:"]
    for op, us in per_op.most_common():
        lines.append(f"  {op:32s} {us / runs / 1000:8.3f} ms a run  {100 * us / total:5.1f} %")
    report = "\n".join(lines)
    print(report, flush=True)
    with open(os.path.join(out, f"profile-{name}.txt"), "w") as f:
        f.write(report + "\n")
    os.remove(trace)


def main():
    if sys.argv[1] == "--profile":
        batch, out, path = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        os.makedirs(out, exist_ok=True)
        profile(out, path, batch)
        return
    out, models = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    print("onnxruntime", ort.__version__, ort.get_available_providers(), flush=True)
    for k, path in enumerate(models):
        name = os.path.basename(path)
        if k == 0:
            verbose(out, path)
        for level in LEVELS:
            for setting in SETTINGS if level == "all" else [None]:
                tag = f"{name} {level}" + (f" {setting[0]}" if setting else "")
                try:
                    s = session(path, level, setting)
                except Exception as e:  # noqa: BLE001
                    print(f"{tag}: session FAIL {str(e).splitlines()[0][:300]}", flush=True)
                    continue
                x = inputs(s)
                attempt(f"{tag} plain", lambda: plain(s, x))
                attempt(f"{tag} bound to cuda", lambda: bound(s, x))
                del s


if __name__ == "__main__":
    main()
