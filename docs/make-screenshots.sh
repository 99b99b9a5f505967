#!/usr/bin/env bash
# Makes docs/overlay.png, the README's picture of sd2overlay: the demo video through the
# README's pipeline with the overlay (landmarks on), frame FRAME (default 250, ten seconds
# in, in the segment with a swapped face), scaled to 896×504 (0.7×).
#
#   docs/make-screenshots.sh [FRAME]
#
# Installs what it needs first (scripts/setup.sh) and builds the plugin. Every frame up to
# FRAME is analysed, so that tracks and their smoothed verdicts are those of a real run;
# each is written over the same file, which is left holding FRAME. That frame is then
# stored with 16 levels per channel, ordered-dithered, to keep the file under 300 KB.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SD2_CACHE_DIR:-$root/.cache/sd2}
frame=${1:-250}
"$root/scripts/setup.sh"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo build --quiet --release -p gst-plugin-sd2
export GST_PLUGIN_PATH=$root/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gst-launch-1.0 -q filesrc location="$cache/demo/faces.webm" ! decodebin ! \
  identity eos-after=$((frame + 1)) ! videoconvert ! \
  sd2facedetect ! sd2deepfake model="$cache/models/sd2-demo.onnx" ! sd2overlay draw-landmarks=true ! \
  videoconvert ! videoscale ! video/x-raw,width=896,height=504 ! pngenc compression-level=1 ! \
  multifilesink location="$work/frame.png"
out=$root/docs/overlay.png
gst-launch-1.0 -q filesrc location="$work/frame.png" ! pngdec ! videoconvert ! video/x-raw,format=ARGB64 ! \
  videoconvert dither=bayer dither-quantization=16 ! video/x-raw,format=RGB ! \
  pngenc compression-level=9 ! filesink location="$out"
echo "wrote $out ($(stat -c %s "$out") bytes)" >&2
