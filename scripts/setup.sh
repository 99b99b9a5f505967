#!/usr/bin/env bash
# Installs and caches everything this project needs, on Debian bookworm. Idempotent: a
# second run checks what is there and downloads nothing.
#
#   scripts/setup.sh          Debian packages, ONNX Runtime (CPU), MTCNN weights and their
#                             ONNX conversion, CLIP vocabulary, sample faces
#   scripts/setup.sh --gpu    the same, plus ONNX Runtime's CUDA 13 build, the LLVM SDK
#                             and NVRTC
#   scripts/setup.sh --llvm   adds the LLVM SDK: what burn's CUDA backend builds against
#                             (sd2-train and sd2-bench with --features cuda;
#                             .cargo/config.toml points cargo at it; no GPU needed to build)
#   scripts/setup.sh --nvrtc  adds NVRTC (CUDA 13.0's runtime compiler, which compiles
#                             SD²'s CUDA kernels; the tests compile them to PTX on a
#                             machine without a GPU)
#
# Everything downloaded is pinned by version and sha256 and kept under .cache/sd2
# (or $SD2_CACHE_DIR).
set -euo pipefail
# Setup's messages, and those of the tools it runs (apt-get, cargo), are not a product:
# all of them go to stderr, so that `scripts/demo.sh | jq` reads only JSON lines.
exec 1>&2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SD2_CACHE_DIR:-$root/.cache/sd2}
gpu=0
llvm=0
nvrtc=0
for arg in "$@"; do
  case $arg in
    --gpu) gpu=1 llvm=1 nvrtc=1 ;;
    --llvm) llvm=1 ;;
    --nvrtc) nvrtc=1 ;;
    *) echo "setup.sh: unknown option $arg (expected --gpu, --llvm or --nvrtc)" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages ------------------------------------------------------------------
