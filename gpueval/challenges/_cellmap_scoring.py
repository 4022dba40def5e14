"""CellMap per-(crop, label) scores and their pooled aggregation (``cellmap.md`` §5–§6, §10).

Inputs are the ground truth and the prediction *already aligned* to the truth grid
(:mod:`gpueval.io.align`) and masked, as dask arrays (NumPy arrays are wrapped). Every
voxel-sized step runs chunk by chunk:

* semantic counts and instance overlaps are sums over chunks (:func:`gpueval.engine.map_reduce`
  of :func:`gpueval.kernels.stats.contingency`);
* the prediction is relabelled with 26-connected components numbered exactly as whole-volume
  ``cc3d`` (:func:`gpueval.kernels.components.label_chunked`: cross-chunk union-find, raster
  order of first voxels), so ids — observable through the ID-collision quirk — are identical;
* bounding boxes of every id are a per-chunk min/max reduction;
* the Hausdorff distance of one GT instance is computed inside the union of its and its
  prediction's boxes only (the official ROI padding does not change the value, §5.1.9), one
  small task per instance in the same threaded/distributed scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from gpueval.engine import compute, map_reduce
from gpueval.kernels.stats import Contingency, contingency
from gpueval.metrics.matching import match_max_total_iou

INSTANCE_CLASSES = ("nuc", "vim", "ves", "endo", "lyso", "ld", "perox", "mito", "np", "mt",
                    "cell", "instance")

STATUS_SCORED = "scored"
STATUS_MISSING = "missing"
STATUS_SKIPPED = "skipped_too_many_instances"
STATUS_FAILED = "matching_failed"


# --------------------------------------------------------------------------------------------
# small helpers


def as_dask(x: Any) -> da.Array:
    return x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1)


def ratio_cutoff(n_gt: int, final: float, initial: float, factor: float) -> float:
    """``R(n) = final + initial·exp(−n/factor)`` (§5.1.3)."""
    return float(final) + float(initial) * math.exp(-float(n_gt) / float(factor))


def max_distance(voxel_size: Sequence[float], shape: Sequence[int]) -> float:
    """``D_max = min_axis(v·shape)/2`` in nm (§5.1.9)."""
    return float(np.min(np.asarray(voxel_size, float) * np.asarray(shape, float)) / 2.0)


def normalize_distance(d: np.ndarray, voxel_size: Sequence[float], base: float = 1.01
                       ) -> np.ndarray:
    """``base^(−d/‖v‖)`` in float64 (base 1.01); inf → 0 (§5.1.11)."""
    d = np.asarray(d, dtype=np.float64)
    return np.power(float(base), -d / float(np.linalg.norm(np.asarray(voxel_size, float))))


def _relabel(pred: da.Array, *, device: str, scheduler: Any) -> tuple[Any, int]:
    """26-connected multi-label components numbered as whole-volume cc3d; (lazy ids, n).

    A single-chunk array goes straight to cc3d; several chunks go through the chunked
    union-find of :func:`gpueval.kernels.components.label_chunked` (same ids).
    """
    if all(n == 1 for n in pred.numblocks):
        from gpueval.kernels.components import connected_components

        block = pred.compute(scheduler="sync") if device == "cpu" else pred.compute()
        out, n = connected_components(np.ascontiguousarray(block), connectivity=26)
        return da.from_array(out, chunks=pred.chunks), int(n)
    try:
        from gpueval.kernels.components import label_chunked
    except ImportError:  # pragma: no cover - the components kernel is always shipped
        import cc3d

        out, n = cc3d.connected_components(np.asarray(pred), connectivity=26, return_N=True)
        return as_dask(out).rechunk(pred.chunks), int(n)
    lab = label_chunked(pred, connectivity=26, device=device, scheduler=scheduler)
    return lab.data, int(lab.n)


# --------------------------------------------------------------------------------------------
# Hausdorff of one instance pair


def _directed_max(src: np.ndarray, dst: np.ndarray, voxel_size) -> float:
    """max over voxels of ``src`` of the distance to the nearest voxel of ``dst`` (nm), with
    SciPy's float64 EDT (the official computation)."""
    dist = ndimage.distance_transform_edt(~dst, sampling=voxel_size)
    return float(dist[src].max())


