#!/usr/bin/env python3
"""Issue 18's speed benchmark: the seglab Python package against MedPy, DeepMind surface-distance, MONAI and mikan-rs,
in one Python process, on the same numpy arrays (no file IO on either side).

Work per case: seglab `evaluate` (dice + hd95 + assd + nsd, and everything else it always computes: IoU, precision,
recall, lesion-wise counts), once with its default conventions and once with DeepMind's (the same numbers as DeepMind's
surface-distance, checked on each workload); MedPy dc + hd95 + assd (no NSD in MedPy); DeepMind one compute_surface_distances, then
robust_hausdorff(95), average_surface_distance, surface_dice_at_tolerance(1 mm) and a volumetric Dice; MONAI DiceMetric,
HausdorffDistanceMetric(95), SurfaceDistanceMetric(symmetric), SurfaceDiceMetric([1]); mikan-rs dice + hd95 + assd
(3D only: it fails on 2D arrays). Workloads:
  a: 100 2D 256x256 pairs with several lesions;  b: 256x256x128 at 0.8,0.8,3.0 mm, a few small lesions;
  c: 256x256x128, one large lesion (Dice about 0.7, HD95 about 60 mm);  d: 512x512x256, one large lesion.
Usage: python bench/python_metrics.py [--runs 3] [--only a,b] [--threads N]   (peers from shared/bench/setup_peers.sh)
Prints a markdown table: median seconds per workload and library, and seglab's speed-up over each.
"""
import argparse
import statistics
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
for name, val in (("Inf", np.inf), ("NaN", np.nan)):  # surface-distance 0.1 uses NumPy 1 aliases
    if name not in np.__dict__:
        setattr(np, name, val)


# seglab's options that compute DeepMind surface-distance's metrics (HD95, mean of the directed ASDs, NSD).
DEEPMIND = dict(hd95_convention="deepmind", assd_convention="mean-of-directed", nsd_convention="deepmind")


def ellipsoid(shape, center, radii):
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) <= 1.0


def workload(name, rng):
    if name == "a":
        cases = []
        for _ in range(100):
            gt = np.zeros((256, 256), bool)
            for _ in range(4):
                gt |= ellipsoid(gt.shape, rng.integers(30, 226, 2), rng.integers(6, 20, 2))
            pred = np.roll(gt, (rng.integers(-3, 4), rng.integers(-3, 4)), (0, 1))
            pred |= ellipsoid(gt.shape, rng.integers(30, 226, 2), (5, 5))
            cases.append((pred, gt, (1.0, 1.0)))
        return cases
    if name == "b":
        shape, sp = (256, 256, 128), (0.8, 0.8, 3.0)
        gt = np.zeros(shape, bool)
        for _ in range(5):
            gt |= ellipsoid(shape, rng.integers(40, 216, 3) * np.array([1, 1, 0.5]), (6, 6, 3))
        pred = np.roll(gt, 2, 0) | ellipsoid(shape, (60, 190, 30), (4, 4, 2))
        return [(pred, gt, sp)]
    if name in ("c", "d"):
        shape = (256, 256, 128) if name == "c" else (512, 512, 256)
        sp = (0.8, 0.8, 3.0) if name == "c" else (0.5, 0.5, 1.5)
        k = np.array(shape) / np.array([256, 256, 128])
        gt = ellipsoid(shape, np.array([128, 128, 64]) * k, np.array([60, 50, 25]) * k)
        pred = ellipsoid(shape, np.array([150, 140, 64]) * k, np.array([70, 45, 30]) * k)
        return [(pred, gt, sp)]
    raise SystemExit(f"unknown workload {name}")


