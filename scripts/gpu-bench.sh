#!/usr/bin/env bash
# Runs sd2-bench on a machine with an NVIDIA GPU that has no Rust toolchain, no ONNX Runtime
# and no internet (the CUDA 13 + cuDNN 9 wheels of PyTorch are enough), from a build made here.
#
#   scripts/gpu-bench.sh pack          # here: build, strip, pack into .gpu/ (ignored by git)
#   scripts/gpu-bench.sh stash N       # there: keep .gpu/ortgpu/part-0N in ~/sd2-ortgpu
#   scripts/gpu-bench.sh run [ARGS]    # there: unpack ONNX Runtime, run sd2-bench on CUDA
#
# `pack` writes .gpu/bin/sd2-bench (stripped), .gpu/cache (MTCNN, samples, CLIP vocabulary)
# and .gpu/ortgpu/part-* (ONNX Runtime's CUDA build in parts of 40 MiB). Move each part in
# its own call (`stash`), then carry .gpu/bin and .gpu/cache into the call that runs `run`.
# The ViT-L/14 exports (1.2 GB) are generated there by sd2-bench itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
stash=${SD2_GPU_STASH:-$HOME/sd2-ortgpu}
case "${1:-}" in
pack)
  cd "$root"
  cargo build --release -p sd2-train --bin sd2-bench
  rm -rf .gpu && mkdir -p .gpu/bin .gpu/cache/models
  strip -o .gpu/bin/sd2-bench target/release/sd2-bench
  cp -r .cache/sd2/models/mtcnn .gpu/cache/models/
  cp -r .cache/sd2/samples .cache/sd2/clip .gpu/cache/
  "$root/../shared/gpu/pack-onnxruntime-gpu.sh" .gpu/ortgpu 40
  du -sh .gpu/bin .gpu/cache .gpu/ortgpu/part-*
  ;;
stash)
  part=$(printf '%s/.gpu/ortgpu/part-%02d' "$root" "${2:?stash needs a part number}")
  mkdir -p "$stash"
  cp "$part" "$stash/"
  ls -l "$stash"
  ;;
run)
  shift
  out=${OUT:-$root/.gpu/out}
  mkdir -p "$out"
  if [ ! -f "$stash/onnxruntime-gpu/libonnxruntime.so.1.31.1" ]; then
    (cd "$stash" && cat part-* | xz -dc | tar -xf -)
  fi
  nv=$(python3 -c 'import nvidia; print(nvidia.__path__[0])')
  export LD_LIBRARY_PATH="$stash/onnxruntime-gpu:$nv/cu13/lib:$nv/cudnn/lib:${LD_LIBRARY_PATH:-}"
  export ORT_DYLIB_PATH="$stash/onnxruntime-gpu/libonnxruntime.so.1.31.1"
  export SD2_CACHE_DIR="$root/.gpu/cache"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
  "$root/.gpu/bin/sd2-bench" --device cuda --reference-python python3 \
    --out "$HOME/sd2-gpu-models" --json "$out/sd2-bench-cuda.json" "$@" 2>&1 | tee "$out/sd2-bench-cuda.txt"
  ;;
*)
  sed -n '2,12p' "$0"
  exit 2
  ;;
esac
