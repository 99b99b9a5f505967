#!/usr/bin/env bash
# Here: builds sd2-bench, strips it and packs what a GPU machine without a toolchain,
# GStreamer, ONNX Runtime's CUDA build or internet needs into .gpu/, in parts that each fit
# one device call; prints the calls that move them (scripts/gpu/run.sh runs there).
#
#   scripts/gpu/pack.sh --carry-mib 64
#
# --carry-mib: the most one device call may send (the checkout's travelling files counted).
# --part-mib: the size of each part (default: what is left of a call beside the checkout,
# less 4 MiB).
#
# Writes .gpu/bin/sd2-bench (with SD2_BASE=<another build's sd2-bench>, that one too, as
# sd2-bench-base, for `run.sh compare`), .gpu/cache (MTCNN, samples, CLIP vocabulary, the
# parts' checksums) and .gpu/ortgpu/part-* (ONNX Runtime 1.31.1's CUDA build, the library
# for sd2-bench and the Python package for the ONNX Runtime reference, from the pinned
# onnxruntime-gpu wheel). Every part but the last moves in a call of its own (`run.sh
# stash N`); the last travels with .gpu/bin and .gpu/cache in the call that runs.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
carry_mib=$(required --carry-mib "$@")
part_mib=
while [ $# -gt 0 ]; do
  case $1 in
    --carry-mib) shift 2 ;;
    --part-mib) part_mib=$2; shift 2 ;;
    *) echo "pack.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# The files a device call sends besides what it carries: tracked and untracked, not ignored.
travelling() { (cd "$root" && git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1); }

tmp=
trap 'rm -rf "${tmp:-}"' EXIT
cd "$root"
repo=$(travelling)
repo_mib=$(awk -v b="$repo" 'BEGIN{printf "%.1f", b / 1048576}')
[ -n "$part_mib" ] || part_mib=$(awk -v c="$carry_mib" -v r="$repo_mib" 'BEGIN{printf "%d", c - r - 4}')
[ "$part_mib" -ge 4 ] || { echo "the checkout ($repo_mib MiB) leaves no room in $carry_mib MiB" >&2; exit 1; }
cargo build --release -p sd2-bench >&2
rm -rf .gpu && mkdir -p .gpu/bin .gpu/cache/models .gpu/ortgpu
strip -o .gpu/bin/sd2-bench target/release/sd2-bench
if [ -n "${SD2_BASE:-}" ]; then strip -o .gpu/bin/sd2-bench-base "$SD2_BASE"; fi
cp -r .cache/sd2/models/mtcnn .gpu/cache/models/
cp -r .cache/sd2/samples .cache/sd2/clip .gpu/cache/
w=.cache/sd2/wheels/$wheel
if ! { [ -f "$w" ] && echo "$wheel_sha  $w" | sha256sum -c --status; }; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 -d .cache/sd2/wheels "onnxruntime-gpu==1.31.1" >&2
  echo "$wheel_sha  $w" | sha256sum -c --status || { echo "$w: sha256 is not $wheel_sha" >&2; exit 1; }
fi
tmp=$(mktemp -d)
# The Python package and its dist-info, into one folder that goes on PYTHONPATH there;
# sd2-bench loads the same capi/libonnxruntime.so, and both find the CUDA provider beside it.
unzip -q "$w" -d "$tmp/ort" -x 'onnxruntime/capi/libonnxruntime_providers_tensorrt.so'
tar -C "$tmp" -cf - ort | xz -T0 -9 | split -b "${part_mib}M" -d - .gpu/ortgpu/part-
(cd .gpu/ortgpu && sha256sum part-*) >.gpu/cache/ortgpu.sha256
parts=(.gpu/ortgpu/part-*)
n=0
echo "device calls, each also sending $repo_mib MiB of checkout:"
for p in "${parts[@]}"; do
  n=$((n + 1))
  if [ "$p" = "${parts[-1]}" ]; then
    size=$(mib .gpu/bin .gpu/cache "$p")
    echo "  $n. carry .gpu/bin .gpu/cache $p ($size MiB): scripts/gpu/run.sh infer --seconds <the call's limit less 15>"
  else
    size=$(mib "$p")
    echo "  $n. carry $p ($size MiB): scripts/gpu/run.sh stash ${p##*-}"
  fi
  if awk -v s="$size" -v r="$repo_mib" -v c="$carry_mib" 'BEGIN{exit !(s + r > c - 0.5)}'; then
    echo "call $n would send more than $carry_mib MiB: give a smaller --part-mib" >&2
    exit 1
  fi
done
