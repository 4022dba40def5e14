"""The three per-chunk statistics of an instance score in one pass: pair counts of ``(a, b)``
and the per-id region statistics of ``a`` and of ``b``.

Why (``shared/research/gpu-design.md`` §1.1, §4.2 item 3): the CellMap instance path calls
:func:`~gpueval.kernels.stats.contingency` and :func:`~gpueval.kernels.regions.chunk_region_stats`
twice per chunk; on the GPU each call compacts the chunk's runs again and waits on the device
three or four times. :func:`chunk_statistics` compacts the runs of equal ``(a, b)`` along the
last axis once and derives all three tables from them:

* waits on the device: the run compaction, the id range (64-bit labels only), the number of
  distinct pairs / ids of ``a`` / ids of ``b`` (one transfer of three numbers), and one D2H of
  all three tables — at most 4 per chunk, where the separate twins wait 12 times;
* segment starts are compacted by a scatter into arrays whose sizes were fetched together,
  not by three more ``nonzero`` calls;
* runs, not voxels, are sorted, twice: by pair (which also groups the ids of ``a``, the
  primary key) and by ``b``.

The CPU path simply calls the three CPU twins (each already one compiled pass). Results equal
the separate twins bit for bit on both devices.

Called by the CellMap instance statistics of a chunk on the GPU
(:func:`gpueval.challenges.cellmap.scoring_2026._stats_chunk`; the CPU path works from the
carried local labels instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpueval.backend import is_cupy
from gpueval.kernels.regions import RegionStats, _empty, _to_global, _unravel, chunk_region_stats
from gpueval.kernels.stats import (
    Contingency,
    _from_order_keys,
    _order_keys,
    contingency,
    empty_contingency,
)

__all__ = ["chunk_statistics"]


def chunk_statistics(a: Any, b: Any, origin: Sequence[int] | None = None,
                     shape: Sequence[int] | None = None
                     ) -> tuple[Contingency, RegionStats, RegionStats]:
    """Pair counts of ``(a, b)`` and the region statistics of ``a`` and of ``b``, one chunk.

    Parameters
    ----------
    a, b : NumPy or CuPy label chunks of the same shape (integer, bool or integral float).
    origin, shape : the chunk's position in the volume and the volume's shape, as for
        :func:`~gpueval.kernels.regions.chunk_region_stats` (defaults: the chunk is the volume).

    Returns
    -------
    ``(contingency(a, b), chunk_region_stats(a, origin, shape),
    chunk_region_stats(b, origin, shape))``, on the host.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    origin = tuple(origin) if origin is not None else (0,) * a.ndim
    shape = tuple(shape) if shape is not None else tuple(a.shape)
    if (is_cupy(a) or is_cupy(b)) and a.size and a.ndim:
        return _fused_cupy(a, b, origin, shape)
    return (contingency(a, b), chunk_region_stats(a, origin, shape),
            chunk_region_stats(b, origin, shape))


def _zero_key(dtype: np.dtype) -> np.uint64:
    """The order key of the background value 0 (and -0.0) of ``dtype``."""
    return np.uint64(_order_keys(np.zeros(1, dtype), np)[0][0])


def _compact_starts(flag, csum, m: int, cupy):
    """Positions of the True entries of ``flag`` (``m`` of them, known), by a scatter."""
    pos = cupy.where(flag, csum - 1, m)  # non-starts land in the spare slot m
    out = cupy.empty(m + 1, dtype=cupy.int64)
    out[pos] = cupy.arange(flag.size, dtype=cupy.int64)
    return out[:m]


