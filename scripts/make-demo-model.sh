#!/usr/bin/env bash
# Trains the demo detector and writes it to models/assets/sd2-demo.onnx (committed; setup
# copies it into the cache). What it is: a tiny SD² (4-layer, 64-pixel CLIP ViT from random
# weights, LoRA, CLAM, adapter) trained on crops of the seven faces of the sample photos,
# real and manipulated by our code (`sd2-train make-demo-set`). About three minutes on two
# cores. Floating-point results depend on the CPU, so a rebuild elsewhere gives a close,
# not identical, model.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
cd "$root"
cargo build --quiet --release -p sd2-train
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/sd2-train make-demo-set --out "$work/set" --per-type 300 --real-factor 4 --seed 0
target/release/sd2-train fit --manifest "$work/set/manifest.jsonl" --out "$work/run" --preset tiny \
  --lr 3e-3 --batch 32 --accumulation 1 --epochs 12 --checkpoint-every 100000 --labels-per-type 1 --seed 0
target/release/sd2-train eval --checkpoint "$work/run" --manifest "$work/set/manifest.jsonl"
target/release/sd2-train export --checkpoint "$work/run" --out models/assets/sd2-demo.onnx --name sd2-demo --version 1
