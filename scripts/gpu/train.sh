#!/usr/bin/env bash
# There: on a lent GPU machine, from what `scripts/gpu/pack.sh --train` packed here, the
# trainer on burn's CUDA backend beside the CPU and beside PyTorch. Every verb but `stash`
# takes --seconds S, the time this device call may run; nothing runs past it.
#
#   scripts/gpu/train.sh stash N           # keep the carried .gpu/train/part-0N
#   scripts/gpu/train.sh run --seconds S [--checks parity,tiny,step-fp32,step-bf16,vitl]
#                                           # the checks below, in this order, as time allows
#
# `run` writes under $OUT (each check's file as it ends, so a call stopped at its limit
# still returns what was done):
#   gpu.txt        the card, the driver, the CUDA libraries found
#   parity.txt     3 fit steps of the tiny preset on the GPU and on flex, the same batches,
#                  dropout off (each device has its own mask generator): losses within 1e-3
#   tiny.txt       the tiny preset trained on the demo set on the GPU and on flex, dropout
#                  on: the mean loss of the last epoch within 5% of each other
#   step-fp32.txt, step-bf16.txt
#                  sd2-bench step --preset vit-l-14 (batch 32) on the GPU beside PyTorch
#                  eager on the same GPU, in turns: images/s and peak memory, per precision
#   vitl.txt       one ViT-L/14 step at the paper's effective batch (32 × 32) on the GPU,
#                  its checkpoint exported with `export --check` (the file run by ONNX
#                  Runtime as sd2deepfake runs it, against the checkpoint's model)
#   summary.txt    one line per check: passed, FAILED, or not reached in the time left
#
# SD2_TRAIN_DEVICE=flex SD2_TRAIN_BIG=tiny runs the same on the CPU (what
# `scripts/gpu/rehearse.sh --train` does here).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
stash=${SD2_GPU_STASH:-$HOME/sd2-train-stash}
device=${SD2_TRAIN_DEVICE:-cuda:0}
big=${SD2_TRAIN_BIG:-vit-l-14}
out=${OUT:-$root/.gpu/out}
python=${SD2_BENCH_PYTHON:-python3}
work=$stash/work
bin=$stash/train/bin

# Unpacks the binaries and ONNX Runtime once every part is in the stash, and sets the
# environment: CUDA's NVRTC and headers (cubecl compiles its kernels at run time), ONNX
# Runtime for `export --check`, the cache with MTCNN, the sample faces and the vocabulary.
prepare() {
  mkdir -p "$out" "$work"
  unpack_stashed train "$stash/train" train.sh
  export SD2_CACHE_DIR=$root/.gpu/cache
  export ORT_DYLIB_PATH=$stash/train/onnxruntime/libonnxruntime.so.1.31.1
  if [ "$device" != flex ]; then
    local nv nvrtc
    nv=$("$python" -c 'import nvidia; print(nvidia.__path__[0])' 2>/dev/null) || nv=/nonexistent
    nvrtc=$(find /usr/local/cuda/lib64 "$nv" -name 'libnvrtc.so*' 2>/dev/null | head -1) || true
    [ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
    if [ ! -f "${CUDA_PATH:-/usr/local/cuda}/include/cuda_fp16.h" ]; then
      local h
      h=$(find "$nv" -name cuda_fp16.h 2>/dev/null | head -1) || true
      [ -n "$h" ] && export CUDA_PATH=$(dirname "$(dirname "$h")")
    fi
  fi
  # Diagnostics only: none of them may end the call.
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "device: $device, large preset: $big"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    echo "NVRTC: ${nvrtc:-none found}; CUDA headers: ${CUDA_PATH:-/usr/local/cuda}/include"
    "$python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 || true
  } | tee "$out/gpu.txt"
}

# Runs check $1 (the function of that name, in a shell of its own) for at most $2 seconds,
# cut to what is left of the call, its output in $OUT/$1.txt; records passed or FAILED in
# summary.txt and carries on either way.
check() {
  local name=$1 limit=$2 left status=0
  case ",$checks," in *",$name,"*) ;; *) return 0 ;; esac
  left=$((seconds - SECONDS - 10))
  [ "$limit" -le "$left" ] || limit=$left
  if [ "$limit" -lt 20 ]; then
    echo "$name: not reached (${left} s left)" | tee -a "$out/summary.txt"
    return 0
  fi
  echo "== $name (at most $limit s)"
  timeout -k 5 "$limit" bash -c "set -euo pipefail; ${name//-/_}" >"$out/$name.txt" 2>&1 || status=$?
  tail -n 15 "$out/$name.txt"
  case $status in
    0) echo "$name: passed ($((SECONDS)) s into the call)" ;;
    124 | 137) echo "$name: FAILED, stopped at its $limit s" ;;
    *) echo "$name: FAILED (exit $status)" ;;
  esac | tee -a "$out/summary.txt"
}

# `fit` of the tiny preset on the demo set at $1 into $2 on device $3, then $4….
tiny_fit() {
  local data=$1 run=$2 dev=$3
  shift 3
  "$bin/sd2-train" fit --manifest "$data/manifest.jsonl" --out "$run" --preset tiny \
    --labels-per-type 1 --accumulation 1 --devices "$dev" "$@"
}

