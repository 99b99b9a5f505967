#!/usr/bin/env bash
# Makes docs/eval-report.png: the demo model trained again with scripts/make-demo-model.sh's
# commands, evaluated on the demo set's test split with `sd2-train eval --report`, and the
# report's page as headless Chromium shows it, through the browser check the tests use
# (tests/browser): it fails on a broken image or a script error. About five minutes on two
# cores. REPORT_DIR keeps the report (default: a temporary folder).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
cd "$root"
cargo build --quiet --release -p sd2-train
cargo build --quiet --release -p sd2-e2e --example screenshot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report=$(realpath -m "${REPORT_DIR:-$work/report}")
train="$root/target/release/sd2-train"
# From the work folder, so that the report names the set and the run by short paths.
cd "$work"
"$train" make-demo-set --out set --per-type 300 --real-factor 4 --seed 0 >&2
"$train" fit --manifest set/manifest.jsonl --out sd2-demo --preset tiny \
  --lr 3e-3 --batch 32 --accumulation 1 --epochs 12 --checkpoint-every 100000 --labels-per-type 1 --seed 0
"$train" eval --checkpoint sd2-demo --manifest set/manifest.jsonl --report "$report"
"$root/target/release/examples/screenshot" "$report/index.html" "$root/docs/eval-report.png" 1280x1500
