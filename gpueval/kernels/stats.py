"""Counting kernels: the sparse contingency table and the dense confusion matrix of two chunks.

Both are the sufficient statistics of almost every score here (Dice/IoU/F per class, Rand and
VOI, instance IoU and matching) and both are *exactly additive over chunks*, so a volume is
reduced chunk by chunk with :meth:`Contingency.combine`.

Why a kernel of our own: ``np.unique`` on (a, b) pairs runs at 0.5 MVx/s (structured) or
31 MVx/s (packed, after two renumbering passes); a single-pass Numba open-addressing hash on
the raw ids measured 227 MVx/s on one core (``shared/research/anchors.md`` §2). On the GPU the
twin compacts runs of equal pairs and sorts their packed keys once with CuPy (CUB radix sort),
which needs no hash table (see :func:`_contingency_cupy`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gpueval.backend import is_cupy

# --------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class Contingency:
    """Sparse table of voxel counts per pair of labels ``(a, b)``, background (0) included.

    Pairs are sorted by ``(ids_a, ids_b)``; ``counts`` are int64.

    >>> c = contingency(np.array([1, 1, 2, 0]), np.array([5, 5, 5, 0]))
    >>> c.ids_a.tolist(), c.ids_b.tolist(), c.counts.tolist()
    ([0, 1, 2], [0, 5, 5], [1, 2, 1])
    >>> [x.tolist() for x in c.sizes_b()]
    [[0, 5], [1, 3]]
    """

    ids_a: np.ndarray
    ids_b: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def __len__(self) -> int:
        return len(self.counts)

    @staticmethod
    def combine(parts: Sequence[Contingency]) -> Contingency:
        """Sum tables of several chunks (exact: counts of equal pairs are added)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return empty_contingency()
        if len(parts) == 1:
            return parts[0]
        a = _concat([p.ids_a for p in parts])
        b = _concat([p.ids_b for p in parts])
        w = np.concatenate([p.counts for p in parts])
        return _hash_table(a, b, w)

    def sizes_a(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, voxel counts) of the first volume, sorted by id."""
        return _marginal(self.ids_a, self.counts)

    def sizes_b(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, voxel counts) of the second volume, sorted by id."""
        return _marginal(self.ids_b, self.counts)

    def drop(self, *, a: int | None = None, b: int | None = None) -> Contingency:
        """Pairs whose first id is not ``a`` and second id is not ``b`` (e.g. background)."""
        keep = np.ones(len(self), bool)
        if a is not None:
            keep &= self.ids_a != a
        if b is not None:
            keep &= self.ids_b != b
        return Contingency(self.ids_a[keep], self.ids_b[keep], self.counts[keep])


def empty_contingency(dtype_a=np.uint64, dtype_b=np.uint64) -> Contingency:
    return Contingency(np.empty(0, dtype_a), np.empty(0, dtype_b), np.empty(0, np.int64))


def contingency(a, b) -> Contingency:
    """Voxel counts of every label pair of two equally shaped label chunks.

    Parameters
    ----------
    a, b : NumPy or CuPy arrays of integer (or bool / integral float) labels, same shape.

    Returns
    -------
    Contingency on the host, ids in the input dtypes.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if is_cupy(a) or is_cupy(b):
        return _contingency_cupy(a, b)
    return _hash_table(_flat(a), _flat(b), None)


def confusion_matrix(a, b, n_classes: int) -> np.ndarray:
    """Dense ``(n, n)`` int64 counts of ``(a == i) & (b == j)`` for small class ids.

    Ids outside ``[0, n_classes)`` raise ``ValueError`` (they would be silently lost).

    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if is_cupy(a) or is_cupy(b):
        return _confusion_cupy(a, b, n_classes)
    out = np.zeros((n_classes, n_classes), np.int64)
    bad = _confusion_numba(_flat(a), _flat(b), out)
    if bad:
        raise ValueError(f"{bad} voxels carry a class id outside [0, {n_classes})")
    return out


def histogram(a, n_bins: int) -> np.ndarray:
    """Counts of the values ``0..n_bins-1`` of an integer chunk (e.g. uint8 grey levels)."""
    if is_cupy(a):
        import cupy

        return cupy.bincount(a.ravel(), minlength=n_bins)[:n_bins].get().astype(np.int64)
    return np.bincount(np.asarray(a).reshape(-1), minlength=n_bins)[:n_bins].astype(np.int64)


