"""Dense throughput workloads (issue 18): every chunk written, nothing is fill value.

* ``cellmap_dense``: a CellMap crop of ``1024³ · scale³`` voxels (``--scale 0.5`` = 512³,
  ``2`` = 2048³), zstd zarr v2 in 256³ chunks (what participants submit), every chunk
  written, read through gpueval's own reader as ``gpueval score cellmap`` reads it; ~10⁴
  instances per 1024³ (one ellipsoid per cell of a grid) with misses, splits, merges (two
  neighbours joined by a rod under one id) and extra blobs; a uint64 copy of the instance
  pair (ids moved above 2³²) and a semantic label (``> 0``). Scored as one graph (instance
  uint32 + uint64 + semantic) three times in one run — 1 thread, all threads, a
  ``LocalCluster`` of one process per core — for the parallel efficiency.
* ``contingency_dense``: a ``2048³ · scale³`` uint64 pair with dense 64-bit ids (blocks of
  16³, the second shifted and merged), zstd zarr, every chunk written, counted by the chunked
  contingency, at 1 thread, all threads and N processes.

Records: ``seconds`` (all threads), ``voxels_per_s``, ``decoded_bytes_per_s``,
``compressed_bytes_read``, ``chunk_reads`` (each read is one decode: the reader keeps no
decoded chunk), ``peak_rss_bytes``, ``stage_seconds``, and ``parallel`` (seconds and
efficiency ``t₁ / (N·t_N)`` for threads and processes, N = cores). Reads are counted in this
process by :class:`CountingStore` through the reader's
:func:`gpueval.io.arrays.observe_chunk_reads` (the process runs' reads happen in the
workers: not counted).

Data are built chunk by chunk in a child process (bounded memory, and this process's peak
RSS is the scorer's).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import multiprocessing
import os
import re
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask.array as da
import numpy as np
import zarr
from numcodecs import Zstd

from gpueval.bench import peak_rss_bytes, workload
from gpueval.bench.cellmap import CONSTS
from gpueval.engine import compute, local_processes, map_reduce_delayed
from gpueval.io.arrays import observe_chunk_reads, open_volume
from gpueval.kernels.stats import Contingency, contingency
from gpueval.limits import Limits, use_limits

CHUNK = 256
#: the schedules each workload runs (tests drop "processes": a cluster start-up is seconds)
MODES = ("threads_1", "threads_all", "processes")
GEN_BLOCK = 128  # generation works on 128³ sub-blocks: bounded temporaries


class CountingStore:
    """Counts the chunk files of the arrays opened with it (:func:`_open`) that gpueval's
    direct zarr v2 reader reads — and so decodes: it keeps no decoded chunk — and their
    compressed bytes, while :meth:`counting` is active (reads in other processes are not
    seen). ``root`` is the folder holding the arrays (for the record only)."""

    def __init__(self, root: str, stats: dict[str, Any] | None = None):
        self.root = str(root)
        self.paths: set[str] = set()
        self.stats = stats if stats is not None else {
            "reads": collections.Counter(), "bytes": 0, "lock": threading.Lock()}

    def watch(self, path: str) -> None:
        """Count the reads of the array at ``path`` (as given to ``open_volume``)."""
        self.paths.add(str(path))

    def _note(self, path: str, key: str, nbytes: int) -> None:
        if path in self.paths:
            with self.stats["lock"]:
                self.stats["reads"][(path, key)] += 1
                self.stats["bytes"] += nbytes

    @contextlib.contextmanager
    def counting(self) -> Iterator[CountingStore]:
        """Count the watched arrays' chunk reads made in this process inside the block."""
        with observe_chunk_reads(self._note):
            yield self

    def summary(self, side: int, itemsize: dict[str, int]) -> dict[str, int]:
        """Counts, and the bytes those reads decoded (chunk extent × item size per array,
        ``itemsize`` by array folder name)."""
        reads = self.stats["reads"]
        decoded = 0
        for (path, key), n in reads.items():
            idx = [int(v) for v in re.findall(r"\d+", key)]
            vox = int(np.prod([min(CHUNK, side - i * CHUNK) for i in idx]))
            decoded += n * vox * itemsize[os.path.basename(path.rstrip("/"))]
        return {"chunk_reads": int(sum(reads.values())), "chunks_read": len(reads),
                "decoded_bytes": int(decoded),
                "max_reads_per_chunk": max(reads.values(), default=0),
                "compressed_bytes_read": int(self.stats["bytes"])}

    def reset(self) -> None:
        self.stats["reads"].clear()
        self.stats["bytes"] = 0


