#!/usr/bin/env bash
# A live source monitored continuously: a stream URI (rtsp://, http://, file://) or, with
# no argument, a live test source. Faces are looked for twice a second, tracked faces are
# re-classified every 25 frames, verdicts go to verdicts.jsonl, and `-m` prints the
# element messages: `sd2-deepfake-alert` when a face turns fake.
#
#   examples/pipelines/live.sh [URI] [MODEL]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
model=${2:-$root/.cache/sd2/models/sd2-demo.onnx}
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
if [ $# -ge 1 ]; then
  source=(uridecodebin uri="$1")
else
  source=(videotestsrc is-live=true pattern=ball num-buffers=250 ! video/x-raw,width=1280,height=720,framerate=25/1)
fi
exec gst-launch-1.0 -m "${source[@]}" ! videoconvert ! queue leaky=downstream max-size-buffers=5 ! \
  sd2facedetect inference-interval=12 ! sd2deepfake model="$model" reclassify-interval=25 ! \
  sd2json location=verdicts.jsonl ! fakesink sync=true