# --------------------------------------------------------------------------------------------
# CPU core (Numba)

_KERNELS: list[str] = []
_jit_lock = threading.Lock()


def _njit(fn: Callable) -> Callable:
    """``numba.njit(cache=True, nogil=True)``, applied at the first call of any kernel here.

    Importing Numba costs ~0.15 s, which a process that only needs :class:`Contingency` (XPRESS
    builds its small table in NumPy) would pay before reading a byte (issue #19). The first call
    swaps every kernel of this module for its dispatcher at once, so a kernel calling another
    one compiles against a dispatcher, never against this stand-in.
    """
    _KERNELS.append(fn.__name__)

    @functools.wraps(fn)
    def first_call(*args):
        _jit_all()
        return globals()[fn.__name__](*args)

    first_call.py_func = fn  # type: ignore[attr-defined]
    return first_call


def _jit_all() -> None:
    import numba

    with _jit_lock:
        g = globals()
        for name in _KERNELS:
            if not isinstance(g[name], numba.core.registry.CPUDispatcher):
                g[name] = numba.njit(cache=True, nogil=True)(g[name].py_func)


def _flat(x) -> np.ndarray:
    """1-D view (a copy only when ``x`` is strided); bool as uint8 for Numba."""
    x = np.ascontiguousarray(x).reshape(-1)
    return x.view(np.uint8) if x.dtype == bool else x

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)


@_njit
def _slot(x, y, shift):
    h = (np.uint64(x) * _M1) ^ (np.uint64(y) * _M2)
    h ^= h >> np.uint64(29)
    return np.int64(h >> shift)


@_njit
def _insert(a, b, w, use_w, i, ka, kb, cnt, used, log2, n):
    """Insert pairs from index ``i`` until done or the table is half full; returns (i, n).

    A run of equal consecutive pairs (a label volume's runs inside objects) is measured by a
    tight loop of two comparisons per voxel and inserted once (session 9: 37 -> 22 ms per
    256³ chunk against the run-aware probe per voxel, which compared each voxel with the
    table slot of the last pair). Kept separate from growth: reassigning the table arrays
    inside this loop made Numba's code 10x slower."""
    cap = 1 << log2
    sh = np.uint64(64 - log2)
    limit = cap >> 1
    size = a.size
    while i < size:
        x = a[i]
        y = b[i]
        j = i + 1
        if use_w:
            inc = w[i]
            while j < size and a[j] == x and b[j] == y:
                inc += w[j]
                j += 1
        else:
            while j < size and a[j] == x and b[j] == y:
                j += 1
            inc = j - i
        h = _slot(x, y, sh)
        while True:
            if not used[h]:
                if n >= limit:
                    return i, n  # grow first; the run starting at i is not counted yet
                used[h] = True
                ka[h] = x
                kb[h] = y
                cnt[h] = inc
                n += 1
                break
            if ka[h] == x and kb[h] == y:
                cnt[h] += inc
                break
            h = (h + 1) & (cap - 1)
        i = j
    return i, n


@_njit
def _rehash(ka, kb, cnt, used, log2):
    cap = 1 << log2
    nka = np.empty(cap, ka.dtype)
    nkb = np.empty(cap, kb.dtype)
    ncnt = np.zeros(cap, np.int64)
    nused = np.zeros(cap, np.bool_)
    sh = np.uint64(64 - log2)
    for j in range(used.size):
        if used[j]:
            h = _slot(ka[j], kb[j], sh)
            while nused[h]:
                h = (h + 1) & (cap - 1)
            nused[h] = True
            nka[h] = ka[j]
            nkb[h] = kb[j]
            ncnt[h] = cnt[j]
    return nka, nkb, ncnt, nused


def _hash_core(a, b, w, use_w):
    """Open addressing with linear probing on the raw (a, b) ids; doubles at half load."""
    log2 = 12
    ka, kb = np.empty(1 << log2, a.dtype), np.empty(1 << log2, b.dtype)
    cnt, used = np.zeros(1 << log2, np.int64), np.zeros(1 << log2, np.bool_)
    i = n = 0
    while True:
        i, n = _insert(a, b, w, use_w, i, ka, kb, cnt, used, log2, n)
        if i >= a.size:
            return ka[used], kb[used], cnt[used]
        log2 += 1
        ka, kb, cnt, used = _rehash(ka, kb, cnt, used, log2)


