#!/usr/bin/env bash
# Runs sd2-bench on a lent GPU machine that has no Rust toolchain, no GStreamer, no ONNX
# Runtime CUDA build and no internet (its python3 has PyTorch with the CUDA 13 and cuDNN 9
# wheels), from a build made here. Each device call carries at most 64 MiB.
#
#   scripts/gpu-bench.sh pack        # here: build, strip, pack into .gpu/; prints the calls
#   scripts/gpu-bench.sh stash N     # there: keep the carried .gpu/ortgpu/part-0N in ~/sd2-ortgpu
#   scripts/gpu-bench.sh run [ARGS]  # there: keep any carried part, unpack, run sd2-bench
#   scripts/gpu-bench.sh probe       # there: which ways of running work, and a profile
#   scripts/gpu-bench.sh compare     # there: this build's fused graph against a base build's
#   scripts/gpu-bench.sh kernels     # there: an encoder layer's kernels, ORT against PyTorch
#   scripts/gpu-bench.sh rehearse    # here: the same calls on this CPU, in a copy of the checkout
#
# `pack` writes .gpu/bin/sd2-bench (stripped; with SD2_BASE=<another build's sd2-bench>,
# that one too, as .gpu/bin/sd2-bench-base, for `compare`), .gpu/cache (MTCNN, samples, CLIP vocabulary,
# the parts' checksums) and .gpu/ortgpu/part-* (ONNX Runtime 1.31.1's CUDA build, the
# library for sd2-bench and the Python package for the ONNX Runtime reference, from the
# pinned onnxruntime-gpu wheel). Every part but the last moves in a call of its own
# (`stash`); the last travels with .gpu/bin and .gpu/cache in the call that runs `run`.
# The ViT-L/14 exports (2.4 GB) are made there by sd2-bench itself.
#
# `run` writes gpu.txt (card, driver, libraries), the tiny preset's probe (see probe_tiny;
# skipped when SD2_CALL_S is under 400 or SD2_PROBE=0), sd2-bench.txt and sd2-bench.json
# under $OUT, then, in the last $SD2_PROFILE_S seconds (default 60), the fused fp16
# graph's profile at batch 64 (profile_fused).
# sd2-bench is stopped $SD2_CALL_S seconds (default 585) after the call began, so the call
# ends inside the device's 600 s, and begins no batch size in its last 160 s; the JSON is
# rewritten after each batch size. It exits 3 when stopped at that limit. ARGS go to
# sd2-bench after the defaults below and override them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
stash=${SD2_GPU_STASH:-$HOME/sd2-ortgpu}
part_mib=${SD2_GPU_PART_MIB:-56}
wheel=onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
wheel_sha=05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7

tmp=
trap 'rm -rf "${tmp:-}"' EXIT

mib() { du -cbs "$@" | tail -1 | awk '{printf "%.1f", $1 / 1048576}'; }

# The files a device call sends besides what it carries: tracked and untracked, not ignored.
travelling() { (cd "$root" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1); }

pack() {
  cd "$root"
  cargo build --release -p sd2-train --bin sd2-bench
  rm -rf .gpu && mkdir -p .gpu/bin .gpu/cache/models .gpu/ortgpu
  strip -o .gpu/bin/sd2-bench target/release/sd2-bench
  if [ -n "${SD2_BASE:-}" ]; then strip -o .gpu/bin/sd2-bench-base "$SD2_BASE"; fi
  cp -r .cache/sd2/models/mtcnn .gpu/cache/models/
  cp -r .cache/sd2/samples .cache/sd2/clip .gpu/cache/
  local w=.cache/sd2/wheels/$wheel
  if ! { [ -f "$w" ] && echo "$wheel_sha  $w" | sha256sum -c --status; }; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 -d .cache/sd2/wheels "onnxruntime-gpu==1.31.1"
    echo "$wheel_sha  $w" | sha256sum -c --status || { echo "$w: sha256 is not $wheel_sha" >&2; exit 1; }
  fi
  tmp=$(mktemp -d)
  local work=$tmp
  # The Python package and its dist-info, into one folder that goes on PYTHONPATH there;
  # sd2-bench loads the same capi/libonnxruntime.so, and both find the CUDA provider beside it.
  unzip -q "$w" -d "$work/ort" -x 'onnxruntime/capi/libonnxruntime_providers_tensorrt.so'
  tar -C "$work" -cf - ort | xz -T0 -9 | split -b "${part_mib}M" -d - .gpu/ortgpu/part-
  (cd .gpu/ortgpu && sha256sum part-*) >.gpu/cache/ortgpu.sha256
  rm -rf "$work"
  local repo parts n=0 size
  repo=$(travelling)
  parts=(.gpu/ortgpu/part-*)
  echo "device calls, each also sending $(awk -v b="$repo" 'BEGIN{printf "%.1f", b / 1048576}') MiB of checkout:"
  for p in "${parts[@]}"; do
    n=$((n + 1))
    if [ "$p" = "${parts[-1]}" ]; then
      size=$(mib .gpu/bin .gpu/cache "$p")
      echo "  $n. carry .gpu/bin .gpu/cache $p ($size MiB): scripts/gpu-bench.sh run"
      echo "     (timeout_s 600; with under 600 s of device time left, prefix SD2_CALL_S=<left - 30>)"
    else
      size=$(mib "$p")
      echo "  $n. carry $p ($size MiB): scripts/gpu-bench.sh stash ${p##*-}"
    fi
    if awk -v s="$size" -v r="$repo" 'BEGIN{exit !(s + r / 1048576 > 63.5)}'; then
      echo "call $n would send more than the device's 64 MiB: lower SD2_GPU_PART_MIB" >&2
      exit 1
    fi
  done
}

