"""Workloads for the two engine statistics: contingency table and confusion counts.

* ``contingency`` — a 512³ uint64 pair of dense segmentations (≈1 GiB each) counted by the
  chunked engine, with ``np.unique`` on packed pairs after renumbering (CellMap's method) run
  side by side as the reference.
* ``confusion`` — a 512³ uint8 5-class pair, with ``np.bincount`` as the reference.
* ``ooc_contingency`` — a 2048³ uint64 zarr pair on disk (64 GiB each as arrays, mostly
  compressible background): peak RSS must stay bounded by the chunk size, not the volume.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np

from gpueval.bench import peak_rss_bytes, workload
from gpueval.engine import map_reduce
from gpueval.kernels.stats import Contingency, confusion_matrix, contingency


def dense_segmentation_pair(n: int, cell: int = 16, seed: int = 0):
    """Blocky dense segmentations with scrambled 64-bit ids; the second is shifted (splits and
    merges at every block face) and has every 7th id merged into its neighbour."""
    rng = np.random.default_rng(seed)
    m = -(-n // cell)
    ids = rng.integers(1, 2**63, (m, m, m), dtype=np.uint64)
    a = np.repeat(np.repeat(np.repeat(ids, cell, 0), cell, 1), cell, 2)[:n, :n, :n]
    b = np.roll(a, (cell // 4, cell // 3, 1), axis=(0, 1, 2))
    b = np.where(b % 7 == 0, b + 1, b)
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _reference_contingency(a, b):
    import fastremap

    ra = fastremap.renumber(a.ravel(), in_place=False)[0].astype(np.uint64)
    rb = fastremap.renumber(b.ravel(), in_place=False)[0].astype(np.uint64)
    keys, counts = np.unique(ra * np.uint64(int(rb.max()) + 1) + rb, return_counts=True)
    return len(keys), counts


@workload("contingency", "512³ uint64 pair: sparse pair counts (vs np.unique on packed pairs)")
def bench_contingency(device: str, scale: float) -> dict:
    n = max(32, int(512 * scale))
    a, b = dense_segmentation_pair(n)
    # contiguous slabs, as decoded storage chunks are: the kernel is measured, not a copy of
    # a strided in-memory view (128³ views of a NumPy array cost a gather each)
    chunks = (32, n, n)
    A, B = da.from_array(a, chunks), da.from_array(b, chunks)
    map_reduce(contingency, [A[:32, :32, :32], B[:32, :32, :32]], Contingency.combine,
               device=device)  # compile
    table, seconds = _timed(lambda: map_reduce(contingency, [A, B], Contingency.combine,
                                               device=device, scheduler="sync"))
    peak_gpueval = peak_rss_bytes()
    (n_ref, counts_ref), ref_seconds = _timed(_reference_contingency, a, b)
    return {"voxels": a.size, "seconds": seconds, "pairs": len(table),
            "peak_rss_before_reference_bytes": peak_gpueval,
            "reference": "fastremap.renumber + np.unique(packed)",
            "reference_seconds": ref_seconds,
            "check": bool(n_ref == len(table) and
                          np.array_equal(np.sort(counts_ref), np.sort(table.counts))),
            "notes": "one core (sync scheduler), 32-slice slab chunks; the input pair alone is "
                     "2 GiB; the reference time includes its two renumbering passes"}


@workload("confusion", "512³ uint8 5-class pair: dense confusion counts (vs np.bincount)")
def bench_confusion(device: str, scale: float) -> dict:
    n = max(32, int(512 * scale))
    rng = np.random.default_rng(0)
    a = (rng.integers(0, 5, (n // 8,) * 3).astype(np.uint8).repeat(8, 0).repeat(8, 1)
         .repeat(8, 2))
    b = np.roll(a, 3, axis=0)
    chunks = (32, n, n)
    A, B = da.from_array(a, chunks), da.from_array(b, chunks)

    def combine(parts):
        return sum(parts)

    map_reduce(confusion_matrix, [A[:8], B[:8]], combine, extra=(5,), device=device)
    m, seconds = _timed(lambda: map_reduce(confusion_matrix, [A, B], combine, extra=(5,),
                                           device=device, scheduler="sync"))
    ref, ref_seconds = _timed(
        lambda: np.bincount(a.ravel().astype(np.int64) * 5 + b.ravel(), minlength=25))
    return {"voxels": a.size, "seconds": seconds, "reference": "np.bincount(a*5+b)",
            "reference_seconds": ref_seconds, "check": bool((ref.reshape(5, 5) == m).all())}


@workload("ooc_contingency", "MEMORY TEST (not throughput: mostly fill chunks; see "
          "contingency_dense): 2048³ uint64 zarr pair on disk (64 GiB each), bounded peak RSS")
def bench_ooc(device: str, scale: float) -> dict:
    import zarr

    from gpueval.io.arrays import open_volume

    n = max(64, int(2048 * scale))
    chunk = 128
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, seed in (("a", 0), ("b", 1)):
            path = Path(tmp) / f"{name}.zarr"
            z = zarr.create_array(path, shape=(n, n, n), chunks=(chunk,) * 3, dtype="u8",
                                  fill_value=0)
            # a slab of dense objects through the middle; the rest is never-written chunks
            # (the fill value), which the reader must still stream through
            a, _ = dense_segmentation_pair(chunk * 2, seed=seed)
            z[n // 2 - chunk:n // 2 + chunk, :chunk * 2, :chunk * 2] = a
            paths.append(path)
        A, B = (open_volume(p).data for p in paths)
        table, seconds = _timed(lambda: map_reduce(contingency, [A, B], Contingency.combine,
                                                   device=device))
    return {"voxels": n**3, "seconds": seconds, "pairs": len(table),
            "check": table.total == n**3,
            "notes": f"zarr v3 chunks {chunk}³ read inside tasks, threads scheduler"}
