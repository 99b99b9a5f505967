#!/usr/bin/env bash
# The main job on the bundled demo: decode a video made from the sample faces, find the
# faces in every frame, classify them with the default model and print one JSON line per
# frame.
#
#   scripts/demo.sh [VIDEO] [MODEL]   any file decodebin can read (default: the demo video);
#                                     an SD² model from `sd2-train export` (default: the demo model)
#
# Installs what it needs first (scripts/setup.sh, which also trains the demo model) and
# builds the plugin.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SD2_CACHE_DIR:-$root/.cache/sd2}
"$root/scripts/setup.sh"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo build --quiet --release -p gst-plugin-sd2
video=${1:-$cache/demo/faces.webm}
model=${2:-$cache/models/sd2-demo.onnx}
[ -f "$video" ] || { echo "demo: $video does not exist" >&2; exit 1; }
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
exec gst-launch-1.0 -q filesrc location="$video" ! decodebin ! videoconvert ! \
  sd2facedetect ! sd2deepfake model="$model" ! sd2json location=- ! fakesink
