#!/usr/bin/env python3
"""Benchmark of issue 17: `seglab compare --predictions` on three models against three separate `seglab evaluate`
runs on the same files (same metrics engine, same default options: overlap, distances, lesion-wise).

Workloads (written once under WORK): 100 2D cases of 256x256 (masks from `seglab synth`, probability maps as float32
NPY) and one 256x256x128 volume (NPY), each with three models' probability maps (the truth blurred with noise).
Usage: compare_predictions.py SEGLAB_BIN WORK [REPEATS]   (needs numpy and pillow)
Prints one line per workload: the median wall and CPU time of each, and the ratios (evaluate x3 / compare), each
the median of the rounds' own ratios.
"""
import os
import resource
import subprocess
import sys
import time

import numpy as np
from PIL import Image


def probs(gt, rng, noise):
    p = gt.astype(np.float32) * 0.8 + 0.1 + rng.normal(0, noise, gt.shape).astype(np.float32)
    return np.clip(p, 0, 1).astype(np.float32)


def make_2d(seglab, root):
    if os.path.isdir(os.path.join(root, "masks")):
        return
    subprocess.run([seglab, "synth", root, "--count", "100", "--size", "256", "--seed", "1"], check=True,
                   stdout=subprocess.DEVNULL)
    rng = np.random.default_rng(0)
    for m, noise in zip("abc", (0.1, 0.15, 0.2)):
        os.makedirs(os.path.join(root, m), exist_ok=True)
    for f in sorted(os.listdir(os.path.join(root, "masks"))):
        gt = np.array(Image.open(os.path.join(root, "masks", f))) > 0
        for m, noise in zip("abc", (0.1, 0.15, 0.2)):
            np.save(os.path.join(root, m, f[:-4] + ".npy"), probs(gt, rng, noise))


def make_3d(root):
    if os.path.isdir(os.path.join(root, "gt")):
        return
    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[0:128, 0:256, 0:256]
    gt = ((z - 64) ** 2 / 30 ** 2 + (y - 120) ** 2 / 50 ** 2 + (x - 130) ** 2 / 40 ** 2 <= 1) | \
         ((z - 40) ** 2 + (y - 200) ** 2 + (x - 60) ** 2 <= 12 ** 2)
    gt = gt.transpose(2, 1, 0)  # 256x256x128
    for d in ("gt", "a", "b", "c"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    np.save(os.path.join(root, "gt", "vol.npy"), gt.astype(np.uint8))
    for m, noise in zip("abc", (0.1, 0.15, 0.2)):
        np.save(os.path.join(root, m, "vol.npy"), probs(gt, rng, noise))


def timed(cmd):
    """Wall and CPU seconds (user + system, all threads) of one run of `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench(seglab, root, gt, repeats):
    """Rounds of one compare then the three evaluates, back to back: the ratio is taken per round (the machine's speed
    drifts over minutes, and both sides of a round see the same drift), and its median reported."""
    out = os.path.join(root, "out")
    compare = [seglab, "compare", "--gt", gt, "--out", out + "-cmp"]
    for m in "abc":
        compare += ["--predictions", f"{m}={os.path.join(root, m)}"]
    evals = [[seglab, "evaluate", "--pred", os.path.join(root, m), "--gt", gt, "--out", f"{out}-{m}.json"]
             for m in "abc"]
    rounds = []
    for _ in range(repeats):
        cw, cc = timed(compare)
        ew, ec = map(sum, zip(*(timed(c) for c in evals)))
        rounds.append((cw, ew, cc, ec))
    cw, ew, cc, ec = (float(np.median(x)) for x in zip(*rounds))
    wall = [r[1] / r[0] for r in rounds]
    cpu = [r[3] / r[2] for r in rounds]
    return cw, ew, (float(np.median(wall)), min(wall), max(wall)), cc, ec, (float(np.median(cpu)), min(cpu), max(cpu))


def main():
    seglab, work = sys.argv[1], sys.argv[2]
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    d2, d3 = os.path.join(work, "cases2d"), os.path.join(work, "vol3d")
    make_2d(seglab, d2)
    make_3d(d3)
    for name, root, gt in (("100 x 256x256", d2, os.path.join(d2, "masks")), ("256x256x128", d3, os.path.join(d3, "gt"))):
        cw, ew, wall_ratio, cc, ec, cpu_ratio = bench(seglab, root, gt, repeats)
        print(f"{name}: compare --predictions (3 models) {cw:.2f} s; 3 x evaluate {ew:.2f} s; "
              f"ratio {wall_ratio[0]:.2f}x (median of {repeats} rounds' ratios, {wall_ratio[1]:.2f}-{wall_ratio[2]:.2f}); "
              f"CPU {cc:.2f} s vs {ec:.2f} s, ratio {cpu_ratio[0]:.2f}x ({cpu_ratio[1]:.2f}-{cpu_ratio[2]:.2f})")


if __name__ == "__main__":
    main()
