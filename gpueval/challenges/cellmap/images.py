"""CellMap's report pictures: where a submission fails, for the HTML report.

The worst (crop, label) items (highest ``(fp + fn) / (tp + fp + fn)``): the slice with the
most wrong voxels (per-slice counts reduced chunk by chunk) and the middle slice; semantic:
FP/FN; instance: splits/merges/misses/FPs relative to each object's main partner (one chunked
contingency pass). Pictures are chosen and cropped by chunked reductions and only the pixels
shown are read: a whole volume is never loaded.

Colours (:mod:`gpueval.pictures`): agreement grey, false positive red, false negative (missed)
blue; for instances, split fragments orange and merged objects magenta.

Choices (pictures are diagnostics, not scores): slices are chosen by per-slice counts of wrong
voxels (one chunked reduction) rather than by the worst instance's bounding box: it finds the
worst slice directly and works for semantic labels too. Instance colours are relative to each
object's *main* partner (largest overlap, from one chunked contingency pass) in the submitted
ids, not the scorer's connected-component relabelling or its optimal matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.cellmap import scoring_2026 as sc
from gpueval.challenges.cellmap.layout import list_truth, open_submission
from gpueval.challenges.cellmap.manifest import read_manifest
from gpueval.challenges.cellmap.options import Options
from gpueval.challenges.cellmap.pairs import load_pair
from gpueval.challenges.cellmap.score import resolve_config
from gpueval.engine import compute, map_reduce
from gpueval.kernels.stats import Contingency, contingency
from gpueval.pictures import BLUE, GREY, MAGENTA, ORANGE, RED, Images, error_overlay
from gpueval.pictures import pool_factor as _step
from gpueval.pictures import run_config as _config
from gpueval.result import Result


def report_images(result: Result, truth: str | Path, submission: str | Path,
                  config: Mapping[str, Any] | None = None) -> Images:
    """Pictures of where the submission fails, for the HTML report (the challenge protocol's
    ``report_images``).

    Parameters
    ----------
    result : the scored :class:`~gpueval.result.Result` (its items rank the (crop, label)s).
    truth, submission : the paths that were scored.
    config : the config the score ran with; ``None`` reads ``configs/cellmap.yaml``.

    Returns
    -------
    Images
        ``(title, RGB uint8 array)`` pairs from :func:`cellmap_images`; empty when nothing is
        wrong.
    """
    return cellmap_images(result, truth, submission, config)


def cellmap_images(result: Result, truth, submission, config=None, *, n_items: int = 3,
                   max_side: int = 512) -> Images:
    """Two slices (most wrong voxels, middle) of each of the ``n_items`` worst (crop, label)."""
    cfg = resolve_config(_config("cellmap", config))
    opts = Options.from_config(cfg)

    def badness(it):
        n = (it.get("tp") or 0) + (it.get("fp") or 0) + (it.get("fn") or 0)
        if it.get("status") == sc.STATUS_MISSING or not n:
            return None
        return -((it.get("fp") or 0) + (it.get("fn") or 0)) / n

    ranked = sorted((it for it in result.items if badness(it) is not None and badness(it) < 0),
                    key=badness)[:n_items]
    if not ranked:
        return []
    crops = {c.name: c for c in list_truth(truth, opts)}
    manifest = read_manifest(opts.manifest)
    out: Images = []
    with open_submission(submission, list(crops.values())) as sub:
        for it in ranked:
            crop_name, label = str(it["id"]).split("/", 1)
            if crop_name not in crops:
                continue
            gt, pred, mask, _grid, instance = load_pair(crops[crop_name], label, sub,
                                                        manifest, opts)
            if pred is None:
                continue
            if mask is not None:
                gt, pred = gt * mask, pred * mask.astype(pred.dtype)
            out += _cellmap_item_images(str(it["id"]), gt, pred, instance, max_side)
    return out


def _cellmap_item_images(name: str, gt, pred, instance: bool, max_side: int) -> Images:
    if instance:
        maps = _main_partners(gt, pred)
        wrong = gt.map_blocks(_instance_wrong, pred, maps, dtype=bool)
    else:
        wrong = (gt > 0) != (pred > 0)
    if gt.ndim == 2:
        return [(f"{name}", _slice_rgb(gt, pred, (), instance, maps if instance else None,
                                        max_side))]
    per_z = np.asarray(compute(wrong.sum(axis=tuple(range(1, gt.ndim))))[0])
    z_worst = int(np.argmax(per_z))
    z_mid = gt.shape[0] // 2
    kind = "splits orange, merges magenta, misses blue, false objects red" if instance \
        else "FP red, FN blue"
    out = []
    for z, why in ((z_worst, "most errors"), (z_mid, "middle")):
        if why == "middle" and z == z_worst:
            continue
        rgb = _slice_rgb(gt, pred, (z,), instance, maps if instance else None, max_side)
        out.append((f"{name} z={z} ({why}: {int(per_z[z])} wrong voxels; {kind})", rgb))
    return out


def _slice_rgb(gt, pred, index: tuple, instance: bool, maps, max_side: int) -> np.ndarray:
    """Read one (strided) slice of both volumes and colour it."""
    s = _step(gt.shape[len(index):], max_side)
    key = index + (slice(None, None, s),) * (gt.ndim - len(index))
    # engine.compute: dask's default scheduler lookup imports distributed (~0.1 s)
    g, p = (np.asarray(x) for x in compute(gt[key], pred[key]))
    if not instance:
        return error_overlay(g > 0, p > 0)
    return instance_overlay(g, p, maps)


def _main_partners(gt, pred):
    """``(gt ids, their main pred id, pred ids, their main gt id)`` from one chunked pass."""
    table = map_reduce(contingency, [gt, pred], Contingency.combine).drop(a=0, b=0)
    a = np.asarray(table.ids_a).astype(np.uint64)
    b = np.asarray(table.ids_b).astype(np.uint64)
    c = np.asarray(table.counts)
    return _argmax_by(a, b, c) + _argmax_by(b, a, c)


def _argmax_by(keys: np.ndarray, vals: np.ndarray, counts: np.ndarray):
    order = np.lexsort((-counts, keys))  # by key, largest count first
    k, v = keys[order], vals[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    return k[first], v[first]


def _lookup(x: np.ndarray, keys: np.ndarray, vals: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    if not len(keys):
        return np.zeros(x.shape, np.uint64)
    i = np.minimum(np.searchsorted(keys, x), len(keys) - 1)
    return np.where(keys[i] == x, vals[i], np.uint64(0))


def _instance_masks(g: np.ndarray, p: np.ndarray, maps) -> dict[str, np.ndarray]:
    ga, gb, pa, pb = maps
    gf, pf = g > 0, p > 0
    both = gf & pf
    return {"miss": gf & ~pf, "fp": pf & ~gf,
            "split": both & (_lookup(g, ga, gb) != p.astype(np.uint64)),
            "merge": both & (_lookup(p, pa, pb) != g.astype(np.uint64)),
            "both": both}


def _instance_wrong(g, p, maps):
    m = _instance_masks(np.asarray(g), np.asarray(p), maps)
    return m["miss"] | m["fp"] | m["split"] | m["merge"]


def instance_overlay(g: np.ndarray, p: np.ndarray, maps) -> np.ndarray:
    """RGB of an instance slice: voxels of an object's main partner grey, other fragments of
    a truth object orange (split), truth objects sharing a predicted object magenta (merge),
    missed voxels blue, predicted voxels on background red."""
    m = _instance_masks(g, p, maps)
    rgb = np.zeros(g.shape + (3,), np.uint8)
    rgb[m["both"]] = GREY
    rgb[m["merge"]] = MAGENTA
    rgb[m["split"]] = ORANGE
    rgb[m["fp"]] = RED
    rgb[m["miss"]] = BLUE
    return rgb
