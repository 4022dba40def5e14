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
  prediction's boxes only (the official ROI padding does not change the value, §5.1.9). One
  task per chunk serves every instance whose box touches it (issue 18: never once per
  instance group) and computes the instances that lie inside it; instances spanning chunks
  are assembled from compressed mask pieces in a fixed number of tasks. Pairs lost in a
  large box (the ID-collision quirk joins a GT instance to a prediction component anywhere
  within ``D_max``) build their masks on the CPU inside their parts' boxes only; extreme boxes
  (:data:`SPARSE_BOX_RATIO`) are measured from voxel lists, not by the box kernel. On the CPU
  the pairs of a chunk whose box lies in it are measured in one GIL-free call (issue 18,
  session 10: two threads ran this pass no faster than one while each pair's masks were built
  with NumPy).

Decode once (issue 18, session 6): on the CPU every chunk is read and labelled once. The
passes cannot merge — pass 2 needs the union-find of all of pass 1, pass 3 the matching of
all of pass 2 — so each hands what the next needs on through a bounded per-process store of
zstd-compressed chunks (:mod:`gpueval.kernels.throughput_carry`): pass 1 its local
component labels (pass 2 maps their overlaps and boxes through the chunk's lookup table,
pass 3 relabels only each instance's box), pass 2 the truth chunk. A pass that finds an
entry gone (budget, another worker process) reads and labels the chunk again: same result.

Every stage is a lazy node (:func:`instance_delayed`, :func:`semantic_delayed`,
:func:`count_ids_delayed`) so a whole submission computes as one graph; ``missing`` chunk maps
skip never-written zarr chunks exactly (see :func:`instance_delayed`). The labelling graph is
built here from the per-chunk tasks of :mod:`gpueval.kernels.components` (whose
``label_chunked`` computes its merge eagerly).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed
from numcodecs import LZ4

from gpueval import progress as bars
from gpueval.backend import array_module
from gpueval.engine import (
    Opaque,
    TaskGraph,
    chunk_tasks,
    compute,
    record_stage,
    serial_step,
    timed,
    tree_reduce,
)
from gpueval.kernels import components as cc
from gpueval.kernels import throughput_carry
from gpueval.kernels.distance import hausdorff_max, hausdorff_sparse
from gpueval.kernels.edt_nogil import hausdorff_sq_in_boxes
from gpueval.kernels.fused import chunk_statistics
from gpueval.kernels.regions import RegionStats, chunk_region_stats
from gpueval.kernels.stats import Contingency, contingency
from gpueval.kernels.throughput_carry import store as carry_store
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
    from scipy import ndimage  # noqa: PLC0415 - only the 2025 scorer measures this way

    dist = ndimage.distance_transform_edt(~dst, sampling=voxel_size)
    return float(dist[src].max())


#: a box with more than this many voxels per object voxel is measured from the voxel lists
#: (k-d tree), not with the box kernel (whose cost is the box's). Session 9 set 64 (the k-d
#: tree ~1 µs per object voxel, the box kernel ~6 ns per box voxel and EDT); session 10
#: measured both on the 60 such pairs of ``cellmap_600`` (84-6,576 box voxels per object
#: voxel, 109 M box voxels): 1.1-1.4 ns per box voxel for the voxel lists, 1.1-1.9 for the box
#: kernel — each scans the box, the search settles the far voxels — but the box kernel
#: releases the GIL and the voxel lists (NumPy scans, the tree) mostly hold it, so two
#: threads measured them no faster than one. The lists are kept for extreme boxes only
SPARSE_BOX_RATIO = 1 << 16

#: boxes above this many voxels keep session 9's ratio (:data:`LARGE_BOX_RATIO`): where the
#: search gives up, the box kernel's EDT needs a float64 array of the box (8 bytes a voxel),
#: so a far pair in a crop-sized box would need GiBs that the voxel lists do not
LARGE_BOX = 1 << 24
LARGE_BOX_RATIO = 64


def _sparse_pair(size: int, counts: tuple[int, int]) -> bool:
    """Whether a pair's box of ``size`` voxels holding ``counts`` object voxels is measured
    from the voxel lists (:func:`gpueval.kernels.distance.hausdorff_sparse`), not the box
    kernel: a box of more than :data:`SPARSE_BOX_RATIO` voxels per object voxel, or, above
    :data:`LARGE_BOX` voxels, more than :data:`LARGE_BOX_RATIO` (bounded memory)."""
    ratio = SPARSE_BOX_RATIO if size <= LARGE_BOX else LARGE_BOX_RATIO
    return size > 4096 and size > ratio * (counts[0] + counts[1])

#: a pair whose parts' boxes hold less than this share of its union box's voxels builds its
#: masks from the parts' boxes only (:func:`_masks_in_parts`); compact pairs, whose parts fill
#: their box, compare the whole piece at once (fewer, larger NumPy calls)
CONFINED_SHARE = 0.25


def _pair_hausdorff(a: np.ndarray, b: np.ndarray, voxel_size,
                    counts: tuple[int, int] | None = None) -> float:
    """Symmetric Hausdorff (nm) of two non-empty masks (``counts``: their voxel counts where
    known, else counted here).

    Compact pairs: the shared box kernel (:func:`gpueval.kernels.distance.hausdorff_max`; on
    the CPU a Numba kernel that releases the GIL, squared distances in SciPy's float64
    arithmetic: SciPy's float32 value, the official one), also for pairs lost in a large box
    (a far prediction component joined by the ID-collision quirk, a split object's far part)
    up to :data:`SPARSE_BOX_RATIO` box voxels per object voxel (:data:`LARGE_BOX_RATIO` for
    boxes above :data:`LARGE_BOX` voxels: :func:`_sparse_pair`); beyond it
    :func:`gpueval.kernels.distance.hausdorff_sparse`, exact in float64 — the same float32
    value as the box kernel for integer voxel sizes (checked on 3,552 pairs of
    ``cellmap_600``), else within one float32 step. The choice depends on the pair's masks
    only, so it is the same for every chunking and schedule.
    """
    if a.size > 4096 and counts is None:
        counts = (int(np.count_nonzero(a)), int(np.count_nonzero(b)))
    if _sparse_pair(a.size, counts):
        return float(hausdorff_sparse(a, b, voxel_size))
    # the box kernel without the EDTs that cannot change the value (nested or equal masks)
    return float(hausdorff_max(a, b, voxel_size))


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
    with throughput_carry.scope():
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
    5. per chunk that some measured instance's box touches: the truth and the prediction
       relabelled with the global ids (on the CPU from the carry, see the module notes;
       else one read); capped Hausdorff distances of the instances inside the chunk,
       bit-packed mask pieces of the others; ``K`` nodes put the pieces together and
       compute the rest; one node assembles the result.

    Memory: a few decoded chunks per thread, plus the carry (at most
    :data:`gpueval.kernels.throughput_carry.BUDGET_BYTES` of compressed chunks per process;
    beyond it the oldest entries are dropped and their chunks read again).

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
    # CPU: the passes hand their chunks on compressed (gpueval.kernels.throughput_carry) under
    # keys unique to this graph, so an entry of another graph (or of a failed run over a
    # zarr rewritten since) is never taken for this one's
    carry = _CarryKeys() if device == "cpu" else None
    merged = cc.label_graph(pred, 26, False, device=device, skip=skip,
                            carry=None if carry is None else carry.local)
    # every task below is one entry of one dict (engine.TaskGraph): building it with a
    # dask.delayed call per task cost ~0.05 s per label on cellmap_600, serial before the
    # compute (dask 2026.8 culls the graph behind each list argument at every call)
    graph = TaskGraph("cellmap-instance", dask.base.tokenize(
        gt.name, pred.name, vs, sorted(dict(consts).items()), device, skip, carry))
    shape = tuple(int(s) for s in gt.shape)
    holder = graph.data("opaque", Opaque((gt, pred)))
    bounds = _bounds(gt)
    cells = [(index, cell) for index, cell in enumerate(np.ndindex(*gt.numblocks))
             if not skip[cell]]
    if carry is not None:
        parts = [graph.add(_stats_chunk_carried, holder, cell, index, _origin(bounds, cell),
                           merged, shape, carry, index=(index,)) for index, cell in cells]
    else:
        # the second pass reads its chunks again, inside its tasks, after the merge: sharing
        # the first pass's read tasks would keep every chunk of the label in memory until the
        # union-find is done (dask.graph_manipulation.bind fails on rechunked graphs here)
        parts = chunk_tasks(_stats_chunk, [gt, pred], device=device, skip=skip,
                            read_in_task=True, with_slices=True,
                            extra=(merged, shape, bounds))
    n_skip = _skipped_voxels(gt, skip)
    if n_skip:
        zero = np.zeros((1,) * gt.ndim, gt.dtype)
        c = contingency(zero, np.zeros_like(zero, np.uint32))
        empty = chunk_region_stats(np.zeros((0,) * gt.ndim, np.uint32))
        parts.append((Contingency(c.ids_a, c.ids_b, c.counts * n_skip), empty, empty))
    reduced = graph.reduce(_stats_combine, parts)
    n_buckets = max(1, min(HAUSDORFF_TASKS, len(cells)))
    plan = graph.add(_plan_instance, reduced, merged, dict(consts), shape, gt.chunks, vs,
                     n_buckets)
    # stage 5: one task per chunk serves all the instances whose box touches it, from the
    # chunk pass 2 carried (or one read when the carry is gone); the carried variant also
    # depends on its chunk's pass-2 result (small): a dask.distributed scheduler then runs it
    # where that task ran and left the chunk
    per_chunk = [graph.add(_hausdorff_chunk, plan, index, _origin(bounds, cell), holder, cell,
                           merged, vs, carry, part if carry is not None else None,
                           index=(index,))
                 for (index, cell), part in zip(cells, parts, strict=False)]
    # one node holds the chunk results for every bucket (K edges, not K × chunks)
    chunk_results = graph.add(list, per_chunk)
    hs = [graph.add(_hausdorff_assemble, plan, j, chunk_results, vs, index=(j,))
          for j in range(n_buckets)]
    return graph.delayed(graph.add(_finish_instance, plan, chunk_results, hs, vs,
                                   dict(consts)))


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


def _origin(bounds, cell) -> tuple[int, ...]:
    return tuple(int(b[c]) for b, c in zip(bounds, cell, strict=True))


class _CarryKeys:
    """The keys under which one instance graph's passes hand chunks on
    (:mod:`gpueval.kernels.throughput_carry`): pass 1's local component labels of the
    prediction, pass 2's truth chunk; ``(key, chunk index)`` each."""

    __slots__ = ("local", "truth")

    def __init__(self) -> None:
        # closed (entries dropped) when the scope computing this graph ends
        self.local = throughput_carry.new_group("cellmap-cc-local")
        self.truth = throughput_carry.new_group("cellmap-truth")

    def __dask_tokenize__(self):
        return ("cellmap-carry", self.local[1])


def _read_block(arr: da.Array, cell) -> tuple[np.ndarray, float]:
    """One chunk of ``arr`` as NumPy, and the seconds the read took (recorded as ``read``)."""
    t0 = time.perf_counter()
    # through the block's Delayed: a dask-array compute would copy the chunk once more
    # (its finalize step), 10-20 ms per 256³ uint32 chunk
    # (dask.get, not "sync": a scheduler name makes dask import distributed, ~0.1 s)
    out = np.asarray(arr.blocks[cell].to_delayed().ravel()[0].compute(scheduler=dask.get))
    seconds = time.perf_counter() - t0
    record_stage("read", seconds)
    return out, seconds


def _self_timed(func):
    """Mark a task function that records its own ``read`` and ``kernel`` seconds
    (:func:`gpueval.engine.record_stage`), so the scheduler's stage timer leaves it alone
    (the engine's protocol: the ``_gpueval_stage`` attribute :func:`gpueval.engine.timed`
    sets)."""
    func._gpueval_stage = "kernel"
    return func


def _truth_and_local(holder: Opaque, cell, index: int, carry: _CarryKeys, *,
                     last: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """The truth chunk and the prediction chunk's local component labels (cc3d of the chunk
    alone, to map through the chunk's lookup table), from the carry where the earlier
    passes left them, else read (and labelled) here — then left for the next pass, unless
    ``last``: the last pass that needs them (its entries are dropped). And the seconds spent
    reading."""
    gt, pred = holder.array
    read = 0.0
    got = carry_store.get((carry.truth, index), remove=True) if last else None
    if got is not None:
        g = got[0]
    else:
        g, read = _read_block(gt, cell)
    local = cc.carried_local(carry.local, index, remove=last)
    if local is None:  # evicted, or pass 1 ran in another worker process
        p, seconds = _read_block(pred, cell)
        read += seconds
        local, n = cc.connected_components(np.ascontiguousarray(p), 26)
        local = cc.narrowest(local, n)
        if not last:
            carry_store.put((carry.local, index), [local])
    return g, local, read


def _remap_b(table: Contingency, lut: np.ndarray) -> Contingency:
    """The table with every second id ``j`` replaced by ``lut[j]`` and equal pairs summed:
    the overlaps with the relabelled chunk, from those with its local labels."""
    ids_b = lut[table.ids_b.astype(np.int64)]
    order = np.lexsort((ids_b, table.ids_a))
    a, b, w = table.ids_a[order], ids_b[order], table.counts[order]
    if not len(w):
        return Contingency(a, b, w)
    starts = np.flatnonzero(np.concatenate([[True], (a[1:] != a[:-1]) | (b[1:] != b[:-1])]))
    return Contingency(a[starts], b[starts], np.add.reduceat(w, starts))


@_self_timed
def _stats_chunk_carried(holder: Opaque, cell, index: int, origin, merged, shape,
                         carry: _CarryKeys):
    """Pass 2 on the CPU: :func:`_stats_chunk` of one chunk, from pass 1's carried local
    labels (no read, no second cc3d run, and no relabelled chunk built: the overlaps and
    boxes of the local labels are mapped through the lookup table, which is exact); the
    truth chunk is left in the carry for pass 3."""
    t0 = time.perf_counter()
    g, local, read = _truth_and_local(holder, cell, index, carry, last=False)
    lut = np.asarray(merged[0][index])
    table = _remap_b(contingency(g, local), lut)
    stats_g = chunk_region_stats(g, origin, shape)
    stats_p = chunk_region_stats(local, origin, shape, max_id=len(lut) - 1).relabel(lut)
    carry_store.put((carry.truth, index), [g])
    record_stage("kernel", time.perf_counter() - t0 - read)
    bars.advance(g.size, unit="vx")  # progress weighted by voxels, as the engine's tasks
    return table, stats_g, stats_p


def _stats_chunk(slices, g, p, merged, shape, bounds):
    origin = tuple(int(s.start or 0) for s in slices)
    index = int(np.ravel_multi_index(
        tuple(int(np.searchsorted(b, o, "right") - 1) for b, o in zip(bounds, origin,
                                                                        strict=True)),
        tuple(len(b) - 1 for b in bounds)))
    pl = cc.relabel_block(p, merged[0], index)
    # the pair counts and both region statistics from one compaction of the chunk's runs: on
    # the GPU ≤ 4 waits instead of ~12 for the three twins (kernels/fused.py); on the CPU the
    # same three calls as before
    return chunk_statistics(g, pl, origin, shape)


@serial_step
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
    pg = pairs.ids_a.astype(np.int64)
    pp = pairs.ids_b.astype(np.int64)
    inter = pairs.counts.astype(np.float64)
    # every id of a pair is in the marginals (sorted ids): a vectorised lookup of its size
    union = (g_sizes[np.searchsorted(g_ids, pairs.ids_a)].astype(np.float64)
             + p_sizes[np.searchsorted(p_ids, pairs.ids_b)].astype(np.float64) - inter)
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
    groups = _hausdorff_groups(truth_ids, mg, mp, n_pred, vs, d_max, chunks, boxes_g,
                               boxes_p, truth_values=g_ids[g_ids != 0])
    specs, chunk_specs, several = _chunk_plan(groups, tuple(len(c) for c in chunks))
    return {"tp": tp, "fp": fp, "fn": fn, "n_pred": n_pred, "truth_ids": truth_ids,
            "mg": mg, "mp": mp, "d_max": d_max, "dists": out, "specs": specs,
            "chunk_specs": chunk_specs,
            "buckets": _spread(several, n_buckets,
                               [math.prod(y - x for x, y in zip(specs[i][4], specs[i][5],
                                                                 strict=True))
                                for i in several])}


def _hausdorff_groups(truth_ids, mg, mp, n_pred, vs, d_max, chunks, boxes_g: RegionStats,
                      boxes_p: RegionStats, truth_values=None) -> dict[tuple, list[tuple]]:
    """Instances needing a Hausdorff computation, grouped by the chunks their boxes touch:
    ``{((first, last) chunk per axis): [(k, t, m, t_free, lo, hi, (n_a, n_b), parts), ...]}``
    (``n_a``, ``n_b``: the voxel counts of the GT mask and the remapped prediction mask;
    ``parts``: :func:`_part_boxes`, the boxes of A, of B's matched part and of its ID-collision
    part, where they hold less than :data:`CONFINED_SHARE` of the union box ``[lo, hi)``'s
    voxels, else ``None``).

    Vectorised over instances (10⁴–10⁶ per crop): box lookups, the D_max shortcut and the
    chunk ranges are array operations; only the survivors' tuples are built in Python.
    ``truth_values`` are the truth ids in the truth's dtype (for the box lookup; default
    ``truth_ids``).
    """
    n = len(truth_ids)
    if n == 0:
        return {}
    t = np.asarray(truth_ids, np.int64)
    m = np.zeros(n, np.int64)
    if len(mg):
        order = np.argsort(t, kind="stable")  # (uint64 ids ≥ 2⁶³ wrap: sort, don't assume)
        m[order[np.searchsorted(t[order], mg)]] = mp  # matched GT ids are truth ids, 1:1
    t_free = (t >= 1) & (t <= n_pred) & ~np.isin(t, mp)
    ndim = len(chunks)
    pos_a = boxes_g.lookup(t if truth_values is None else truth_values)
    pos_m = np.where(m > 0, _lookup_nonneg(boxes_p, m), -1)
    pos_t = np.where(t_free, _lookup_nonneg(boxes_p, t), -1)
    far_away = 2 ** 40  # beyond any voxel coordinate, and no int64 overflow in the gaps

    def box(stats, pos):  # half-open boxes; absent parts give an empty (far, −far) box
        lo = np.full((n, ndim), far_away, np.int64)
        hi = np.full((n, ndim), -far_away, np.int64)
        ok = pos >= 0
        if ok.any():
            lo[ok] = stats.bbox_min[pos[ok]]
            hi[ok] = stats.bbox_max[pos[ok]] + 1
        return lo, hi, ok

    a_lo, a_hi, has_a = box(boxes_g, pos_a)
    m_lo, m_hi, has_m = box(boxes_p, pos_m)
    f_lo, f_hi, has_f = box(boxes_p, pos_t)
    vsa = np.asarray(vs, float)

    def gap(lo, hi):  # lower bound on any distance between voxel centres of A and a part
        g = np.maximum(0, np.maximum(lo - (a_hi - 1), a_lo - (hi - 1)))
        return np.sqrt(np.sum((g * vsa) ** 2, axis=1))

    # Hausdorff >= max over b in B of dist(b, A) >= the gap between A's box and the box of
    # any part of B: one part at least D_max away makes the capped value D_max (exact).
    far = (has_m & (gap(m_lo, m_hi) >= d_max)) | (has_f & (gap(f_lo, f_hi) >= d_max))
    need = has_a & (has_m | has_f) & ~far  # B empty: D_max
    lo = np.minimum(np.minimum(a_lo, m_lo), f_lo)
    hi = np.maximum(np.maximum(a_hi, m_hi), f_hi)
    bounds = [np.concatenate([[0], np.cumsum(c)]) for c in chunks]
    first = np.stack([np.searchsorted(b_, lo[:, ax], "right") - 1
                      for ax, b_ in enumerate(bounds)], axis=1)
    last = np.stack([np.searchsorted(b_, hi[:, ax] - 1, "right") - 1
                     for ax, b_ in enumerate(bounds)], axis=1)
    # the masks' voxel counts, from the statistics: the box holds all of A and of each part
    # of B, whose voxels are disjoint (m is matched, t_free is not), so these are the
    # masks' count_nonzero without a pass over the box
    n_a = np.where(has_a, boxes_g.counts[np.maximum(pos_a, 0)], 0) if len(boxes_g) else \
        np.zeros(n, np.int64)
    n_b = np.zeros(n, np.int64)
    for has, pos in ((has_m, pos_m), (has_f, pos_t)):
        if len(boxes_p):
            n_b += np.where(has, boxes_p.counts[np.maximum(pos, 0)], 0)
    ks = np.flatnonzero(need)
    groups: dict[tuple, list[tuple]] = {}
    # the boxes of the parts (A, B's matched part, B's ID-collision part; an absent part an
    # empty box), kept for the pairs whose parts fill little of their union box (far parts
    # joined by the ID-collision quirk): their masks are built inside the parts' boxes only
    part_lo = np.stack([a_lo, m_lo, f_lo], axis=1)[ks]
    part_hi = np.stack([a_hi, m_hi, f_hi], axis=1)[ks]
    part_volume = np.prod(np.maximum(part_hi - part_lo, 0), axis=2).sum(axis=1)
    few = np.flatnonzero(part_volume < CONFINED_SHARE * np.prod(hi[ks] - lo[ks], axis=1))
    parts: list = [None] * len(ks)  # only the few confined pairs' boxes become Python lists
    for at, p_lo, p_hi in zip(few.tolist(), part_lo[few].tolist(), part_hi[few].tolist(),
                              strict=True):
        parts[at] = _part_boxes(p_lo, p_hi)
    # one tolist per array, not per instance
    for k, tk, mk, free, lo_k, hi_k, first_k, last_k, na, nb, part in zip(
            ks.tolist(), t[ks].tolist(), m[ks].tolist(), t_free[ks].tolist(),
            lo[ks].tolist(), hi[ks].tolist(), first[ks].tolist(), last[ks].tolist(),
            n_a[ks].tolist(), n_b[ks].tolist(), parts, strict=True):
        key = tuple(zip(first_k, last_k, strict=True))
        groups.setdefault(key, []).append((k, tk, mk, free, tuple(lo_k), tuple(hi_k),
                                           (na, nb), part))
    return groups


def _part_boxes(lo: list[list[int]], hi: list[list[int]]
                ) -> tuple[tuple[tuple[int, ...], tuple[int, ...]] | None, ...]:
    """``(A, B matched, B ID collision)``: each part's half-open box ``(lo, hi)``, ``None``
    for an absent part (its empty box has ``lo > hi``)."""
    return tuple((tuple(a), tuple(b)) if all(x < y for x, y in zip(a, b, strict=True))
                 else None for a, b in zip(lo, hi, strict=True))


def _lookup_nonneg(stats: RegionStats, ids: np.ndarray) -> np.ndarray:
    """:meth:`RegionStats.lookup` of non-negative ids (prediction component ids ≤ n)."""
    if not len(stats.ids):
        return np.full(len(ids), -1, np.int64)
    return stats.lookup(np.clip(ids, 0, None))


def _chunk_plan(groups: dict[tuple, list[tuple]], numblocks: tuple[int, ...]
                ) -> tuple[list[tuple], dict[int, list[int]], list[int]]:
    """The Hausdorff specs as a flat list (chunk order), the specs each chunk (flat C-order
    index) must serve, and the specs whose box spans several chunks."""
    specs: list[tuple] = []
    chunk_specs: dict[int, list[int]] = {}
    several: list[int] = []
    for key, group in sorted(groups.items()):
        cells = np.ravel_multi_index(
            np.meshgrid(*[np.arange(a, z + 1) for a, z in key], indexing="ij"),
            numblocks).ravel().tolist()
        for spec in group:
            i = len(specs)
            specs.append(spec)
            for c in cells:
                chunk_specs.setdefault(int(c), []).append(i)
            if len(cells) > 1:
                several.append(i)
    return specs, chunk_specs, several


def _spread(items: list[int], n: int, weights: Sequence[float] | None = None
            ) -> list[list[int]]:
    """``items`` over ``n`` buckets of about equal total weight (each bucket in item order).

    Greedy, heaviest item first, into the lightest bucket (ties: the lower bucket): with
    ``weights`` the union-box volumes, the assembling tasks take about equal time, so the
    last of them does not run alone on one thread while the other idles (session 10: a
    contiguous run of ``cellmap_600`` holding its largest boxes took 64 ms of a 250 ms pass,
    most of its buckets 1-10 ms). Without weights, contiguous runs of equal count."""
    if weights is None:
        return [items[len(items) * i // n: len(items) * (i + 1) // n] for i in range(n)]
    load = [(0.0, b) for b in range(n)]  # a heap of (total weight, bucket)
    buckets: list[list[int]] = [[] for _ in range(n)]
    for at in sorted(range(len(items)), key=lambda q: (-weights[q], q)):
        total, b = heapq.heappop(load)
        buckets[b].append(items[at])
        heapq.heappush(load, (total + float(weights[at]), b))
    return [sorted(bucket) for bucket in buckets]


# --------------------------------------------------------------------------------------------
# Hausdorff inputs: one read of each chunk for every instance that touches it

#: codec of the bit-packed masks a chunk task hands to the assembling task: masks of blobs
#: compress ~10-100x, so what waits between the two stages stays small. LZ4, not zstd
#: (session 9, the 704 pieces of the dense 512³ label, 10.4 MB of bits): 1.10 MB instead of
#: 0.63 MB, but encoding 33 -> 10 ms and decoding ~3x faster (numcodecs' zstd sets up a
#: context per call, tens of µs, the bulk of a piece's cost)
_PIECE_CODEC = LZ4(acceleration=1)


def _chunk_specs(plan: Mapping[str, Any], index: int) -> list[int]:
    return plan.get("chunk_specs", {}).get(index, [])


@_self_timed
def _hausdorff_chunk(plan, index: int, origin: tuple[int, ...], holder: Opaque, cell,
                     merged, vs, carry: _CarryKeys | None = None, _after: Any = None
                     ) -> tuple[list[tuple[int, np.float32]], list[tuple]]:
    """The Hausdorff inputs of chunk ``index``, read (decoded) at most once for every
    instance whose box touches it — on the CPU not at all: pass 2 left the truth chunk and
    pass 1 the local component labels in the carry.

    The prediction is relabelled with its global component ids (the ids the matching used),
    so the remapped prediction of GT ``t`` is ``pl == m`` (plus ``pl == t`` under the ID
    collision quirk) — exactly the component the matching chose; from the carry only each
    instance's box is relabelled. Instances whose box lies in this chunk alone get their
    capped distance here (most of them, on dense data); the others get their mask pieces
    ``(k, lo, hi, bits)`` (box ∩ chunk; both masks stacked, bit-packed, LZ4), put together by
    :func:`_hausdorff_assemble`.
    """
    t0 = time.perf_counter()
    mine = _chunk_specs(plan, index)
    if not mine:
        if carry is not None:  # nothing to measure here: free what pass 2 left
            carry_store.discard((carry.truth, index))
            carry_store.discard((carry.local, index))
        return [], []
    if carry is not None:
        g, labels, read = _truth_and_local(holder, cell, index, carry, last=True)
        kind = "local"
    else:
        (g, r1), (p, r2) = (_read_block(a, cell) for a in holder.array)
        kind, labels, read = "global", cc.relabel_block(p, merged[0], index), r1 + r2
    lut = np.asarray(merged[0][index])
    # local labels: the voxels of global id v are those whose local label l has lut[l] == v,
    # so the prediction mask compares the box with those few local ids (no lut[labels[box]]
    # gather per pair: ~0.2 ms per 40³ box)
    by_value = np.argsort(lut, kind="stable")
    sorted_lut = lut[by_value]
    end = tuple(o + s for o, s in zip(origin, g.shape, strict=True))
    values, pieces = [], []
    if kind == "local":
        mine = _measure_in_boxes(plan, mine, g, labels, lut, by_value, sorted_lut, origin,
                                 end, vs, values)
    for i in mine:
        k, t, m, t_free, lo, hi, counts, parts = plan["specs"][i]
        a_lo = tuple(max(x, o) for x, o in zip(lo, origin, strict=True))
        a_hi = tuple(min(x, e) for x, e in zip(hi, end, strict=True))
        sl = tuple(slice(x - o, y - o) for x, y, o in zip(a_lo, a_hi, origin, strict=True))
        whole = a_lo == tuple(lo) and a_hi == tuple(hi)  # the whole box is in this chunk
        ext = tuple(y - x for x, y in zip(a_lo, a_hi, strict=True))
        # a piece's two masks are built into one buffer, packed as one (no copies, one
        # compressed frame per piece: session 9, 54 -> 37 µs per 40³ piece)
        confined = kind == "local" and parts is not None
        ab = np.zeros((2, *ext), bool) if confined else None if whole else \
            np.empty((2, *ext), bool)
        if kind == "global":
            a, b = _pair_masks(g[sl], labels[sl], t, m, t_free)
            if ab is not None:
                ab[0], ab[1] = a, b
        elif confined:
            # the parts fill little of the box (a far part joined by the ID-collision quirk):
            # compare only inside each part's box, zeros elsewhere (session 10: 109 M voxels
            # of such boxes in cellmap_600, scanned in uint32 and uint16, then in bool)
            if not _masks_in_parts(ab, g, labels, origin, a_lo, a_hi, parts, t, m, t_free,
                                   by_value, sorted_lut) and not whole:
                continue  # no part here: the assembled masks start as zeros
            a, b = ab[0], ab[1]
        else:
            wanted = [_locals_of(by_value, sorted_lut, v) for v in ((m,) if m else ())
                      + ((t,) if t_free else ())]
            a = np.equal(g[sl], t, out=None if ab is None else ab[0])
            b = _mask_of_locals(labels[sl], np.concatenate(wanted) if wanted
                                else np.zeros(0, np.int64), out=None if ab is None else ab[1])
        if whole:
            values.append((k, _capped_hausdorff(a, b, vs, plan["d_max"], counts)))
        else:
            pieces.append((k, a_lo, a_hi, _pack(ab)))
    record_stage("kernel", time.perf_counter() - t0 - read)
    return values, pieces




def _clip(box, lo, hi) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The half-open ``box`` ``(lo, hi)`` clipped to ``[lo, hi)``; ``None`` if that is
    empty or ``box`` is ``None``."""
    if box is None:
        return None
    c_lo = tuple(max(x, y) for x, y in zip(box[0], lo, strict=True))
    c_hi = tuple(min(x, y) for x, y in zip(box[1], hi, strict=True))
    return (c_lo, c_hi) if all(x < y for x, y in zip(c_lo, c_hi, strict=True)) else None


def _masks_in_parts(ab: np.ndarray, g: np.ndarray, labels: np.ndarray, origin, lo, hi,
                    parts, t: int, m: int, t_free: bool, by_value: np.ndarray,
                    sorted_lut: np.ndarray) -> bool:
    """Write the GT mask (``g == t``) into ``ab[0]`` and the prediction mask (local labels
    mapped to ``m``, or to ``t`` under the ID-collision quirk) into ``ab[1]``, a zeroed
    buffer over the piece ``[lo, hi)`` of the chunk at ``origin``, comparing only inside
    each part's box: the statistics' boxes hold every voxel of their id, so the masks are
    those of the whole piece. Returns whether any part's box meets the piece (if none, both
    masks are empty)."""
    def views(box):  # (chunk slices, piece slices) of a clipped part box
        return (tuple(slice(x - o, y - o) for x, y, o in zip(*box, origin, strict=True)),
                tuple(slice(x - o, y - o) for x, y, o in zip(*box, lo, strict=True)))

    met = False
    box_a = _clip(parts[0], lo, hi)
    if box_a is not None:
        in_chunk, in_piece = views(box_a)
        np.equal(g[in_chunk], t, out=ab[0][in_piece])
        met = True
    for box, value, present in ((parts[1], m, bool(m)), (parts[2], t, bool(t_free))):
        box = _clip(box, lo, hi) if present else None
        if box is None:
            continue
        in_chunk, in_piece = views(box)
        ab[1][in_piece] |= _mask_of_locals(labels[in_chunk],
                                           _locals_of(by_value, sorted_lut, value))
        met = True
    return met


def _measure_in_boxes(plan, mine: list[int], g: np.ndarray, labels: np.ndarray,
                      lut: np.ndarray, by_value: np.ndarray, sorted_lut: np.ndarray,
                      origin, end, vs, values: list) -> list[int]:
    """Capped distances of the specs of ``mine`` whose whole box lies in this chunk and that
    the box kernel measures (both masks non-empty, not sparse: :func:`_pair_hausdorff`'s
    rule), in one GIL-free call (:func:`gpueval.kernels.edt_nogil.hausdorff_sq_in_boxes`),
    appended to ``values``; returns the specs left (pieces, sparse pairs, ids the truth's
    dtype cannot hold). Same values as :func:`_capped_hausdorff` of the same masks."""
    if g.ndim != 3 or g.dtype.kind not in "iu" or labels.dtype.kind not in "iu":
        return mine
    top = int(np.iinfo(g.dtype).max)
    bottom = int(np.iinfo(g.dtype).min)
    batch, rest = [], []
    for i in mine:
        _k, t, _m, _t_free, lo, hi, counts, _parts = spec = plan["specs"][i]
        size = math.prod(y - x for x, y in zip(lo, hi, strict=True))
        if (counts[0] > 0 and counts[1] > 0 and bottom <= t <= top
                and all(x >= o for x, o in zip(lo, origin, strict=True))
                and all(y <= e for y, e in zip(hi, end, strict=True))
                and not _sparse_pair(size, counts)):
            batch.append((i, spec))
        else:
            rest.append(i)
    if not batch:
        return rest
    ids = [np.concatenate([_locals_of(by_value, sorted_lut, v) for v in
                           ((m,) if m else ()) + ((t,) if t_free else ())] or
                          [np.zeros(0, np.int64)]) for _i, (_k, t, m, t_free, *_) in batch]
    starts = np.zeros(len(batch) + 1, np.int64)
    np.cumsum([len(x) for x in ids], out=starts[1:])
    org = np.asarray(origin, np.int64)
    squared = hausdorff_sq_in_boxes(
        np.ascontiguousarray(g), np.ascontiguousarray(labels), np.zeros(len(lut), bool),
        np.array([spec[4] for _i, spec in batch], np.int64) - org,
        np.array([spec[5] for _i, spec in batch], np.int64) - org,
        np.array([spec[1] for _i, spec in batch]), starts, np.concatenate(ids), vs)
    d_max = plan["d_max"]
    for (i, spec), sq in zip(batch, squared.tolist(), strict=True):
        if sq < 0:  # a mask empty after all: the general path decides
            rest.append(i)
            continue
        # hausdorff_max's rounding (math.sqrt correctly rounded, then float32), then the cap
        values.append((spec[0], np.float32(min(float(np.float32(math.sqrt(sq))), d_max))))
    return rest


def _pair_masks(g, pl, t: int, m: int, t_free: bool) -> tuple[np.ndarray, np.ndarray]:
    a = g == t
    b = np.zeros(a.shape, bool)
    if m:
        b |= pl == m
    if t_free:
        b |= pl == t
    return a, b


def _locals_of(by_value: np.ndarray, sorted_lut: np.ndarray, v: int) -> np.ndarray:
    """The local labels ``l`` with ``lut[l] == v`` (``by_value`` sorts ``lut``)."""
    lo = np.searchsorted(sorted_lut, v, side="left")
    hi = np.searchsorted(sorted_lut, v, side="right")
    return by_value[lo:hi]


def _mask_of_locals(labels: np.ndarray, locals_: np.ndarray, out: np.ndarray | None = None
                    ) -> np.ndarray:
    """``np.isin(labels, locals_)``: one comparison per local id (usually 1-2 ids: a
    prediction component seen from one chunk), :func:`numpy.isin` beyond a few. Written
    into ``out`` (a bool array of ``labels``' shape) when given, and returned."""
    if len(locals_) > 4 or not len(locals_):
        b = np.isin(labels, locals_) if len(locals_) else np.zeros(labels.shape, bool)
        if out is None:
            return b
        out[...] = b
        return out
    # Python ints: NumPy then compares in the labels' own (narrow) dtype; an int64 scalar
    # would promote the box to int64 first (session 9: 20 → 9 µs per 40³ uint16 box). The
    # ids are labels of this chunk, so they fit its dtype and the comparison is the same
    first, *rest = locals_.tolist()
    b = np.equal(labels, first, out=out)  # the first comparison is the mask: no zeros pass
    for lab in rest:
        b |= labels == lab
    return b


def _capped_hausdorff(a: np.ndarray, b: np.ndarray, vs, d_max: float,
                      counts: tuple[int, int] | None = None) -> np.float32:
    """Capped symmetric Hausdorff of GT mask ``a`` and remapped prediction mask ``b`` (§5.1.9):
    0 when both are empty, ``D_max`` when one is, else ``min(H, D_max)`` in float32.
    ``counts``: the masks' voxel counts where known (the plan's, from the statistics)."""
    has_a, has_b = (bool(a.any()), bool(b.any())) if counts is None else \
        (counts[0] > 0, counts[1] > 0)
    if not has_a and not has_b:
        return np.float32(0.0)
    if not has_a or not has_b:
        return np.float32(d_max)
    return np.float32(min(_pair_hausdorff(a, b, vs, counts=counts), d_max))


def _pack(mask: np.ndarray) -> bytes:
    """A bool array as compressed bits (C order); :func:`_unpack` reverses it."""
    return _PIECE_CODEC.encode(np.packbits(mask, axis=None))


def _unpack(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The bool array of ``shape`` that :func:`_pack` packed into ``data`` (read-only)."""
    n = int(np.prod(shape))
    bits = np.frombuffer(_PIECE_CODEC.decode(data), np.uint8)
    return np.unpackbits(bits, count=n).view(bool).reshape(shape)


@timed("kernel")
def _hausdorff_assemble(plan, j: int, chunk_results, vs) -> list[tuple[int, np.float32]]:
    """Capped distances of the instances of bucket ``j`` whose box spans several chunks,
    put together from the chunk tasks' mask pieces (no storage read)."""
    if j >= len(plan["buckets"]):
        return []
    spec_of = {plan["specs"][i][0]: plan["specs"][i] for i in plan["buckets"][j]}
    masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k, spec in spec_of.items():
        shape = tuple(h - lo_ for lo_, h in zip(spec[4], spec[5], strict=True))
        masks[k] = (np.zeros(shape, bool), np.zeros(shape, bool))
    for _values, pieces in chunk_results:
        for k, p_lo, p_hi, ab_bits in pieces:
            if k not in masks:
                continue
            box_lo = spec_of[k][4]
            sl = tuple(slice(x - o, y - o) for x, y, o in zip(p_lo, p_hi, box_lo, strict=True))
            ext = tuple(y - x for x, y in zip(p_lo, p_hi, strict=True))
            a, b = masks[k]
            a[sl], b[sl] = _unpack(ab_bits, (2, *ext))  # the piece's GT and prediction masks
    return [(k, _capped_hausdorff(a, b, vs, plan["d_max"], spec_of[k][6]))
            for k, (a, b) in masks.items()]


def _finish_instance(plan, chunk_results, bucket_results, vs, consts) -> dict[str, Any]:
    if "result" in plan:
        return plan["result"]
    dists = plan["dists"].copy()
    for values in [v for v, _pieces in chunk_results] + list(bucket_results):
        for k, val in values:
            dists[k] = val
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
