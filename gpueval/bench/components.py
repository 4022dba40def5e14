"""Workload ``cc``: out-of-core connected components vs whole-volume cc3d.

A 512³ (``scale=1``) membrane-carved cell segmentation with thousands of objects (Voronoi cells
grown at 1/4 resolution, upsampled, one-voxel boundaries set to 0, like an EM ground truth) is
labelled twice, 26-connected, multi-label:

* ``cc3d.connected_components`` on the whole in-memory volume (the reference, one core);
* :func:`gpueval.kernels.components.label_chunked` over 128³ chunks on one core (``sync``
  scheduler): per-chunk cc3d + boundary planes, host union-find, lookup tables.

``seconds`` is the chunked labelling pass (count and lookup tables: what a scorer needs before
it streams the relabelled chunks through its own pass). ``relabel_check_seconds`` is one extra
pass that recomputes every relabelled chunk and compares it with the reference's chunk
(``check``). ``throughput_ratio`` = chunked / cc3d throughput (goal ≥ 0.5);
``cpu_throughput_ratio`` is the same from process CPU time (both sides run on one thread), which
is steadier than wall time on a shared machine.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from gpueval.bench import peak_rss_bytes, workload


def voronoi_cells(n: int, n_cells: int, factor: int = 4, seed: int = 0) -> np.ndarray:
    """``n³`` uint32 cells (ids 1..n_cells) grown at ``n / factor`` resolution, upsampled, with
    one-voxel boundaries between cells set to 0."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(seed)
    m = -(-n // factor)
    not_seed = np.ones((m, m, m), bool)
    pos = rng.integers(0, m, (n_cells, 3))
    not_seed[tuple(pos.T)] = False
    nearest = ndi.distance_transform_edt(not_seed, return_distances=False, return_indices=True)
    ids = np.zeros((m, m, m), np.uint32)
    ids[tuple(pos.T)] = np.arange(1, n_cells + 1, dtype=np.uint32)
    low = ids[tuple(nearest)]
    del nearest
    vol = np.ascontiguousarray(
        low.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)[:n, :n, :n])
    for ax in range(3):  # carve: a voxel whose predecessor along an axis differs becomes 0
        hi = [slice(None)] * 3
        lo = [slice(None)] * 3
        hi[ax], lo[ax] = slice(1, None), slice(None, -1)
        edge = vol[tuple(hi)] != vol[tuple(lo)]
        edge &= vol[tuple(lo)] != 0  # only between two cells, not against carved voxels
        vol[tuple(hi)][edge] = 0
    return vol


def _same_chunk(x, y):
    return [bool(np.array_equal(x, y))]


@workload("cc", "512³ cell segmentation: chunked 26-connected CC vs whole-volume cc3d")
def bench_cc(device: str, scale: float) -> dict:
    import cc3d

    from gpueval.engine import map_reduce
    from gpueval.kernels.components import label_chunked

    n = max(32, int(512 * scale))
    n_cells = max(20, int(6000 * scale**3))
    vol = voronoi_cells(n, n_cells)
    chunk = min(128, n)
    # compile the Numba kernels outside the timing
    label_chunked(da.from_array(vol[:16, :16, :16], chunks=8), 26, device=device)

    arr = da.from_array(vol, chunks=chunk, name=False)  # name=False: no hash of the volume
    t0, c0 = time.perf_counter(), time.process_time()
    res = label_chunked(arr, 26, device=device, scheduler="sync")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    peak_chunked = peak_rss_bytes()

    t0, c0 = time.perf_counter(), time.process_time()
    ref, n_ref = cc3d.connected_components(vol, connectivity=26, return_N=True)
    ref_seconds, ref_cpu_seconds = time.perf_counter() - t0, time.process_time() - c0

    t0 = time.perf_counter()
    same = map_reduce(_same_chunk, [res.data, da.from_array(ref, chunks=chunk, name=False)],
                      lambda parts: [all(x for p in parts for x in p)], scheduler="sync")
    check_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    label_chunked(arr, 26, device=device, scheduler="threads")
    threads_seconds = time.perf_counter() - t0
    return {
        "voxels": int(vol.size),
        "seconds": seconds,
        "components": res.n,
        "reference": "cc3d.connected_components (whole volume in memory)",
        "reference_seconds": ref_seconds,
        "throughput_ratio": ref_seconds / seconds,
        "cpu_seconds": cpu_seconds,
        "reference_cpu_seconds": ref_cpu_seconds,
        "cpu_throughput_ratio": ref_cpu_seconds / cpu_seconds,
        "chunked_mvx_per_s": vol.size / seconds / 1e6,
        "reference_mvx_per_s": vol.size / ref_seconds / 1e6,
        "threads_seconds": threads_seconds,
        "relabel_check_seconds": check_seconds,
        "peak_rss_after_chunked_bytes": peak_chunked,
        "check": bool(n_ref == res.n and same[0]),
        "notes": f"{chunk}³ chunks, sync scheduler (one core) unless 'threads_seconds'; the "
                 "in-memory input (4 B/voxel) dominates RSS; the relabel/check pass recomputes "
                 "cc3d per chunk",
    }
