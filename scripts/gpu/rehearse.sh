#!/usr/bin/env bash
# Here: the device calls that scripts/gpu/pack.sh prints, made on this CPU: a copy of the
# checkout at another path, a HOME of its own, each part in a call of its own, the last
# with `run.sh infer` on the tiny preset. Passes when sd2-bench's JSON is complete.
#
#   scripts/gpu/pack.sh --carry-mib 64 && scripts/gpu/rehearse.sh
#
# With --train, the calls of `pack.sh --train` instead: train.sh's checks on the CPU
# (SD2_TRAIN_DEVICE=flex, the tiny preset for ViT-L/14, PyTorch on the CPU from
# $SD2_REFERENCE_PYTHON); passes when every check passes.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/repo" "$tmp/home" "$tmp/out"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$tmp/repo" -xf -
if [ "${1:-}" = --train ]; then
  [ -f "$root/.gpu/cache/train.sha256" ] || { echo "run scripts/gpu/pack.sh --train first" >&2; exit 1; }
  parts=("$root"/.gpu/train/part-*)
  mkdir -p "$tmp/repo/.gpu/train"
  for p in "${parts[@]::${#parts[@]}-1}"; do
    cp "$p" "$tmp/repo/.gpu/train/"
    (cd "$tmp/repo" && HOME=$tmp/home scripts/gpu/train.sh stash "${p##*-}")
    rm "$tmp/repo/.gpu/train/${p##*/}"
  done
  cp -r "$root/.gpu/cache" "$tmp/repo/.gpu/"
  cp "${parts[-1]}" "$tmp/repo/.gpu/train/"
  (cd "$tmp/repo" && HOME=$tmp/home OUT=$tmp/out SD2_TRAIN_DEVICE=flex SD2_TRAIN_BIG=tiny SD2_GPU_NO_XZ=1 \
    SD2_BENCH_PYTHON=${SD2_REFERENCE_PYTHON:-python3} scripts/gpu/train.sh run --seconds 600)
  ls -l "$tmp/out"
  echo "rehearsal passed"
  exit 0
fi
[ -f "$root/.gpu/cache/ortgpu.sha256" ] || { echo "run scripts/gpu/pack.sh first" >&2; exit 1; }
parts=("$root"/.gpu/ortgpu/part-*)
mkdir -p "$tmp/repo/.gpu/ortgpu"
for p in "${parts[@]::${#parts[@]}-1}"; do
  cp "$p" "$tmp/repo/.gpu/ortgpu/"
  (cd "$tmp/repo" && HOME=$tmp/home scripts/gpu/run.sh stash "${p##*-}")
  rm "$tmp/repo/.gpu/ortgpu/${p##*/}"
done
cp -r "$root/.gpu/bin" "$root/.gpu/cache" "$tmp/repo/.gpu/"
cp "${parts[-1]}" "$tmp/repo/.gpu/ortgpu/"
# xz is installed here; the Python fallback is the path a bare image takes.
(cd "$tmp/repo" && HOME=$tmp/home OUT=$tmp/out SD2_BENCH_DEVICE=cpu SD2_GPU_NO_XZ=1 \
  scripts/gpu/run.sh infer --seconds 600 --preset tiny --frames 2 --rounds 1 --iterations 3 "$@")
ls -l "$tmp/out"
grep -q '"complete": true' "$tmp/out/sd2-bench.json" || { echo "rehearsal: sd2-bench.json not complete" >&2; exit 1; }
echo "rehearsal passed"
