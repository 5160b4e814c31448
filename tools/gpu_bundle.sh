#!/usr/bin/env bash
# Builds what bench/gpu_check.sh carries to a GPU machine: `seglab` and the U-Net step benchmark with the CUDA
# backend (FEATURE=wgpu for the wgpu one), stripped, into target/gpu-bundle/ (the device tool carries at most 64 MiB).
#   tools/gpu_bundle.sh            then, on the device: bash bench/gpu_check.sh target/gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
feature=${FEATURE:-cuda}
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p seglab --features "$feature"
cargo bench -p seglab-nn --features "$feature" --bench unet_step --no-run
mkdir -p target/gpu-bundle
cp "$target/release/seglab" target/gpu-bundle/seglab
step=$(ls -t "$target"/release/deps/unet_step-* | grep -v '\.d$' | head -1)
cp "$step" target/gpu-bundle/unet_step
strip target/gpu-bundle/seglab target/gpu-bundle/unet_step
du -sh target/gpu-bundle