def _open(path: str, store: CountingStore | None) -> da.Array:
    """The array at ``path`` as ``gpueval score cellmap`` reads a submitted label:
    :func:`gpueval.io.arrays.open_volume` (the direct zarr v2 reader for these arrays), in
    the processing chunks of the scorer's default ``chunk`` config; its reads counted by
    ``store`` when one is given."""
    data = open_volume(path, finite=False).data
    if store is not None:
        store.watch(path)
    if data.chunksize != (CHUNK,) * data.ndim:
        data = data.rechunk((CHUNK,) * data.ndim)  # as the CellMap layout's ``_rechunk``
    return data


def _create(path: str, side: int, dtype) -> zarr.Array:
    """An empty ``side³`` array as CellMap participants submit it: zarr v2, zstd level 3,
    :data:`CHUNK`³ chunks, every chunk written (also all-zero ones)."""
    return zarr.create_array(path, shape=(side,) * 3, chunks=(CHUNK,) * 3, dtype=dtype,
                             zarr_format=2, fill_value=0, compressors=Zstd(level=3),
                             config={"write_empty_chunks": True})


# --------------------------------------------------------------------------------------------
# synthetic dense CellMap crop


def _cells(side: int, n: int, seed: int) -> dict[str, np.ndarray]:
    """Per grid cell: ellipsoid centre offsets, radii, and what the prediction does."""
    m = max(2, int(round(n ** (1 / 3))))
    c = side / m
    rng = np.random.default_rng(seed)
    shape = (m, m, m)
    roll = rng.random(shape)
    return {
        "m": np.int64(m), "c": np.float64(c),
        "off": rng.uniform(-0.1, 0.1, shape + (3,)) * c,  # small: a merge rod hits both
        "rad": rng.uniform(0.25, 0.4, shape + (3,)) * c,
        "shift": rng.integers(-2, 3, shape + (3,)),
        "miss": roll < 0.05,
        "split": (roll >= 0.05) & (roll < 0.10),
        "merge": (roll >= 0.10) & (roll < 0.13),
        "extra": rng.random(shape) < 0.05,
        "pid": rng.permutation(m ** 3).reshape(shape).astype(np.int64) * 2 + 7,
    }


