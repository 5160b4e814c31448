"""seglab.dask on a LocalCluster of 2 worker processes: the same cases and summary as one process."""
import numpy as np

import seglab
import seglab.dask
from conftest import GOLDEN


def test_local_cluster_gives_the_single_process_summary(tmp_path):
    from dask.distributed import Client, LocalCluster

    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        gt = np.zeros((40, 40), bool)
        gt[5 + k:20 + k, 8:25] = True
        pred = np.clip(gt * 0.8 + 0.1 + rng.normal(0, 0.2, gt.shape), 0, 1).astype(np.float32)
        np.save(pred_dir / f"case{k:02}.npy", pred)
        np.save(gt_dir / f"case{k:02}.npy", gt)
    vol = GOLDEN / "metric_cases" / "lesions_3d_96x96x48_n1"
    np.save(pred_dir / "vol.npy", np.load(vol / "pred.npy"))
    np.save(gt_dir / "vol.npy", np.load(vol / "gt.npy"))
    single = seglab.evaluate_folders(pred_dir, gt_dir, hd95_convention="medpy")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        dist = seglab.dask.evaluate_folders(pred_dir, gt_dir, client=client, chunk_size=3, hd95_convention="medpy")
    assert dist["cases"] == single["cases"]
    assert dist["summary"] == single["summary"]
    assert len(dist["cases"]) == 13
