#!/usr/bin/env bash
# Fuzz campaigns of issue 22 (not part of CI: CI replays the committed inputs in crates/seglab-metrics/tests/
# fuzz_regressions.rs). Needs `cargo install cargo-fuzz`; runs on the stable toolchain without a sanitizer
# (`-s none`: AddressSanitizer needs nightly; memory errors are checked by tools/valgrind.sh), so a crash is a panic,
# an abort, a timeout or an allocation over the limit.
# Usage: tools/fuzz.sh [SECONDS per target, default 600] [TARGET ...]  (two targets at a time on 2 cores)
# New crash inputs land in fuzz/artifacts/<target>/; copy them to crates/seglab-metrics/tests/data/fuzz/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
targets=("${@:-read_png read_nifti read_nifti_gz read_npy evaluate_pair load_folder}")
targets=(${targets[@]})
cargo fuzz build -s none -O "${targets[@]/#/}" 2>/dev/null || for t in "${targets[@]}"; do cargo fuzz build -s none -O "$t"; done
run() {
  local t="$1"
  # New inputs go to fuzz/work/<target> (not committed); the committed seeds in fuzz/corpus/<target> are read only.
  mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
  # -malloc_limit_mb: no single allocation over 512 MiB (a header that claims 10^12 voxels must be refused first);
  # -timeout: 10 s per input; inputs up to 64 KiB.
  cargo fuzz run -s none -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 -timeout=10 \
    -malloc_limit_mb=512 -rss_limit_mb=2048 -print_final_stats=1 > "artifacts/$t.log" 2>&1 \
    && echo "$t: done, $(grep -c . "artifacts/$t.log") log lines" || echo "$t: CRASH (see fuzz/artifacts/$t.log)"
}
i=0
for t in "${targets[@]}"; do
  run "$t" &
  i=$((i + 1))
  if [ $((i % 2)) -eq 0 ]; then wait; fi
done
wait