def _hash_table(a: np.ndarray, b: np.ndarray, w: np.ndarray | None) -> Contingency:
    if a.size == 0:
        return empty_contingency(a.dtype, b.dtype)
    use_w = w is not None
    ka, kb, cnt = _hash_core(a, b, w if use_w else np.empty(0, np.int64), use_w)
    order = np.lexsort((kb, ka))
    return Contingency(ka[order], kb[order], cnt[order])


@_njit
def _confusion_numba(a, b, out):
    n = out.shape[0]
    bad = 0
    for i in range(a.size):
        x = np.int64(a[i])
        y = np.int64(b[i])
        if 0 <= x < n and 0 <= y < n:
            out[x, y] += 1
        else:
            bad += 1
    return bad


def _marginal(ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, summed counts): one stable sort and a sum per run, in NumPy.

    Not a Numba kernel: a table has one row per label pair, orders of magnitude fewer than
    voxels, and a process scoring only small tables (XPRESS: ~10⁵ node pairs) would pay
    Numba's import and cache loading (~0.15 s) for a few milliseconds of work (issue #19).
    """
    order = np.argsort(ids, kind="stable")
    ids_sorted = ids[order]
    if not len(ids_sorted):
        return ids_sorted, np.zeros(0, np.int64)
    first = np.flatnonzero(np.concatenate([[True], ids_sorted[1:] != ids_sorted[:-1]]))
    return ids_sorted[first], np.add.reduceat(counts[order].astype(np.int64, copy=False),
                                              first)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) == 1:
        return np.concatenate(arrays)
    # never let uint64 + int64 promote to float64: ids must stay exact
    kinds = {d.kind for d in dtypes}
    if kinds <= {"u", "b"}:
        target = np.uint64
    elif kinds <= {"i", "u", "b"}:
        target = np.int64
    else:
        target = np.float64
    return np.concatenate([a.astype(target, copy=False) for a in arrays])


# --------------------------------------------------------------------------------------------
# GPU twins (CuPy)


def _order_keys(x, xp):
    """Map labels to uint64 keys with the same order and equality, and the bits they need.

    Integers and bools: ``x - min(dtype)`` (``itemsize * 8`` bits, no data-dependent range, so
    no host wait). Floats: the IEEE order trick on float64 bits (-0.0 folded into 0.0 first, as
    the CPU hash treats them equal), 64 bits.
    """
    dt = x.dtype
    if dt.kind == "b":
        return x.astype(xp.uint64), 1
    if dt.kind == "u":
        return x.astype(xp.uint64), 8 * dt.itemsize
    if dt.kind == "i":
        off = np.uint64(1 << (8 * dt.itemsize - 1))
        return x.astype(xp.int64).view(xp.uint64) + off, 8 * dt.itemsize
    bits = (x.astype(xp.float64) + 0.0).view(xp.uint64)
    flip = xp.where(bits >> np.uint64(63), np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(1 << 63))
    return bits ^ flip, 64


def _from_order_keys(k: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`_order_keys` on the host (ids of the CPU twin's dtypes: bool → uint8)."""
    k = np.asarray(k, np.uint64)
    if dtype.kind == "b":
        return k.astype(np.uint8)
    if dtype.kind == "u":
        return k.astype(dtype)
    if dtype.kind == "i":
        off = np.uint64(1 << (8 * dtype.itemsize - 1))
        return (k - off).view(np.int64).astype(dtype)
    neg = (k >> np.uint64(63)) == 0
    bits = np.where(neg, ~k, k ^ np.uint64(1 << 63))
    return bits.view(np.float64).astype(dtype)


