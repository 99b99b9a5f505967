#!/usr/bin/env bash
# Creates the Python environment of the reference implementations (PyTorch, facenet-pytorch,
# Hugging Face transformers, onnxruntime) in .cache/refvenv and prints its python's path.
# Used to regenerate test fixtures and by the benchmarks; the tests themselves never need it.
# About 4 GB: PyTorch's wheels on PyPI carry CUDA.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SD2_REFVENV:-$root/.cache/refvenv}
stamp=$venv/.sd2-reference-3
if [ ! -f "$stamp" ]; then
  echo "reference-env: creating $venv (PyTorch and friends, pinned)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q \
    torch==2.15.0 torchvision==0.29.2 numpy==2.4.6 pillow==13.0.0 \
    transformers==5.23.0 onnxruntime==1.31.1 requests==2.32.5 tqdm==4.67.1 \
    ftfy==6.3.1 wcwidth==0.9.4 regex==2026.11.19 >&2
  # facenet-pytorch 2.6.0 pins torch<2.3 in its metadata but runs on current releases;
  # open_clip is used for its tokenizer only.
  "$venv/bin/pip" install -q --no-deps facenet-pytorch==2.6.0 open-clip-torch==3.3.0 >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
