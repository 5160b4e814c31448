#!/usr/bin/env python3
"""Benchmark of issue 19: what `--lesion-wise brats2023` and `--instances` add to `seglab evaluate`.

The workloads are bench-evaluate's (a: 100 2D 256x256 PNG pairs, b: 256x256x128 NIfTI at 0.8,0.8,3.0 mm,
c: 512x512x256 NIfTI with a large lesion), generated once with
    target/release/bench-evaluate --workload X --no-peers --seglab-runs 1 --dir WORK/X
Usage: lesionwise_overhead.py SEGLAB_BIN WORK/X [REPEATS]   (standard library only)
The variants run interleaved (plain, brats, instances, both, plain, ...) so that a slow spell of the shared machine
falls on all of them; each gets one untimed warm-up run. Prints the median wall time of each variant and its ratio to
plain `evaluate` (the same default metrics in every variant: overlap, distances, lesion detection).
"""
import os
import statistics
import subprocess
import sys
import time

VARIANTS = [
    ("plain", []),
    ("lesion-wise brats2023 (gli)", ["--lesion-wise", "brats2023", "--brats-challenge", "gli"]),
    ("instances", ["--instances"]),
    ("both", ["--lesion-wise", "brats2023", "--brats-challenge", "gli", "--instances"]),
]


def main():
    seglab, work = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    out = os.path.join(work, "lesionwise_bench.json")
    # bench-evaluate writes the 3D workloads' spacing into the NIfTI headers; the 2D PNGs have none.
    base = [seglab, "evaluate", "--pred", os.path.join(work, "pred"), "--gt", os.path.join(work, "gt"), "--out", out]
    times = {name: [] for name, _ in VARIANTS}
    for r in range(repeats + 1):
        for name, extra in VARIANTS:
            t = time.perf_counter()
            subprocess.run(base + extra, check=True, stdout=subprocess.DEVNULL)
            if r > 0:
                times[name].append(time.perf_counter() - t)
    plain = statistics.median(times["plain"])
    for name, _ in VARIANTS:
        m = statistics.median(times[name])
        print(f"{os.path.basename(work.rstrip('/'))}  {name:30s} median {m * 1000:9.1f} ms  "
              f"(min {min(times[name]) * 1000:.1f}, max {max(times[name]) * 1000:.1f})  x{m / plain:.2f}")


if __name__ == "__main__":
    main()
