#!/usr/bin/env bash
# Every test of the project: the Rust workspace (cargo test --release --workspace), then the Python package built
# from this checkout into a fresh virtual environment (pip install . : maturin compiles crates/seglab-py, which
# depends on seglab-metrics only) and its pytest suite, which checks its values against the CLI built just before.
# Needs cargo and python3 (>= 3.10, with venv); pip fetches maturin, numpy, pytest and dask.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${SEGLAB_TEST_VENV:-$target/py-test-venv}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q numpy pytest "dask[distributed]"
# The extension is built into the same target folder as the workspace (its dependencies compile once per machine).
CARGO_TARGET_DIR="$target" "$venv/bin/pip" install -q .
# pytest exits with 5 when it collects no test: that fails here too.
SEGLAB_BIN="$target/release/seglab" "$venv/bin/pytest" -q python/tests