def _paint(cells: dict[str, np.ndarray], lo: tuple[int, int, int], hi: tuple[int, int, int]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Truth and prediction (uint32) of the box ``[lo, hi)``."""
    m, c = int(cells["m"]), float(cells["c"])
    ax = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
    idx = [np.minimum((x / c).astype(np.int64), m - 1) for x in ax]
    grid = np.ix_(*idx)
    coords = np.ix_(*[x.astype(np.float64) + 0.5 for x in ax])
    centre = [(idx_ + 0.5) * c for idx_ in idx]  # the grid centre per axis
    g_ctr = [np.ix_(*[centre[i] if j == i else np.zeros(1) for j in range(3)])[i]
             for i in range(3)]
    off, rad, shift = cells["off"][grid], cells["rad"][grid], cells["shift"][grid]
    gt_in = sum(((coords[i] - g_ctr[i] - off[..., i]) / rad[..., i]) ** 2 for i in range(3)) <= 1
    p_in = sum(((coords[i] - g_ctr[i] - off[..., i] - shift[..., i]) / rad[..., i]) ** 2
               for i in range(3)) <= 1
    flat = (idx[0][:, None, None] * m + idx[1][None, :, None]) * m + idx[2][None, None, :]
    gt = np.where(gt_in, flat + 1, 0).astype(np.uint32)
    pid = cells["pid"][grid]
    # merges: a cell flagged "merge" lends its id to its +x neighbour and a rod joins them
    merged_from = np.zeros_like(cells["merge"])
    merged_from[:, :, 1:] = cells["merge"][:, :, :-1]
    left_pid = np.roll(cells["pid"], 1, axis=2)[grid]
    pid = np.where(merged_from[grid], left_pid, pid)
    split_part = cells["split"][grid] & (coords[0] < g_ctr[0] + off[..., 0] + shift[..., 0])
    pid = np.where(split_part, pid + 1, pid)
    pred = np.where(p_in & ~cells["miss"][grid], pid, 0)
    near_axis = ((np.abs(coords[0] - g_ctr[0]) <= 2) & (np.abs(coords[1] - g_ctr[1]) <= 2))
    rod = near_axis & ((cells["merge"][grid] & (coords[2] >= g_ctr[2]))
                       | (merged_from[grid] & (coords[2] <= g_ctr[2])))
    pred = np.where(rod & (pred == 0), np.where(cells["merge"][grid], pid, left_pid), pred)
    local = [(x - idx_ * c) for x, idx_ in zip(ax, idx, strict=True)]
    corner = [((v >= 1) & (v < 5)).reshape([-1 if j == i else 1 for j in range(3)])
              for i, v in enumerate(local)]
    blob = corner[0] & corner[1] & corner[2] & cells["extra"][grid]
    pred = np.where(blob, flat + m ** 3 * 2 + 11, pred)
    return gt, pred.astype(np.uint32)


def _build_dense(tmp: str, side: int, n: int, seed: int) -> dict[str, int]:
    cells = _cells(side, n, seed)
    arrays = {name: _create(f"{tmp}/{name}", side, dt) for name, dt in
              (("gt", np.uint32), ("pred", np.uint32), ("gt64", np.uint64),
               ("pred64", np.uint64), ("gt_sem", np.uint8), ("pred_sem", np.uint8))}
    high = np.uint64(2 ** 40)
    for lo in np.ndindex(*(-(-side // GEN_BLOCK),) * 3):
        lo = tuple(int(v) * GEN_BLOCK for v in lo)
        hi = tuple(min(v + GEN_BLOCK, side) for v in lo)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        g, p = _paint(cells, lo, hi)
        arrays["gt"][sl] = g
        arrays["pred"][sl] = p
        # the truth keeps its ids (they are observable: ratio guard, ID-collision quirk); the
        # prediction's move above 2^40 (components are renumbered anyway)
        arrays["gt64"][sl] = g.astype(np.uint64)
        arrays["pred64"][sl] = np.where(p > 0, p.astype(np.uint64) * high + 3, 0)
        arrays["gt_sem"][sl] = g > 0
        arrays["pred_sem"][sl] = p > 0
    return {"grid_cells": int(cells["m"]) ** 3}


def _spawn(func, *args):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(func, args)


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _three_ways(build_graph, store: CountingStore, side: int, itemsize: dict[str, int]
                ) -> tuple[Any, dict[str, Any], dict]:
    """Compute the graph on 1 thread, all threads and one process per core; check the three
    results are equal; return the all-threads result, its read counts and the timings."""
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {}
    results = {}
    reads: dict[str, Any] = {}
    for mode in _modes():
        store.reset()
        # worker processes' reads happen there, unseen: their arrays are opened uncounted
        graph = build_graph(store if mode != "processes" else None)
        t0 = time.perf_counter()
        if mode == "processes":
            with local_processes(cores) as client:
                t0 = time.perf_counter()  # cluster start-up is not scoring time
                results[mode] = compute(*graph, scheduler=client)
        else:
            cpu0 = _cpu_seconds()
            with use_limits(Limits(threads=1 if mode == "threads_1" else cores)), \
                    store.counting():
                results[mode] = compute(*graph)
            # on a shared machine the wall time says little about scaling: the CPU time this
            # process got tells whether a second thread found a free core at all
            out[f"{mode}_cpu_seconds"] = _cpu_seconds() - cpu0
        out[f"{mode}_seconds"] = time.perf_counter() - t0
        if mode != "processes" and (mode == "threads_all" or not reads):
            reads = store.summary(side, itemsize)  # all threads' reads, else one thread's
    out["cores"] = cores
    t1 = out.get("threads_1_seconds")
    if t1 is not None and "threads_all_seconds" in out:
        out["efficiency_threads"] = t1 / (cores * out["threads_all_seconds"])
    if t1 is not None and "processes_seconds" in out:
        out["efficiency_processes"] = t1 / (cores * out["processes_seconds"])
    out["load_average"] = os.getloadavg()
    first = next(iter(results.values()))
    same = all(_same(first, r) for r in results.values())
    return results.get("threads_all", first), reads, {**out, "identical": bool(same)}


def _headline_seconds(par: dict[str, Any]) -> float:
    """The time a record reports: all threads when that schedule ran, else the first run."""
    for mode in ("threads_all", "threads_1", "processes"):
        if f"{mode}_seconds" in par:
            return par[f"{mode}_seconds"]
    raise ValueError("no schedule ran")


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _same(a, b) -> bool:
    def norm(x):
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, np.ndarray):
            return (x.dtype.str, x.shape, x.tobytes())
        if isinstance(x, Contingency):
            return norm((x.ids_a, x.ids_b, x.counts))
        return x
    return norm(a) == norm(b)


@workload("cellmap_dense",
          "CellMap dense crop (throughput): 1024^3*scale^3 uint32 + uint64 copy + semantic, "
          "zstd zarr, every chunk written, ~1e4 instances per 1024^3; 1 thread / all threads "
          "/ N processes")
def bench_cellmap_dense(device: str, scale: float) -> dict:
    from gpueval.challenges.cellmap.scoring_2026 import instance_delayed, semantic_delayed

    side = max(64, int(round(1024 * scale)))
    n = max(8, int(round(1e4 * (side / 1024) ** 3)))
    vs = (8.0, 8.0, 8.0)
    tmp = tempfile.mkdtemp(prefix="bench-cellmap-dense-")
    try:
        info = _spawn(_build_dense, tmp, side, n, 5)
        store = CountingStore(tmp)

        def graph(counted):
            a = {k: _open(f"{tmp}/{k}", counted) for k in
                 ("gt", "pred", "gt64", "pred64", "gt_sem", "pred_sem")}
            return (instance_delayed(a["gt"], a["pred"], vs, CONSTS, device=device),
                    instance_delayed(a["gt64"], a["pred64"], vs, CONSTS, device=device),
                    semantic_delayed(a["gt_sem"], a["pred_sem"], device=device))

        (r32, r64, sem), reads, par = _three_ways(
            graph, store, side, {"gt": 4, "pred": 4, "gt64": 8, "pred64": 8, "gt_sem": 1,
                                 "pred_sem": 1})
        on_disk = _du(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    keys = ("tp", "fp", "fn", "n_hausdorff", "hausdorff_norm_sum", "status")
    voxels = side ** 3
    decoded = reads.get("decoded_bytes", 0)  # every chunk once (the passes carry chunks)
    seconds = _headline_seconds(par)
    ok = (r32["status"] == "scored" and all(r32[k] == r64[k] for k in keys)
          and r32["fp"] > 0 and r32["fn"] > 0 and par["identical"])
    return {"voxels": voxels, "seconds": seconds, "check": bool(ok),
            "result": {"instance": {k: r32[k] for k in keys}, "semantic": sem},
            "decoded_bytes_per_s": decoded / seconds, "bytes_on_disk": on_disk, **reads,
            "parallel": par,
            "peak_rss_bytes": peak_rss_bytes(),
            "notes": f"{side}^3, {info['grid_cells']} grid cells (~{n} instances), {CHUNK}^3 "
                     "zstd-3 zarr v2 chunks (as submitted), all written, read by gpueval's "
                     "reader (open_volume); instance uint32 + uint64 + semantic in one graph; "
                     "seconds = all threads; check: uint32 == uint64 result, "
                     "1 thread == all threads == processes; voxels_per_s counts crop voxels "
                     "(the graph scores 3 labels of them)"}


# --------------------------------------------------------------------------------------------
# dense contingency


def _build_pair(tmp: str, side: int) -> None:
    a_arr, b_arr = _create(f"{tmp}/a", side, np.uint64), _create(f"{tmp}/b", side, np.uint64)
    cell = 16
    for lo in np.ndindex(*(-(-side // GEN_BLOCK),) * 3):
        lo = tuple(int(v) * GEN_BLOCK for v in lo)
        hi = tuple(min(v + GEN_BLOCK, side) for v in lo)
        a = _block_ids(lo, hi, cell, (0, 0, 0))
        b = _block_ids(lo, hi, cell, (cell // 4, cell // 3, 1))
        b = np.where(b % np.uint64(7) == 0, b + np.uint64(1), b)
        sl = tuple(slice(x, y) for x, y in zip(lo, hi, strict=True))
        a_arr[sl] = a
        b_arr[sl] = b


def _block_ids(lo, hi, cell, shift) -> np.ndarray:
    """Dense 64-bit ids of 16³ blocks (a hash of the block coordinates), shifted by ``shift``."""
    idx = [((np.arange(a, b) - s) // cell).astype(np.uint64)
           for a, b, s in zip(lo, hi, shift, strict=True)]
    key = (idx[0][:, None, None] * np.uint64(1_000_003) + idx[1][None, :, None]) \
        * np.uint64(1_000_033) + idx[2][None, None, :]
    with np.errstate(over="ignore"):
        key = (key + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    return key | np.uint64(1)


@workload("contingency_dense",
          "Contingency (throughput): 2048^3*scale^3 uint64 pair, dense 64-bit ids, zstd zarr, "
          "every chunk written; 1 thread / all threads / N processes")
def bench_contingency_dense(device: str, scale: float) -> dict:
    side = max(64, int(round(2048 * scale)))
    tmp = tempfile.mkdtemp(prefix="bench-contingency-dense-")
    try:
        _spawn(_build_pair, tmp, side)
        store = CountingStore(tmp)

        def graph(counted):
            a, b = _open(f"{tmp}/a", counted), _open(f"{tmp}/b", counted)
            return (map_reduce_delayed(contingency, [a, b], Contingency.combine,
                                       device=device),)

        (table,), reads, par = _three_ways(graph, store, side, {"a": 8, "b": 8})
        on_disk = _du(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    voxels = side ** 3
    decoded = reads.get("decoded_bytes", 0)
    seconds = _headline_seconds(par)
    return {"voxels": voxels, "seconds": seconds, "pairs": len(table),
            "check": bool(table.total == voxels and par["identical"]),
            "decoded_bytes_per_s": decoded / seconds, "bytes_on_disk": on_disk, **reads,
            "parallel": par,
            "peak_rss_bytes": peak_rss_bytes(),
            "notes": f"{side}^3 uint64 pair, 16^3 blocks of hashed ids, {CHUNK}^3 zstd-3 zarr "
                     "v3 chunks, all written; seconds = all threads"}



# --------------------------------------------------------------------------------------------
# a whole CellMap test submission at the official manifest's geometry


def _scaled_manifest(scale: float) -> list[tuple[int, str, str, Any]]:
    """The shipped manifest's rows with every axis shrunk by ``scale`` (voxel size grown by
    ``1/scale``: the crops keep their physical extent)."""
    from gpueval.challenges.cellmap.manifest import read_manifest
    from gpueval.io.align import Grid

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                        "cellmap_test_crops.csv")
    rows = []
    with open(path) as fh:
        datasets = {(int(r["crop_name"]), r["class_label"]): r["dataset"]
                    for r in csv.DictReader(fh)}
    for (crop, label), g in sorted(read_manifest(path).items()):
        shape = tuple(max(16, int(round(s * scale))) for s in g.shape)
        vs = tuple(float(v) * s0 / s for v, s0, s in zip(g.voxel_size, g.shape, shape,
                                                           strict=True))
        rows.append((crop, datasets[(crop, label)], label, Grid(vs, tuple(g.translation),
                                                                 shape)))
    return rows


def _modes() -> tuple[str, ...]:
    """The schedules the throughput workloads here run: all of :data:`MODES`, or the
    comma-separated subset in ``GPUEVAL_BENCH_MODES`` (a large ``--scale`` takes tens of
    minutes per schedule; ``GPUEVAL_BENCH_MODES=threads_all`` measures throughput, peak
    memory and the extrapolation alone; efficiencies need ``threads_1`` too)."""
    names = os.environ.get("GPUEVAL_BENCH_MODES", "")
    if not names:
        return MODES
    modes = tuple(m.strip() for m in names.split(",") if m.strip())
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise ValueError(f"GPUEVAL_BENCH_MODES: unknown schedule(s) {unknown}; "
                         f"choose from {', '.join(MODES)}")
    return modes


def _testset_cells(shape: tuple[int, ...], row: int) -> dict[str, np.ndarray]:
    """The synthetic objects of manifest row ``row`` (a cubic grid over its largest axis,
    ~10⁴ cells per 1024³, seeded by the row's index)."""
    return _cells(max(shape), max(8, int(1e4 * np.prod(shape) / 1024 ** 3)), 1000 + row)


#: per build worker: the last rows' cells (a task names its row; rows come in order)
_ROW_CELLS: dict[int, dict[str, np.ndarray]] = {}
#: per build worker: the chunk buffers (truth, prediction, mask) of the last chunk edge
_CHUNK_BUFFERS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _testset_worker_init() -> None:
    # one blosc thread per worker process: the processes are the parallelism (blosc's
    # output does not depend on its thread count)
    from numcodecs import blosc

    blosc.set_nthreads(1)


def _testset_chunk(task: tuple) -> tuple[int, int, int]:
    """Paint one storage chunk of one row (truth and submission), compress it with the
    array's own compressor and write the chunk files zarr v2 would write (none where the
    chunk is all fill value: zarr's ``write_empty_chunks=False``). Returns ``(voxels
    painted, bytes written, this worker's peak RSS)``."""
    import numcodecs

    from gpueval.bench.paint import paint_into

    row, shape, inst, edge, index, paths, codec = task
    cells = _ROW_CELLS.get(row)
    if cells is None:
        _ROW_CELLS.clear()
        cells = _ROW_CELLS[row] = _testset_cells(shape, row)
    lo = tuple(i * edge for i in index)
    box = tuple(min(edge, s - a) for a, s in zip(lo, shape, strict=True))
    # one set of chunk buffers per worker, reused: fresh 64 MiB arrays per chunk cost a
    # page fault per 4 KiB page (most of the build's system time)
    bufs = _CHUNK_BUFFERS.get(edge)
    if bufs is None:
        _CHUNK_BUFFERS.clear()
        bufs = _CHUNK_BUFFERS[edge] = (np.empty((edge,) * 3, np.uint32),
                                       np.empty((edge,) * 3, np.uint32),
                                       np.empty((edge,) * 3, np.bool_))
    gt, pred, mask = bufs
    # zarr v2 stores edge chunks whole, padded with the fill value (0): zero what the
    # painted box leaves out
    b0, b1, b2 = box
    for buf in (gt, pred):
        buf[b0:] = 0
        buf[:b0, b1:] = 0
        buf[:b0, :b1, b2:] = 0
    inner = tuple(slice(0, b) for b in box)
    paint_into(cells, lo, gt[inner], pred[inner])
    compressor = numcodecs.get_codec(dict(codec))
    key = ".".join(str(i) for i in index)
    written = 0
    for path, data in zip(paths, (gt, pred), strict=True):
        data = data if inst else np.greater(data, 0, out=mask).view(np.uint8)
        if not data.any():
            continue
        blob = compressor.encode(data)
        with open(f"{path}/{key}", "wb") as fh:
            fh.write(blob)
        written += len(blob)
    return int(np.prod(box)), written, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _build_testset(tmp: str, scale: float, *, only: list[int] | None = None,
                   chunk: int = CHUNK, workers: int | None = None) -> dict[str, Any]:
    """Write the scaled manifest, and truth and submission of every row, under ``tmp``.

    zarr creates each array (zarr v2, chunks of ``min(chunk, largest axis)``³, its default
    compressor, ``voxel_size``/``translation`` attributes); the chunks are painted by
    :func:`gpueval.bench.paint.paint_into` one storage chunk at a time (bounded memory)
    in ``workers`` spawned processes (default: one per core) and written as the compressed
    chunk files zarr writes. ``only`` keeps those row indices (tests); the row index
    seeds the row's objects either way.
    """
    from gpueval.challenges.cellmap.manifest import write_manifest
    from gpueval.challenges.cellmap.scoring_2026 import INSTANCE_CLASSES

    rows = _scaled_manifest(scale)
    keep = range(len(rows)) if only is None else sorted(set(only))
    write_manifest(f"{tmp}/manifest.csv", [rows[i] for i in keep])
    groups = {root: zarr.open_group(f"{tmp}/{root}", mode="a", zarr_format=2)
              for root in ("truth", "sub.zarr")}
    tasks = []
    voxels = 0
    for i in keep:
        crop, _ds, label, g = rows[i]
        shape = tuple(int(s) for s in g.shape)
        inst = label in INSTANCE_CLASSES
        edge = min(chunk, max(shape))
        paths = []
        for root, grp in groups.items():
            a = grp.require_group(f"crop{crop}").create_array(
                label, shape=shape, dtype=np.uint32 if inst else np.uint8,
                chunks=(edge,) * 3)
            a.attrs["voxel_size"] = [float(v) for v in g.voxel_size]
            a.attrs["translation"] = [float(v) for v in g.translation]
            meta = a.metadata
            # the chunk files below are the compressor's bytes of the C-order chunk, named
            # "i.j.k": what zarr writes for exactly this metadata
            if meta.filters or meta.order != "C" or meta.dimension_separator != ".":
                raise RuntimeError(f"cellmap_testset: unexpected zarr v2 defaults {meta}")
            paths.append(f"{tmp}/{root}/crop{crop}/{label}")
        codec = tuple(sorted(meta.compressor.get_config().items()))
        for index in np.ndindex(*(-(-s // edge) for s in shape)):
            tasks.append((i, shape, inst, edge, tuple(int(v) for v in index), tuple(paths),
                          codec))
        voxels += int(np.prod(shape))
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    painted = written = peak = 0
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_testset_worker_init) as pool:
        for n, nbytes, rss in pool.imap_unordered(_testset_chunk, tasks, chunksize=4):
            painted += n
            written += nbytes
            peak = max(peak, rss)
        pool.close()  # let the workers exit (the context's terminate leaks semaphores)
        pool.join()
    if painted != voxels:
        raise RuntimeError(f"cellmap_testset: painted {painted} of {voxels} voxels")
    return {"rows": len(keep), "voxels": voxels, "chunks": len(tasks),
            "build_workers": workers, "build_paint_seconds": time.perf_counter() - t0,
            "build_bytes_written": written, "build_worker_peak_rss_bytes": peak}


@workload("cellmap_testset",
          "CellMap whole test submission (throughput): the 413 (crop, label) rows of "
          "configs/cellmap_test_crops.csv, every axis shrunk by --scale (8.8e10 voxels at 1), "
          "dense synthetic objects, through gpueval score cellmap with that manifest")
def bench_cellmap_testset(device: str, scale: float) -> dict:
    from gpueval.api import score

    tmp = tempfile.mkdtemp(prefix="bench-cellmap-testset-")
    try:
        t_build, cpu_build = time.perf_counter(), _children_cpu_seconds()
        # the build's processes are spawned children: this process's peak RSS stays the
        # scorer's
        info = _build_testset(tmp, scale)
        info["build_seconds"] = time.perf_counter() - t_build
        info["build_cpu_seconds"] = _children_cpu_seconds() - cpu_build
        info["build_load_average"] = os.getloadavg()
        over = [f"manifest={tmp}/manifest.csv"]
        par: dict[str, Any] = {}
        results = {}
        cores = os.cpu_count() or 1
        for mode in _modes():
            t0, cpu0 = time.perf_counter(), time.process_time()
            if mode == "processes":
                res = score("cellmap", f"{tmp}/truth", f"{tmp}/sub.zarr", device=device,
                            overrides=over, workers=cores)
            else:
                threads = 1 if mode == "threads_1" else cores
                res = score("cellmap", f"{tmp}/truth", f"{tmp}/sub.zarr", device=device,
                            overrides=[*over, f"limits.threads={threads}"])
            par[f"{mode}_seconds"] = time.perf_counter() - t0
            # this process's CPU time: under a shared machine's load, wall time stretches
            # but CPU seconds per voxel do not (worker processes are not counted)
            par[f"{mode}_cpu_seconds"] = time.process_time() - cpu0
            results[mode] = (res.status, res.score, [sorted(it.items()) for it in res.items])
        on_disk = _du(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = _headline_seconds(par)
    if "threads_1_seconds" in par and "threads_all_seconds" in par:
        par["efficiency_threads"] = par["threads_1_seconds"] / (cores * seconds)
    if "processes_seconds" in par and "threads_1_seconds" in par:
        par["efficiency_processes"] = par["threads_1_seconds"] / (cores * par[
            "processes_seconds"])
    par["cores"] = cores
    par["load_average"] = os.getloadavg()
    first = next(iter(results.values()))
    par["identical"] = all(r == first for r in results.values())
    ok = first[0] == "ok" and len(first[2]) == info["rows"] and par["identical"]
    full = 87_666_200_000
    return {"voxels": info["voxels"], "seconds": seconds, "check": bool(ok),
            "result": {"status": first[0], "score": first[1], "items": len(first[2])},
            "bytes_on_disk": on_disk, "parallel": par, "peak_rss_bytes": peak_rss_bytes(),
            "build": {k: v for k, v in info.items() if k.startswith("build")},
            "extrapolated_full_scale_build_seconds":
                info["build_seconds"] * full / max(info["voxels"], 1),
            "extrapolated_full_scale_seconds": seconds * full / max(info["voxels"], 1),
            "cpu_seconds_per_gigavoxel": {
                k[:-len("_cpu_seconds")]: v * 1e9 / max(info["voxels"], 1)
                for k, v in par.items() if k.endswith("_cpu_seconds")},
            "notes": f"{info['rows']} (crop, label) rows, {info['voxels']:.3g} voxels "
                     f"(full scale {full:.3g}); per-label synthetic data; seconds = all "
                     "threads, through api.score with the scaled manifest; the "
                     "extrapolation is linear in voxels"}
