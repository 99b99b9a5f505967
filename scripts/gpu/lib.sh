# Shared by scripts/gpu/*.sh: paths and the unpacking of what pack.sh packed.
# shellcheck shell=bash
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Where carried parts are kept between device calls (outside the checkout, which each call
# replaces).
stash=${SD2_GPU_STASH:-$HOME/sd2-ortgpu}
wheel=onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
wheel_sha=05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7

mib() { du -cbs "$@" | tail -1 | awk '{printf "%.1f", $1 / 1048576}'; }

# The value of option $1 among the rest of the arguments, or exit naming it.
required() {
  local name=$1 v=
  shift
  while [ $# -gt 0 ]; do
    if [ "$1" = "$name" ]; then v=${2:-}; break; fi
    shift
  done
  [ -n "$v" ] || { echo "${0##*/}: $name N is required" >&2; exit 2; }
  echo "$v"
}

# Copies the parts of .gpu/$1 (ortgpu or train) carried into this call to the stash, which
# outlives the call.
keep_carried() {
  mkdir -p "$stash"
  local p
  for p in "$root/.gpu/$1"/part-*; do
    if [ -f "$p" ]; then cp "$p" "$stash/" && echo "kept ${p##*/} in $stash"; fi
  done
}

# Keeps the parts of .gpu/$1 carried into this call, and once all of them are in the stash
# (checked against .gpu/cache/$1.sha256) unpacks them into $2, unless it holds them already.
# $3: the script whose `stash N` keeps a part, for the message when some are missing.
unpack_stashed() {
  local kind=$1 dir=$2 script=$3 manifest=$root/.gpu/cache/$1.sha256
  keep_carried "$kind"
  [ -f "$manifest" ] || { echo "$manifest missing: carry .gpu/cache" >&2; exit 1; }
  cmp -s "$manifest" "$dir/.unpacked" && return
  if ! (cd "$stash" && sha256sum -c --quiet "$manifest"); then
    echo "parts missing or damaged in $stash: stash each part but the last (carry it," \
      "then scripts/gpu/$script stash N), and carry the last into this call" >&2
    exit 1
  fi
  rm -rf "$dir"
  # xz where it is installed, else Python's lzma (the GPU image's tools are not ours).
  local unxz=(xz -dc)
  if [ -n "${SD2_GPU_NO_XZ:-}" ] || ! command -v xz >/dev/null; then
    unxz=(python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)')
  fi
  # shellcheck disable=SC2046
  (cd "$stash" && cat $(awk '{print $2}' "$manifest") | "${unxz[@]}" | tar -xf -)
  cp "$manifest" "$dir/.unpacked"
}

# Keeps the carried parts, unpacks ONNX Runtime, sets the environment, writes gpu.txt.
# Needs $device (cpu or cuda), $out and $python.
prepare() {
  local ort=$stash/ort
  mkdir -p "$out"
  unpack_stashed ortgpu "$ort" run.sh
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
  # Diagnostics only: none of them may end the call before the benchmark runs.
  {
    echo "date: $(date -u +%FT%TZ)"
    if [ "$device" = cuda ]; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
      echo "libraries ldd finds missing for the CUDA provider (none expected), then the CUDA libraries:"
      ldd "$capi/libonnxruntime_providers_cuda.so" | grep 'not found' || true
      # cuDNN and cuFFT are opened at run time, which ldd does not see.
      "$python" -c 'import ctypes
for lib in ["libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10", "libcufft.so.12", "libcudnn.so.9", "libnvrtc.so.13"]:
    try:
        ctypes.CDLL(lib); print("  found", lib)
    except OSError as e:
        print("  MISSING", lib, e)' || true
      "$python" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' || true
    fi
    "$python" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.__file__, o.get_available_providers())' || true
  } 2>&1 | tee "$out/gpu.txt"
}