def _hausdorff_one(gt_box, pcc_box, t: int, m: int, t_free: bool, voxel_size, d_max: float
                   ) -> np.float32:
    """Capped symmetric Hausdorff of GT ``t`` and the remapped prediction ``t``.

    The remapped prediction ``t`` is the component ``m`` matched to ``t`` (0 if none) plus,
    when ``t_free``, the unmatched component whose cc3d id happens to be ``t`` (the official
    ID-collision quirk, §5.1.9).
    """
    a = np.asarray(gt_box) == t
    pcc = np.asarray(pcc_box)
    b = np.zeros(a.shape, bool)
    if m:
        b |= pcc == m
    if t_free:
        b |= pcc == t
    if not a.any() and not b.any():
        return np.float32(0.0)
    if not a.any() or not b.any():
        return np.float32(d_max)
    d = _pair_hausdorff(a, b, voxel_size)
    return np.float32(min(d, d_max))


def _pair_hausdorff(a: np.ndarray, b: np.ndarray, voxel_size) -> float:
    """Symmetric Hausdorff (nm) of two non-empty masks: the shared kernel
    (:func:`gpueval.kernels.distance.hausdorff`, ``edt`` in float32 on the CPU, ≤ ~3e-7
    relative from SciPy's float64 value) or SciPy's EDT when it is absent."""
    try:
        from gpueval.kernels.distance import hausdorff
    except ImportError:  # pragma: no cover
        return max(_directed_max(a, b, voxel_size), _directed_max(b, a, voxel_size))
    return float(hausdorff(a, b, voxel_size))


# --------------------------------------------------------------------------------------------
# per-crop scores


def empty_instance_result(status: str) -> dict[str, Any]:
    return {"tp": 0, "fp": 0, "fn": 0, "hausdorff_norm_sum": 0.0, "n_hausdorff": 0,
            "status": status}


def score_instance(gt: Any, pred: Any, voxel_size: Sequence[float], consts: Mapping[str, Any],
                   *, device: str = "cpu", scheduler: Any = None) -> dict[str, Any]:
    """Official ``score_instance`` (2026-06, §5.1) on aligned, masked arrays.

    Returns ``{tp, fp, fn, hausdorff_norm_sum, n_hausdorff, status}`` plus private details
    under ``_detail`` (mapping, per-GT distances, cc count) used by the tests.
    """
    gt, pred = as_dask(gt), as_dask(pred)
    if pred.chunks != gt.chunks:
        pred = pred.rechunk(gt.chunks)
    vs = tuple(float(v) for v in voxel_size)
    pcc, n_pred = _relabel(pred, device=device, scheduler=scheduler)
    # one pass: overlaps (incl. background) and the bounding boxes of both id volumes
    table, boxes_g, boxes_p = map_reduce(_stats_chunk, [gt, pcc], _stats_combine,
                                         device=device, scheduler=scheduler, with_slices=True,
                                         extra=(tuple(gt.shape),))
    g_ids, g_sizes = table.sizes_a()
    p_ids, p_sizes = table.sizes_b()
    n_gt = int(g_ids.max()) if len(g_ids) else 0  # max id, not the number of ids (§5.1.2)
    truth_ids = g_ids[g_ids != 0].astype(np.int64)
    if n_gt > 0 and n_pred > 0:
        cut = ratio_cutoff(n_gt, consts["final_instance_ratio_cutoff"],
                           consts["initial_instance_ratio_cutoff"],
                           consts["instance_ratio_factor"])
        if n_pred / n_gt > cut:
            return empty_instance_result(STATUS_SKIPPED)
    pairs = table.drop(a=0).drop(b=0)
    g_size = dict(zip(g_ids.tolist(), g_sizes.tolist(), strict=True))
    p_size = dict(zip(p_ids.tolist(), p_sizes.tolist(), strict=True))
    pg = pairs.ids_a.astype(np.int64)
    pp = pairs.ids_b.astype(np.int64)
    inter = pairs.counts.astype(np.float64)
    union = (np.array([g_size[i] for i in pg.tolist()], np.float64)
             + np.array([p_size[i] for i in pp.tolist()], np.float64) - inter)
    iou = (inter / np.where(union > 0, union, 1)).astype(np.float32)
    keep = iou > 0
    if int(keep.sum()) > int(consts["max_overlap_edges"]):
        return empty_instance_result(STATUS_SKIPPED)
    if n_gt > 0 and n_pred > 0 and keep.any():
        mg, mp = match_max_total_iou(pg[keep], pp[keep], iou[keep],
                                     cost_scale=int(consts["mcmf_cost_scale"]))
    else:
        mg, mp = np.empty(0, np.int64), np.empty(0, np.int64)
    tp = len(np.unique(mg))
    fp = n_pred - len(np.unique(mp))
    fn = len(truth_ids) - tp
    d_max = max_distance(vs, gt.shape)
    dists = _hausdorff_all(gt, pcc, truth_ids, mg, mp, n_pred, vs, d_max, scheduler,
                           _as_dict(boxes_g), _as_dict(boxes_p))
    # distances are float32 (the official output array); unmatched predictions append D_max
    all_d = np.concatenate([dists.astype(np.float32),
                            np.full(fp, d_max, np.float32)]) if fp else dists.astype(np.float32)
    h = normalize_distance(all_d, vs, consts.get("hausdorff_base", 1.01))
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn),
            "hausdorff_norm_sum": float(np.sum(h)), "n_hausdorff": int(len(all_d)),
            "status": STATUS_SCORED,
            "_detail": {"mapping": np.stack([mp, mg], axis=1) if len(mg) else
                        np.empty((0, 2), np.int64),
                        "truth_ids": truth_ids, "hausdorff_per_gt": dists,
                        "n_pred_cc": n_pred}}


