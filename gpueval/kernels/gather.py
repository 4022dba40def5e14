"""Sparse voxel lookup: labels of a lazy volume at a set of points, reading only their chunks.

XPRESS scores a dense segmentation against skeleton nodes: every score depends on the volume
only through the labels at node voxels (and ``max(label)``, for the fresh ids of background
nodes). Materialising the volume, as the official scorer does, is neither needed nor possible
out of core. This module

1. converts world positions to voxel indices with the official rounding
   (:func:`world_to_voxel`: truncate nm coordinates toward zero, then floor-divide by the voxel
   size; points outside the ROI are flagged, not clipped);
2. groups the points by the chunk holding them (:func:`group_by_chunk`: one sort, no Python
   loop per point);
3. reads each needed chunk exactly once inside a dask task and gathers its points with one
   vectorised fancy index (:func:`gather_block`, NumPy or CuPy by the block's type);
   optionally every chunk is read and its min/max taken in the same pass (:func:`gather`
   with ``with_extrema=True``), so the official ``max(label)`` costs no second read.

A stored array opened as a :class:`BlockWindow` (XPRESS's local path) is gathered the same
way on a pool of threads, without Dask: the same blocks are read once each and give the
same values, extrema and statistics. Dask cost a ``gpueval score xpress`` process ~0.4 s
(``dask`` imported before the first read, ``dask.array`` and the graph after; issue #19). A
distributed scheduler needs a Dask array.

Why a kernel of our own: ``dask.array.Array.vindex`` does the grouping too, but gives no
control over which chunks are read with the max reduction fused in, and no accounting of bytes
and chunks read, which the benchmarks report.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import numpy as np

from gpueval import bounds
from gpueval.backend import array_module, to_device, to_host
from gpueval.errors import Rejected

#: schedulers that run in one thread of this process (a :class:`BlockWindow`: no pool)
SYNC_SCHEDULERS = ("sync", "synchronous", "single-threaded")
#: schedulers that run in this process: a :class:`BlockWindow` is gathered on threads
LOCAL_SCHEDULERS = (None, "threads", "threading", *SYNC_SCHEDULERS)


@dataclass
class GatherStats:
    """What a gather read: decoded chunks and bytes, out of how many chunks in the array."""

    chunks_read: int = 0
    bytes_read: int = 0
    chunks_total: int = 0
    points: int = 0


@dataclass
class GatherResult:
    values: np.ndarray
    """Labels at the points, in the order of the points given."""
    stats: GatherStats = field(default_factory=GatherStats)
    max: Any = None
    """Largest value of the whole array (``with_extrema=True``), else ``None``."""
    min: Any = None
    """Smallest value (signed and float dtypes only: unsigned ones skip that pass; ``None``)."""


@dataclass
class ChunkGroups:
    """Points sorted by chunk: group ``g`` holds sorted points ``starts[g]:starts[g+1]``."""

    order: np.ndarray          # (M,) permutation: sorted position -> original point
    block_coords: np.ndarray   # (G, ndim) block index of each group
    starts: np.ndarray         # (G + 1,)
    local: np.ndarray          # (M, ndim) index inside its chunk, in sorted order


def world_to_voxel(
    positions_xyz: np.ndarray,
    roi_begin: Sequence[int],
    voxel_size: Sequence[int],
    roi_shape: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices (z, y, x) of world positions (x, y, z), with the official rounding.

    Each nm coordinate is truncated toward zero (``int()``), the point is inside when
    ``begin <= c < begin + shape * voxel_size`` on every axis, and its index is
    ``floor((c - begin) / voxel_size)`` (xpress.md §2).

    Parameters
    ----------
    positions_xyz : float (N, 3), x, y, z in world units.
    roi_begin, voxel_size : z, y, x world units (integers).
    roi_shape : z, y, x in voxels.

    Returns
    -------
    index : int64 (N, 3) z, y, x voxel indices (meaningful where ``inside``).
    inside : bool (N,)

    >>> idx, inside = world_to_voxel(np.array([[98.6, 0.0, 0.0], [-0.5, 0, 0]]), (0, 0, 0),
    ...                              (99, 99, 99), (2, 2, 2))
    >>> idx[inside].tolist(), inside.tolist()
    ([[0, 0, 0], [0, 0, 0]], [True, True])
    """
    pos = np.asarray(positions_xyz, np.float64).reshape(-1, 3)
    c = np.trunc(pos[:, ::-1]).astype(np.int64)  # z, y, x
    begin = np.asarray(roi_begin, np.int64)
    vs = np.asarray(voxel_size, np.int64)
    end = begin + np.asarray(roi_shape, np.int64) * vs
    inside = ((c >= begin) & (c < end)).all(axis=1)
    index = (c - begin) // vs
    return index, inside


