"""MedSegFM's per-class DSC and NSD (spec §2–§4), shared by every track.

The scored classes of a case are the sorted unique GT labels minus the first (spec §4); the
text track keeps only the prompted ones. Per class: DSC from the pair table, NSD at the
tolerance (2 mm) from the class surfaces (:func:`gpueval.kernels.surface.surface_stats`), plus
the surface diagnostics (surfel counts and areas, HD95/HD100, ASD).

Choices where the spec is silent:

* ``compat=corrected`` drops only label 0 (not the smallest label) when a GT has no
  background voxel.
* Text prompt keys are read with Python's ``int()`` as the script does (``"+1"``, ``" 1"``,
  ``"01"`` are class 1); keys ``int()`` refuses (other than ``instance_label``) are ignored,
  where the script would fail on the case.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from gpueval.challenges.medsegfm.options import _Context
from gpueval.kernels.nsd_scan import PairTable
from gpueval.kernels.surface import (
    CornerGrid,
    SurfacePoints,
    SurfaceStats,
    sorted_by_rank,
    surface_stats,
)


def class_set(gt_ids: np.ndarray, settings: dict[str, Any],
              prompts: dict[str, Any] | None = None) -> list[int]:
    """The scored classes of a case (spec §4), from the sorted unique GT labels."""
    ids = sorted(int(v) for v in gt_ids)
    if settings["compat"] == "official":
        classes = ids[1:]  # drops the first label, background or not (official quirk)
    else:
        classes = [v for v in ids if v != 0]
    if settings["class_set"] == "gt_prompted":
        prompted = {v for v in (_prompt_class(k) for k in (prompts or {})
                                if k != "instance_label") if v is not None}
        classes = [c for c in classes if c in prompted]
    return classes


def _prompt_class(key: Any) -> int | None:
    """A prompt key as the official ``int(k)`` reads it (``" 1"``, ``"+1"``, ``"01"``,
    ``"1_0"`` are classes 1, 1, 1, 10); None for a key ``int`` refuses (the script would fail
    on the case; gpueval ignores the key)."""
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def semantic_scores(ctx: _Context, gts, segs, spacing, classes: Sequence[int],
                    table: PairTable,
                    gt_surfaces: dict[int, SurfacePoints] | None = None,
                    pr_surfaces: dict[int, SurfacePoints] | None = None,
                    grid: CornerGrid | None = None) -> dict[int, dict[str, Any]]:
    """Per-class DSC, NSD and surface diagnostics (spec §2–§3).

    ``table`` is the case's pair table; surfaces not given are extracted chunk by chunk
    (:func:`.chunked.class_surfaces`), given ones (:mod:`.resident`) must hold every class
    of ``classes`` that has voxels in that volume. A ``grid`` of the case's volume shape
    and spacing finds the distances by offset search (:class:`CornerGrid`) instead of k-d
    trees (same values).
    """
    gt_ids, gt_sizes = table.sizes_a()
    pr_ids, pr_sizes = table.sizes_b()
    gsize = dict(zip(gt_ids.tolist(), gt_sizes.tolist(), strict=True))
    psize = dict(zip(pr_ids.tolist(), pr_sizes.tolist(), strict=True))
    same = table.ids_a == table.ids_b
    inter = dict(zip(table.ids_a[same].tolist(), table.counts[same].tolist(), strict=True))
    if gt_surfaces is None or pr_surfaces is None:
        # the chunked path imports dask.array (~0.4 s): only cases that need it pay for it
        from gpueval.challenges.medsegfm.chunked import class_surfaces

        if gt_surfaces is None:
            gt_surfaces = class_surfaces(ctx, gts, classes)
        if pr_surfaces is None:
            pr_surfaces = class_surfaces(ctx, segs, [c for c in classes if psize.get(c, 0)])
    def one(c: int) -> dict[str, Any]:
        stats = surface_stats(gt_surfaces.get(c, SurfacePoints.empty()),
                              pr_surfaces.get(c, SurfacePoints.empty()), spacing,
                              tolerance=ctx.settings["tolerance"],
                              workers=ctx.settings["workers"], device=ctx.device, grid=grid)
        return stats.summary(ctx.settings["tolerance"])

    if grid is not None and ctx.device != "gpu" and classes:
        summaries = _grid_summaries(grid, gt_surfaces, pr_surfaces, spacing, classes,
                                    ctx.settings["tolerance"])
    else:
        summaries = [one(c) for c in classes]
    out = {}
    for c, summary in zip(classes, summaries, strict=True):
        g, p, tp = gsize.get(c, 0), psize.get(c, 0), inter.get(c, 0)
        dsc = 2 * tp / (g + p) if g + p else math.nan
        out[c] = {"dsc": dsc, "nsd_2mm": summary.pop("nsd"), "gt_voxels": g,
                  "pred_voxels": p, **summary}
    return out


def _grid_summaries(grid: CornerGrid, gt_surfaces: dict[int, SurfacePoints],
                    pr_surfaces: dict[int, SurfacePoints], spacing, classes: Sequence[int],
                    tolerance: float) -> list[dict[str, Any]]:
    """:meth:`SurfaceStats.summary` of every class, the distances found on ``grid``
    (as :func:`surface_stats` with a grid does). Each direction of each class is one task,
    so two threads stay busy to the end (five classes made three rounds of two); NumPy
    releases the GIL. At most two threads: each holds its own grid mask (one byte per
    corner, virtual). The percentiles' sort is rebuilt from the search's distance ranks and
    the neighbour codes (:func:`sorted_by_rank`: no sort of the distances or areas)."""
    empty = SurfacePoints.empty()
    pairs = [(gt_surfaces.get(c, empty), pr_surfaces.get(c, empty)) for c in classes]

    def nearest(task: tuple[int, bool]) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        i, forward = task
        g, p = pairs[i]
        query, ref = (g, p) if forward else (p, g)
        dist, rank = grid.nearest_ranked(query.coords, ref.coords)
        return dist, sorted_by_rank(dist, rank, grid.values, query.codes, spacing)

    def summary(i: int) -> dict[str, Any]:
        g, p = pairs[i]
        (dg, sg), (dp, sp) = found[2 * i], found[2 * i + 1]
        stats = SurfaceStats(dg, g.areas(spacing), dp, p.areas(spacing), sorted_gt=sg,
                             sorted_pred=sp)
        return stats.summary(tolerance)

    tasks = [(i, forward) for i in range(len(pairs)) for forward in (True, False)]
    threads = max(1, min(2, os.cpu_count() or 1))
    if threads == 1:
        found = [nearest(t) for t in tasks]
        return [summary(i) for i in range(len(pairs))]
    with ThreadPoolExecutor(threads) as ex:
        found = list(ex.map(nearest, tasks))
        return list(ex.map(summary, range(len(pairs))))


def _case_mean(values: list[float], how: str) -> float:
    if not values:
        return math.nan
    arr = np.asarray(values, dtype=np.float64)
    if how == "nanmean":
        return float(np.nanmean(arr)) if np.any(~np.isnan(arr)) else math.nan
    return float(np.mean(arr))
