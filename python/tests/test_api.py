"""The Python API: input types and layouts, errors, the mergeable Evaluator, file reading, folders, threads."""
import json
import pickle
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import seglab
from conftest import GOLDEN


def blobs(shape=(48, 40), seed=0, shift=1):
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, bool)
    for _ in range(3):
        c = [rng.integers(6, s - 6) for s in shape]
        sl = tuple(slice(x - 4, x + 4) for x in c)
        gt[sl] = True
    pred = np.roll(gt, shift, axis=0).astype(np.float32) * 0.8 + 0.1
    return pred, gt


def test_every_dtype_and_layout_gives_the_same_values():
    pred, gt = blobs()
    ref = seglab.evaluate(pred, gt)
    mask = pred >= 0.5
    for dt in (np.bool_, np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32, np.float32,
               np.float64):
        m = seglab.evaluate(mask.astype(dt), gt.astype(dt))
        assert m["dice"] == ref["dice"] and m["hd95"] == ref["hd95"], dt
    # Fortran order, strided views and a transposed pair: the metrics do not depend on layout or axis order.
    f = seglab.evaluate(np.asfortranarray(pred), np.asfortranarray(gt))
    big_p, big_g = np.zeros((96, 80), np.float32), np.zeros((96, 80), bool)
    big_p[::2, ::2], big_g[::2, ::2] = pred, gt
    strided = seglab.evaluate(big_p[::2, ::2], big_g[::2, ::2])
    t = seglab.evaluate(pred.T, gt.T)
    for other in (f, strided, t):
        for k in ("dice", "hd", "hd95", "assd", "nsd", "lesion_f1", "gt_lesions"):
            assert other[k] == ref[k], k
    # The array protocol (CPU torch tensors expose it too).
    class Wrapped:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a
    assert seglab.evaluate(Wrapped(pred), Wrapped(gt))["dice"] == ref["dice"]


def test_volumes_with_singleton_axes_and_spacing():
    gt = np.zeros((1, 64, 64), bool)
    gt[0, 10:30, 10:30] = True
    pred = np.roll(gt, 2, axis=2)
    m = seglab.evaluate(pred, gt, spacing=(3.0, 0.8, 0.8))
    assert m["hd"] == pytest.approx(1.6)
    vol = np.zeros((20, 24, 28), bool)
    vol[5:12, 6:14, 7:15] = True
    assert seglab.dice(vol, vol) == 1.0
    assert seglab.hd95(np.roll(vol, 1, 0), vol, spacing=(2.0, 1.0, 1.0)) == pytest.approx(2.0)


def test_bad_inputs_raise_with_the_cli_messages():
    pred, gt = blobs()
    with pytest.raises(ValueError, match="shape mismatch"):
        seglab.evaluate(pred[:, :5], gt)
    with pytest.raises(ValueError, match="ground truth is not binary"):
        seglab.evaluate(pred, gt.astype(np.uint8) * 3 + (np.arange(40) % 2).astype(np.uint8))
    bad = pred.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        seglab.evaluate(bad, gt)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        seglab.evaluate(pred * 5, gt)
    with pytest.raises(ValueError, match="spacing"):
        seglab.evaluate(pred, gt, spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="spacing has 3 values"):
        seglab.evaluate(pred, gt, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="2D or 3D"):
        seglab.evaluate(pred.ravel(), gt.ravel())
    with pytest.raises(ValueError, match="axis of length 0"):
        seglab.evaluate(np.zeros((0, 4), np.float32), np.zeros((0, 4), bool))
    with pytest.raises(TypeError, match="unsupported dtype"):
        seglab.evaluate(pred.astype(np.complex64), gt)
    with pytest.raises(ValueError, match="hd95_convention"):
        seglab.evaluate(pred, gt, hd95_convention="nope")
    with pytest.raises(ValueError, match="threshold"):
        seglab.evaluate(pred, gt, threshold=1.5)
    with pytest.raises(OSError, match="file not found"):
        seglab.read("/nonexistent/case.nii.gz")


