#!/usr/bin/env bash
# A file, analysed frame by frame: faces, verdicts, one JSON line per frame on stdout.
#
#   examples/pipelines/file.sh VIDEO [MODEL]
#
# Every frame of VIDEO is decoded, its faces found (sd2facedetect) and classified
# (sd2deepfake) with MODEL (an `sd2-train export` file; default: the demo model).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
video=${1:?usage: file.sh VIDEO [MODEL]}
model=${2:-$root/.cache/sd2/models/sd2-demo.onnx}
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 -q filesrc location="$video" ! decodebin ! videoconvert ! \
  sd2facedetect ! sd2deepfake model="$model" ! sd2json location=- ! fakesink