# Copies the parts carried into this call to the stash, which outlives the call.
keep_carried() {
  mkdir -p "$stash"
  local p
  for p in "$root"/.gpu/ortgpu/part-*; do
    if [ -f "$p" ]; then cp "$p" "$stash/" && echo "kept ${p##*/} in $stash"; fi
  done
}

# Keeps the carried parts, unpacks ONNX Runtime, sets the environment, writes gpu.txt.
prepare() {
  local manifest=$root/.gpu/cache/ortgpu.sha256 ort=$stash/ort
  mkdir -p "$out"
  keep_carried
  [ -f "$manifest" ] || { echo "$manifest missing: carry .gpu/cache" >&2; exit 1; }
  if ! cmp -s "$manifest" "$ort/.unpacked"; then
    if ! (cd "$stash" && sha256sum -c --quiet "$manifest"); then
      echo "parts missing or damaged in $stash: stash each part but the last (carry it," \
        "then scripts/gpu-bench.sh stash N), and carry the last into this call" >&2
      exit 1
    fi
    rm -rf "$ort"
    # xz where it is installed, else Python's lzma (the GPU image's tools are not ours).
    local unxz=(xz -dc)
    if [ -n "${SD2_GPU_NO_XZ:-}" ] || ! command -v xz >/dev/null; then unxz=(python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)'); fi
    (cd "$stash" && cat $(awk '{print $2}' "$manifest") | "${unxz[@]}" | tar -xf -)
    cp "$manifest" "$ort/.unpacked"
  fi
  local capi=$ort/onnxruntime/capi
  export ORT_DYLIB_PATH=$capi/libonnxruntime.so.1.31.1
  export PYTHONPATH=$ort${PYTHONPATH:+:$PYTHONPATH}
  export SD2_CACHE_DIR=$root/.gpu/cache
  if [ "$device" = cuda ]; then
    # The CUDA 13 runtime, cuBLAS, cuFFT, cuRAND and cuDNN 9 of PyTorch's wheels.
    local nv
    nv=$("$python" -c 'import nvidia; print(nvidia.__path__[0])') || nv=/nonexistent
    export LD_LIBRARY_PATH="$capi:$nv/cu13/lib:$nv/cudnn/lib:${LD_LIBRARY_PATH:-}"
  fi
  # Diagnostics only: none of them may end the call before sd2-bench runs.
  # shellcheck disable=SC2016
  {
    echo "date: $(date -u +%FT%TZ)"
    if [ "$device" = cuda ]; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
      echo "libraries ldd finds missing for the CUDA provider (none expected), then the CUDA libraries of $nv:"
      ldd "$capi/libonnxruntime_providers_cuda.so" | grep 'not found' || true
      # cuDNN and cuFFT are opened at run time, which ldd does not see.
      "$python" -c 'import ctypes
for lib in ["libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcufft.so.12", "libcudnn.so.9"]:
    try:
        ctypes.CDLL(lib); print("  found", lib)
    except OSError as e:
        print("  MISSING", lib, e)' || true
      "$python" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' || true
    fi
    "$python" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.__file__, o.get_available_providers())' || true
  } 2>&1 | tee "$out/gpu.txt"
}

# prepare for the verbs that run on the GPU only (probe, compare, kernels).
prepare_cuda() {
  device=cuda out=${OUT:-$root/.gpu/out} python=${SD2_BENCH_PYTHON:-python3}
  prepare
}

