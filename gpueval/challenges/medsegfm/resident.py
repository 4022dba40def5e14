"""MedSegFM's per-class statistics of a case that is already in memory, in one pass per volume.

An ``.npz`` case is decoded whole by its reader, so the chunk-by-chunk path of
:mod:`.chunked` (dask tasks, a pair table voxel by voxel, seven shifted views per voxel for
the surfaces) only adds cost there. :func:`scan_truth` and :func:`scan_prediction` read
each volume once with :func:`gpueval.kernels.nsd_scan.scan_volume`, which yields the surface
corners of the classes and the x-transitions; :func:`case_table` turns the transitions of
both volumes into the exact pair table. Same points, codes and counts as :mod:`.chunked`
(tests compare both); zarr cases and the GPU keep the chunked path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from gpueval.challenges.medsegfm.options import _Context
from gpueval.errors import TruthError
from gpueval.kernels.nsd_scan import PairCounts, VolumeScan, pair_counts, scan_volume, supported
from gpueval.kernels.surface import CornerGrid


def applies(ctx: _Context, *volumes) -> bool:
    """Whether the case takes this path: CPU scoring of NumPy volumes (not zarr, not GPU)."""
    return ctx.device == "cpu" and all(supported(v) for v in volumes)


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def scan_truth(ctx: _Context, gts: np.ndarray) -> VolumeScan:
    """Surfaces of every non-zero label of the ground truth and its x-transitions."""
    ctx.voxels += int(gts.size)
    return scan_volume(gts, None, workers=_threads())


def truth_ids(scan: VolumeScan) -> np.ndarray:
    """Sorted distinct labels of the scanned ground truth, 0 included when a voxel is 0."""
    ids, _ = pair_counts(scan, VolumeScan(scan.shape, dtype=scan.dtype)).sizes_a()
    return ids


def scan_prediction(segs: np.ndarray, classes: Sequence[int]) -> VolumeScan:
    """Surfaces of the scored ``classes`` in the prediction and its x-transitions."""
    if 0 in classes:  # as :func:`.chunked.class_surfaces`: 0 is the padding outside
        raise TruthError("label 0 would be scored as a class: ground-truth labels must not be "
                         "negative")
    return scan_volume(segs, classes, workers=_threads())


def case_table(truth: VolumeScan, prediction: VolumeScan) -> PairCounts:
    """Voxel counts of every (GT label, predicted label) pair."""
    return pair_counts(truth, prediction)


def grid(shape: Sequence[int], spacing: Sequence[float], settings: dict) -> CornerGrid:
    """The offset-search grid of a case (:class:`~gpueval.kernels.surface.CornerGrid`)."""
    return CornerGrid(shape, spacing, tolerance=settings["tolerance"])
