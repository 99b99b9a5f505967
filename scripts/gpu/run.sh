#!/usr/bin/env bash
# There: on a lent GPU machine, from what scripts/gpu/pack.sh packed here. Every verb but
# `stash` takes --seconds S, the time this device call may run (its limit less a margin);
# nothing runs past it.
#
#   scripts/gpu/run.sh stash N                    # keep the carried .gpu/ortgpu/part-0N
#   scripts/gpu/run.sh infer --seconds S [ARGS]   # sd2-bench infer; ARGS go to it
#   scripts/gpu/run.sh probe --seconds S          # which ways of running work, and a profile
#   scripts/gpu/run.sh compare --seconds S        # this build's fused graph against a base build's
#   scripts/gpu/run.sh kernels --seconds S        # an encoder layer's kernels, ORT against PyTorch
#   scripts/gpu/run.sh layers --seconds S         # one layer's kernel table of each variant, then `kernels`
#
# `infer` times every variant beside torch.compile: the standard, fused and sd2 (SD²'s own
# CUDA kernels) fp16 graphs and the sd2 FP8 graph, the last three also with CUDA graphs
# (sd2-bench's notes say when a capture failed); `--streams 4,8,16` adds the face path
# with that many streams. `layers` writes layers.txt: one encoder layer's operators in
# each variant at batch 64 (sd2-bench infer --kernel-table, every launch waited for), and
# kernels.txt (`kernels`) with what is left of S.
#
# `infer` writes gpu.txt (card, driver, libraries), the tiny preset's probe (skipped when
# S is under 400 or with --no-probe), sd2-bench.txt and sd2-bench.json under $OUT, then, in
# the last --profile-s seconds (default 60), the fused fp16 graph's profile at batch 64.
# sd2-bench gets what is left of S and begins no batch size in its last --margin-s seconds
# (default 160: the longest a ViT-L/14 batch size takes with torch.compile); the JSON is
# rewritten after each batch size. It exits 3 when stopped at that limit.
# SD2_BENCH_DEVICE=cpu runs the same on the CPU (scripts/gpu/rehearse.sh).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
device=${SD2_BENCH_DEVICE:-cuda}
out=${OUT:-$root/.gpu/out}
python=${SD2_BENCH_PYTHON:-python3}
bench=$root/.gpu/bin/sd2-bench

