#!/usr/bin/env bash
# A file shown in a window with the verdicts drawn on it (sd2overlay): each face's box,
# green when real, red when fake, grey until classified, with its track, verdict and fake
# score, and a red banner on fake frames.
#
#   examples/pipelines/overlay-window.sh [VIDEO] [MODEL]
#
# VIDEO defaults to the demo video, MODEL (an `sd2-train export` file) to the demo model.
# The window plays at the file's pace: where analysis is slower than that, late frames are
# dropped by the sink. SD2_VIDEO_SINK names another sink than autovideosink (glimagesink,
# waylandsink; fakesink runs it without a display).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
video=${1:-$root/.cache/sd2/demo/faces.webm}
model=${2:-$root/.cache/sd2/models/sd2-demo.onnx}
sink=${SD2_VIDEO_SINK:-autovideosink}
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 filesrc location="$video" ! decodebin ! videoconvert ! \
  sd2facedetect ! sd2deepfake model="$model" ! sd2overlay ! videoconvert ! "$sink"
