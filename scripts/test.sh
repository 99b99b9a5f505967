#!/usr/bin/env bash
# Runs every test, after installing what they need (scripts/setup.sh, with NVRTC: a test
# compiles SD²'s CUDA kernels to PTX). Also checks formatting and lints, as CI does.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh" --nvrtc
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo fmt --all -- --check
cargo clippy --quiet --release --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
