#!/usr/bin/env bash
# Frames per second of sd2facedetect beside facenet-pytorch's MTCNN, same frames, same run.
# Creates the reference's Python environment on first use (scripts/reference-env.sh, ~4 GB).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
SD2_REFERENCE_PYTHON=$("$root/scripts/reference-env.sh")
export SD2_REFERENCE_PYTHON
cd "$root"
exec cargo bench --quiet -p gst-plugin-sd2 --bench facedetect