# The per-step losses of runs $1 and $2 (metrics.jsonl), and whether they agree as $3
# says: `steps` (every step within 1e-3, relative) or `last-epoch` (the mean over the last
# epoch's steps within 5%).
compare_losses() {
  "$python" - "$@" <<'EOF'
import json, sys
a, b, how = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = [[json.loads(l) for l in open(p + "/metrics.jsonl")] for p in (a, b)]
la, lb = ([r["loss"] for r in rs] for rs in rows)
print("losses", a, [round(x, 5) for x in la])
print("losses", b, [round(x, 5) for x in lb])
if len(la) != len(lb):
    sys.exit(f"{len(la)} steps against {len(lb)}")
if how[0] == "steps":
    worst = max(abs(x - y) / max(abs(x), 1.0) for x, y in zip(la, lb))
    print(f"largest relative difference {worst:.2e} (tolerance 1e-3)")
    sys.exit(0 if worst <= 1e-3 else 1)
last = rows[0][-1]["epoch"]
n = sum(1 for r in rows[0] if r["epoch"] == last)
ma, mb = sum(la[-n:]) / n, sum(lb[-n:]) / n
print(f"mean over the last epoch ({n} steps): {ma:.4f} against {mb:.4f}, {abs(ma - mb) / ma:.2%} apart (tolerance 5%)")
sys.exit(0 if abs(ma - mb) <= 0.05 * ma else 1)
EOF
}

parity() {
  local data=$work/parity-data
  rm -rf "$data" "$work"/parity-*
  "$bin/sd2-train" make-demo-set --out "$data" --per-type 8
  local a=(--batch 8 --max-steps 3 --lr 1e-3 --lora-dropout 0)
  tiny_fit "$data" "$work/parity-flex" flex "${a[@]}"
  tiny_fit "$data" "$work/parity-dev" "$device" "${a[@]}"
  compare_losses "$work/parity-flex" "$work/parity-dev" steps
}

tiny() {
  local data=$work/tiny-data
  rm -rf "$work"/tiny-*
  "$bin/sd2-train" make-demo-set --out "$data" --per-type 100 --real-factor 4
  local a=(--lr 3e-3 --batch 32 --epochs 4 --checkpoint-every 100000)
  local t0=$SECONDS
  tiny_fit "$data" "$work/tiny-dev" "$device" "${a[@]}"
  echo "on $device: $((SECONDS - t0)) s"
  t0=$SECONDS
  tiny_fit "$data" "$work/tiny-flex" flex "${a[@]}"
  echo "on flex: $((SECONDS - t0)) s"
  compare_losses "$work/tiny-flex" "$work/tiny-dev" last-epoch
}

step() {
  local ref=cuda
  [ "$device" = flex ] && ref=cpu
  "$bin/sd2-bench" step --preset "$big" --batch 32 --device "$device" --reference-device "$ref" \
    --reference-python "$python" --precision "$1" --warmup 3 --steps 5 --rounds 2
}
step_fp32() { step f32; }
step_bf16() { step bf16; }

vitl() {
  local data=$work/vitl-data run=$work/vitl-run size=224 per=300 batch=32 acc=32
  # The CPU rehearsal: the tiny preset, a smaller set.
  if [ "$big" = tiny ]; then size=64 per=40 batch=8 acc=4; fi
  rm -rf "$data" "$run" "$work/vitl.onnx"
  "$bin/sd2-train" make-demo-set --out "$data" --per-type "$per" --size "$size"
  local t0=$SECONDS
  "$bin/sd2-train" fit --manifest "$data/manifest.jsonl" --out "$run" --preset "$big" \
    --labels-per-type 1 --batch "$batch" --accumulation "$acc" --max-steps 1 --devices "$device"
  echo "one step of $batch × $acc on $device: $((SECONDS - t0)) s (images read and decoded included)"
  "$bin/sd2-train" export --checkpoint "$run" --out "$work/vitl.onnx" --check 2
  rm -f "$work/vitl.onnx"
}

run() {
  seconds=$(required --seconds "$@")
  checks=parity,tiny,step-fp32,step-bf16,vitl
  while [ $# -gt 0 ]; do
    case $1 in
      --seconds) shift 2 ;;
      --checks) checks=$2; shift 2 ;;
      *) echo "train.sh run: unknown option $1" >&2; exit 2 ;;
    esac
  done
  prepare
  # What the checks' shells need.
  export bin work device big python
  export -f tiny_fit compare_losses parity tiny step step_fp32 step_bf16 vitl
  : >"$out/summary.txt"
  check parity 150
  check tiny 150
  check step-fp32 240
  check step-bf16 240
  check vitl 240
  cat "$out/summary.txt"
  ! grep -q FAILED "$out/summary.txt"
}

verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
stash)
  part=$(printf '%s/.gpu/train/part-%02d' "$root" "$((10#${1:?stash needs a part number}))")
  [ -f "$part" ] || { echo "$part was not carried into this call" >&2; exit 1; }
  keep_carried train
  ls -l "$stash"
  ;;
run) run "$@" ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d'
  exit 2
  ;;
esac
