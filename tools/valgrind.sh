#!/usr/bin/env bash
# Runs the unsafe-code tests (seglab-metrics: EDT, IO, distances; seglab-nn: kernels) under valgrind memcheck.
# Usage: tools/valgrind.sh   (builds the release test binaries first; a few minutes on 2 cores)
# Exit status 9 on any memcheck error.
set -euo pipefail
cd "$(dirname "$0")/.."
bin() {
  cargo test --release -p "$1" --lib --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])' | tail -1
}
valgrind --error-exitcode=9 --quiet "$(bin seglab-metrics)" edt io:: distance::
valgrind --error-exitcode=9 --quiet "$(bin seglab-nn)" kernels
echo "valgrind memcheck: no errors"