# Where the fused fp16 graph's time goes at batch 64 (ONNX Runtime's profiler, see
# `probe`: profile-*.txt), and which attention kernel ONNX Runtime chose for it
# (attention-kernels.txt: flash attention expected), within $2 seconds.
profile_fused() {
  local file
  file=$(ls "$1"/*fused-fp16.onnx 2>/dev/null | head -1) || true
  [ -n "$file" ] || { echo "no fused fp16 export in $1 to profile"; return 0; }
  ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1 timeout "$2" "$python" \
    "$root/bench/references/ort_cuda_probe.py" --profile 64 "$out" "$file" >"$out/profile.log" 2>&1 || true
  grep -oE 'SdpaKernel=[A-Za-z_]+' "$out/profile.log" | sort | uniq -c >"$out/attention-kernels.txt" || true
  sed 's/^/attention kernel runs: /' "$out/attention-kernels.txt"
  grep -v 'SdpaKernel=' "$out/profile.log" | grep -v '^\s*$' | tail -n 30 || true
}

# Which ways of running the exports work on this GPU's ONNX Runtime, on the tiny preset
# (under a minute): ONNX Runtime's Python API under each optimization level
# (bench/references/ort_cuda_probe.py: probe-tiny.txt), then our path through sd2-bench
# (bench-tiny.txt, tiny.json), so that a run that fails says where.
probe_tiny() {
  local models=$HOME/sd2-probe
  timeout 30 "$bench" infer --device cuda --preset tiny --export-only --out "$models/tiny" || true
  timeout 60 "$python" "$root/bench/references/ort_cuda_probe.py" "$out/tiny" "$models"/tiny/*.onnx \
    >"$out/probe-tiny.txt" 2>&1 || true
  grep -E ': (ok|FAIL|session FAIL)' "$out/probe-tiny.txt" | sed 's/^/probe: /' || true
  timeout 60 "$bench" infer --device cuda --preset tiny --batches 1,8 --rounds 1 --iterations 3 --frames 2 \
    --out "$models/tiny" --json "$out/tiny.json" >"$out/bench-tiny.txt" 2>&1 || true
  tail -n 25 "$out/bench-tiny.txt" | sed 's/^/probe: /'
}

infer() {
  local seconds=$1 profile_s=60 margin_s=160 probe=1
  shift
  local args=()
  while [ $# -gt 0 ]; do
    case $1 in
      --seconds) shift 2 ;;
      --profile-s) profile_s=$2; shift 2 ;;
      --margin-s) margin_s=$2; shift 2 ;;
      --no-probe) probe=0; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  prepare
  if [ "$device" = cuda ] && [ "$probe" = 1 ] && [ "$seconds" -ge 400 ]; then probe_tiny; fi
  local defaults=(--device "$device")
  # Batch 1 and 64 first: the targets are there. torch.compile compiles twice in this
  # order (batch 1, then a dynamic batch that the rest reuse).
  if [ "$device" = cuda ]; then defaults+=(--batches 1,64,8,128,32 --rounds 3); else profile_s=0; fi
  local left=$((seconds - SECONDS - profile_s)) status=0
  if [ "$left" -lt 60 ]; then
    echo "only $left s of --seconds $seconds left for sd2-bench: give the call more" >&2
    exit 1
  fi
  timeout -k 5 "$left" "$bench" infer "${defaults[@]}" \
    --reference-python "$python" --out "$HOME/sd2-gpu-models" --json "$out/sd2-bench.json" \
    --deadline-s "$((left > 2 * margin_s ? left - margin_s : left / 2))" "${args[@]}" 2>&1 | tee "$out/sd2-bench.txt" ||
    status=$?
  if [ "$profile_s" -gt 0 ]; then profile_fused "$HOME/sd2-gpu-models" "$profile_s"; fi
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "sd2-bench was stopped at its time limit ($left s): what it measured is above and" \
      "in sd2-bench.json" | tee -a "$out/sd2-bench.txt"
    exit 3
  fi
  return "$status"
}

# `probe` also exports ViT-L/14 and profiles its fused fp16 graph at batch 64 with ONNX
# Runtime's profiler: where the encoder's time goes, and so what to fuse next.
probe() {
  local seconds=$1 models=$HOME/sd2-probe
  prepare
  probe_tiny
  timeout "$(((seconds - SECONDS) / 3))" "$bench" infer --device cuda --export-only --out "$models/vit-l" || true
  profile_fused "$models/vit-l" "$((seconds - SECONDS - 5))"
}

# One encoder layer's kernels through ONNX Runtime and PyTorch (kernels.txt).
encoder_kernels() {
  timeout "$1" "$python" "$root/bench/references/encoder_kernels.py" 2>&1 | tee "$out/kernels.txt" || true
}

# The fused fp16 ViT-L/14 graph exported by .gpu/bin/sd2-bench-base (an earlier build, see
# pack.sh) and by .gpu/bin/sd2-bench, same random weights, timed against each other in one
# process (bench/references/ort_graph_ab.py: ab.txt) beside the standard fp16 graph; then
# one encoder layer's kernels through ONNX Runtime and PyTorch (kernels.txt).
compare() {
  local seconds=$1 models=$HOME/sd2-compare
  prepare
  [ -x "$bench-base" ] || { echo "no .gpu/bin/sd2-bench-base: pack with SD2_BASE" >&2; exit 1; }
  local quarter=$(((seconds - SECONDS) / 4))
  timeout "$quarter" "$bench-base" --device cuda --export-only --out "$models/base" >/dev/null
  timeout "$quarter" "$bench" infer --device cuda --export-only --out "$models/this" >/dev/null
  timeout "$(((seconds - SECONDS) / 2))" "$python" "$root/bench/references/ort_graph_ab.py" --batches 64,1,8,128 \
    "$models"/base/*fused-fp16.onnx "$models"/this/*fused-fp16.onnx "$models"/this/*standard-fp16.onnx \
    2>&1 | tee "$out/ab.txt" || true
  encoder_kernels "$((seconds - SECONDS - 5))"
}

# One encoder layer's kernel table of each variant (layers.txt): the profiler times a node
# on the host, so every launch waits for its kernel (CUDA_LAUNCH_BLOCKING=1); then the
# same layer's kernels one by one, ONNX Runtime against PyTorch (kernels.txt).
layer_tables() {
  local seconds=$1 models=$HOME/sd2-layers
  CUDA_LAUNCH_BLOCKING=1 timeout "$(((seconds - SECONDS) / 2))" "$bench" infer --device "$device" \
    --kernel-table --batches 64 --rounds 5 --out "$models" 2>&1 | tee "$out/layers.txt" || true
  encoder_kernels "$((seconds - SECONDS - 5))"
}

verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
stash)
  part=$(printf '%s/.gpu/ortgpu/part-%02d' "$root" "$((10#${1:?stash needs a part number}))")
  [ -f "$part" ] || { echo "$part was not carried into this call" >&2; exit 1; }
  keep_carried ortgpu
  ls -l "$stash"
  ;;
infer) infer "$(required --seconds "$@")" "$@" ;;
probe) device=cuda; probe "$(required --seconds "$@")" ;;
compare) device=cuda; compare "$(required --seconds "$@")" ;;
kernels) device=cuda; s=$(required --seconds "$@"); prepare; encoder_kernels "$((s - SECONDS - 5))" ;;
layers) device=cuda; s=$(required --seconds "$@"); prepare; layer_tables "$s" ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d'
  exit 2
  ;;
esac