def group_by_chunk(index: np.ndarray, chunks: Sequence[Sequence[int]]) -> ChunkGroups:
    """Group voxel indices by the chunk that holds them (dask-style ``chunks``)."""
    index = np.asarray(index, np.int64).reshape(len(index), len(chunks))
    ndim = len(chunks)
    block = np.empty_like(index)
    local = np.empty_like(index)
    for ax in range(ndim):  # loop over axes, not points
        edges = np.concatenate([[0], np.cumsum(chunks[ax])]).astype(np.int64)
        b = np.searchsorted(edges, index[:, ax], side="right") - 1
        block[:, ax] = b
        local[:, ax] = index[:, ax] - edges[b]
    nblocks = np.array([len(c) for c in chunks], np.int64)
    flat = np.ravel_multi_index(tuple(block.T), tuple(nblocks)) if len(index) else \
        np.empty(0, np.int64)
    order = np.argsort(flat, kind="stable")
    flat_sorted = flat[order]
    cut = np.flatnonzero(np.diff(flat_sorted)) + 1
    starts = np.concatenate([[0], cut, [len(flat_sorted)]]).astype(np.int64)
    if not len(flat_sorted):
        starts = np.zeros(1, np.int64)
    block_coords = block[order][starts[:-1]] if len(flat_sorted) else np.empty((0, ndim),
                                                                               np.int64)
    return ChunkGroups(order, block_coords, starts, local[order])


def gather_block(block, local: np.ndarray):
    """``block[local[:, 0], local[:, 1], ...]`` on the block's device (NumPy or CuPy)."""
    xp = array_module(block)
    if xp is not np:
        local = xp.asarray(local)
    return block[tuple(local[:, ax] for ax in range(local.shape[1]))]


def gather(
    array,
    index: np.ndarray,
    *,
    device: str = "cpu",
    scheduler: Any = None,
    progress: bool = False,
    with_extrema: bool = False,
) -> GatherResult:
    """Values of a lazy array at voxel ``index``, reading each needed chunk once.

    Parameters
    ----------
    array : dask array (or anything ``dask.array.asarray`` wraps lazily), or a
        :class:`BlockWindow` (read on a pool of threads, one per core or
        ``limits.threads``, without Dask).
    index : int (M, ndim) voxel indices inside the array.
    device : ``"cpu"`` or ``"gpu"`` (chunks moved to CuPy before the gather).
    scheduler : as :func:`gpueval.engine.compute`; a :class:`BlockWindow` takes only the
        local ones (:data:`LOCAL_SCHEDULERS`; the synchronous ones read in one thread).
    with_extrema : also read every other chunk and return the array's min and max (one pass).

    Returns
    -------
    GatherResult with the values in the order of ``index`` and what was read.
    """
    if isinstance(array, BlockWindow):
        if scheduler not in LOCAL_SCHEDULERS:
            raise ValueError("gather: a BlockWindow is read in this process; give a dask "
                             "array to run on a distributed scheduler")
        return _gather_threads(array, index, device=device, with_extrema=with_extrema,
                               threads=1 if scheduler in SYNC_SCHEDULERS else None)
    import dask.array as da
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    from gpueval.engine import compute

    arr = array if isinstance(array, da.Array) else da.asarray(array)
    index = np.asarray(index, np.int64).reshape(-1, arr.ndim)
    if len(index) and ((index < 0).any() or (index >= np.array(arr.shape)).any()):
        raise IndexError("gather: a voxel index lies outside the array")
    groups = group_by_chunk(index, arr.chunks)
    n_total = int(np.prod(arr.numblocks))
    tasks: list[tuple[tuple[int, ...], np.ndarray]] = []
    for g in range(len(groups.block_coords)):  # one task per chunk, not per point
        s, e = groups.starts[g], groups.starts[g + 1]
        tasks.append((tuple(int(v) for v in groups.block_coords[g]), groups.local[s:e]))
    if with_extrema:
        have = {t[0] for t in tasks}
        empty = np.empty((0, arr.ndim), np.int64)
        tasks += [(b, empty) for b in np.ndindex(*arr.numblocks) if b not in have]
    name = f"gather-{uuid4().hex}"
    dsk = {(name, i): (_chunk_task, (arr.name, *b), local, device, with_extrema)
           for i, (b, local) in enumerate(tasks)}
    dsk[name] = (list, [(name, i) for i in range(len(tasks))])
    reads = None if with_extrema else _read_tasks(arr, [(arr.name, *b) for b, _ in tasks])
    if reads is not None:  # only the needed read tasks, as one small graph
        graph = HighLevelGraph.from_collections(name, {**reads, **dsk}, dependencies=[])
    else:
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[arr])
    parts = compute(Delayed(name, graph), scheduler=scheduler, progress=progress)[0]

    return _gather_result(parts, groups, len(index), arr.dtype, n_total, with_extrema)


