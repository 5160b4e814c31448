#!/usr/bin/env python3
"""Reference values of panoptic instance matching from the PyPI package `panoptica`, for seglab's parity tests.

Writes generated cases (2D and 3D masks with splits, merges, partial overlaps, anisotropic spacing and empty masks)
to crates/seglab-metrics/tests/data/panoptica/<case>/{pred.npy, gt.npy, expected.json}. Each expected.json holds,
per run (connectivity and matching threshold), panoptica's counts and qualities.

Pinned environment (what produced the committed files):
    python3 -m venv venv && venv/bin/pip install panoptica==2.1.7 numpy==2.2.6 connected-components-3d==3.29.0 scipy==1.17.1
    venv/bin/python tools/panoptica_reference.py
Seeds are fixed: a rerun writes the same files.
"""
import json
import math
import os
import sys
from importlib.metadata import version

import numpy as np
from panoptica import (ConnectedComponentsInstanceApproximator, InputType, NaiveThresholdMatching,
                       Panoptica_Evaluator)
from panoptica.metrics import Metric
from panoptica.utils.constants import CCABackend

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "seglab-metrics", "tests", "data",
                   "panoptica")


def blob(shape, centre, radii, rng, rough=0.0):
    rough = rough * 0.15
    """An ellipsoid (or ellipse), its edge roughened by noise so IoUs are not round numbers."""
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r = sum(((g - c) / rr) ** 2 for g, c, rr in zip(grids, centre, radii))
    noise = rng.uniform(-rough, rough, size=shape) if rough else 0.0
    return r + noise <= 1.0


def cases():
    rng = np.random.default_rng(20261204)
    out = []

    # 2D: one exact match, one split in two, two merged by one prediction, a partial overlap, a miss, a stray.
    s = (96, 96)
    gt = np.zeros(s, bool)
    pred = np.zeros(s, bool)
    gt |= blob(s, (15, 15), (8, 10), rng, 0.3)
    pred |= blob(s, (16, 15), (8, 10), rng, 0.3)
    g2 = blob(s, (15, 60), (9, 14), rng, 0.2)
    gt |= g2
    p2 = g2.copy()
    p2[:, 58:61] = False  # split into two halves
    pred |= p2
    gt |= blob(s, (50, 20), (6, 6), rng, 0.2)
    gt |= blob(s, (50, 36), (6, 6), rng, 0.2)
    pred |= blob(s, (50, 28), (8, 16), rng, 0.2)  # covers both
    gt |= blob(s, (78, 70), (10, 10), rng, 0.3)
    pred |= blob(s, (82, 74), (10, 10), rng, 0.3)  # partial
    gt |= blob(s, (80, 15), (5, 5), rng)  # missed
    pred |= blob(s, (45, 80), (3, 4), rng)  # stray
    # Diagonal neighbours: one instance with 8-connectivity, two with 4.
    gt[60, 60] = gt[61, 61] = True
    pred[60, 60] = pred[61, 61] = True
    out.append(("mixed_2d", gt, pred, (0.7, 1.3)))

    # 3D, anisotropic: matches, a split, a partial, a miss and a stray.
    s = (40, 48, 32)
    gt = np.zeros(s, bool)
    pred = np.zeros(s, bool)
    gt |= blob(s, (10, 12, 10), (6, 7, 5), rng, 0.3)
    pred |= blob(s, (11, 12, 10), (6, 7, 5), rng, 0.3)
    g = blob(s, (28, 30, 16), (8, 10, 6), rng, 0.2)
    gt |= g
    p = g.copy()
    p[:, 29:31, :] = False
    pred |= p
    gt |= blob(s, (10, 36, 24), (5, 6, 5), rng, 0.2)
    pred |= blob(s, (12, 39, 25), (5, 6, 5), rng, 0.2)
    gt |= blob(s, (32, 8, 26), (4, 4, 3), rng)
    pred |= blob(s, (20, 40, 4), (3, 3, 2), rng)
    out.append(("mixed_3d", gt, pred, (0.8, 0.8, 2.5)))

    # Many small touching-ish instances in 3D, with a lower threshold making greedy choices matter.
    s = (24, 40, 40)
    gt = np.zeros(s, bool)
    pred = np.zeros(s, bool)
    for i in range(4):
        for j in range(4):
            c = (12, 5 + 10 * i, 5 + 10 * j)
            gt |= blob(s, c, (5, 3.5, 3.5), rng, 0.4)
            shift = (rng.integers(-2, 3), rng.integers(-2, 3), rng.integers(-2, 3))
            pred |= blob(s, tuple(a + b for a, b in zip(c, shift)), (5, 3.8, 3.8), rng, 0.4)
    out.append(("grid_3d", gt, pred, (1.0, 1.0, 1.0)))

    e2 = np.zeros((32, 32), bool)
    f2 = e2.copy()
    f2[4:10, 5:12] = True
    f2[20:25, 20:30] = True
    out.append(("both_empty_2d", e2, e2, (1.0, 1.0)))
    out.append(("pred_empty_2d", f2, e2, (1.0, 1.0)))
    out.append(("gt_empty_2d", e2, f2, (1.0, 1.0)))
    no_match = np.zeros((32, 32), bool)
    no_match[12:16, 0:4] = True
    out.append(("no_match_2d", f2, no_match, (1.0, 1.0)))
    return out