packages=(
  build-essential pkg-config ca-certificates curl unzip
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-libav gstreamer1.0-tools
  chromium
  mosquitto mosquitto-clients openssl
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
  say "cargo not found: install Rust 1.92 or newer (https://rustup.rs) and run this again"
  exit 1
fi

# --- pinned wheels --------------------------------------------------------------------
# name|url|sha256
pypi=https://files.pythonhosted.org/packages
wheels=(
  "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|$pypi/b4/1d/0f85ee31a3d93f2243a5cc29252becf858f53ac5cfa6c9c15d9ffe107eea|5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
  "facenet_pytorch-2.6.0-py3-none-any.whl|$pypi/ed/2e/2d56386bc2f834cdc683743903852cf1428b4e5ee119f16cf808b589d3cd|ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
  "open_clip_torch-3.3.0-py3-none-any.whl|$pypi/37/b5/41c315ccd94ca332ead3e832e83eee343ab245005c3e43d9d3e75eae34eb|c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce"
  "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl|$pypi/a5/2a/e71c1a7d90e70da67b88ccc609bd6ae54798d5847369b15d3a8052232f9d|74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
  "insightface-2.1-py3-none-any.whl|$pypi/66/d4/7c030e73d3064e63fc7927fc9c0cb5b8c52e12a52442317e9d0ad3d7bb37|dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399"
)
gpu_wheel="onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl|$pypi/92/1b/23ae6bfa165cf01f2566aeab3076135d0db8edf5b543c1556fd6b1d93c7f|e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6"
# LLVM 23.1.1 core, static, with the NVPTX target (no MLIR): what cubecl-llvm links. The
# base wheel holds X86 with the headers and llvm-config; the second adds the other targets.
llvm_wheels=(
  "mlc_llvm_static-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl|$pypi/f2/5b/d56874d8db6254df64387be5569beb298180d0cf1571552124bcd4bb1f7d|dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5"
  "mlc_llvm_static_extra_targets-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl|$pypi/ee/a9/9bba32af266ac0451f4c6170078e4000f5456ce257920c77fe6a7bd13435|c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929"
)
((gpu)) && wheels+=("$gpu_wheel")
((llvm)) && wheels+=("${llvm_wheels[@]}")
# NVRTC 13.0, the CUDA of the 580 drivers: a cubin it makes runs on any CUDA 13 driver.
nvrtc_wheel="nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl|$pypi/c3/68/483a78f5e8f31b08fb1bb671559968c0ca3a065ac7acabfc7cee55214fd6|ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"
((nvrtc)) && wheels+=("$nvrtc_wheel")

mkdir -p "$cache/wheels"
fetch() { # name url sha256 -> $cache/wheels/name, verified
  local name=$1 url=$2 sha=$3 dest=$cache/wheels/$1
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then return; fi
  say "downloading $name"
  curl -fsSL --retry 3 -o "$dest.part" "$url/$name"
  if ! echo "$sha  $dest.part" | sha256sum -c --status; then
    rm -f "$dest.part"
    say "$name: sha256 mismatch (expected $sha); refusing it"
    exit 1
  fi
  mv "$dest.part" "$dest"
}
extract() { # wheel member destination
  local wheel=$cache/wheels/$1 member=$2 dest=$3
  if [ -f "$dest" ] && [ "$dest" -nt "$wheel" ]; then return; fi
  mkdir -p "$(dirname "$dest")"
  unzip -p "$wheel" "$member" > "$dest.part"
  mv "$dest.part" "$dest"
}
# The LLVM SDK where tracel-llvm-bundler (a build dependency of burn's CUDA backend) looks
# for its own: <data dir>/tracel/tracel-llvm-23.1.0-4 with the file .tracel-llvm-installed,
# in which case its build script downloads nothing and only runs bin/llvm-config. The data
# dir is $cache/llvm, which .cargo/config.toml gives cargo's build scripts as XDG_DATA_HOME.
install_llvm_sdk() {
  local data=$cache/llvm dir=$cache/llvm/tracel/tracel-llvm-23.1.0-4 stamp w name
  stamp=$(for w in "${llvm_wheels[@]}"; do echo "${w##*|}"; done)
  if [ -f "$dir/.tracel-llvm-installed" ] && [ "$(cat "$dir/.sd2-wheels" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  say "unpacking the LLVM SDK into $dir"
  rm -rf "$dir" "$dir.part"
  mkdir -p "$dir.part"
  for w in "${llvm_wheels[@]}"; do
    IFS='|' read -r name _ _ <<<"$w"
    unzip -q -o "$cache/wheels/$name" 'mlc_llvm_static/static/*' -d "$dir.part"
  done
  mv "$dir.part/mlc_llvm_static/static" "$dir"
  rm -rf "$dir.part"
  # Zip archives do not keep the exec bit.
  chmod +x "$dir/bin/llvm-config"
  "$dir/bin/llvm-config" --link-static --targets-built | grep -qw NVPTX ||
    { say "$dir: llvm-config lists no NVPTX target"; exit 1; }
  echo "$stamp" >"$dir/.sd2-wheels"
  touch "$dir/.tracel-llvm-installed"
  # .cargo/config.toml names the checkout's cache; a cache moved by SD2_CACHE_DIR is
  # reached through a link there.
  local link=$root/.cache/sd2/llvm
  if [ "$cache" != "$root/.cache/sd2" ]; then
    if [ -d "$link" ] && [ ! -L "$link" ]; then
      say "$link is an SDK of its own; cargo builds against that one"
    else
      mkdir -p "$root/.cache/sd2"
      ln -sfn "$data" "$link"
    fi
  fi
}
for w in "${wheels[@]}"; do
  IFS='|' read -r name url sha <<<"$w"
  fetch "$name" "$url" "$sha"
done

ort=onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
extract "$ort" onnxruntime/capi/libonnxruntime.so.1.31.1 "$cache/onnxruntime/libonnxruntime.so.1.31.1"
extract "$ort" onnxruntime/capi/libonnxruntime_providers_shared.so "$cache/onnxruntime/libonnxruntime_providers_shared.so"
if ((gpu)); then
  g=onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
  for lib in libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    extract "$g" "onnxruntime/capi/$lib" "$cache/onnxruntime-gpu/$lib"
  done
fi
if ((llvm)); then
  install_llvm_sdk
fi
if ((nvrtc)); then
  n=nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl
  for lib in libnvrtc.so.13 libnvrtc-builtins.so.13.0; do
    extract "$n" "nvidia/cu13/lib/$lib" "$cache/nvrtc/$lib"
  done
fi
fn=facenet_pytorch-2.6.0-py3-none-any.whl
for net in pnet rnet onet; do
  extract "$fn" "facenet_pytorch/data/$net.pt" "$cache/facenet/$net.pt"
done
extract open_clip_torch-3.3.0-py3-none-any.whl open_clip/bpe_simple_vocab_16e6.txt.gz "$cache/clip/bpe_simple_vocab_16e6.txt.gz"
extract scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl skimage/data/astronaut.png "$cache/samples/astronaut.png"
extract insightface-2.1-py3-none-any.whl insightface/data/images/t1.jpg "$cache/samples/t1.jpg"

# --- MTCNN to ONNX, by our own converter ------------------------------------------------
mtcnn=$cache/models/mtcnn
stale=0
for net in pnet rnet onet; do
  [ -f "$mtcnn/$net.onnx" ] && [ "$mtcnn/$net.onnx" -nt "$cache/facenet/$net.pt" ] || stale=1
done
if ((stale)); then
  say "converting MTCNN weights to ONNX"
  cargo run --quiet --release --manifest-path "$root/Cargo.toml" -p sd2-models --bin sd2-convert-mtcnn -- "$cache/facenet" "$mtcnn" >&2
fi
# --- the demo detector and the demo video --------------------------------------------------
# The demo detector is committed (scripts/make-demo-model.sh makes it); the demo video is
# made here from the sample faces, with one face swapped by our code.
mkdir -p "$cache/models"
if ! cmp -s "$root/models/assets/sd2-demo.onnx" "$cache/models/sd2-demo.onnx"; then
  cp "$root/models/assets/sd2-demo.onnx" "$cache/models/sd2-demo.onnx"
fi
demo_video=$cache/demo/faces.webm
if [ ! -f "$demo_video" ]; then
  say "making the demo video"
  cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p sd2-examples
  "$root/target/release/sd2-demo-video" "$demo_video" "$cache/samples" >&2
fi
say "ready: $cache"