def test_corrupt_files_raise_value_errors(tmp_path):
    p = tmp_path / "bad.npy"
    p.write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(ValueError, match="bad.npy"):
        seglab.read(p)
    q = tmp_path / "bad.nii.gz"
    q.write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(ValueError, match="bad.nii.gz"):
        seglab.read(q)


def test_empty_policies():
    z = np.zeros((16, 16), bool)
    one = z.copy()
    one[4:8, 4:8] = True
    assert seglab.evaluate(z, z)["dice"] == 1.0
    assert seglab.evaluate(z, z, empty_policy="nan")["dice"] is None
    m = seglab.evaluate(z, one)
    assert m["dice"] == 0.0 and m["hd95"] is None
    assert m["status"]["distances"] == "undefined: empty prediction"
    assert seglab.evaluate(z, one, empty_policy="worst")["hd95"] == pytest.approx(np.hypot(16, 16))


def test_evaluator_merges_and_pickles_to_the_same_summary():
    pairs = [blobs(seed=s, shift=s % 3) for s in range(8)]
    whole = seglab.Evaluator(hd95_convention="medpy")
    a, b = seglab.Evaluator(hd95_convention="medpy"), seglab.Evaluator(hd95_convention="medpy")
    for i, (p, g) in enumerate(pairs):
        whole.update(p, g, case=f"c{i}")
        (a if i < 5 else b).update(p, g, case=f"c{i}")
    a.merge(pickle.loads(pickle.dumps(b)))
    assert len(a) == 8
    assert a.compute() == whole.compute()
    assert [c["case"] for c in a.cases] == [f"c{i}" for i in range(8)]
    assert a.cases[3]["metrics"]["hd95"] == seglab.evaluate(*pairs[3], hd95_convention="medpy")["hd95"]
    s = whole.compute()
    dice = [seglab.dice(p, g) for p, g in pairs]
    assert s["dice"]["mean"] == pytest.approx(np.mean(dice), abs=1e-15)
    assert s["dice"]["n"] == 8
    with pytest.raises(ValueError, match="other options"):
        a.merge(seglab.Evaluator(hd95_convention="monai"))


def test_threads_give_the_same_results():
    pairs = [blobs(shape=(96, 96), seed=s) for s in range(16)]
    serial = [seglab.evaluate(p, g)["hd95"] for p, g in pairs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda pg: seglab.evaluate(*pg)["hd95"], pairs))
    assert threaded == serial


def test_read_and_folders_match_the_cli(seglab_bin, tmp_path):
    case = GOLDEN / "metric_cases" / "blobs_2d_256"
    arr, spacing = seglab.read(case / "gt.png")
    assert arr.shape == (256, 256) and spacing == [1.0, 1.0]
    assert set(np.unique(arr)) <= {0, 255}
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for name in ("blobs_2d_256", "identical_2d", "empty_pred_2d"):
        c = GOLDEN / "metric_cases" / name
        (pred_dir / f"{name}.png").write_bytes((c / "pred.png").read_bytes())
        (gt_dir / f"{name}_seg.png").write_bytes((c / "gt.png").read_bytes())
    out = tmp_path / "cli.json"
    subprocess.run([seglab_bin, "evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir), "--sweep", "--out", str(out)],
                   check=True, capture_output=True)
    cli = json.loads(out.read_text())
    py = seglab.evaluate_folders(pred_dir, gt_dir, sweep=True)
    assert py == cli
    # The same cases one by one through files: identical rows.
    ev = seglab.Evaluator()
    for c in cli["cases"]:
        ev.update_files(pred_dir / f"{c['case']}.png", gt_dir / f"{c['case']}_seg.png")
    assert ev.cases == cli["cases"]
    assert ev.compute() == cli["summary"]