def _gather_result(parts: list, groups, n_points: int, dtype, n_total: int,
                   with_extrema: bool) -> GatherResult:
    """The values in the points' order and the statistics, from the per-block parts
    ``(sorted values, max, min, bytes)`` — the first ``len(groups.block_coords)`` hold
    points, the rest only extrema — whichever way the blocks were read."""
    values = np.zeros(n_points, dtype=dtype)
    n_groups = len(groups.block_coords)
    if n_groups:
        values[groups.order] = np.concatenate([p[0] for p in parts[:n_groups]])
    stats = GatherStats(chunks_read=len(parts), bytes_read=int(sum(p[3] for p in parts)),
                        chunks_total=n_total, points=n_points)
    out = GatherResult(values, stats)
    if with_extrema:
        maxes = [p[1] for p in parts if p[1] is not None]
        mins = [p[2] for p in parts if p[2] is not None]
        out.max = max(maxes) if maxes else None
        out.min = min(mins) if mins else None
    return out


def _read_tasks(arr, keys: list) -> dict | None:
    """The read tasks of ``keys`` alone, for an array read straight from storage.

    dask's generic graph culling enumerates every output key of the array's layer (2 s for
    the 2·10⁶ chunks of a 4096³ volume in 32³ chunks) even when a handful are needed. A
    one-layer graph (``from_array``/``open_volume`` without slicing) has no dependencies, so
    culling it to ``keys`` is exact; anything else returns ``None`` (generic path).
    """
    from dask.highlevelgraph import HighLevelGraph

    hlg = arr.__dask_graph__()
    if not isinstance(hlg, HighLevelGraph) or len(hlg.layers) != 1 or not keys:
        return None
    (layer,) = hlg.layers.values()
    try:
        culled, deps = layer.cull(set(keys), set(keys))
    except Exception:  # an unusual layer type: let dask cull it
        return None
    if any(deps.values()):
        return None
    return dict(culled)


def _record_stage(stage: str, seconds: float) -> None:
    """:func:`gpueval.engine.record_stage` when the engine is loaded (it is wherever stage
    times are being collected), without importing it (and Dask) here."""
    engine = sys.modules.get("gpueval.engine")
    if engine is not None:
        engine.record_stage(stage, seconds)


def _chunk_task(block, local: np.ndarray, device: str, extrema: bool):
    """Values at ``local`` of one block; its max and min (``extrema``) and decoded bytes.
    Times itself as the ``kernel`` stage (as :func:`gpueval.engine.timed` would)."""
    began = time.perf_counter()
    try:
        block = to_device(np.asarray(block), device)
        values = to_host(gather_block(block, local)) if len(local) else \
            np.empty(0, block.dtype)
        mx = mn = None
        if extrema and block.size:
            mx = to_host(block.max()).item()
            # unsigned blocks cannot go below 0: skip a second pass over the chunk
            mn = to_host(block.min()).item() if block.dtype.kind in "if" else None
        return np.asarray(values), mx, mn, int(block.nbytes)
    finally:
        _record_stage("kernel", time.perf_counter() - began)


_chunk_task._gpueval_stage = "kernel"  # type: ignore[attr-defined]  # the engine's marker


# --------------------------------------------------------------------------------------------
# Without Dask: a window of a stored array, read block by block on threads