run() {
  device=${SD2_BENCH_DEVICE:-cuda} out=${OUT:-$root/.gpu/out} python=${SD2_BENCH_PYTHON:-python3}
  prepare
  # The probe takes up to 150 s: not when the call has little more than the benchmark's.
  if [ "$device" = cuda ] && [ "${SD2_PROBE:-1}" != 0 ] && [ "${SD2_CALL_S:-585}" -ge 400 ]; then
    probe_tiny
  fi
  local defaults=(--device "$device")
  if [ "$device" = cuda ]; then
    # Batch 1 and 64 first: the issue's targets are there. torch.compile compiles twice in
    # this order (batch 1, then a dynamic batch that the rest reuse).
    # Streams at once: how many 1080p streams the machine's 16 cores and GPU serve.
    defaults+=(--batches 1,64,8,128,32 --rounds 3 --streams 4,8,16)
  fi
  # The device stops a call at 600 s, counted from the call's start: sd2-bench gets what is
  # left of $SD2_CALL_S less the profile's $SD2_PROFILE_S, and starts no batch size in its
  # last 160 s.
  local profile_s=0
  if [ "$device" = cuda ]; then profile_s=${SD2_PROFILE_S:-60}; fi
  local left=$((${SD2_CALL_S:-585} - SECONDS - profile_s)) status=0
  if [ "$left" -lt 60 ]; then
    echo "only $left s of SD2_CALL_S=${SD2_CALL_S:-585} left for sd2-bench: give the call more" >&2
    exit 1
  fi
  timeout -k 5 "${SD2_BENCH_TIMEOUT:-$left}" "$root/.gpu/bin/sd2-bench" "${defaults[@]}" \
    --reference-python "$python" --out "$HOME/sd2-gpu-models" --json "$out/sd2-bench.json" \
    --deadline-s "${SD2_BENCH_DEADLINE:-$((left > 200 ? left - 160 : left / 5))}" "$@" 2>&1 | tee "$out/sd2-bench.txt" ||
    status=$?
  if [ "$profile_s" -gt 0 ]; then profile_fused "$HOME/sd2-gpu-models" "$profile_s"; fi
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "sd2-bench was stopped at its time limit (${SD2_BENCH_TIMEOUT:-$left} s): what it" \
      "measured is above and in sd2-bench.json" | tee -a "$out/sd2-bench.txt"
    exit 3
  fi
  return "$status"
}

