"""Evaluation of many cases on a Dask cluster (``dask.distributed``): cases are mapped to workers in chunks, each
worker scores its chunk with an :class:`seglab.Evaluator` (files read as ``seglab evaluate`` reads them), and the
evaluators' states are merged in case order, so the summary equals the single-process one exactly."""
from __future__ import annotations

import os
from typing import Any, Optional

from . import Evaluator
from ._seglab import pair_folders


def _score_chunk(pairs: list, options: dict) -> Evaluator:
    ev = Evaluator(**options)
    for case, pred, gt in pairs:
        ev.update_files(pred, gt, case=case)
    return ev


def evaluate_folders(pred_dir: Any, gt_dir: Any, client: Optional[Any] = None, chunk_size: int = 16,
                     allow_missing: bool = False, **options: Any) -> dict:
    """``{"cases": [...], "summary": {...}}`` of every pair of the two folders, scored on ``client``'s workers
    (default: the current ``dask.distributed`` client, else a new local one). ``options`` are :class:`Evaluator`'s."""
    from dask.distributed import Client, get_client

    own = None
    if client is None:
        try:
            client = get_client()
        except ValueError:
            client = own = Client(processes=True)
    try:
        pairs = [(c, os.fspath(p), os.fspath(g)) for c, p, g in
                 pair_folders(os.fspath(pred_dir), os.fspath(gt_dir), allow_missing)]
        chunks = [pairs[i:i + chunk_size] for i in range(0, len(pairs), chunk_size)]
        futures = [client.submit(_score_chunk, chunk, options, pure=False) for chunk in chunks]
        total = Evaluator(**options)
        for part in client.gather(futures):
            total.merge(part)
        return {"cases": total.cases, "summary": total.compute()}
    finally:
        if own is not None:
            own.close()
