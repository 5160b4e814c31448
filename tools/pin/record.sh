#!/usr/bin/env bash
# Records the outputs a restructuring must not change, with the binaries in BIN_DIR (target/release of one build),
# into OUT. Record before and after on the same machine, then `tools/pin/diff.py BEFORE AFTER`.
# Usage: tools/pin/record.sh BIN_DIR OUT [--no-compare]
# Takes about 2 minutes (1 without the quick compare) on 2 cores; the bench workloads are generated into OUT/wl_*.
set -euo pipefail
BIN=$(cd "$1" && pwd); OUT=$2; COMPARE=${3:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S="$BIN/seglab"
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
CASES="$ROOT/crates/seglab-metrics/tests/data"
OPTS=(--hd95-convention medpy --assd-convention mean-of-directed --nsd-convention voxel
      --nsd-tolerance 2 --sweep --empty-policy worst)
for dir in "$CASES"/metric_cases/*/ "$CASES"/distance_cases/*/; do
  name=$(basename "$dir")
  for gt in "$dir"gt.*; do
    ext=${gt#"$dir"gt}
    pred="${dir}pred$ext"; [ -f "$pred" ] || continue
    "$S" evaluate --pred "$pred" --gt "$gt" --out "$OUT/eval_${name}${ext}.json" 2>"$OUT/eval_${name}${ext}.err" || true
    # 8-connectivity in 2D, 26 in 3D (the other the CLI rejects)
    "$S" evaluate --pred "$pred" --gt "$gt" "${OPTS[@]}" --connectivity 8 --out "$OUT/eval_${name}${ext}_opts.json" \
      2>/dev/null || "$S" evaluate --pred "$pred" --gt "$gt" "${OPTS[@]}" --connectivity 26 \
      --out "$OUT/eval_${name}${ext}_opts.json" 2>"$OUT/eval_${name}${ext}_opts.err" || true
  done
done
for w in a b c; do
  "$BIN/bench-evaluate" --workload $w --no-peers --seglab-runs 1 --dir "$OUT/wl_$w" >/dev/null 2>&1
  "$S" evaluate --pred "$OUT/wl_$w/pred" --gt "$OUT/wl_$w/gt" --out "$OUT/bench_$w.json" 2>"$OUT/bench_$w.err"
done
LC="$ROOT/crates/seglab-nn/tests/data/loss_cases"
for c in "$LC"/*/; do
  n=$(basename "$c")
  for l in "tversky --threshold-mode ste" "tversky --threshold-mode power" "dice --threshold-mode soft" \
           "dice+bce --weights 1,0.5" "focal-tversky" "lovasz-hinge" "focal"; do
    tag=$(echo "$l" | tr ' +,' '___')
    # shellcheck disable=SC2086
    "$S" loss --pred "$c/pred.npy" --target "$c/target.npy" --loss $l --format json >"$OUT/loss_${n}_$tag.json" \
      2>"$OUT/loss_${n}_$tag.err" || true
  done
done
for c in evaluate loss gradcheck train predict compare synth; do "$S" $c --help >"$OUT/help_$c.txt"; done
"$S" gradcheck --shape 2x1x32x32 --seed 0 --format json >"$OUT/gradcheck.json"
TINY=(--size 32 --phantom-count 24 --batch-size 4 --base-width 4 --depth 2 --seed 3 --quiet)
rm -rf "$OUT/run"
"$S" train --out "$OUT/run" --epochs 2 "${TINY[@]}"
cp "$OUT/run/metrics.jsonl" "$OUT/train_2.jsonl"
"$S" train --out "$OUT/run" --epochs 3 --resume "${TINY[@]}"
rm -rf "$OUT/synth" "$OUT/pred"
"$S" synth "$OUT/synth" --count 4 --size 32 --seed 7 >/dev/null
"$S" predict --model "$OUT/run" --input "$OUT/synth/images" --out "$OUT/pred" --save-probabilities
if [ "$COMPARE" != "--no-compare" ]; then
  rm -rf "$OUT/compare"
  "$S" compare --out "$OUT/compare" >/dev/null 2>&1
fi
echo "recorded into $OUT"