def _stats_chunk(slices, g, p, shape):
    from gpueval.kernels.regions import chunk_region_stats

    table = contingency(g, p)  # on the device the chunk is on (CuPy twin on the GPU)
    origin = tuple(int(s.start or 0) for s in slices)
    return table, chunk_region_stats(g, origin, shape), chunk_region_stats(p, origin, shape)


def _stats_combine(parts):
    from gpueval.kernels.regions import RegionStats

    return (Contingency.combine([q[0] for q in parts]),
            RegionStats.combine([q[1] for q in parts]),
            RegionStats.combine([q[2] for q in parts]))


def _as_dict(stats) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{id: (lo, hi)}`` half-open boxes from :class:`~gpueval.kernels.regions.RegionStats`."""
    return {int(i): (stats.bbox_min[k], stats.bbox_max[k] + 1)
            for k, i in enumerate(stats.ids.tolist())}


def _box_gap_nm(a, b, vs) -> float:
    """Lower bound on any distance between voxel centres of two half-open boxes (nm)."""
    gap = np.maximum(0, np.maximum(b[0] - (a[1] - 1), a[0] - (b[1] - 1)))
    return float(np.sqrt(np.sum((gap * np.asarray(vs, float)) ** 2)))


def _hausdorff_all(gt, pcc, truth_ids, mg, mp, n_pred, vs, d_max, scheduler, boxes_g,
                   boxes_p) -> np.ndarray:
    if len(truth_ids) == 0:
        return np.empty(0, np.float32)
    matched_of = dict(zip(mg.tolist(), mp.tolist(), strict=True))
    matched_preds = set(mp.tolist())
    out = np.full(len(truth_ids), d_max, np.float32)
    groups: dict[tuple, list[tuple]] = {}  # instances grouped by the chunks their box needs
    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in gt.chunks]
    for k, t in enumerate(truth_ids.tolist()):
        m = matched_of.get(t, 0)
        t_free = 1 <= t <= n_pred and t not in matched_preds
        parts = [boxes_g[t]] + ([boxes_p[m]] if m else []) + \
            ([boxes_p[t]] if t_free and t in boxes_p else [])
        if len(parts) == 1:
            continue  # B empty: D_max
        # Hausdorff >= max over b in B of dist(b, A) >= the gap between A's box and the box
        # of any part of B: one part at least D_max away makes the capped value D_max (exact)
        if max(_box_gap_nm(parts[0], q, vs) for q in parts[1:]) >= d_max:
            continue
        lo = np.min([p[0] for p in parts], axis=0)
        hi = np.max([p[1] for p in parts], axis=0)
        key = tuple((int(np.searchsorted(b, a_, "right") - 1),
                     int(np.searchsorted(b, z_ - 1, "right") - 1))
                    for b, a_, z_ in zip(bounds, lo, hi, strict=True))
        groups.setdefault(key, []).append((k, t, m, t_free, tuple(lo), tuple(hi)))
    if not groups:
        return out
    g_blocks, p_blocks = gt.to_delayed(), pcc.to_delayed()
    task = dask.delayed(_hausdorff_batch, pure=True)
    tasks, where = [], []
    for key, specs in groups.items():
        idx = tuple(slice(a, b + 1) for a, b in key)
        origin = tuple(int(bounds[ax][a]) for ax, (a, _) in enumerate(key))
        for i in range(0, len(specs), 64):
            batch = specs[i:i + 64]
            tasks.append(task(g_blocks[idx].tolist(), p_blocks[idx].tolist(), origin,
                              [s_[1:] for s_ in batch], vs, d_max))
            where.append([s_[0] for s_ in batch])
    for ks, vals in zip(where, compute(*tasks, scheduler=scheduler), strict=True):
        out[ks] = vals
    return out


def _assemble(blocks):
    """A nested list of neighbouring chunks as one array (no copy for a single chunk)."""
    from gpueval.backend import to_host

    def host(x):
        return [host(y) for y in x] if isinstance(x, list) else np.asarray(to_host(x))

    blocks = host(blocks)
    inner = blocks
    while isinstance(inner, list) and len(inner) == 1:
        inner = inner[0]
    return inner if not isinstance(inner, list) else np.block(blocks)


def _hausdorff_batch(g_blocks, p_blocks, origin, specs, vs, d_max) -> np.ndarray:
    """Hausdorff of several instances whose boxes lie in the same few chunks."""
    g, p = _assemble(g_blocks), _assemble(p_blocks)
    out = np.empty(len(specs), np.float32)
    for i, (t, m, t_free, lo, hi) in enumerate(specs):
        sl = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin, strict=True))
        out[i] = _hausdorff_one(g[sl], p[sl], t, m, t_free, vs, d_max)
    return out


def _semantic_chunk(g, p) -> np.ndarray:
    xp = np if isinstance(g, np.ndarray) else __import__("cupy")
    gb = g > 0
    pb = p > 0
    return np.array([int(xp.count_nonzero(gb & pb)), int(xp.count_nonzero(pb)),
                     int(xp.count_nonzero(gb))], np.int64)


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0) if parts else np.zeros(3, np.int64)


def score_semantic(gt: Any, pred: Any, *, device: str = "cpu", scheduler: Any = None
                   ) -> dict[str, Any]:
    """Official ``score_semantic`` (§5.2): ``pred > 0`` and ``truth > 0`` voxel counts."""
    gt, pred = as_dask(gt), as_dask(pred)
    tp, n_p, n_g = map_reduce(_semantic_chunk, [gt, pred], _sum, device=device,
                              scheduler=scheduler).tolist()
    return {"tp": int(tp), "fp": int(n_p - tp), "fn": int(n_g - tp), "status": STATUS_SCORED}


def missing_instance(n_truth_ids: int) -> dict[str, Any]:
    """§5.3: every GT instance a FN with a zero boundary score."""
    return {"tp": 0, "fp": 0, "fn": int(n_truth_ids), "hausdorff_norm_sum": 0.0,
            "n_hausdorff": int(n_truth_ids), "status": STATUS_MISSING}


def missing_semantic(n_voxels: int) -> dict[str, Any]:
    """§5.3: every voxel of the crop (background included) a FN."""
    return {"tp": 0, "fp": 0, "fn": int(n_voxels), "status": STATUS_MISSING}


# --------------------------------------------------------------------------------------------
# aggregation (§6)


def combine_scores(per_crop: Mapping[str, Mapping[str, Mapping[str, Any]]],
                   instance_classes: Sequence[str], *, include_missing: bool = True
                   ) -> dict[str, Any]:
    """Pooled per-class scores and the overall means (official ``combine_scores``).

    ``per_crop[crop][label]`` holds ``tp, fp, fn`` (+ ``hausdorff_norm_sum``, ``n_hausdorff``
    for instance classes) and ``status``.
    """
    pooled: dict[str, dict[str, float]] = {}
    for labels in per_crop.values():
        for label, s in labels.items():
            if not include_missing and s.get("status") == STATUS_MISSING:
                continue
            acc = pooled.setdefault(label, {"tp": 0, "fp": 0, "fn": 0, "h": 0.0, "n": 0})
            acc["tp"] += int(s["tp"])
            acc["fp"] += int(s["fp"])
            acc["fn"] += int(s["fn"])
            if label in instance_classes:
                acc["h"] += float(s.get("hausdorff_norm_sum", 0.0))
                acc["n"] += int(s.get("n_hausdorff", 0))
    label_scores: dict[str, dict[str, Any]] = {}
    inst, sem = [], []
    for label, a in pooled.items():
        tp, fp, fn = a["tp"], a["fp"], a["fn"]
        if label in instance_classes:
            if 2 * tp + fp + fn == 0 and a["n"] == 0:
                f1 = hd = comb = 1.0
            else:
                den = 2 * tp + fp + fn
                f1 = 2 * tp / den if den else 0.0
                hd = a["h"] / a["n"] if a["n"] else 0.0
                comb = math.sqrt(f1 * hd)
            label_scores[label] = {"f1": f1, "normalized_hausdorff_distance": hd,
                                   "combined_score": comb, "tp": tp, "fp": fp, "fn": fn}
            inst.append(comb)
        else:
            den = tp + fp + fn
            iou = tp / den if den else 1.0
            label_scores[label] = {"iou": iou, "tp": tp, "fp": fp, "fn": fn}
            sem.append(iou)
    oi = float(np.mean(inst)) if inst else 0.0
    osem = float(np.mean(sem)) if sem else 0.0
    return {"label_scores": label_scores, "overall_instance_score": oi,
            "overall_semantic_score": osem, "overall_score": math.sqrt(oi * osem)}