def _contingency_cupy(a, b) -> Contingency:
    """GPU twin: run compaction, then one sort of packed 64-bit pair keys, reduce by key.

    Label volumes are piecewise constant, so the voxels are first cut into runs of equal
    ``(a, b)`` in raster order (one compare + one compaction); only run heads, weighted by their
    lengths, are sorted — 10-100x fewer keys than voxels. Each side is mapped to an
    order-preserving uint64 key (:func:`_order_keys`); when the two keys fit in 64 bits together
    (by dtype: any pair of ≤ 32-bit labels; else by the run heads' range, one host wait) the
    pair is packed into one key and sorted once (CUB radix sort), otherwise the pair is sorted
    with a two-key lexsort. The previous twin sorted every voxel three times
    (``cupy.unique`` x3). Host waits: the run compaction, the segment compaction, the range
    (only for 64-bit ids) and one D2H of the table. Rows come out sorted by ``(a, b)`` with the
    ids in the CPU twin's dtypes, so the result is the CPU's bit for bit.
    """
    import cupy as cp

    dtype_a, dtype_b = a.dtype, b.dtype
    out_a = np.dtype(np.uint8) if dtype_a.kind == "b" else dtype_a
    out_b = np.dtype(np.uint8) if dtype_b.kind == "b" else dtype_b
    a = cp.asarray(a).ravel()
    b = cp.asarray(b).ravel()
    n = a.size
    if n == 0:
        return empty_contingency(out_a, out_b)
    ka, bits_a = _order_keys(a, cp)
    kb, bits_b = _order_keys(b, cp)
    change = cp.empty(n, dtype=cp.bool_)
    change[0] = True
    change[1:] = (ka[1:] != ka[:-1]) | (kb[1:] != kb[:-1])
    heads = cp.flatnonzero(change)  # host wait 1: the number of runs
    lengths = cp.diff(cp.concatenate([heads, cp.full(1, n, heads.dtype)]))
    ka, kb = ka[heads], kb[heads]
    lo_a = lo_b = np.uint64(0)
    if bits_a + bits_b > 64:  # host wait 2 (64-bit ids only): the range of the run heads
        rng = cp.stack([ka.min(), ka.max(), kb.min(), kb.max()]).get()
        lo_a, lo_b = rng[0], rng[2]
        bits_a = max(int(rng[1] - rng[0]).bit_length(), 1)
        bits_b = max(int(rng[3] - rng[2]).bit_length(), 1)
    if bits_a + bits_b <= 64:
        key = ((ka - lo_a) << np.uint64(bits_b)) | (kb - lo_b)
        order = cp.argsort(key)
        key = key[order]
        last = cp.empty(key.size, dtype=cp.bool_)
        last[-1] = True
        last[:-1] = key[1:] != key[:-1]
    else:
        order = cp.lexsort(cp.stack([kb, ka]))
        ka, kb = ka[order], kb[order]
        last = cp.empty(ka.size, dtype=cp.bool_)
        last[-1] = True
        last[:-1] = (ka[1:] != ka[:-1]) | (kb[1:] != kb[:-1])
    ends = cp.flatnonzero(last)  # host wait 3: the number of pairs
    csum = cp.cumsum(lengths[order])[ends]
    counts = cp.diff(cp.concatenate([cp.zeros(1, csum.dtype), csum]))
    if bits_a + bits_b <= 64:
        table = cp.stack([key[ends], counts.view(cp.uint64)]).get()  # host wait 4
        mask_b = np.uint64((1 << bits_b) - 1) if bits_b < 64 else np.uint64(2**64 - 1)
        ids_a = (table[0] >> np.uint64(bits_b)) + lo_a
        ids_b = (table[0] & mask_b) + lo_b
    else:
        table = cp.stack([ka[ends], kb[ends], counts.view(cp.uint64)]).get()
        ids_a, ids_b = table[0], table[1]
    return Contingency(_from_order_keys(ids_a, dtype_a), _from_order_keys(ids_b, dtype_b),
                       table[-1].view(np.int64))


def _confusion_cupy(a, b, n: int) -> np.ndarray:
    import cupy as cp

    a = a.ravel().astype(cp.int64)
    b = b.ravel().astype(cp.int64)
    bad = int(((a < 0) | (a >= n) | (b < 0) | (b >= n)).sum())
    if bad:
        raise ValueError(f"{bad} voxels carry a class id outside [0, {n})")
    return cp.bincount(a * n + b, minlength=n * n).reshape(n, n).astype(cp.int64).get()
