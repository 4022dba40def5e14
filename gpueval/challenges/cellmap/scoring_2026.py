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
  prediction's boxes only (the official ROI padding does not change the value, §5.1.9), in a
  fixed number of bucket tasks that read only the chunks their instances' boxes touch.

Every stage is a lazy node (:func:`instance_delayed`, :func:`semantic_delayed`,
:func:`count_ids_delayed`) so a whole submission computes as one graph; ``missing`` chunk maps
skip never-written zarr chunks exactly (see :func:`instance_delayed`). The labelling graph is
built here from the per-chunk tasks of :mod:`gpueval.kernels.components` (whose
``label_chunked`` computes its merge eagerly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed
from scipy import ndimage

from gpueval.backend import array_module
from gpueval.engine import Opaque, chunk_tasks, compute, timed, tree_reduce
from gpueval.kernels import components as cc
from gpueval.kernels.distance import hausdorff
from gpueval.kernels.regions import RegionStats, chunk_region_stats
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
    relative from SciPy's float64 value)."""
    return float(hausdorff(a, b, voxel_size))


# --------------------------------------------------------------------------------------------
# per-crop scores


def empty_instance_result(status: str) -> dict[str, Any]:
    return {"tp": 0, "fp": 0, "fn": 0, "hausdorff_norm_sum": 0.0, "n_hausdorff": 0,
            "status": status}




def score_instance(gt: Any, pred: Any, voxel_size: Sequence[float], consts: Mapping[str, Any],
                   *, device: str = "cpu", scheduler: Any = None, missing: Any = None,
                   fills: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Official ``score_instance`` (2026-06, §5.1) on aligned, masked arrays.

    Computes :func:`instance_delayed` (see there for ``missing``/``fills``). Returns
    ``{tp, fp, fn, hausdorff_norm_sum, n_hausdorff, status}`` plus private details under
    ``_detail`` (mapping, per-GT distances, cc count) used by the tests.
    """
    return compute(instance_delayed(gt, pred, voxel_size, consts, device=device,
                                    missing=missing, fills=fills), scheduler=scheduler)[0]


def instance_delayed(gt: Any, pred: Any, voxel_size: Sequence[float],
                     consts: Mapping[str, Any], *, device: str = "cpu", missing: Any = None,
                     fills: tuple[Any, Any] | None = None) -> Delayed:
    """The whole ``score_instance`` of one (crop, label) as one lazy graph.

    Stages (all delayed, so many labels compute together on one scheduler):

    1. per chunk: 26-connected components of the prediction (cc3d) with boundary planes and
       first voxels; per pair of neighbouring chunks: touching label pairs;
    2. one node: union-find and cc3d's numbering (per-chunk lookup tables, ``n``);
    3. per chunk: relabel, overlaps with the truth (background included) and id boxes of
       both volumes, tree-reduced;
    4. one node: ratio guard, IoU, exact matching, tp/fp/fn, and the Hausdorff work plan
       (instances grouped by the chunks their boxes touch, spread over ``K`` buckets);
    5. ``K`` nodes: each reads only the chunks of its groups' boxes and computes their
       capped Hausdorff distances; one node assembles the result.

    Parameters
    ----------
    missing : optional bool array over the chunk grid of ``gt``: ``True`` where the chunk is
        known to hold ``fills[0]`` in the truth and ``fills[1]`` in the prediction everywhere
        (a zarr chunk never written in any source). Such chunks are not read: they add
        ``count`` voxels to the ``(fill, fill)`` overlap and, with both fills 0, no
        component, box or boundary. With a non-zero fill the map is ignored (exact either
        way).
    """
    gt, pred = as_dask(gt), as_dask(pred)
    if pred.chunks != gt.chunks:
        pred = pred.rechunk(gt.chunks)
    vs = tuple(float(v) for v in voxel_size)
    skip = _skip_map(missing, gt)
    if skip.any() and (fills is None or np.asarray(fills[0]) != 0
                       or np.asarray(fills[1]) != 0):
        skip[...] = False  # a non-zero fill is a component / an id box: read it
    merged = cc.label_graph(pred, 26, False, device=device, skip=skip)
    shape = tuple(int(s) for s in gt.shape)
    # the second pass reads its chunks again, inside its tasks, after the merge: sharing the
    # first pass's read tasks would keep every chunk of the label in memory until the
    # union-find is done (dask.graph_manipulation.bind fails on rechunked graphs here)
    parts = chunk_tasks(_stats_chunk, [gt, pred], device=device, skip=skip, read_in_task=True,
                        with_slices=True, extra=(merged, shape, _bounds(gt)))
    n_skip = _skipped_voxels(gt, skip)
    if n_skip:
        zero = np.zeros((1,) * gt.ndim, gt.dtype)
        c = contingency(zero, np.zeros_like(zero, np.uint32))
        empty = chunk_region_stats(np.zeros((0,) * gt.ndim, np.uint32))
        parts.append((Contingency(c.ids_a, c.ids_b, c.counts * n_skip), empty, empty))
    reduced = tree_reduce(parts, _stats_combine)
    n_buckets = max(1, min(HAUSDORFF_TASKS, int(np.count_nonzero(~skip))))
    plan = dask.delayed(_plan_instance, pure=True)(reduced, merged, dict(consts), shape,
                                                   gt.chunks, vs, n_buckets)
    task = dask.delayed(_hausdorff_bucket, pure=True)
    first_index = merged[2]
    hs = [task(plan, k, Opaque(gt), Opaque(pred), first_index, vs)
          for k in range(n_buckets)]
    return dask.delayed(_finish_instance, pure=True)(plan, hs, vs, dict(consts))


HAUSDORFF_TASKS = 32  # Hausdorff nodes per (crop, label): parallelism without a huge graph


def _skip_map(missing: Any, arr: da.Array) -> np.ndarray:
    if missing is None:
        return np.zeros(arr.numblocks, bool)
    m = np.array(missing, bool)
    if m.shape != arr.numblocks:
        raise ValueError(f"missing-chunk map {m.shape} does not match the chunk grid "
                         f"{arr.numblocks}")
    return m


def _skipped_voxels(arr: da.Array, skip: np.ndarray) -> int:
    if not skip.any():
        return 0
    sizes = np.ones(skip.shape, np.int64)
    for ax, c in enumerate(arr.chunks):
        shp = [1] * skip.ndim
        shp[ax] = len(c)
        sizes = sizes * np.asarray(c, np.int64).reshape(shp)
    return int(sizes[skip].sum())


def _bounds(arr: da.Array) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate([[0], np.cumsum(c)]).astype(np.int64) for c in arr.chunks)


def _stats_chunk(slices, g, p, merged, shape, bounds):
    origin = tuple(int(s.start or 0) for s in slices)
    index = int(np.ravel_multi_index(
        tuple(int(np.searchsorted(b, o, "right") - 1) for b, o in zip(bounds, origin,
                                                                        strict=True)),
        tuple(len(b) - 1 for b in bounds)))
    pl = cc.relabel_block(p, merged[0], index)
    table = contingency(g, pl)  # on the device the chunk is on (CuPy twin on the GPU)
    return table, chunk_region_stats(g, origin, shape), chunk_region_stats(pl, origin, shape)


def _plan_instance(reduced, merged, consts, shape, chunks, vs, n_buckets) -> dict[str, Any]:
    """Matching and counts from the reduced statistics, and the Hausdorff work plan."""
    table, boxes_g, boxes_p = reduced
    n_pred = int(merged[1])
    g_ids, g_sizes = table.sizes_a()
    p_ids, p_sizes = table.sizes_b()
    n_gt = int(g_ids.max()) if len(g_ids) else 0  # max id, not the number of ids (§5.1.2)
    truth_ids = g_ids[g_ids != 0].astype(np.int64)
    if n_gt > 0 and n_pred > 0:
        cut = ratio_cutoff(n_gt, consts["final_instance_ratio_cutoff"],
                           consts["initial_instance_ratio_cutoff"],
                           consts["instance_ratio_factor"])
        if n_pred / n_gt > cut:
            return {"result": empty_instance_result(STATUS_SKIPPED), "buckets": []}
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
        return {"result": empty_instance_result(STATUS_SKIPPED), "buckets": []}
    if n_gt > 0 and n_pred > 0 and keep.any():
        mg, mp = match_max_total_iou(pg[keep], pp[keep], iou[keep],
                                     cost_scale=int(consts["mcmf_cost_scale"]))
    else:
        mg, mp = np.empty(0, np.int64), np.empty(0, np.int64)
    tp = len(np.unique(mg))
    fp = n_pred - len(np.unique(mp))
    fn = len(truth_ids) - tp
    d_max = max_distance(vs, shape)
    out = np.full(len(truth_ids), d_max, np.float32)
    groups = _hausdorff_groups(truth_ids, mg, mp, n_pred, vs, d_max, chunks,
                               _as_dict(boxes_g), _as_dict(boxes_p))
    return {"tp": tp, "fp": fp, "fn": fn, "n_pred": n_pred, "truth_ids": truth_ids,
            "mg": mg, "mp": mp, "d_max": d_max, "dists": out,
            "buckets": _spread(groups, n_buckets)}


def _hausdorff_groups(truth_ids, mg, mp, n_pred, vs, d_max, chunks, boxes_g, boxes_p
                      ) -> dict[tuple, list[tuple]]:
    """Instances needing a Hausdorff computation, grouped by the chunks their boxes touch:
    ``{((first, last) chunk per axis): [(k, t, m, t_free, lo, hi), ...]}``."""
    matched_of = dict(zip(mg.tolist(), mp.tolist(), strict=True))
    matched_preds = set(mp.tolist())
    groups: dict[tuple, list[tuple]] = {}
    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
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
        groups.setdefault(key, []).append((k, t, m, t_free, tuple(int(v) for v in lo),
                                           tuple(int(v) for v in hi)))
    return groups


def _spread(groups: dict[tuple, list[tuple]], n: int) -> list[list[tuple]]:
    """Groups over ``n`` buckets as contiguous runs in chunk order (neighbouring instances
    share reads), balanced by the number of instances."""
    items = sorted(groups.items())
    total = sum(len(specs) for _, specs in items)
    buckets: list[list[tuple]] = [[] for _ in range(n)]
    done = 0
    for key, specs in items:
        i = min(n - 1, done * n // max(total, 1))
        buckets[i].append((key, specs))
        done += len(specs)
    return buckets


HULL_VOXELS = 2 * 256 ** 3  # largest merged read of a Hausdorff bucket (when boxes allow)


def _reads(bucket: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, list[tuple]]]:
    """The groups of a bucket merged into few reads: consecutive groups share one read of
    their joint hull while it stays under ``HULL_VOXELS`` (a lone group may exceed it)."""
    out: list[tuple[np.ndarray, np.ndarray, list[tuple]]] = []
    for _key, specs in bucket:
        lo = np.min([s_[4] for s_ in specs], axis=0)
        hi = np.max([s_[5] for s_ in specs], axis=0)
        if out:
            jlo, jhi = np.minimum(out[-1][0], lo), np.maximum(out[-1][1], hi)
            if int(np.prod(jhi - jlo)) <= HULL_VOXELS:
                out[-1] = (jlo, jhi, out[-1][2] + list(specs))
                continue
        out.append((lo, hi, list(specs)))
    return out


@timed("kernel")
def _hausdorff_bucket(plan, k: int, gt: Opaque, pred: Opaque, first_index, vs
                      ) -> list[tuple[list[int], np.ndarray]]:
    """Capped Hausdorff distances of the instances of bucket ``k`` (CPU, as before).

    Per read (:func:`_reads`), only the hull of its instances' boxes is read (raw prediction
    values, not relabelled chunks). A prediction component lies wholly inside its own box,
    hence inside the instance's box, so it is exactly the component of the box-restricted prediction
    (26-connected, cc3d) that holds its first voxel (``first_index``): no chunk relabelling.
    """
    out = []
    if k >= len(plan["buckets"]):
        return out
    shape = tuple(int(s) for s in gt.array.shape)
    for lo, hi, specs in _reads(plan["buckets"][k]):
        hull = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        g = np.asarray(gt.array[hull].compute(scheduler="sync"))
        p = np.asarray(pred.array[hull].compute(scheduler="sync"))
        vals = np.empty(len(specs), np.float32)
        for i, (_, t, m, t_free, blo, bhi) in enumerate(specs):
            sl = tuple(slice(a - o, b - o) for a, b, o in zip(blo, bhi, lo, strict=True))
            local, _ = cc.connected_components(np.ascontiguousarray(p[sl]), 26)
            pcc = np.zeros(local.shape, np.int64)
            for c in ([m] if m else []) + ([t] if t_free and t <= len(first_index) else []):
                at = np.unravel_index(int(first_index[c - 1]), shape)
                rel = tuple(int(x) - int(a) for x, a in zip(at, blo, strict=True))
                if all(0 <= r < n for r, n in zip(rel, local.shape, strict=True)):
                    pcc[local == local[rel]] = c
            vals[i] = _hausdorff_one(g[sl], pcc, t, m, t_free, vs, plan["d_max"])
        out.append(([s_[0] for s_ in specs], vals))
    return out


def _finish_instance(plan, bucket_results, vs, consts) -> dict[str, Any]:
    if "result" in plan:
        return plan["result"]
    dists = plan["dists"].copy()
    for res in bucket_results:
        for ks, vals in res:
            dists[ks] = vals
    fp, d_max, mg, mp = plan["fp"], plan["d_max"], plan["mg"], plan["mp"]
    # distances are float32 (the official output array); unmatched predictions append D_max
    all_d = np.concatenate([dists, np.full(fp, d_max, np.float32)]) if fp else dists
    h = normalize_distance(all_d, vs, consts.get("hausdorff_base", 1.01))
    return {"tp": int(plan["tp"]), "fp": int(fp), "fn": int(plan["fn"]),
            "hausdorff_norm_sum": float(np.sum(h)), "n_hausdorff": int(len(all_d)),
            "status": STATUS_SCORED,
            "_detail": {"mapping": np.stack([mp, mg], axis=1) if len(mg) else
                        np.empty((0, 2), np.int64),
                        "truth_ids": plan["truth_ids"], "hausdorff_per_gt": dists,
                        "n_pred_cc": plan["n_pred"]}}


def _stats_combine(parts):
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


def _semantic_chunk(g, p) -> np.ndarray:
    xp = array_module(g)  # NumPy, or CuPy for a GPU chunk
    gb = g > 0
    pb = p > 0
    return np.array([int(xp.count_nonzero(gb & pb)), int(xp.count_nonzero(pb)),
                     int(xp.count_nonzero(gb))], np.int64)


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0) if parts else np.zeros(3, np.int64)


def score_semantic(gt: Any, pred: Any, *, device: str = "cpu", scheduler: Any = None,
                   missing: Any = None, fills: tuple[Any, Any] | None = None
                   ) -> dict[str, Any]:
    """Official ``score_semantic`` (§5.2): ``pred > 0`` and ``truth > 0`` voxel counts."""
    return compute(semantic_delayed(gt, pred, device=device, missing=missing, fills=fills),
                   scheduler=scheduler)[0]


def semantic_delayed(gt: Any, pred: Any, *, device: str = "cpu", missing: Any = None,
                     fills: tuple[Any, Any] | None = None) -> Delayed:
    """Lazy :func:`score_semantic`; chunks marked in ``missing`` (see
    :func:`instance_delayed`) count ``voxels × [fill_gt > 0, fill_pred > 0]`` unread."""
    gt, pred = as_dask(gt), as_dask(pred)
    if pred.chunks != gt.chunks:
        pred = pred.rechunk(gt.chunks)
    skip = _skip_map(missing, gt)
    if skip.any() and fills is None:
        skip[...] = False
    parts = chunk_tasks(_semantic_chunk, [gt, pred], device=device, skip=skip)
    n_skip = _skipped_voxels(gt, skip)
    if n_skip:
        fg, fp = bool(np.asarray(fills[0]) > 0), bool(np.asarray(fills[1]) > 0)
        parts.append(np.array([fg and fp, fp, fg], np.int64) * n_skip)
    return dask.delayed(_semantic_result, pure=True)(tree_reduce(parts, _sum))


def _semantic_result(counts) -> dict[str, Any]:
    tp, n_p, n_g = (int(v) for v in counts)
    return {"tp": tp, "fp": n_p - tp, "fn": n_g - tp, "status": STATUS_SCORED}


def _ids_chunk(block) -> np.ndarray:
    return np.unique(np.asarray(block))


def _union_ids(parts) -> np.ndarray:
    return np.unique(np.concatenate(parts)) if parts else np.empty(0)


def count_ids_delayed(gt: Any, *, missing: Any = None, fill: Any = None) -> Delayed:
    """Lazy number of distinct non-zero ids of ``gt`` (missing chunks add ``fill``)."""
    gt = as_dask(gt)
    skip = _skip_map(missing, gt)
    if skip.any() and fill is None:
        skip[...] = False
    parts = chunk_tasks(_ids_chunk, [gt], skip=skip)
    if skip.any():
        parts.append(np.unique(np.asarray([fill])))
    return dask.delayed(np.count_nonzero, pure=True)(tree_reduce(parts, _union_ids))


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
