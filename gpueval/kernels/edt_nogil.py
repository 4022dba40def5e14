"""The squared symmetric Hausdorff distance of two voxel masks, computed without the GIL.

Why a kernel of our own (issue #18, session 7): ``edt.edt`` holds the GIL for its whole run
(a Python probe thread beside it ran at 0.05-0.08 of its idle rate), so CellMap's per-pair
Hausdorff EDTs — about a quarter of the instance score's CPU time — could not overlap across
threads; SciPy's EDT releases the GIL but is ~4.5x slower. This one is compiled by Numba with
``nogil=True`` and does everything of a pair (union box, emptiness and nesting checks, both
directed maxima) in one call, so the only GIL-holding work per pair is a few microseconds of
argument handling.

What it computes: ``max(max_{a∈A∖B} d²(a, B), max_{b∈B∖A} d²(b, A))`` with
``d²(x, S) = min_{s∈S} Σ_i ((x_i − s_i)·v_i)²`` — the square of the value CellMap's official
scorer reads from ``scipy.ndimage.distance_transform_edt(~S, sampling=v)`` (``shared/specs/
cellmap.md`` §5.1.9). Voxels of A inside B are at distance 0, so only ``A ∖ B`` is sampled, and
only inside the union bounding box of A and B (exact: every candidate nearest voxel lies in
it; see :mod:`gpueval.kernels.distance`).

How: the separable squared EDT of Felzenszwalb & Huttenlocher ("Distance transforms of sampled
functions", 2012) in float64, one 1-D pass per axis on the union box — axis 0 by a forward and a
backward scan (its input is 0 on the set, ∞ elsewhere), axes 1 and 2 by the lower envelope of
parabolas. The last pass evaluates the envelope only on rows holding a voxel of ``A ∖ B`` and
keeps the maximum; no distance map leaves the kernel.

Exactness (why ``float32(sqrt(result))`` is SciPy's float32 value): SciPy finds each voxel's
nearest voxel of the set and computes ``((d₀v₀)² + (d₁v₁)²) + (d₂v₂)²`` in float64 from the
integer offsets ``dᵢ``; the passes here add the same rounded terms in the same order (pass k
adds ``((q − p)·v_k)²`` to the previous passes' float64 sum at the envelope's minimiser ``p``).
With integer voxel sizes every term and sum is an exact integer, so the result is exact. With
non-integer sizes the envelope compares rounded values, so where two candidates tie to within
a float64 rounding the kernel may pick the other one; the two sums then differ by an ulp of
float64, far below float32's resolution (property tests in ``tests/test_edt_nogil.py``).

Session 9 (issue #18): a direction is first measured by a **search** in the box, the EDT only
when the search gives up. For each voxel ``x`` of ``src ∖ dst`` the kernel walks a table of
integer offsets sorted by their squared world length ``((o₀v₀)² + (o₁v₁)²) + (o₂v₂)²`` (the
EDT's terms in its order) and stops at the first one landing in ``dst``: that length is
``d²(x, dst)``, the minimum over ``dst`` of the same rounded sums the EDT adds. A voxel whose
distance to the nearest voxel of ``dst`` found for an earlier voxel is already at most the
running maximum cannot raise it and is skipped without a search (``d(x, dst)`` is at most
the distance to any voxel of ``dst``). On CellMap-like pairs (a prediction within a few voxels
of its object) ``src ∖ dst`` is a thin shell whose voxels find ``dst`` within a few dozen
offsets, so a direction costs a scan of the box plus ∝ the shell, not three passes over the
box in float64. A voxel with no voxel of ``dst`` within the table (it reaches about 8 voxel
sizes) is measured against the boundary voxels of ``dst``, stopping at the first within the
running maximum (starting from the one nearest to the last far voxel; once the maximum is
beyond the table's reach the table is skipped); when the lookups and evaluations outgrow the
box's voxels the direction goes to the EDT, so an unlucky pair (a missing half, a split)
costs at most about one EDT more than the EDT alone (measured: 1.2-1.5x on half or
two-thirds of a ball missing, against 0.25x on CellMap-like shells). The value is the same
either way (exact at integer voxel sizes; at non-integer sizes the search returns the minimum
of the rounded sums, the EDT the sum at its envelope's minimiser, equal but for a tie within a
float64 ulp, as above).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numba
import numpy as np

from gpueval.kernels.distance import check_mask_pair

__all__ = ["hausdorff_sq", "hausdorff_sq_in_boxes"]

#: status codes of :func:`hausdorff_sq`'s kernel
BOTH_EMPTY, ONLY_A, ONLY_B, BOTH = 0, 1, 2, 3


def hausdorff_sq(a: np.ndarray, b: np.ndarray, voxel_size: Sequence[float]
                 ) -> tuple[int, float]:
    """Squared symmetric Hausdorff distance of two NumPy masks (voxel centres, world units).

    Parameters
    ----------
    a, b : NumPy arrays of one shape, 1-3 D (non-zero = in the object; any strides).
    voxel_size : world size of a voxel per array axis.

    Returns
    -------
    (status, squared distance)
        ``status`` is ``BOTH`` (3) when both masks hold a voxel, else ``BOTH_EMPTY`` (0),
        ``ONLY_A`` (1) or ``ONLY_B`` (2), with squared distance 0.0. The square root of the
        distance is the maximum of SciPy's ``distance_transform_edt`` maps sampled on the
        other mask (module notes).

    Examples
    --------
    >>> a = np.zeros((1, 5), bool); b = a.copy(); a[0, 0] = True; b[0, 3:] = True
    >>> hausdorff_sq(a, b, (1.0, 2.0))  # (4 voxels · 2)²
    (3, 64.0)
    """
    a, b = np.asarray(a), np.asarray(b)
    check_mask_pair(a, b, voxel_size)
    sizes = tuple(float(v) for v in voxel_size)
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        # a zero size would divide by zero in the envelope (a wrong value, not an error)
        raise ValueError(f"voxel sizes must be positive and finite, not {sizes}")
    # 1-D and 2-D masks run as 3-D with leading axes of length 1 (their terms are +0.0, which
    # leaves SciPy's sum unchanged); unit voxel sizes there change nothing
    lead = 3 - a.ndim
    shape3 = (1,) * lead + a.shape
    vs = np.array((1.0,) * lead + sizes, np.float64)
    offsets, lengths = _search_table(tuple(vs.tolist()), lead)
    status, sq = _hausdorff_sq_kernel(_as_bool(a).reshape(shape3), _as_bool(b).reshape(shape3),
                                      vs, offsets, lengths)
    return int(status), float(sq)


def hausdorff_sq_in_boxes(truth: np.ndarray, labels: np.ndarray, wanted: np.ndarray,
                          lo: np.ndarray, hi: np.ndarray, truth_ids: np.ndarray,
                          starts: np.ndarray, label_ids: np.ndarray,
                          voxel_size: Sequence[float]) -> np.ndarray:
    """:func:`hausdorff_sq` of many mask pairs cut from one chunk, in one call without the GIL.

    Pair ``s`` is A = ``truth == truth_ids[s]`` and B = the voxels whose label is one of
    ``label_ids[starts[s]:starts[s + 1]]``, both inside the box ``[lo[s], hi[s])`` of the
    chunk. Why (issue #18, session 10): CellMap's Hausdorff pass measures thousands of small
    pairs per crop; building each pair's masks with NumPy and calling the kernel once per pair
    held the GIL for most of the pass (two threads ran it no faster than one), here the masks
    are built and measured inside the compiled loop.

    Parameters
    ----------
    truth : 3-D integer array (the truth chunk).
    labels : 3-D non-negative integer array of ``truth``'s shape (local component labels).
    wanted : bool work array longer than the largest label, all ``False`` (left so).
    lo, hi : ``(n, 3)`` int64 half-open boxes inside the chunk.
    truth_ids : ``(n,)`` ids in ``truth``'s dtype.
    starts : ``(n + 1,)`` int64 offsets into ``label_ids`` (int64 labels).
    voxel_size : world size of a voxel per axis (3 values).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64: the squared symmetric Hausdorff distance of each pair (as
        :func:`hausdorff_sq`), or −1.0 where a mask is empty.
    """
    sizes = tuple(float(v) for v in voxel_size)
    if truth.ndim != 3 or truth.shape != labels.shape or len(sizes) != 3:
        raise ValueError(f"3-D chunks of one shape and 3 voxel sizes needed, not "
                         f"{truth.shape}, {labels.shape}, {sizes}")
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        raise ValueError(f"voxel sizes must be positive and finite, not {sizes}")
    offsets, lengths = _search_table(sizes, 0)
    return _in_boxes_kernel(truth, labels, wanted, np.ascontiguousarray(lo, np.int64),
                            np.ascontiguousarray(hi, np.int64),
                            np.asarray(truth_ids, truth.dtype),
                            np.ascontiguousarray(starts, np.int64),
                            np.ascontiguousarray(label_ids, np.int64),
                            np.array(sizes, np.float64), offsets, lengths)


@numba.njit(nogil=True, cache=True)
def _in_boxes_kernel(truth, labels, wanted, lo, hi, truth_ids, starts, label_ids, vs,
                     offsets, lengths):  # pragma: no cover - compiled
    """The loop of :func:`hausdorff_sq_in_boxes`: per pair, both masks of its box, then
    :func:`_hausdorff_sq_kernel` on them."""
    n = lo.shape[0]
    out = np.empty(n, np.float64)
    for s in range(n):
        l0, l1, l2 = lo[s, 0], lo[s, 1], lo[s, 2]
        m0, m1, m2 = hi[s, 0] - l0, hi[s, 1] - l1, hi[s, 2] - l2
        for q in range(starts[s], starts[s + 1]):
            wanted[label_ids[q]] = True
        t = truth_ids[s]
        a = np.empty((m0, m1, m2), np.bool_)
        b = np.empty((m0, m1, m2), np.bool_)
        for i in range(m0):
            for j in range(m1):
                for k in range(m2):
                    a[i, j, k] = truth[l0 + i, l1 + j, l2 + k] == t
                    b[i, j, k] = wanted[labels[l0 + i, l1 + j, l2 + k]]
        for q in range(starts[s], starts[s + 1]):
            wanted[label_ids[q]] = False
        status, sq = _hausdorff_sq_kernel(a, b, vs, offsets, lengths)
        out[s] = sq if status == BOTH else -1.0
    return out


#: about how many offsets the search table holds (a ball of ~8 voxels' radius in 3-D): a
#: voxel with no voxel of the other set that near hands its direction to the EDT
SEARCH_OFFSETS = 2000


@functools.lru_cache(maxsize=32)
def _search_table(vs: tuple[float, float, float], lead: int) -> tuple[np.ndarray, np.ndarray]:
    """The search's offsets (``(n, 3)`` int64) and their squared world lengths (float64),
    sorted by length: every non-zero integer offset within a world radius ``R`` chosen so
    that about :data:`SEARCH_OFFSETS` fit, none along the ``lead`` padding axes (length 1).

    The lengths are ``((o₀v₀)² + (o₁v₁)²) + (o₂v₂)²`` — the EDT passes' rounded terms, added
    in their order — so the search's values are the EDT's (module notes).
    """
    real = vs[lead:]
    # the volume of a ball of radius R, in voxels, is about SEARCH_OFFSETS
    unit = {1: 2.0, 2: math.pi, 3: 4.0 * math.pi / 3.0}[len(real)]
    radius = (SEARCH_OFFSETS * math.prod(real) / unit) ** (1.0 / len(real))
    reach = [0] * lead + [int(radius // v) for v in real]
    while math.prod(2 * r + 1 for r in reach) > 64 * SEARCH_OFFSETS:
        # very anisotropic voxels (the ball is a thin disc of the grid): a smaller ball
        radius *= 0.75
        reach = [0] * lead + [int(radius // v) for v in real]
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)
    terms = offsets.astype(np.float64) * np.asarray(vs, np.float64)
    lengths = (terms[:, 0] * terms[:, 0] + terms[:, 1] * terms[:, 1]) + terms[:, 2] * terms[:, 2]
    keep = (lengths > 0) & (lengths <= radius * radius)
    order = np.argsort(lengths[keep], kind="stable")
    return (np.ascontiguousarray(offsets[keep][order]),
            np.ascontiguousarray(lengths[keep][order]))


def _as_bool(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.bool_ else x != 0


@numba.njit(nogil=True, cache=True)
def _hausdorff_sq_kernel(a, b, vs, offsets, lengths):  # pragma: no cover - compiled
    """(status, squared Hausdorff) of 3-D bool masks ``a``, ``b`` (see :func:`hausdorff_sq`;
    ``offsets``, ``lengths``: :func:`_search_table`).

    No crop to the union box before the searches (the callers pass about that box, so a
    scan to find it rarely shrinks anything: session 9, two scans of three saved); the EDT,
    whose cost is its box's, gets the crop."""
    has_a, has_b = _any(a), _any(b)
    if not (has_a and has_b):
        return (ONLY_A if has_a else BOTH_EMPTY) + (ONLY_B if has_b else BOTH_EMPTY), 0.0
    a_to_b, b_to_a = _searches(a, b, vs, offsets, lengths)
    if a_to_b < 0.0:
        a_to_b = _directed_edt(a, b, vs)
    if b_to_a < 0.0:
        b_to_a = _directed_edt(b, a, vs)
    return BOTH, max(a_to_b, b_to_a)


@numba.njit(nogil=True, cache=True)
def _any(mask):  # pragma: no cover - compiled
    """Whether a 3-D bool mask holds a voxel (stops at the first)."""
    n0, n1, n2 = mask.shape
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                if mask[i, j, k]:
                    return True
    return False


@numba.njit(nogil=True, cache=True)
def _directed_edt(src, dst, vs):  # pragma: no cover - compiled
    """:func:`_directed_sq` on the union box of ``src`` and ``dst`` (both non-empty)."""
    n0, n1, n2 = src.shape
    lo0, lo1, lo2 = n0, n1, n2
    hi0 = hi1 = hi2 = -1
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                if src[i, j, k] or dst[i, j, k]:
                    lo0 = min(lo0, i)
                    hi0 = max(hi0, i)
                    lo1 = min(lo1, j)
                    hi1 = max(hi1, j)
                    lo2 = min(lo2, k)
                    hi2 = max(hi2, k)
    s = src[lo0:hi0 + 1, lo1:hi1 + 1, lo2:hi2 + 1]
    d = dst[lo0:hi0 + 1, lo1:hi1 + 1, lo2:hi2 + 1]
    m0, m1, m2 = s.shape
    m = max(m0, m1, m2)
    return _directed_sq(s, d, vs, np.empty((m0, m1, m2), np.float64), np.empty(m, np.float64),
                        np.empty(m, np.int64), np.empty(m + 1, np.float64))


@numba.njit(nogil=True, cache=True)
def _searches(a, b, vs, offsets, lengths):  # pragma: no cover - compiled
    """``(max over A ∖ B of d²(x, B), max over B ∖ A of d²(x, A))`` by the offset search
    (module notes), both directions in one raster scan of the masks; −1.0 for a direction
    whose work outgrew the box's voxels (then the EDT is cheaper).

    A voxel with no voxel of the other set within the table (a far part: a prediction
    component joined by the ID-collision quirk, a split-off piece) is measured against that
    set's voxels with a face neighbour outside it (the nearest voxel of a set to a point
    outside it is one of those: :func:`gpueval.kernels.distance.hausdorff_sparse`), stopping
    at the first one within the running maximum, as then the voxel cannot raise it."""
    m0, m1, m2 = a.shape
    w0, w1, w2 = vs[0], vs[1], vs[2]
    n_offsets = lengths.size
    reach = lengths[n_offsets - 1] if n_offsets else 0.0  # the table's largest d²
    budget = m0 * m1 * m2  # lookups and distance evaluations, per direction
    # per direction (0: A ∖ B to B, 1: B ∖ A to A): the running maximum, the work spent, and
    # the voxel of the other set nearest to the last voxel searched (its distance bounds the
    # next voxels' distances from above)
    best = np.zeros(2, np.float64)
    spent = np.zeros(2, np.int64)
    nearest = np.full((2, 3), -1, np.int64)
    edge_a = np.empty((0, 3), np.int64)  # boundary voxels of A, for far voxels of B ∖ A
    edge_at = np.zeros(2, np.int64)  # where the last far voxel's nearest one is in the list
    edge_b = np.empty((0, 3), np.int64)
    for i in range(m0):
        for j in range(m1):
            for k in range(m2):
                x = a[i, j, k]
                if x == b[i, j, k]:
                    continue
                d = 0 if x else 1
                if spent[d] > budget:
                    continue  # this direction goes to the EDT
                dst = b if x else a
                if nearest[d, 0] >= 0:
                    t0 = (i - nearest[d, 0]) * w0
                    t1 = (j - nearest[d, 1]) * w1
                    t2 = (k - nearest[d, 2]) * w2
                    if (t0 * t0 + t1 * t1) + t2 * t2 <= best[d]:
                        continue  # a voxel of dst this near: this one cannot raise the max
                found = -1
                # once the maximum is beyond the table's reach, the table can only show
                # that this voxel cannot raise it: the boundary list shows that as fast
                for q in range(n_offsets if best[d] < reach else 0):
                    ii = i + offsets[q, 0]
                    jj = j + offsets[q, 1]
                    kk = k + offsets[q, 2]
                    if (0 <= ii < m0 and 0 <= jj < m1 and 0 <= kk < m2
                            and dst[ii, jj, kk]):
                        found = q
                        break
                if found >= 0:
                    spent[d] += found + 1
                    nearest[d, 0], nearest[d, 1], nearest[d, 2] = ii, jj, kk
                    if lengths[found] > best[d]:
                        best[d] = lengths[found]
                    continue
                # nothing within the table: against the boundary of dst
                spent[d] += n_offsets if best[d] < reach else 0
                if x and edge_b.shape[0] == 0:
                    edge_b = _boundary_voxels(b)
                    spent[d] += m0 * m1 * m2 // 4
                elif not x and edge_a.shape[0] == 0:
                    edge_a = _boundary_voxels(a)
                    spent[d] += m0 * m1 * m2 // 4
                edge = edge_b if x else edge_a
                # from the boundary voxel nearest to the last far voxel on (raster order
                # keeps neighbours near in the list, so a voxel that cannot raise the
                # maximum usually stops within a few evaluations)
                n_edge = edge.shape[0]
                start = edge_at[d] % n_edge
                near = np.inf
                e = 0
                while e < n_edge:
                    at = start + e
                    if at >= n_edge:
                        at -= n_edge
                    t0 = (i - edge[at, 0]) * w0
                    t1 = (j - edge[at, 1]) * w1
                    t2 = (k - edge[at, 2]) * w2
                    dd = (t0 * t0 + t1 * t1) + t2 * t2
                    e += 1
                    if dd < near:
                        near = dd
                        edge_at[d] = at
                        nearest[d, 0], nearest[d, 1], nearest[d, 2] = \
                            edge[at, 0], edge[at, 1], edge[at, 2]
                        if near <= best[d]:
                            break  # this voxel cannot raise the maximum
                spent[d] += 2 * e
                if near > best[d]:
                    best[d] = near
    return (best[0] if spent[0] <= budget else -1.0,
            best[1] if spent[1] <= budget else -1.0)


@numba.njit(nogil=True, cache=True)
def _boundary_voxels(mask):  # pragma: no cover - compiled
    """``(n, 3)`` coordinates of the voxels of ``mask`` (non-empty) with a face neighbour
    outside it or on the array's edge, in raster order."""
    m0, m1, m2 = mask.shape
    out = np.empty((1024, 3), np.int64)
    n = 0
    for i in range(m0):
        for j in range(m1):
            for k in range(m2):
                if not mask[i, j, k]:
                    continue
                if (i == 0 or i == m0 - 1 or j == 0 or j == m1 - 1 or k == 0 or k == m2 - 1
                        or not (mask[i - 1, j, k] and mask[i + 1, j, k] and mask[i, j - 1, k]
                                and mask[i, j + 1, k] and mask[i, j, k - 1]
                                and mask[i, j, k + 1])):
                    if n == out.shape[0]:
                        grown = np.empty((2 * n, 3), np.int64)
                        grown[:n] = out
                        out = grown
                    out[n, 0] = i
                    out[n, 1] = j
                    out[n, 2] = k
                    n += 1
    return out[:n]


@numba.njit(nogil=True, cache=True)
def _directed_sq(src, dst, vs, g, f, v, z):  # pragma: no cover - compiled
    """max over voxels of ``src ∖ dst`` of the squared distance to ``dst`` (non-empty); ``g``
    is a float64 work array of the masks' shape, ``f``, ``v``, ``z`` line buffers."""
    m0, m1, m2 = src.shape
    inf = np.inf
    half_inv = np.empty(max(m1, m2) + 1, np.float64)
    half_inv[0] = 0.0  # unused: vertices are distinct
    for d in range(1, max(m1, m2) + 1):
        half_inv[d] = 0.5 / d
    # planes (axis 0) and rows (axes 0, 1) holding a voxel of src ∖ dst: only those need the
    # passes along axes 1 and 2
    plane_wanted = np.zeros(m0, np.bool_)
    row_wanted = np.zeros((m0, m1), np.bool_)
    for i in range(m0):
        for j in range(m1):
            for k in range(m2):
                if src[i, j, k] and not dst[i, j, k]:
                    row_wanted[i, j] = True
                    plane_wanted[i] = True
                    break
    # pass 1, axis 0: index distance to the nearest voxel of dst in the column (forward scan
    # keeps the distance to the last one above, backward scan the nearer of that and below)
    last = np.full((m1, m2), -1, np.int64)
    for i in range(m0):
        for j in range(m1):
            for k in range(m2):
                if dst[i, j, k]:
                    last[j, k] = i
                    g[i, j, k] = 0.0
                elif last[j, k] >= 0:
                    g[i, j, k] = i - last[j, k]
                else:
                    g[i, j, k] = inf
    w0 = vs[0]
    last[:, :] = -1
    for i in range(m0 - 1, -1, -1):
        for j in range(m1):
            for k in range(m2):
                if dst[i, j, k]:
                    last[j, k] = i
                d = g[i, j, k]
                if last[j, k] >= 0 and last[j, k] - i < d:
                    d = last[j, k] - i
                if d != inf:
                    t = d * w0  # SciPy's term: the integer offset times the voxel size, squared
                    d = t * t
                g[i, j, k] = d
    # pass 2, axis 1, on the wanted planes only
    w1 = vs[1]
    for i in range(m0):
        if not plane_wanted[i]:
            continue
        for k in range(m2):
            for j in range(m1):
                f[j] = g[i, j, k]
            nv = _envelope(f, m1, w1, v, z, half_inv)
            if nv == 0:
                continue  # no voxel of dst in this plane's column k: stays ∞
            e = 0
            for j in range(m1):
                while z[e + 1] < j:
                    e += 1
                t = (j - v[e]) * w1
                g[i, j, k] = f[v[e]] + t * t
    # pass 3, axis 2, on the wanted rows, evaluated on src ∖ dst only
    w2 = vs[2]
    best = 0.0
    for i in range(m0):
        if not plane_wanted[i]:
            continue
        for j in range(m1):
            if not row_wanted[i, j]:
                continue
            for k in range(m2):
                f[k] = g[i, j, k]
            nv = _envelope(f, m2, w2, v, z, half_inv)
            e = 0
            for k in range(m2):
                while z[e + 1] < k:
                    e += 1
                if src[i, j, k] and not dst[i, j, k]:
                    t = (k - v[e]) * w2
                    d = f[v[e]] + t * t
                    if d > best:
                        best = d
    return best


@numba.njit(nogil=True, cache=True, inline="always")
def _envelope(f, n, w, v, z, half_inv):  # pragma: no cover - compiled
    """Lower envelope of the parabolas ``f[p] + (w·(x − p))²`` over the finite ``f[:n]``:
    their vertices ``v[:nv]`` and boundaries ``z[:nv + 1]`` (Felzenszwalb & Huttenlocher);
    returns ``nv`` (0 when every ``f`` is ∞). ``half_inv[d]`` is ``0.5 / d``."""
    inv_w2 = 1.0 / (w * w)
    nv = 0
    for q in range(n):
        fq = f[q]
        if fq == np.inf:
            continue
        if nv == 0:
            v[0] = q
            z[0] = -np.inf
            z[1] = np.inf
            nv = 1
            continue
        # pop the parabolas the new one hides (z[0] = −∞ stops this at the first one)
        while True:
            p = v[nv - 1]
            # where the parabolas of p and q meet: w²((x−q)² − (x−p)²) = f[p] − f[q]; products
            # with precomputed reciprocals, not two divisions (10 % of the kernel). s only picks
            # the minimiser, never enters a value: at integer voxel sizes a true crossing is a
            # multiple of 1/(2(q−p)), far from the integers by more than any rounding of s
            s = ((fq - f[p]) * inv_w2 + (q * q - p * p)) * half_inv[q - p]
            if s > z[nv - 1]:
                break
            nv -= 1
        v[nv] = q
        z[nv] = s
        z[nv + 1] = np.inf
        nv += 1
    return nv
