#!/usr/bin/env bash
# What `--distance-mode mesh` costs over the default voxel distances on one workload (issue 21): the whole
# `seglab evaluate` command, the two modes interleaved, median of N runs each.
# Usage: tools/bench/distance_mode_overhead.sh SEGLAB_BIN PRED GT [N]
set -euo pipefail
bin=$1 pred=$2 gt=$3 n=${4:-7}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for _ in $(seq "$n"); do
  for mode in voxel mesh; do
    s=$(date +%s.%N)
    "$bin" evaluate --pred "$pred" --gt "$gt" --distance-mode "$mode" --out "$out/$mode.json" >/dev/null
    e=$(date +%s.%N)
    echo "$mode $(echo "$e - $s" | bc)"
  done
done | sort -k1,1 -k2n | awk '{t[$1] = t[$1] " " $2; c[$1]++}
  END {for (m in t) {split(t[m], v, " "); med[m] = v[int((c[m] + 1) / 2)]}
       printf "voxel %.4f s, mesh %.4f s, ratio %.1fx\n", med["voxel"], med["mesh"], med["mesh"] / med["voxel"]}'
