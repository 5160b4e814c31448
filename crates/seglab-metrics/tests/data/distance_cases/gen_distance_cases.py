"""Extra surface-distance reference cases with anisotropic spacing (the shared golden set has non-trivial
masks only at unit spacing). Run with the peers' Python (shared/bench/setup_peers.sh):

    PYTHONPATH=<shared>/golden /work/peers/bin/python gen_distance_cases.py

It reuses the shared generator's mask helpers and library calls (`gen_metric_cases.process`), so expected.json has
the same layout as tests/data/metric_cases. Seeds are fixed. Tests read only the files written here.
"""
import os

import numpy as np

import gen_metric_cases as G

HERE = os.path.dirname(os.path.abspath(__file__))


def cases():
    c = {}
    rng = np.random.default_rng(1101)
    gt = G.blobs(rng, (40, 36, 18), 2.5, 0.12)
    c["aniso_blobs_3d_08_08_30"] = dict(gt=gt, pred=G.perturb_blobs(rng, gt, 2.0, 0.35), spacing=(0.8, 0.8, 3.0),
                                       desc="gaussian blobs, spacing (0.8, 0.8, 3.0); pred = perturbed gt")
    rng = np.random.default_rng(1102)
    shape = (44, 40, 22)
    les = G.place_lesions(rng, shape, 3, (3, 3, 2), (8, 7, 5), margin=2)
    gt = np.zeros(shape, bool)
    for cc, r in les:
        gt |= G.ellipsoid(shape, cc, r)
    c["aniso_lesions_3d_07_11_25"] = dict(gt=gt, pred=G.lesion_pred(rng, shape, les, miss_idx=(2,), fp=1),
                                         spacing=(0.7, 1.1, 2.5),
                                         desc="3 ellipsoids (one missed) + 1 false positive, spacing (0.7, 1.1, 2.5)")
    rng = np.random.default_rng(1103)
    gt = G.blobs(rng, (30, 26, 12), 2.0, 0.45)
    c["aniso_border_3d_12_05_20"] = dict(gt=gt, pred=G.perturb_blobs(rng, gt, 1.5, 0.5), spacing=(1.2, 0.5, 2.0),
                                        desc="large blobs touching the image border, spacing (1.2, 0.5, 2.0)")
    rng = np.random.default_rng(1104)
    gt = G.blobs(rng, (80, 64), 3.0, 0.2)
    c["aniso_blobs_2d_06_14"] = dict(gt=gt, pred=G.perturb_blobs(rng, gt, 2.5, 0.4), spacing=(0.6, 1.4),
                                    desc="gaussian blobs 2D, spacing (0.6, 1.4); pred = perturbed gt")
    return c


if __name__ == "__main__":
    for name, c in cases().items():
        G.process(name, c, HERE)
