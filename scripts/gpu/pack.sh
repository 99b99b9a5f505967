#!/usr/bin/env bash
# Here: builds sd2-bench, strips it and packs what a GPU machine without a toolchain,
# GStreamer, ONNX Runtime's CUDA build or internet needs into .gpu/, in parts that each fit
# one device call; prints the calls that move them (scripts/gpu/run.sh runs there).
#
#   scripts/gpu/pack.sh --carry-mib 64
#   scripts/gpu/pack.sh --carry-mib 64 --train   # the CUDA trainer instead (train.sh there)
#
# --train: builds sd2-train and sd2-bench with burn's CUDA backend (`--features cuda`, in
# target/cuda; `scripts/setup.sh --gpu` first), strips both and packs them with ONNX
# Runtime's CPU library (for `export --check`) into .gpu/train/part-* (xz with a dictionary
# as large as a binary, so the second binary costs little more than what differs), and
# the MTCNN models, sample faces and CLIP vocabulary into .gpu/cache; the printed calls run
# scripts/gpu/train.sh.
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
train=0
while [ $# -gt 0 ]; do
  case $1 in
    --carry-mib) shift 2 ;;
    --part-mib) part_mib=$2; shift 2 ;;
    --train) train=1; shift ;;
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

# Prints the device calls that move the parts $1/part-* (every one but the last stashed by
# `$2 stash N`, the last carried with .gpu/cache and, when $4 is given, $4) and run `$3` in the
# last; fails when a call would send more than --carry-mib.
print_calls() {
  local dir=$1 verb=$2 last=$3 extra=${4:-} parts n=0 size p
  parts=("$dir"/part-*)
  echo "device calls, each also sending $repo_mib MiB of checkout:"
  for p in "${parts[@]}"; do
    n=$((n + 1))
    if [ "$p" = "${parts[-1]}" ]; then
      # shellcheck disable=SC2086
      size=$(mib $extra .gpu/cache "$p")
      echo "  $n. carry $extra .gpu/cache $p ($size MiB): $last"
    else
      size=$(mib "$p")
      echo "  $n. carry $p ($size MiB): $verb stash ${p##*-}"
    fi
    if awk -v s="$size" -v r="$repo_mib" -v c="$carry_mib" 'BEGIN{exit !(s + r > c - 0.5)}'; then
      echo "call $n would send more than $carry_mib MiB: give a smaller --part-mib" >&2
      exit 1
    fi
  done
}

if ((train)); then
  # The trainer with burn's CUDA backend, in a target folder of its own: its features
  # differ from the default build's, whose binaries the tests run.
  CARGO_TARGET_DIR=$root/target/cuda cargo build --release -p sd2-train -p sd2-bench --features cuda --bins >&2
  rm -rf .gpu && mkdir -p .gpu/cache/models .gpu/train
  tmp=$(mktemp -d)
  mkdir -p "$tmp/train/bin" "$tmp/train/onnxruntime"
  for b in sd2-train sd2-bench; do strip -o "$tmp/train/bin/$b" "target/cuda/release/$b"; done
  cp .cache/sd2/onnxruntime/libonnxruntime.so.1.31.1 "$tmp/train/onnxruntime/"
  cp -r .cache/sd2/models/mtcnn .gpu/cache/models/
  cp -r .cache/sd2/samples .cache/sd2/clip .gpu/cache/
  # A dictionary as large as one binary lets the second refer back to the first.
  tar -C "$tmp" -cf - train | xz -T1 --lzma2=preset=9,dict=256MiB | split -b "${part_mib}M" -d - .gpu/train/part-
  (cd .gpu/train && sha256sum part-*) >.gpu/cache/train.sha256
  print_calls .gpu/train "scripts/gpu/train.sh" "scripts/gpu/train.sh run --seconds <the call's limit less 15>"
  exit 0
fi

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
print_calls .gpu/ortgpu "scripts/gpu/run.sh" "scripts/gpu/run.sh infer --seconds <the call's limit less 15>" .gpu/bin
