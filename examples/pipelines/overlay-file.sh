#!/usr/bin/env bash
# A file annotated for people to watch: every frame's faces boxed and labelled with their
# verdicts (sd2overlay), a red banner on fake frames, written as VP8 in WebM.
#
#   examples/pipelines/overlay-file.sh VIDEO OUTPUT.webm [MODEL]
#
# MODEL is an `sd2-train export` file (default: the demo model).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
video=${1:?usage: overlay-file.sh VIDEO OUTPUT.webm [MODEL]}
out=${2:?usage: overlay-file.sh VIDEO OUTPUT.webm [MODEL]}
model=${3:-$root/.cache/sd2/models/sd2-demo.onnx}
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 -q filesrc location="$video" ! decodebin ! videoconvert ! \
  sd2facedetect ! sd2deepfake model="$model" ! sd2overlay ! videoconvert ! \
  vp8enc deadline=1 target-bitrate=4000000 ! webmmux ! filesink location="$out"
