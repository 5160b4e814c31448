#!/usr/bin/env bash
# Issue 20's check on a real GPU, as one short run (the device machine has no network and no Rust toolchain: the
# binaries travel with the command, built here by `tools/gpu_bundle.sh` into target/gpu-bundle/).
#   bash bench/gpu_check.sh [BUNDLE=target/gpu-bundle] [OUT_FILE=$OUT/gpu_check.txt]   (SEGLAB_GPU_DEVICE: cuda)
# Writes, with times: the GPU, the U-Net training step (forward, backward, AdamW) at 8x1x128x128 and 16x3x256x256 on
# the GPU and on the machine's CPU, a 30-epoch training on 200 generated 256x256 phantoms, and `seglab compare` on
# the same data (bench/gpu_compare.toml). The same step on the 2 cores of the development machine is in
# BENCHMARKS.md ("U-Net training step"), for the issue's 20x goal.
set -uo pipefail
bundle=${1:-target/gpu-bundle}
out=${2:-${OUT:-.}/gpu_check.txt}
device=${SEGLAB_GPU_DEVICE:-cuda}
work=$(mktemp -d)
mkdir -p "$(dirname "$out")"
: > "$out"
log() { echo "$*" | tee -a "$out"; }
# Runs a command, appends its output and wall time to the report; a failure is recorded, and the check goes on.
timed() {
  local what=$1; shift
  local s e rc
  s=$(date +%s.%N)
  "$@" >> "$out" 2>&1
  rc=$?
  e=$(date +%s.%N)
  log "TIME $what $(echo "$e - $s" | bc) s (exit $rc)"
}
log "gpu_check $(date -u +%FT%TZ) device=$device bundle=$bundle"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$out" 2>&1 || log "nvidia-smi: not found"
log "cpu: $(nproc) cores"
for shape in 8x1x128x128 16x3x256x256; do
  timed "step $device $shape" env SEGLAB_STEP_DEVICE="$device" SEGLAB_STEP_BATCH="$shape" "$bundle/unet_step" 3 20
  timed "step cpu $shape" env SEGLAB_STEP_DEVICE=cpu SEGLAB_STEP_BATCH="$shape" "$bundle/unet_step" 2 5
done
timed "synth 200 x 256" "$bundle/seglab" synth "$work/data" --count 200 --size 256 --seed 0
timed "train 30 epochs $device" "$bundle/seglab" train --data "$work/data" --device "$device" --size 256 \
  --epochs 30 --out "$work/train"
tail -n 3 "$work/train/metrics.csv" >> "$out" 2>/dev/null
timed "compare $device" "$bundle/seglab" compare --data "$work/data" --device "$device" \
  --config bench/gpu_compare.toml --out "$work/compare" --quiet
cp "$work/compare/summary.json" "$(dirname "$out")/gpu_compare_summary.json" 2>/dev/null
log "done; summary of compare: $(dirname "$out")/gpu_compare_summary.json"
rm -rf "$work"
