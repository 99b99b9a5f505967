#!/usr/bin/env bash
# Here: the device calls that scripts/gpu/pack.sh prints, made on this CPU: a copy of the
# checkout at another path, a HOME of its own, each part in a call of its own, the last
# with `run.sh infer` on the tiny preset. Passes when sd2-bench's JSON is complete.
#
#   scripts/gpu/pack.sh --carry-mib 64 && scripts/gpu/rehearse.sh
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -f "$root/.gpu/cache/ortgpu.sha256" ] || { echo "run scripts/gpu/pack.sh first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/repo" "$tmp/home" "$tmp/out"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$tmp/repo" -xf -
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
