"""Shared fixtures: the golden cases of the Rust tests and the `seglab` CLI binary (for bit-identical parity)."""
import os
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates" / "seglab-metrics" / "tests" / "data"


def golden_cases():
    cases = []
    for d in ("metric_cases", "distance_cases"):
        for p in sorted((GOLDEN / d).iterdir()):
            if (p / "expected.json").is_file() and (p / "gt.npy").is_file():
                cases.append(p)
    assert len(cases) >= 20, f"golden cases missing under {GOLDEN}"
    return cases


@pytest.fixture(scope="session")
def seglab_bin():
    """The CLI the Python results must equal: $SEGLAB_BIN, else the workspace's release build. Missing is a failure,
    not a skip (build it with `cargo build --release`)."""
    candidates = [os.environ.get("SEGLAB_BIN"), os.environ.get("CARGO_TARGET_DIR") and
                  os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "seglab"),
                  str(ROOT / "target" / "release" / "seglab"), shutil.which("seglab")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    pytest.fail("no seglab binary: set SEGLAB_BIN or run `cargo build --release` first")
