#!/usr/bin/env bash
# What FP8 costs in accuracy, measured on the CPU, where SD²'s FP8 operators emulate the
# GPU's E4M3 arithmetic (the same rounding; only the order of accumulation differs). On the
# demo model, trained as scripts/make-demo-model.sh trains it (its checkpoint is not
# committed), exported as the fp32 standard graph and as the FP8 sd2 graph calibrated on
# 512 crops of the demo set:
#
#   1. the demo set (every crop): `sd2-train export --drift`, against the fp32 graph;
#   2. the demo video: the demo pipeline (scripts/demo.sh) with each file; every face of
#      every frame compared.
#
# Prints one JSON line for each (stdout); progress goes to stderr. Needs python3 for the
# comparison of the two pipelines' lines. SD2_FP8_WORK=DIR keeps the work (and reuses a
# trained checkpoint there) instead of a temporary folder.
#
#   scripts/fp8-accuracy.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SD2_CACHE_DIR:-$root/.cache/sd2}
"$root/scripts/setup.sh"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo build --quiet --release -p sd2-train -p gst-plugin-sd2
work=${SD2_FP8_WORK:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
train=target/release/sd2-train
if [ ! -d "$work/run/checkpoints" ]; then
  echo "fp8-accuracy: training the demo model in $work (a few minutes)" >&2
  "$train" make-demo-set --out "$work/set" --per-type 300 --real-factor 4 --seed 0 >&2
  "$train" fit --manifest "$work/set/manifest.jsonl" --out "$work/run" --preset tiny \
    --lr 3e-3 --batch 32 --accumulation 1 --epochs 12 --checkpoint-every 100000 \
    --labels-per-type 1 --seed 0 >&2
fi
set_manifest=$work/set/manifest.jsonl
"$train" export --checkpoint "$work/run" --out "$work/fp32.onnx" --name sd2-demo --version 1
"$train" export --checkpoint "$work/run" --out "$work/fp8.onnx" --name sd2-demo --version 1 \
  --fp8 --calibrate "$set_manifest" --calibration-faces 512 --drift "$set_manifest"
video=$cache/demo/faces.webm
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
for m in fp32 fp8; do
  echo "fp8-accuracy: the demo video with $m.onnx" >&2
  SD2_FP8_EMULATION=1 gst-launch-1.0 -q filesrc location="$video" ! decodebin ! videoconvert ! \
    sd2facedetect ! sd2deepfake model="$work/$m.onnx" ! sd2json location="$work/$m.jsonl" ! fakesink
done
python3 - "$work/fp32.jsonl" "$work/fp8.jsonl" <<'EOF'
import json, sys

def frames(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

a, b = frames(sys.argv[1]), frames(sys.argv[2])
assert len(a) == len(b), f"{len(a)} frames against {len(b)}"
faces = drift_max = drift_sum = changed = labels = unmatched = 0
for fa, fb in zip(a, b):
    oa = [o for o in fa["objects"] if o["deepfake"].get("analysed")]
    ob = [o for o in fb["objects"] if o["deepfake"].get("analysed")]
    if [(o["x"], o["y"], o["w"], o["h"]) for o in oa] != [(o["x"], o["y"], o["w"], o["h"]) for o in ob]:
        unmatched += 1
        continue
    for x, y in zip(oa, ob):
        dx, dy = x["deepfake"], y["deepfake"]
        d = abs(dx["fake_score"] - dy["fake_score"])
        faces += 1
        drift_sum += d
        drift_max = max(drift_max, d)
        changed += dx["fake"] != dy["fake"]
        labels += dx["label"] != dy["label"]
print(json.dumps({
    "video": "demo video (faces.webm), sd2deepfake's defaults",
    "frames": len(a),
    "faces": faces,
    "frames_with_other_faces": unmatched,
    "max_fake_score": round(drift_max, 5),
    "mean_fake_score": round(drift_sum / max(faces, 1), 5),
    "verdicts_changed": changed,
    "labels_changed": labels,
}))
EOF
