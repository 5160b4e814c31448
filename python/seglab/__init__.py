"""seglab: exact, fast segmentation metrics from numpy arrays.

The engine is seglab's Rust metrics crate (the one `seglab evaluate` runs): overlap scores, HD / HD95 / ASSD / NSD in
the MONAI, MedPy and DeepMind conventions, lesion-wise detection. Inputs are numpy arrays (or anything with the array
protocol, e.g. CPU torch tensors), 2D or 3D, of bool, integer or float type, C- or Fortran-ordered. Ground truth: value
> 0 is lesion and must be binary unless ``gt_threshold``; predictions: floats are probabilities in [0, 1] binarised with
``p >= threshold``, integers and bools are masks. ``spacing`` is in mm per array axis, as MONAI and MedPy take it. The
GIL is released while computing, so a thread pool over cases uses every core.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ._seglab import Evaluator, read  # noqa: F401
from ._seglab import evaluate_case as _evaluate_case
from ._seglab import evaluate_folders as _evaluate_folders

__all__ = ["evaluate", "dice", "iou", "hd", "hd95", "assd", "nsd", "Evaluator", "read", "evaluate_folders"]


def evaluate(pred: Any, gt: Any, spacing: Optional[Sequence[float]] = None, threshold: float = 0.5,
             gt_threshold: Optional[float] = None, hd95_convention: str = "monai", assd_convention: str = "pooled",
             nsd_convention: str = "deepmind", nsd_tolerance: float = 1.0, distance_mode: str = "voxel",
             connectivity: Optional[int] = None,
             min_lesion_size: int = 0, empty_policy: str = "default", distances: bool = True, beta: float = 1.0,
             tversky_alpha: float = 0.5, tversky_beta: float = 0.5, labels: Optional[Sequence[int]] = None,
             lesion_wise: Optional[str] = None, brats_challenge: Optional[str] = None,
             gt_dilation: Optional[int] = None, min_lesion_volume: Optional[float] = None, instances: bool = False,
             match_iou: float = 0.5) -> dict:
    """Every metric of one case: a dict with the keys of a `seglab evaluate` case's ``metrics`` (tp, ..., dice, iou,
    precision, recall, hd, hd95, assd, nsd, gt_lesions, lesion_recall, ...; None where undefined under the empty-mask
    policy) plus ``status`` (emptiness, distance status, policy notes) and ``lesions`` (per ground-truth lesion: size,
    Dice, detected). Conventions: ``hd95_convention`` monai | medpy | deepmind, ``assd_convention`` pooled |
    mean-of-directed, ``nsd_convention`` deepmind | voxel; ``empty_policy`` default | nan | skip | worst.
    ``distance_mode="mesh"`` measures the distances between continuous surfaces (area-weighted; within 1 % of the
    exact distances of the rasterised shapes at 0.5 mm) instead of grid points (``"voxel"``, the reference libraries'
    conventions), as `seglab evaluate --distance-mode mesh`.

    Challenge metrics, as `seglab evaluate`'s flags of the same names: ``labels=[1, 2, 3]`` makes both arrays label
    maps whose listed values are the lesion (one BraTS region per call); ``lesion_wise="brats2023"`` adds
    ``lesionwise`` (the BraTS 2023 lesion-wise Dice / HD95 exactly as the challenge's code, ``brats_challenge`` gli |
    ssa | ped | men | met, or ``gt_dilation`` / ``min_lesion_volume``; the whole-mask hd95 is then DeepMind's, 374 with
    one mask empty); ``instances=True`` adds ``instances`` (panoptica-style one-to-one matching at IoU >=
    ``match_iou``: tp, fp, fn, rq, sq, pq, sq_dice, per-pair Dice / HD95 / ASSD)."""
    r = _evaluate_case(pred, gt, spacing=None if spacing is None else [float(s) for s in spacing],
                       threshold=threshold, gt_threshold=gt_threshold, hd95_convention=hd95_convention,
                       assd_convention=assd_convention, nsd_convention=nsd_convention, nsd_tolerance=nsd_tolerance,
                       distance_mode=distance_mode, connectivity=connectivity, min_lesion_size=min_lesion_size,
                       empty_policy=empty_policy,
                       distances=distances, beta=beta, tversky_alpha=tversky_alpha, tversky_beta=tversky_beta,
                       labels=None if labels is None else [int(v) for v in labels], lesion_wise=lesion_wise,
                       brats_challenge=brats_challenge, gt_dilation=gt_dilation,
                       min_lesion_volume=min_lesion_volume, instances=instances, match_iou=match_iou)
    out = dict(r["metrics"])
    out["status"] = r["status"]
    out["lesions"] = r["lesions"]
    for key in ("lesionwise", "instances"):
        if key in r:
            out[key] = r[key]
    return out


def dice(pred: Any, gt: Any, threshold: float = 0.5, empty_policy: str = "default") -> Optional[float]:
    """Dice of one case (both masks empty: 1 under the default policy)."""
    return evaluate(pred, gt, threshold=threshold, distances=False, empty_policy=empty_policy)["dice"]


def iou(pred: Any, gt: Any, threshold: float = 0.5, empty_policy: str = "default") -> Optional[float]:
    """Intersection over union of one case."""
    return evaluate(pred, gt, threshold=threshold, distances=False, empty_policy=empty_policy)["iou"]


def hd(pred: Any, gt: Any, spacing: Optional[Sequence[float]] = None, threshold: float = 0.5) -> Optional[float]:
    """Hausdorff distance in mm (voxel surfaces)."""
    return evaluate(pred, gt, spacing=spacing, threshold=threshold)["hd"]


def hd95(pred: Any, gt: Any, spacing: Optional[Sequence[float]] = None, convention: str = "monai",
         threshold: float = 0.5) -> Optional[float]:
    """95th-percentile Hausdorff distance in mm: ``convention`` monai (max of the directed percentiles), medpy
    (pooled) or deepmind (surfel-area weighted)."""
    return evaluate(pred, gt, spacing=spacing, threshold=threshold, hd95_convention=convention)["hd95"]


def assd(pred: Any, gt: Any, spacing: Optional[Sequence[float]] = None, convention: str = "pooled",
         threshold: float = 0.5) -> Optional[float]:
    """Average symmetric surface distance in mm: ``convention`` pooled (MedPy, MONAI) or mean-of-directed."""
    return evaluate(pred, gt, spacing=spacing, threshold=threshold, assd_convention=convention)["assd"]


def nsd(pred: Any, gt: Any, spacing: Optional[Sequence[float]] = None, tolerance: float = 1.0,
        convention: str = "deepmind", threshold: float = 0.5) -> Optional[float]:
    """Normalised surface Dice at ``tolerance`` mm: ``convention`` deepmind (surfel areas; MONAI use_subvoxels=True)
    or voxel (MONAI default)."""
    return evaluate(pred, gt, spacing=spacing, threshold=threshold, nsd_tolerance=tolerance,
                    nsd_convention=convention)["nsd"]


def evaluate_folders(pred_dir: Any, gt_dir: Any, **options: Any) -> dict:
    """The JSON object of ``seglab evaluate --pred PRED_DIR --gt GT_DIR --out`` (``version``, ``settings``,
    ``cases``, ``summary`` and, with ``sweep=True``, ``sweep``), computed in this process: files paired by stem and
    read exactly as the CLI pairs and reads them (PNG, NIfTI, NPY). Options: those of :func:`evaluate` plus
    ``ignore_spacing_mismatch``, ``allow_missing``, ``sweep`` and ``sweep_step``. A ``labels`` value found in no
    file is a ``UserWarning`` naming the folders."""
    import os

    return _evaluate_folders(os.fspath(pred_dir), os.fspath(gt_dir), **options)