def number(x):
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def run(gt, pred, spacing, backend, threshold, metrics=(Metric.DSC, Metric.IOU, Metric.HD95, Metric.ASSD)):
    ev = Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(cca_backend=backend),
        instance_matcher=NaiveThresholdMatching(matching_threshold=threshold),
        instance_metrics=list(metrics),
        global_metrics=[Metric.DSC],
        verbose=False,
        log_times=False,
    )
    try:
        res = ev.evaluate(pred.astype(np.uint8), gt.astype(np.uint8), voxelspacing=spacing)["ungrouped"]
    except NotImplementedError as e:
        # panoptica defines no zero-TP value for HD95 and raises: the run is repeated without it.
        if Metric.HD95 not in metrics:
            raise
        values, keys = run(gt, pred, spacing, backend, threshold, (Metric.DSC, Metric.IOU, Metric.ASSD))
        values["sq_hd95"] = "undefined: " + str(e)
        return values, keys
    d = res.to_dict()
    keys = ["num_ref_instances", "num_pred_instances", "tp", "fp", "fn", "rq", "sq", "pq", "sq_dsc", "pq_dsc",
            "sq_hd95", "sq_assd"]
    return {k: number(d[k]) for k in keys if k in d}, sorted(d.keys())


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, gt, pred, spacing in cases():
        runs = []
        # cc3d: 26 in 3D, 8 in 2D; scipy (panoptica's 2D default): 4 in 2D.
        backends = [("cc3d", 26 if gt.ndim == 3 else 8)]
        if gt.ndim == 2:
            backends.append(("scipy", 4))
        for backend, conn in backends:
            for threshold in (0.5, 0.3):
                values, keys = run(gt, pred, spacing, CCABackend[backend], threshold)
                runs.append({"cca_backend": backend, "connectivity": conn, "matching_threshold": threshold,
                             "values": values})
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "gt.npy"), gt.astype(np.uint8))
        np.save(os.path.join(d, "pred.npy"), pred.astype(np.uint8))
        expected = {
            "case": name,
            "shape": list(gt.shape),
            "spacing": list(spacing),
            "generator": "tools/panoptica_reference.py",
            "versions": {p: version(p) for p in ["panoptica", "numpy", "scipy", "connected-components-3d"]},
            "python": sys.version.split()[0],
            "call": "Panoptica_Evaluator(expected_input=SEMANTIC, ConnectedComponentsInstanceApproximator(cca_backend),"
                    " NaiveThresholdMatching(matching_threshold), instance_metrics=[DSC, IOU, HD95, ASSD])"
                    ".evaluate(pred, gt, voxelspacing=spacing)['ungrouped'].to_dict()",
            "runs": runs,
        }
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        print(name, [(r["connectivity"], r["matching_threshold"], r["values"].get("tp"), r["values"].get("pq"))
                     for r in runs])


if __name__ == "__main__":
    main()
