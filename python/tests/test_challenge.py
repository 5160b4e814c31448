"""Challenge metrics from Python: BraTS 2023 lesion-wise scores against the challenge's reference values, panoptic
instances against panoptica's, and the label-map keywords (the same engine and reference data as the Rust tests)."""
import json
import math
import subprocess
import warnings

import numpy as np
import pytest

import seglab

from conftest import GOLDEN

BRATS = GOLDEN / "brats_cases"
PANOPTICA = GOLDEN / "panoptica"
REGIONS = {"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}
CHALLENGES = {"BraTS-GLI": "gli", "BraTS-MEN": "men", "BraTS-MET": "met"}


def brats_cases():
    cases = sorted(p for p in BRATS.iterdir() if (p / "expected.json").is_file())
    assert len(cases) == 11, f"BraTS reference cases missing under {BRATS}"
    return cases


def close(a, b, rel):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


@pytest.mark.parametrize("case", brats_cases(), ids=lambda p: p.name)
def test_brats_lesionwise_equals_reference(case):
    expected = json.loads((case / "expected.json").read_text())
    pred, spacing = seglab.read(case / "pred.nii.gz")
    gt, _ = seglab.read(case / "gt.nii.gz")
    for challenge, short in CHALLENGES.items():
        for row in expected["challenges"][challenge]["results_df"]:
            r = seglab.evaluate(pred, gt, spacing=spacing, labels=REGIONS[row["Labels"]], lesion_wise="brats2023",
                                brats_challenge=short)
            lw = r["lesionwise"]
            where = f"{case.name} {challenge} {row['Labels']}"
            assert (lw["tp"], lw["fp"], lw["fn"]) == (row["Num_TP"], row["Num_FP"], row["Num_FN"]), where
            assert close(lw["dice"], row["LesionWise_Score_Dice"], 1e-6), where
            assert close(lw["hd95"], row["LesionWise_Score_HD95"], 1e-4), where
            assert close(lw["gt_volume_mm3"], row["GT_Complete_Volume"], 1e-6), where
            assert close(r["dice"], row["Legacy_Dice"], 1e-6), where
            assert close(r["hd95"], row["Legacy_HD95"], 1e-4), where


def panoptica_cases():
    cases = sorted(p for p in PANOPTICA.iterdir() if (p / "expected.json").is_file())
    assert len(cases) == 7, f"panoptica reference cases missing under {PANOPTICA}"
    return cases


@pytest.mark.parametrize("case", panoptica_cases(), ids=lambda p: p.name)
def test_instances_equal_panoptica(case):
    expected = json.loads((case / "expected.json").read_text())
    pred, gt = np.load(case / "pred.npy"), np.load(case / "gt.npy")
    for run in expected["runs"]:
        r = seglab.evaluate(pred, gt, spacing=expected["spacing"], connectivity=run["connectivity"],
                            instances=True, match_iou=run["matching_threshold"], distances=False)["instances"]
        v = run["values"]
        where = f"{case.name} {run}"
        assert (r["tp"], r["fp"], r["fn"]) == (v["tp"], v["fp"], v["fn"]), where
        for ours, theirs in (("rq", "rq"), ("sq", "sq"), ("pq", "pq"), ("sq_dice", "sq_dsc"), ("pq_dice", "pq_dsc"),
                             ("sq_hd95", "sq_hd95"), ("sq_assd", "sq_assd")):
            t = v[theirs]
            # panoptica's NaN, infinity and "undefined: ..." (an error it raises) are seglab's null.
            if not isinstance(t, (int, float)) or math.isnan(t) or math.isinf(t):
                assert r[ours] is None, f"{where}: {ours}"
            else:
                assert close(r[ours], t, 1e-9), f"{where}: {ours} {r[ours]} != {t}"


def test_folders_with_labels_equal_cli_and_warn_on_absent_label(tmp_path, seglab_bin):
    case = BRATS / "fp_and_missed"
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred" / "c1.nii.gz").write_bytes((case / "pred.nii.gz").read_bytes())
    (tmp_path / "gt" / "c1.nii.gz").write_bytes((case / "gt.nii.gz").read_bytes())
    out = tmp_path / "cli.json"
    subprocess.run([seglab_bin, "evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                    "--labels", "1,3", "--lesion-wise", "brats2023", "--brats-challenge", "men", "--instances",
                    "--out", str(out)], check=True, capture_output=True)
    cli = json.loads(out.read_text())
    py = seglab.evaluate_folders(tmp_path / "pred", tmp_path / "gt", labels=[1, 3], lesion_wise="brats2023",
                                 brats_challenge="men", instances=True)
    assert py["cases"] == cli["cases"]
    assert py["summary"] == cli["summary"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seglab.evaluate_folders(tmp_path / "pred", tmp_path / "gt", labels=[3, 4], distances=False)
    messages = [str(w.message) for w in caught]
    assert any("label value(s) 4 occur in no file" in m and str(tmp_path / "pred") in m for m in messages), messages


def test_evaluator_keeps_challenge_options_through_merge_and_pickle():
    import pickle

    case = BRATS / "subregions_differ"
    pred, spacing = seglab.read(case / "pred.nii.gz")
    gt, _ = seglab.read(case / "gt.nii.gz")
    a = seglab.Evaluator(spacing=spacing, labels=[3], lesion_wise="brats2023")
    a.update(pred, gt, case="one")
    b = pickle.loads(pickle.dumps(a))
    b.update(pred, gt, case="two")
    one, two = b.cases
    assert one == a.cases[0] and two["case"] == "two"
    assert {k: v for k, v in two.items() if k != "case"} == {k: v for k, v in one.items() if k != "case"}
    assert one["lesionwise"]["tp"] > 0
    assert b.compute()["lesionwise"]["tp"] == 2 * a.cases[0]["lesionwise"]["tp"]
    with pytest.raises(ValueError, match="other options"):
        a.merge(seglab.Evaluator(spacing=spacing, labels=[1, 3], lesion_wise="brats2023"))


@pytest.mark.parametrize("kwargs, needle", [
    (dict(lesion_wise="brats2023", gt_dilation=-1), "gt_dilation -1 must be >= 0"),
    (dict(lesion_wise="brats2023", min_lesion_volume=-5.0), "min_lesion_volume"),
    (dict(lesion_wise="brats2023", brats_challenge="xyz"), "unknown BraTS challenge 'xyz'"),
    (dict(lesion_wise="brats2019"), "expected \"brats2023\""),
    (dict(gt_dilation=2), "need lesion_wise"),
    (dict(instances=True, match_iou=1.5), "match_iou"),
    (dict(labels=[]), "labels"),
])
def test_bad_challenge_options_are_value_errors(kwargs, needle):
    m = np.zeros((8, 8), np.uint8)
    m[2:4, 2:4] = 1
    with pytest.raises(ValueError, match=needle):
        seglab.evaluate(m, m, **kwargs)
