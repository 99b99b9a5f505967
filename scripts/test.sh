#!/usr/bin/env bash
# Runs every test, after installing what they need (scripts/setup.sh, with NVRTC: a test
# compiles SD²'s CUDA kernels to PTX). Also checks formatting and lints, as CI does.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# --llvm: the LLVM SDK that the CUDA step below builds against; --nvrtc: a test compiles
# SD²'s CUDA kernels to PTX.
"$root/scripts/setup.sh" --llvm --nvrtc
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo fmt --all -- --check
cargo clippy --quiet --release --workspace --all-targets -- -D warnings
# The trainer and the benchmark with burn's CUDA backend keep compiling and lint-clean
# (tests/cuda.rs among their targets), with no GPU needed; in a target folder of its own,
# as scripts/gpu/pack.sh --train builds them. About 5 minutes from nothing on 2 cores; a
# full build with the LLVM link is 20 more.
CARGO_TARGET_DIR=$root/target/cuda cargo clippy --quiet --release -p sd2-train -p sd2-bench \
  --features cuda --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
