"""The Python API gives bit-identical values to `seglab evaluate` and matches the reference libraries on every golden
case (the tolerance of the Rust parity tests: 1e-4 relative or 1e-6 absolute)."""
import json
import subprocess

import numpy as np
import pytest

import seglab
from conftest import golden_cases

CASES = golden_cases()
# Distances are undefined with an empty mask: those cases are in test_values_are_those_of_the_cli (every policy).
NONEMPTY = [c for c in CASES if np.load(c / "pred.npy").any() and np.load(c / "gt.npy").any()]


def close(got, want):
    return abs(got - want) <= 1e-4 * abs(want) or abs(got - want) <= 1e-6


def lib(v):
    assert v["outcome"] == "value", v
    return v["value"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_values_are_those_of_the_cli(case, seglab_bin, tmp_path):
    expected = json.loads((case / "expected.json").read_text())
    spacing = expected["spacing_mm"]
    pred, gt = np.load(case / "pred.npy"), np.load(case / "gt.npy")
    for conv in ("monai", "medpy", "deepmind"):
        for policy in ("default", "nan", "worst"):
            out = tmp_path / f"{conv}-{policy}.json"
            subprocess.run([seglab_bin, "evaluate", "--pred", str(case / "pred.npy"), "--gt", str(case / "gt.npy"),
                            "--spacing", ",".join(str(s) for s in spacing), "--hd95-convention", conv,
                            "--empty-policy", policy, "--out", str(out)], check=True, capture_output=True)
            cli = json.loads(out.read_text())["cases"][0]
            py = seglab.evaluate(pred, gt, spacing=spacing, hd95_convention=conv, empty_policy=policy)
            for k, v in cli["metrics"].items():
                assert py[k] == v, (case.name, conv, policy, k, py[k], v)
            assert py["status"] == cli["status"]
            assert py["lesions"] == cli["lesions"]


@pytest.mark.parametrize("case", NONEMPTY, ids=[c.name for c in NONEMPTY])
def test_conventions_match_the_reference_libraries(case):
    e = json.loads((case / "expected.json").read_text())
    pred, gt = np.load(case / "pred.npy"), np.load(case / "gt.npy")
    s = e["spacing_mm"]
    medpy, monai = e["medpy"], e["monai"]
    assert close(seglab.hd95(pred, gt, spacing=s, convention="medpy"), lib(medpy["hd95"]))
    assert close(seglab.hd95(pred, gt, spacing=s, convention="monai"),
                 lib(monai["HausdorffDistanceMetric(percentile=95)"]["raw"]))
    assert close(seglab.assd(pred, gt, spacing=s), lib(medpy["assd"]))
    assert close(seglab.hd(pred, gt, spacing=s), lib(medpy["hd"]))
    assert close(seglab.dice(pred, gt), lib(medpy["dc"]))
    dm = e["surface_distance_np2_compat"]
    assert close(seglab.hd95(pred, gt, spacing=s, convention="deepmind"), lib(dm["robust_hausdorff_95"]))
    assert close(seglab.nsd(pred, gt, spacing=s, tolerance=1.0), lib(dm["surface_dice_tol1mm"]))


@pytest.mark.parametrize("case", NONEMPTY, ids=[c.name for c in NONEMPTY])
def test_mesh_distances_are_those_of_the_cli(case, seglab_bin, tmp_path):
    """``distance_mode="mesh"`` gives `seglab evaluate --distance-mode mesh`'s values, bit for bit, and differs from
    the voxel mode's distances on at least one metric where the masks differ (it is not the voxel path under another
    name)."""
    spacing = json.loads((case / "expected.json").read_text())["spacing_mm"]
    pred, gt = np.load(case / "pred.npy"), np.load(case / "gt.npy")
    out = tmp_path / "mesh.json"
    subprocess.run([seglab_bin, "evaluate", "--pred", str(case / "pred.npy"), "--gt", str(case / "gt.npy"),
                    "--spacing", ",".join(str(s) for s in spacing), "--distance-mode", "mesh", "--out", str(out)],
                   check=True, capture_output=True)
    cli = json.loads(out.read_text())["cases"][0]["metrics"]
    py = seglab.evaluate(pred, gt, spacing=spacing, distance_mode="mesh")
    voxel = seglab.evaluate(pred, gt, spacing=spacing)
    for k in ("hd", "hd95", "assd", "asd_pred_to_gt", "asd_gt_to_pred", "nsd", "dice"):
        assert py[k] == cli[k], (case.name, k, py[k], cli[k])
    if not np.array_equal(pred, gt):  # identical masks: every distance is 0 in both modes
        assert any(py[k] != voxel[k] for k in ("hd95", "assd", "nsd")), case.name


def test_unknown_distance_mode_is_a_value_error():
    with pytest.raises(ValueError, match="distance_mode"):
        seglab.evaluate(np.ones((4, 4), bool), np.ones((4, 4), bool), distance_mode="meshy")
