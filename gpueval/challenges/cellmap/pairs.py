"""One CellMap (crop, label): the truth, its mask and the prediction aligned on the target grid.

Shared by the 2026-06 scorer (:mod:`gpueval.challenges.cellmap.score`), the 2025 scorer
(:mod:`gpueval.challenges.cellmap.scoring_2025`) and the report pictures
(:mod:`gpueval.challenges.cellmap.images`); the label's warnings are given here, after the
reading checks and before any chunk is scored.
"""

from __future__ import annotations

from gpueval.challenges.cellmap.layout import (
    Submission,
    TruthCrop,
    _open_truth,
    _read_prediction,
    _rechunk,
)
from gpueval.challenges.cellmap.manifest import target_grid
from gpueval.challenges.cellmap.options import Options
from gpueval.challenges.cellmap.warnings import label_warnings


def load_pair(crop: TruthCrop, label: str, sub: Submission, manifest, opts: Options):
    """(gt dask, aligned prediction or None, mask or None, Grid, instance?) of one label."""
    where = f"{crop.name}/{label}"
    gvol, grid = target_grid(crop, label, manifest, opts)
    instance = label in opts.instance_classes
    gt = _rechunk(gvol.data, opts.chunk)
    mask = None
    if f"{label}_mask" in crop.arrays:
        mask = _rechunk(_open_truth(crop.path / f"{label}_mask").data, opts.chunk)
    pred = None
    node = sub.crops.get(crop.name)
    if node is not None and (node / label).is_dir():
        pred = _read_prediction(node / label, grid, opts, instance=instance, where=where)
        if pred is not None:
            pred = pred.rechunk(gt.chunks)
    # after the reading checks (geometry bounds first), before any chunk is scored
    label_warnings(crop, label, sub, grid, opts)
    return gt, pred, mask, grid, instance
