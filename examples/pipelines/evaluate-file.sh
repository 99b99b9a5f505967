#!/usr/bin/env bash
# A file evaluated the way the paper evaluates videos: 32 evenly spaced frames, in one
# element (sd2bin), one JSON line per analysed frame.
#
#   examples/pipelines/evaluate-file.sh VIDEO [MODEL]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
video=${1:?usage: evaluate-file.sh VIDEO [MODEL]}
model=${2:-$root/.cache/sd2/models/sd2-demo.onnx}
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 -q filesrc location="$video" ! sd2bin model="$model" frames-per-video=32 ! \
  sd2json location=- ! fakesink