@dataclass(frozen=True)
class BlockWindow:
    """A window ``source[start:stop:step]`` (per axis, one ``step`` for all) of a stored
    array, in blocks: what ``da.from_array(source, chunks=block)[window]`` would read, without
    Dask. Blocks are the source's blocks (whole storage chunks) cut to the window, so each is
    read once, as the Dask array's tasks read them.

    Parameters
    ----------
    source : array-like read by basic indexing (``source[slices] -> ndarray``), e.g. the
        readers of :mod:`gpueval.io.arrays`.
    block : block shape in source coordinates.
    start, stop : the window in source coordinates (``stop`` exclusive).
    step : stride on every axis (XPRESS's ``downsampling``).
    """

    source: Any
    block: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    step: int = 1

    @classmethod
    def whole(cls, source: Any, block: Sequence[int]) -> BlockWindow:
        """The whole of ``source`` in blocks of ``block``."""
        shape = tuple(int(n) for n in source.shape)
        return cls(source, tuple(int(b) for b in block), (0,) * len(shape), shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.source.dtype)

    @property
    def ndim(self) -> int:
        return len(self.start)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(max(0, -(-(b - a) // self.step))
                     for a, b in zip(self.start, self.stop, strict=True))

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Dask-style chunks: per axis, the window's lengths inside each source block."""
        return tuple(tuple(n for _, _, n in self._axis_blocks(ax)) for ax in range(self.ndim))

    @property
    def numblocks(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.chunks)

    def crop(self, start: Sequence[int], size: Sequence[int]) -> BlockWindow:
        """The sub-window ``[start, start + size)`` of this window's (unstrided) grid."""
        if self.step != 1:
            raise ValueError("crop a window before striding it")
        lo = tuple(a + int(s) for a, s in zip(self.start, start, strict=True))
        return BlockWindow(self.source, self.block, lo,
                           tuple(a + int(n) for a, n in zip(lo, size, strict=True)), 1)

    def strided(self, step: int) -> BlockWindow:
        """Every ``step``-th voxel on every axis (``[::step, ::step, ::step]``)."""
        return BlockWindow(self.source, self.block, self.start, self.stop, self.step * step)

    def _axis_blocks(self, ax: int) -> list[tuple[int, int, int]]:
        """Per source block meeting the window on axis ``ax``: (first source index on the
        stride, stop, number of window voxels), empty intersections dropped."""
        a, b, step, size = self.start[ax], self.stop[ax], self.step, self.block[ax]
        out = []
        for lo in range(a - a % size, b, size):
            first = max(lo, a)
            first += (a - first) % step  # the next index on the stride
            last = min(lo + size, b)
            if first < last:
                out.append((first, last, -(-(last - first) // step)))
        return out

    def block_key(self, index: Sequence[int]) -> tuple[slice, ...]:
        """Source slices of block ``index`` of the window."""
        key = []
        for ax, i in enumerate(index):
            first, last, _ = self._axis_blocks(ax)[i]
            key.append(slice(first, last, self.step))
        return tuple(key)

    def read_block(self, index: Sequence[int]) -> np.ndarray:
        """Block ``index`` of the window, read now."""
        return np.asarray(self.source[self.block_key(index)])

    def __getitem__(self, key: tuple) -> np.ndarray:
        """Basic indexing of the window (ints and slices of positive step), read now."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        src: list[Any] = []
        for k, a, n in zip(key, self.start, self.shape, strict=True):
            if isinstance(k, int | np.integer):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} outside an axis of length {n}")
                src.append(a + i * self.step)
            elif isinstance(k, slice) and (k.step is None or k.step > 0):
                lo, hi, st = k.indices(n)
                src.append(slice(a + lo * self.step, a + max(hi, lo) * self.step,
                                 st * self.step))
            else:
                raise IndexError(f"unsupported index {k!r}")
        return np.asarray(self.source[tuple(src)])


def _gather_threads(window: BlockWindow, index: np.ndarray, *, device: str,
                    with_extrema: bool, threads: int | None) -> GatherResult:
    """:func:`gather` of a :class:`BlockWindow` on a pool of threads (the decoders release
    the GIL): one task per block holding points (or every block, ``with_extrema``), each
    reading its block once and keeping only the values at its points and its extrema."""
    index = np.asarray(index, np.int64).reshape(-1, window.ndim)
    shape = window.shape
    if len(index) and ((index < 0).any() or (index >= np.array(shape)).any()):
        raise IndexError("gather: a voxel index lies outside the array")
    chunks = window.chunks
    groups = group_by_chunk(index, chunks)
    blocks = [tuple(int(v) for v in b) for b in groups.block_coords]
    locals_ = [groups.local[groups.starts[g]:groups.starts[g + 1]] for g in range(len(blocks))]
    if with_extrema:
        have = set(blocks)
        empty = np.empty((0, window.ndim), np.int64)
        rest = [b for b in np.ndindex(*(len(c) for c in chunks)) if b not in have]
        blocks += rest
        locals_ += [empty] * len(rest)
    limit = bounds.max_graph_tasks()
    if len(blocks) > limit:  # as the Dask path refuses its graph (engine.check_graph_size)
        raise Rejected(f"the computation needs {len(blocks):.3g} tasks, over the limit "
                       f"{limit:.3g} (limits.max_graph_tasks): tiny chunks or an absurd "
                       "geometry")
    from gpueval import progress as bars

    voxels = [math.prod(chunks[ax][i] for ax, i in enumerate(b)) for b in blocks]

    direct = (device == "cpu" and window.step == 1 and hasattr(window.source, "direct_parts")
              and hasattr(window.source, "storage_chunks"))

    def one(task: int):
        b = blocks[task]
        began = time.perf_counter()
        parts = window.source.direct_parts(window.block_key(b)) if direct else None
        if parts is not None:  # stored chunk by stored chunk: the block is never assembled
            out = _reduce_parts(parts, window.block_key(b), window.source.storage_chunks,
                                locals_[task], window.dtype, with_extrema)
            _record_stage("read", time.perf_counter() - began)
        else:
            block = window.read_block(b)
            _record_stage("read", time.perf_counter() - began)
            out = _chunk_task(block, locals_[task], device, with_extrema)
        bars.advance(voxels[task], "vx")  # the ``gathering`` phase, by voxels read
        return out

    workers = threads or bounds.threads() or _cores()
    if workers <= 1 or len(blocks) <= 1:
        parts = [one(i) for i in range(len(blocks))]
    else:
        with ThreadPoolExecutor(min(workers, len(blocks)),
                                thread_name_prefix="gpueval-gather") as pool:
            parts = list(pool.map(one, range(len(blocks))))
    return _gather_result(parts, groups, len(index), window.dtype,
                          math.prod(len(c) for c in chunks), with_extrema)


def _reduce_parts(parts, key: tuple[slice, ...], chunk: Sequence[int], local: np.ndarray,
                  dtype: np.dtype, extrema: bool) -> tuple[np.ndarray, Any, Any, int]:
    """What :func:`_chunk_task` returns for the block ``source[key]``, from its stored chunks
    (``(where in the block, values)`` pairs, see ``io.arrays._Hdf5Reader.direct_parts``):
    each point is looked up in the chunk holding it, the extrema are those of the chunks'
    extrema. Same values, extrema and byte count; no block-sized allocation or copy."""
    start = [k.start for k in key]
    extent = [k.stop - k.start for k in key]
    chunk = [int(c) for c in chunk]
    values = np.empty(len(local), dtype)
    # the points of each stored chunk, by the chunk's origin (source coordinates, Python ints:
    # a lookup per chunk, no NumPy call)
    points: dict[tuple[int, ...], np.ndarray] = {}
    if len(local):
        origin = (np.asarray(start, np.int64) + local) // chunk * chunk
        cells, inverse = np.unique(origin, axis=0, return_inverse=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        bounds = np.searchsorted(inverse.reshape(-1)[order], np.arange(len(cells) + 1))
        for c, a, b in zip(cells.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(),
                           strict=True):
            points[tuple(c)] = order[a:b]
    mx = mn = None
    signed = dtype.kind in "if"  # unsigned blocks cannot go below 0 (as _chunk_task)
    for dst, part in parts:
        if extrema and part.size:
            top = part.max()
            mx = top if mx is None or top > mx else mx
            if signed:
                low = part.min()
                mn = low if mn is None or low < mn else mn
        if points:
            here = tuple((s + d.start) // c * c for s, d, c in zip(start, dst, chunk,
                                                                   strict=True))
            at = points.get(here)
            if at is not None:
                inside = local[at] - [d.start for d in dst]
                values[at] = part[inside[:, 0], inside[:, 1], inside[:, 2]] \
                    if inside.shape[1] == 3 else part[tuple(inside.T)]
    return (values, None if mx is None else mx.item(), None if mn is None else mn.item(),
            math.prod(extent) * dtype.itemsize)


def _cores() -> int:
    """Cores this process may run on (its affinity mask; all of them elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