def libraries():
    import seglab

    libs = {"seglab": lambda p, g, sp: seglab.evaluate(p, g, spacing=sp),
            # The same work as DeepMind's surface-distance: its HD95, its mean of the two directed ASDs and its NSD, one
            # surface model (surfels) where the default conventions compute two (voxels for MONAI's HD95, surfels for
            # the NSD). Checked against DeepMind's values below.
            "seglab (DeepMind's conventions)": lambda p, g, sp: seglab.evaluate(p, g, spacing=sp, **DEEPMIND)}
    try:
        from medpy.metric import binary as B
        libs["MedPy"] = lambda p, g, sp: (B.dc(p, g), B.hd95(p, g, voxelspacing=sp), B.assd(p, g, voxelspacing=sp))
    except ImportError as e:
        print(f"MedPy missing: {e}", file=sys.stderr)
    try:
        import surface_distance as SD

        def deepmind(p, g, sp):
            d = SD.compute_surface_distances(g, p, sp)
            return (SD.compute_robust_hausdorff(d, 95), SD.compute_average_surface_distance(d),
                    SD.compute_surface_dice_at_tolerance(d, 1.0), SD.compute_dice_coefficient(g, p))
        libs["DeepMind"] = deepmind
    except ImportError as e:
        print(f"surface-distance missing: {e}", file=sys.stderr)
    try:
        import torch
        from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric, SurfaceDistanceMetric

        def monai(p, g, sp):
            yp = torch.from_numpy(p[None, None].astype(np.float32))
            y = torch.from_numpy(g[None, None].astype(np.float32))
            out = []
            for m, kw in ((DiceMetric(include_background=True), {}),
                          (HausdorffDistanceMetric(include_background=True, percentile=95), {"spacing": list(sp)}),
                          (SurfaceDistanceMetric(include_background=True, symmetric=True), {"spacing": list(sp)}),
                          (SurfaceDiceMetric([1.0], include_background=True), {"spacing": list(sp)})):
                m(y_pred=yp, y=y, **kw)
                out.append(float(m.aggregate()))
            return out
        libs["MONAI"] = monai
    except ImportError as e:
        print(f"MONAI missing: {e}", file=sys.stderr)
    try:
        import mikan

        def mikan_all(p, g, sp):
            if p.ndim != 3:
                raise ValueError("mikan-rs takes 3D arrays only")
            a, b = (np.ascontiguousarray(x.astype(np.uint8)) for x in (g, p))
            return mikan.ArrayEvaluator(a, b, tuple(sp[::-1])).labels(1).metrics(["dice", "hd95", "assd"])
        libs["mikan-rs"] = mikan_all
    except ImportError as e:
        print(f"mikan-rs missing: {e}", file=sys.stderr)
    return libs


def check_deepmind_parity(cases):
    """seglab with DeepMind's conventions gives DeepMind's numbers (so the two columns time the same work)."""
    import seglab
    import surface_distance as SD
    for p, g, sp in cases[:5]:
        m = seglab.evaluate(p, g, spacing=sp, **DEEPMIND)
        d = SD.compute_surface_distances(g, p, sp)
        want = (SD.compute_robust_hausdorff(d, 95), float(np.mean(SD.compute_average_surface_distance(d))),
                SD.compute_surface_dice_at_tolerance(d, 1.0))
        got = (m["hd95"], m["assd"], m["nsd"])
        if any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(got, want)):
            raise SystemExit(f"seglab with DeepMind's conventions {got} differs from DeepMind {want}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="a,b,c,d")
    a = ap.parse_args()
    libs = libraries()
    rng = np.random.default_rng(0)
    rows = []
    for w in a.only.split(","):
        cases = workload(w, rng)
        if "DeepMind" in libs:
            check_deepmind_parity(cases)
        times = {}
        for name, fn in libs.items():
            ts = []
            for _ in range(a.runs if w != "d" or name == "seglab" else 1):
                t0 = time.perf_counter()
                try:
                    for p, g, sp in cases:
                        fn(p, g, sp)
                except BaseException as e:  # mikan-rs panics raise PanicException, a BaseException
                    ts = None
                    times[name] = f"error: {type(e).__name__}"
                    break
                ts.append(time.perf_counter() - t0)
            if ts:
                times[name] = statistics.median(ts)
            print(w, name, times[name], file=sys.stderr, flush=True)
        rows.append((w, times))
    names = list(libs)
    print("| workload | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for w, times in rows:
        s = times["seglab"]
        cells = []
        for n in names:
            t = times.get(n)
            if isinstance(t, str):
                cells.append(t)
            elif n.startswith("seglab"):
                cells.append(f"{t:.3f} s")
            else:
                cells.append(f"{t:.3f} s ({t / s:.1f}x)")
        print(f"| {w} | " + " | ".join(cells) + " |")
    dm = "seglab (DeepMind's conventions)"
    if "DeepMind" in names:
        print(f"\nDeepMind / {dm}: " + ", ".join(
            f"{w} {times['DeepMind'] / times[dm]:.1f}x" for w, times in rows
            if isinstance(times.get("DeepMind"), float)))


if __name__ == "__main__":
    main()