def _segments(keys, cupy):
    """Stable order of ``keys``, the sorted keys, the start flags and their running count."""
    order = cupy.argsort(keys)  # CuPy sorts are stable: runs keep their raster order per key
    sorted_keys = keys[order]
    flag = cupy.empty(keys.size, dtype=cupy.bool_)
    flag[0] = True
    flag[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return order, sorted_keys, flag, cupy.cumsum(flag)


def _region_table(order, sorted_keys, flag, csum, m, heads, ends, block_shape, cupy, *,
                  raster: bool):
    """(m, 3 + 2 ndim) int64 rows: key bits, count, first voxel, bbox min, bbox max.

    ``raster``: within each key the runs are in raster order (a stable sort by this key), so
    the first voxel and the first axis's bounds are the first / last run's; otherwise (the
    runs were sorted by a pair key) they are scatter min / max like the other axes."""
    ndim = len(block_shape)
    nx = block_shape[-1]
    starts = _compact_starts(flag, csum, m, cupy)
    last = cupy.concatenate([starts[1:] - 1, cupy.full(1, order.size - 1, cupy.int64)])
    h, e = heads[order], ends[order]
    done = cupy.cumsum(e - h)[last]
    counts = cupy.diff(cupy.concatenate([cupy.zeros(1, done.dtype), done]))
    seg = csum - 1
    coord = _unravel(h, block_shape, cupy)
    tail_x = (e - 1) % nx
    if raster:
        first = h[starts]
    else:
        first = cupy.full(m, np.iinfo(np.int64).max, cupy.int64)
        cupy.minimum.at(first, seg, h)
    los, his = [], []
    for ax in range(ndim):
        if ax == 0 and raster:  # raster order within a key: first run smallest, last largest
            los.append(coord[0][starts])
            his.append((coord[0] if ndim > 1 else tail_x)[last])
            continue
        lo = cupy.full(m, np.iinfo(np.int64).max, cupy.int64)
        hi = cupy.full(m, -1, cupy.int64)
        cupy.minimum.at(lo, seg, coord[ax])
        cupy.maximum.at(hi, seg, tail_x if ax == ndim - 1 else coord[ax])
        los.append(lo)
        his.append(hi)
    return cupy.stack([sorted_keys[starts].view(cupy.int64), counts, first, *los, *his],
                      axis=1)


def _fused_cupy(a, b, origin, shape) -> tuple[Contingency, RegionStats, RegionStats]:
    import cupy

    dtype_a, dtype_b = a.dtype, b.dtype
    ndim, nx, n = a.ndim, a.shape[-1], a.size
    ka, bits_a = _order_keys(cupy.asarray(a).reshape(-1), cupy)
    kb, bits_b = _order_keys(cupy.asarray(b).reshape(-1), cupy)
    change = cupy.empty((n // nx, nx), dtype=cupy.bool_)
    change[:, 0] = True  # runs never cross a row
    ra2, rb2 = ka.reshape(-1, nx), kb.reshape(-1, nx)
    change[:, 1:] = (ra2[:, 1:] != ra2[:, :-1]) | (rb2[:, 1:] != rb2[:, :-1])
    heads = cupy.flatnonzero(change)  # wait 1: the number of runs
    ends = cupy.concatenate([heads[1:], cupy.full(1, n, heads.dtype)])
    ra, rb = ka[heads], kb[heads]
    lo_a = lo_b = np.uint64(0)
    if bits_a + bits_b > 64:  # wait 2 (64-bit labels only): the range of the run keys
        rng = cupy.stack([ra.min(), ra.max(), rb.min(), rb.max()]).get()
        lo_a, lo_b = rng[0], rng[2]
        bits_a = max(int(rng[1] - rng[0]).bit_length(), 1)
        bits_b = max(int(rng[3] - rng[2]).bit_length(), 1)
    packed = bits_a + bits_b <= 64
    if packed:
        pair = ((ra - lo_a) << np.uint64(bits_b)) | (rb - lo_b)
        p_order, p_sorted, p_flag, p_csum = _segments(pair, cupy)
    else:  # ids too far apart to pack: lexsort the two keys
        p_order = cupy.lexsort(cupy.stack([rb, ra]))
        sa, sb = ra[p_order], rb[p_order]
        p_flag = cupy.empty(sa.size, dtype=cupy.bool_)
        p_flag[0] = True
        p_flag[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
        p_csum = cupy.cumsum(p_flag)
    # ids of a: the pair order already groups them (a is the primary key), no sort of its own
    a_sorted = ra[p_order]
    a_flag = cupy.empty(a_sorted.size, dtype=cupy.bool_)
    a_flag[0] = True
    a_flag[1:] = a_sorted[1:] != a_sorted[:-1]
    a_seg = (p_order, a_sorted, a_flag, cupy.cumsum(a_flag))
    b_seg = _segments(rb, cupy)
    m_p, m_a, m_b = (int(v) for v in cupy.stack([p_csum[-1], a_seg[3][-1],
                                                 b_seg[3][-1]]).get())  # wait 3
    p_starts = _compact_starts(p_flag, p_csum, m_p, cupy)
    p_last = cupy.concatenate([p_starts[1:] - 1, cupy.full(1, p_order.size - 1, cupy.int64)])
    done = cupy.cumsum((ends - heads)[p_order])[p_last]
    p_counts = cupy.diff(cupy.concatenate([cupy.zeros(1, done.dtype), done]))
    if packed:
        p_cols = [p_sorted[p_starts].view(cupy.int64)]
    else:
        p_cols = [ra[p_order][p_starts].view(cupy.int64), rb[p_order][p_starts].view(cupy.int64)]
    table_a = _region_table(*a_seg, m_a, heads, ends, a.shape, cupy, raster=False)
    table_b = _region_table(*b_seg, m_b, heads, ends, a.shape, cupy, raster=True)
    flat = cupy.concatenate([cupy.stack([*p_cols, p_counts]).reshape(-1), table_a.reshape(-1),
                             table_b.reshape(-1)]).get()  # wait 4: the only D2H of tables
    n_p = (len(p_cols) + 1) * m_p
    pair_rows = flat[:n_p].reshape(len(p_cols) + 1, m_p)
    k = 3 + 2 * ndim
    rows_a = flat[n_p:n_p + m_a * k].reshape(m_a, k)
    rows_b = flat[n_p + m_a * k:].reshape(m_b, k)
    if packed:
        key = pair_rows[0].view(np.uint64)
        mask_b = np.uint64((1 << bits_b) - 1)
        ids_a, ids_b = (key >> np.uint64(bits_b)) + lo_a, (key & mask_b) + lo_b
    else:
        ids_a, ids_b = pair_rows[0].view(np.uint64), pair_rows[1].view(np.uint64)
    table = Contingency(_from_order_keys(ids_a, dtype_a), _from_order_keys(ids_b, dtype_b),
                        pair_rows[-1].copy()) if m_p else empty_contingency()
    return (table, _region_stats(rows_a, dtype_a, a.shape, origin, shape),
            _region_stats(rows_b, dtype_b, a.shape, origin, shape))


def _region_stats(rows: np.ndarray, dtype: np.dtype, block_shape, origin, shape) -> RegionStats:
    """Host side of one region table: drop the background row, decode the ids."""
    ndim = len(block_shape)
    rows = rows[rows[:, 0].view(np.uint64) != _zero_key(dtype)]
    if not len(rows):
        return _empty(dtype, ndim)
    ids = _from_order_keys(rows[:, 0].view(np.uint64), dtype)
    ids = ids.astype(bool) if dtype.kind == "b" else ids
    off = np.asarray(origin, np.int64)
    return RegionStats(ids=ids, counts=rows[:, 1].copy(), bbox_min=rows[:, 3:3 + ndim] + off,
                       bbox_max=rows[:, 3 + ndim:] + off,
                       first_index=_to_global(rows[:, 2], block_shape, origin, shape))