# Where the fused fp16 graph's time goes at batch 64 (ONNX Runtime's profiler, see
# `probe`: profile-*.txt), and which attention kernel ONNX Runtime chose for it
# (attention-kernels.txt: flash attention expected), within $2 seconds.
profile_fused() {
  local file
  file=$(ls "$1"/*fused-fp16.onnx 2>/dev/null | head -1) || true
  [ -n "$file" ] || { echo "no fused fp16 export in $1 to profile"; return 0; }
  ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1 timeout "$2" "$python" \
    "$root/training/benches/ort_cuda_probe.py" --profile 64 "$out" "$file" >"$out/profile.log" 2>&1 || true
  grep -oE 'SdpaKernel=[A-Za-z_]+' "$out/profile.log" | sort | uniq -c >"$out/attention-kernels.txt" || true
  sed 's/^/attention kernel runs: /' "$out/attention-kernels.txt"
  grep -v 'SdpaKernel=' "$out/profile.log" | grep -v '^\s*$' | tail -n 30 || true
}

# Which ways of running the exports work on this GPU's ONNX Runtime, on the tiny preset
# (under a minute): ONNX Runtime's Python API under each optimization level
# (training/benches/ort_cuda_probe.py: probe-tiny.txt, the verbose session log and the
# optimized graph), then our path through sd2-bench (bench-tiny.txt, tiny.json). `run`
# does this first, unless SD2_PROBE=0, so that a run that fails says where.
probe_tiny() {
  local bench=$root/.gpu/bin/sd2-bench models=$HOME/sd2-probe
  timeout 30 "$bench" --device cuda --preset tiny --export-only --out "$models/tiny" || true
  timeout 60 "$python" "$root/training/benches/ort_cuda_probe.py" "$out/tiny" "$models"/tiny/*.onnx \
    >"$out/probe-tiny.txt" 2>&1 || true
  grep -E ': (ok|FAIL|session FAIL)' "$out/probe-tiny.txt" | sed 's/^/probe: /' || true
  timeout 60 "$bench" --device cuda --preset tiny --batches 1,8 --rounds 1 --iterations 3 --frames 2 \
    --out "$models/tiny" --json "$out/tiny.json" >"$out/bench-tiny.txt" 2>&1 || true
  tail -n 25 "$out/bench-tiny.txt" | sed 's/^/probe: /'
}

# `probe` also exports ViT-L/14 and profiles its fused fp16 graph at batch 64 with ONNX
# Runtime's profiler (profile-*.txt: time by operator type, each kernel waited for): where
# the encoder's time goes, and so what to fuse next. About two minutes.
probe() {
  prepare_cuda
  probe_tiny
  local models=$HOME/sd2-probe
  timeout 60 "$root/.gpu/bin/sd2-bench" --device cuda --export-only --out "$models/vit-l" || true
  profile_fused "$models/vit-l" 120
}

# `compare` (after the parts are stashed, carrying .gpu/bin, .gpu/cache and the last part):
# the fused fp16 ViT-L/14 graph exported by .gpu/bin/sd2-bench-base (an earlier build, see
# `pack`) and by .gpu/bin/sd2-bench, same random weights, timed against each other in one
# process (training/benches/ort_graph_ab.py: ab.txt), beside the standard fp16 graph; then
# one encoder layer's kernels through ONNX Runtime and PyTorch, one by one
# (training/benches/encoder_kernels.py: kernels.txt). About three minutes.
compare() {
  prepare_cuda
  local models=$HOME/sd2-compare bench=$root/.gpu/bin
  [ -x "$bench/sd2-bench-base" ] || { echo "no .gpu/bin/sd2-bench-base: pack with SD2_BASE" >&2; exit 1; }
  timeout 90 "$bench/sd2-bench-base" --device cuda --export-only --out "$models/base" >/dev/null
  timeout 90 "$bench/sd2-bench" --device cuda --export-only --out "$models/this" >/dev/null
  timeout 240 "$python" "$root/training/benches/ort_graph_ab.py" --batches 64,1,8,128 \
    "$models"/base/*fused-fp16.onnx "$models"/this/*fused-fp16.onnx "$models"/this/*standard-fp16.onnx \
    2>&1 | tee "$out/ab.txt" || true
  encoder_kernels
}

# One encoder layer's kernels through ONNX Runtime and PyTorch (kernels.txt).
encoder_kernels() {
  timeout 240 "$python" "$root/training/benches/encoder_kernels.py" 2>&1 | tee "$out/kernels.txt" || true
}

kernels() {
  prepare_cuda
  encoder_kernels
}

# The device calls that `pack` prints, made here on the CPU: a copy of the checkout at
# another path, a HOME of its own, each part in a call of its own, the last with the run.
rehearse() {
  [ -f "$root/.gpu/cache/ortgpu.sha256" ] || { echo "run scripts/gpu-bench.sh pack first" >&2; exit 1; }
  tmp=$(mktemp -d)
  local r=$tmp
  mkdir -p "$r/repo" "$r/home" "$r/out"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$r/repo" -xf -
  local parts=("$root"/.gpu/ortgpu/part-*) p
  mkdir -p "$r/repo/.gpu/ortgpu"
  for p in "${parts[@]::${#parts[@]}-1}"; do
    cp "$p" "$r/repo/.gpu/ortgpu/"
    (cd "$r/repo" && HOME=$r/home scripts/gpu-bench.sh stash "${p##*-}")
    rm "$r/repo/.gpu/ortgpu/${p##*/}"
  done
  cp -r "$root/.gpu/bin" "$root/.gpu/cache" "$r/repo/.gpu/"
  cp "${parts[-1]}" "$r/repo/.gpu/ortgpu/"
  # xz is installed here; the Python fallback is the path a bare image takes.
  (cd "$r/repo" && HOME=$r/home OUT=$r/out SD2_BENCH_DEVICE=cpu SD2_GPU_NO_XZ=1 \
    scripts/gpu-bench.sh run --preset tiny --frames 2 --rounds 1 --iterations 3 "$@")
  ls -l "$r/out"
  grep -q '"complete": true' "$r/out/sd2-bench.json" || { echo "rehearsal: sd2-bench.json not complete" >&2; exit 1; }
  echo "rehearsal passed"
}

case "${1:-}" in
pack) pack ;;
stash)
  part=$(printf '%s/.gpu/ortgpu/part-%02d' "$root" "$((10#${2:?stash needs a part number}))")
  [ -f "$part" ] || { echo "$part was not carried into this call" >&2; exit 1; }
  keep_carried
  ls -l "$stash"
  ;;
run) shift && run "$@" ;;
probe) probe ;;
compare) compare ;;
kernels) kernels ;;
rehearse) shift && rehearse "$@" ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d'
  exit 2
  ;;
esac
