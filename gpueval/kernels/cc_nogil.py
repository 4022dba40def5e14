"""Connected components of an integer label volume, computed without holding the GIL.

Why a kernel of our own (issue #18, session 8): ``cc3d.connected_components`` holds the GIL
for most of its run — a pure-Python probe thread beside it ran at 0.08–0.37 of its idle rate
(``benchmarks/gil_probe.py``), and two calls on a random 256³ multi-label volume in two
threads took 0.56 s against 0.30 s one after the other. CellMap's chunk pass labels every
chunk (``kernels/components._label_task``), so with cc3d two threads serialise on it (its task
time grew from 0.91 s at 1 thread to 1.3 s at 2 in ``cellmap_600``). This kernel is compiled
by Numba with ``nogil=True``: the whole labelling runs with the GIL released, so chunks label
in parallel on threads.

What it computes: cc3d's multi-label semantics — two voxels are joined when they are
neighbours (6/18/26 in 3-D: faces, +edges, +corners; 4/8 in 2-D) and hold the **same
non-zero value** — and cc3d's numbering: ids 1..N in **C raster order of each component's
first voxel** (cc3d numbers in memory order: a Fortran-ordered array is labelled as its
C-ordered transpose, which numbers it in F order; other strides are made C-contiguous, as cc3d
does). ``tests/test_cc_nogil.py`` checks it equals cc3d voxel for voxel and in N.

How: the classic two passes with union-find (Rosenfeld & Pfaltz). Pass 1 scans in raster
order; a foreground voxel takes a new provisional label when no earlier neighbour holds its
value, else it joins the labels of those neighbours (union by smaller label, path halving).
Provisional labels grow in raster order and a component's first voxel always gets a new one,
so every set's root (its smallest label) is its first voxel's label, and numbering roots in
increasing order is numbering components by first voxel: one in-place pass over the parent
table (``parent[l] < l`` for every non-root) turns it into the final lookup table, and a last
pass maps the volume through it (only over each row's labelled span; not at all when no
union happened). :func:`label_narrow` (what the chunk label tasks call, session 9) keeps the
provisional labels in a uint16 scratch while they fit (widened, and the pass continued, when
they would not), writes the final ids in the narrowest dtype in that last pass, and records
where each provisional label was made: a root's is its component's first voxel.

What keeps pass 1 at cc3d's speed on segmentations (``benchmarks/README.md``, session 8):
when the voxel's left neighbour holds the same value, every earlier neighbour they share is
already in the left neighbour's set, so only the neighbours it does not touch are looked at
(4 of 13 at 26-connectivity); a neighbour found equal settles every neighbour it touches (two
equal scanned neighbours are always in one set), and at 26 the voxel below touches all the
others, so inside an object one comparison labels a voxel; an empty row costs one vectorised
OR. On noise where no voxel has an equal neighbour every voxel still runs all comparisons,
and the kernel is ~1.4x slower than cc3d there (faster or equal on CellMap chunks).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["connected_components", "label_narrow"]

#: the connectivities cc3d offers, per dimensionality
_CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}


def connected_components(labels: np.ndarray, connectivity: int = 26
                         ) -> tuple[np.ndarray, int]:
    """cc3d's multi-label connected components of a 2-D or 3-D integer array, GIL released.

    Parameters
    ----------
    labels : 2-D or 3-D NumPy array of an integer or bool dtype; 0 is background. Any
        strides: C-contiguous input is numbered in C order, F-contiguous in F order (as cc3d).
    connectivity : 6, 18 or 26 in 3-D; 4 or 8 in 2-D.

    Returns
    -------
    out, n : ``uint32`` array of ``labels``' shape (``uint64`` from 2³² voxels on) with
        component ids 1..n (0 = background), numbered by each component's first voxel in
        memory order, exactly as ``cc3d.connected_components(labels, connectivity=...,
        return_N=True)``; and ``n``.

    Raises
    ------
    ValueError
        for another dimensionality or a connectivity cc3d does not offer for it.
    TypeError
        for a dtype that is not integer or bool (floats: compare their bit patterns, as
        ``components._cc3d`` does).

    Examples
    --------
    >>> out, n = connected_components(np.array([[1, 0, 1], [2, 2, 0]]), connectivity=4)
    >>> out.tolist(), n
    ([[1, 0, 2], [3, 3, 0]], 3)
    >>> connected_components(np.array([[[1]], [[0]], [[1]]]), connectivity=6)[1]  # apart
    2
    """
    out, n, _ = _label(labels, connectivity, narrow=False)
    return out, n


def label_narrow(labels: np.ndarray, connectivity: int = 26
                 ) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`connected_components` with its output in the narrowest unsigned dtype that
    holds ``n``, and the first voxel of each component, from the same run.

    Why (issue #18, session 9): the chunk label tasks kept only the narrowed labels (what the
    carry stores and the later passes scan) and each component's first voxel, which cost an
    ``astype`` and a scan of the ``uint32`` output per chunk. The kernel knows both after
    its union-find pass: the first voxel of a component is where its root's provisional label
    was made, and the last pass writes the narrow array while it maps the labels.

    Parameters
    ----------
    labels, connectivity : as in :func:`connected_components`.

    Returns
    -------
    out, n, first : the labels of :func:`connected_components` (the same ids) as ``uint8``
        when ``n < 2⁸``, ``uint16`` when ``n < 2¹⁶``, else that function's dtype; ``n``; and
        ``first``, ``(n,)`` int64: the flat index **in memory order** of each component's
        first voxel (``first[k - 1]`` for id ``k``: the C-order index for C-ordered input).

    Examples
    --------
    >>> out, n, first = label_narrow(np.array([[1, 0, 1], [2, 2, 0]]), connectivity=4)
    >>> out.dtype, out.tolist(), n, first.tolist()
    (dtype('uint8'), [[1, 0, 2], [3, 3, 0]], 3, [0, 2, 3])
    """
    return _label(labels, connectivity, narrow=True)


def _label(labels: np.ndarray, connectivity: int, narrow: bool
           ) -> tuple[np.ndarray, int, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim not in _CONNECTIVITIES or connectivity not in _CONNECTIVITIES[labels.ndim]:
        raise ValueError(f"connectivity {connectivity} is not defined for {labels.ndim}-D "
                         "labels (3-D: 6, 18, 26; 2-D: 4, 8)")
    if labels.dtype.kind not in "biu":
        raise TypeError(f"labels of dtype {labels.dtype} are not integer or bool")
    if not labels.flags.c_contiguous:
        if labels.flags.f_contiguous:
            # memory order is the transpose's C order; every connectivity here is symmetric
            # under a permutation of the axes, so the transpose's components are the same
            # (and the first voxels' flat indices are the same memory positions)
            out, n, first = _label(labels.T, connectivity, narrow)
            return out.T, n, first
        labels = np.ascontiguousarray(labels)
    # only equality matters: view signed and bool values as unsigned of the same width
    # (fewer compiled specialisations)
    keys = labels.view(np.dtype(f"u{labels.dtype.itemsize}"))
    shape3 = (1,) * (3 - labels.ndim) + labels.shape
    # in 2-D, 8 neighbours are 26 and 4 are 6 of a volume one plane thick
    conn3 = {4: 6, 8: 26}.get(connectivity, connectivity)
    wide = np.dtype(np.uint32 if labels.size < 2**32 - 1 else np.uint64)
    if labels.size == 0:
        return np.zeros(labels.shape, np.uint8 if narrow else wide), 0, np.zeros(0, np.int64)
    nz, ny, nx = shape3
    flat = keys.reshape(-1)
    table, counts, skips = _TABLES[conn3]
    # narrow: the provisional labels go to a uint16 scratch first (half the memory traffic of
    # uint32; a dense 256³ CellMap chunk makes ~1,000 of them), widened where they outgrow it
    scratch = np.dtype(np.uint16) if narrow else wide
    out = np.zeros(labels.shape, scratch)
    parent = np.empty(min(flat.size, max(4 * nx, 1 << 12)) + 1, wide)
    parent[0] = 0
    made_at = np.empty(parent.size if narrow else 1, np.int64)  # first voxels: narrow only
    spans = np.zeros((nz * ny, 2), np.int64)
    limit = np.iinfo(scratch).max if scratch != wide else np.iinfo(np.int64).max
    n_prov, parent, made_at, done = _label_kernel(
        flat, nz, ny, nx, table, counts, skips, out.reshape(-1), parent, made_at, spans, 0, 0,
        limit, narrow)
    if done < nz * ny:  # outgrew the scratch: the rows done are copied wider, and go on
        wider = np.zeros(labels.shape, wide)
        wider.reshape(-1)[:done * nx] = out.reshape(-1)[:done * nx]
        out = wider
        n_prov, parent, made_at, done = _label_kernel(
            flat, nz, ny, nx, table, counts, skips, out.reshape(-1), parent, made_at, spans,
            done, n_prov, np.iinfo(np.int64).max, narrow)
    n, first = _resolve(parent, made_at, n_prov, narrow)
    dtype = out.dtype
    if narrow:
        dtype = np.dtype(np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else wide)
    if dtype != out.dtype:  # the last pass maps and narrows in one: no astype after it
        final = np.empty(labels.shape, dtype)
        _map_narrow(out.reshape(-1), parent, spans, final.reshape(-1))
        out = final
    elif n != n_prov:  # when every label is its own root the provisional ids are final
        _map_in_place(out.reshape(-1), parent, spans)
    return out, int(n), first


# --------------------------------------------------------------------------------------------
# Neighbour tables


def _offsets(connectivity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The earlier neighbours (dz, dy, dx) a voxel is compared with, its left one excluded.

    Row 0 of the table holds all of them; row 1 only those that are not also neighbours of
    the left voxel (what is left to look at when the left voxel holds the same value). Each
    row is ordered by how many of the row's other entries are neighbours of the entry, most
    first, and ``skips[row, k]`` is the bit mask of those entries: once entry ``k`` holds the
    voxel's value, an entry it touches is either of another value or, holding the value too,
    already in entry ``k``'s set (two equal neighbouring voxels that are both scanned are
    always joined), so it need not be looked at. At 26-connectivity the voxel below touches
    all 11 others: in the inside of an object one comparison labels a voxel.

    Returns
    -------
    table, counts, skips : int64 arrays of shapes (2, 12, 3), (2,) and (2, 12).
    """
    order = {6: 1, 18: 2, 26: 3}[connectivity]

    def touch(d, e):
        diff = [p - q for p, q in zip(d, e, strict=True)]
        return max(map(abs, diff)) == 1 and sum(map(bool, diff)) <= order

    earlier = [(dz, dy, dx) for dz in (-1, 0) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if (dz, dy) < (0, 0) or (dz == dy == 0 and dx < 0)]
    left = (0, 0, -1)
    every = [d for d in earlier if touch(d, (0, 0, 0)) and d != left]
    only_mine = [d for d in every if not touch(d, left)]
    table = np.zeros((2, 12, 3), np.int64)
    skips = np.zeros((2, 12), np.int64)
    for row, ds in enumerate((every, only_mine)):
        ds = sorted(ds, key=lambda d: -sum(touch(d, e) for e in ds))  # stable: raster order
        table[row, :len(ds)] = ds
        for k, d in enumerate(ds):
            skips[row, k] = sum(1 << m for m, e in enumerate(ds) if touch(d, e))
    return table, np.array([len(every), len(only_mine)], np.int64), skips


_TABLES = {c: _offsets(c) for c in (6, 18, 26)}


# --------------------------------------------------------------------------------------------
# Compiled kernels


@numba.njit(inline="always")
def _u(i):  # pragma: no cover - compiled
    """An index as uint64: Numba checks a signed index for wraparound (negative: from the
    end) at every access unless LLVM proves it non-negative, which it cannot for indices
    that start at a value read from an array (the spans) or add a negative offset (the
    neighbours); the check made the map passes ~3.5x slower (7.5 against 2.1 ms on a 256³
    chunk) and the labelling ~5 %."""
    return np.uint64(i)


@numba.njit(nogil=True, cache=True)
def _label_kernel(vals, nz, ny, nx, table, counts, skips, out, parent, made_at, spans, start,
                  n_prov, limit, track_first):  # pragma: no cover - compiled
    """Label the C-ordered volume ``vals`` (flat, shape ``(nz, ny, nx)``) into ``out`` (flat,
    same size, zero-filled) with provisional labels, from row ``start`` (``z * ny + y``) on,
    comparing each voxel with its left neighbour and the earlier neighbours of
    :func:`_offsets`' tables.

    ``parent`` (``parent[0] = 0``) and ``made_at`` hold the union-find table and where each
    of the ``n_prov`` provisional labels so far was made (only with ``track_first``: on noise
    with millions of labels the record costs ~20 % of the run); ``spans`` gets per row the first and
    one past the last labelled voxel. Before a row that could take the number of provisional
    labels beyond ``limit`` (what ``out`` holds) the kernel stops.

    Returns ``(n_prov, parent, made_at, row)``: the tables (grown), and the row it stopped
    before (``nz * ny`` when done); :func:`_resolve` then numbers the components."""
    plane = ny * nx
    # the union-find table grows between rows (a row makes at most nx new labels), so the
    # voxel loop never reassigns it; made_at: where each provisional label was made (a
    # root's is its component's first voxel)
    # flat index offsets of the table's neighbours
    delta = np.empty((2, 12), np.int64)
    for row in range(2):
        for k in range(12):
            delta[row, k] = table[row, k, 0] * plane + table[row, k, 1] * nx + table[row, k, 2]
    # whether a table's first neighbour touches all its others: then, inside the volume, a
    # first neighbour of value v settles the voxel (one comparison in an object's inside)
    settles = np.zeros(2, np.bool_)
    for row in range(2):
        settles[row] = skips[row, 0] == (1 << counts[row]) - 2
    # per table row and boundary code (16·[z > 0] + 8·[y > 0] + 4·[y < ny-1] + 2·[x > 0] +
    # [x < nx-1]) the mask of neighbours outside the volume: they start out skipped
    outside = np.zeros((2, 32), np.int64)
    for row in range(2):
        for code in range(32):
            for k in range(counts[row]):
                dz, dy, dx = table[row, k, 0], table[row, k, 1], table[row, k, 2]
                if ((dz < 0 and not code & 16) or (dy < 0 and not code & 8)
                        or (dy > 0 and not code & 4) or (dx < 0 and not code & 2)
                        or (dx > 0 and not code & 1)):
                    outside[row, code] |= 1 << k
    # (loops from 0, rows before ``start`` skipped: indices LLVM can prove non-negative
    # need no wraparound check; a loop from ``start`` made the whole kernel ~25 % slower)
    for z in range(nz):
        zb = z > 0
        for y in range(ny):
            if z * ny + y < start:
                continue
            if n_prov + nx > limit:
                return n_prov, parent, made_at, z * ny + y
            yb = y > 0
            ya = y + 1 < ny
            inner_row = zb and yb and ya
            row_code = 16 * zb + 8 * yb + 4 * ya
            row = z * plane + y * nx
            if n_prov + nx >= parent.size:
                grown = np.empty(min(2 * parent.size, vals.size + 1), parent.dtype)
                grown[:n_prov + 1] = parent[:n_prov + 1]
                parent = grown
                if track_first:
                    grown_at = np.empty(parent.size, np.int64)
                    grown_at[:n_prov + 1] = made_at[:n_prov + 1]
                    made_at = grown_at
            first = row  # an empty row's span stays empty
            last = row - 1
            # most rows of a sparse chunk are empty: an OR over the row (vectorised, no
            # branch per voxel) skips them
            any_set = vals[_u(row)] ^ vals[_u(row)]
            for x in range(nx):
                any_set |= vals[_u(row + x)]
            if any_set == 0:
                continue
            for x in range(nx):
                i = row + x
                v = vals[_u(i)]
                if v == 0:
                    continue
                if last < first:
                    first = i
                last = i
                xb = x > 0
                if xb and vals[_u(i - 1)] == v:
                    # the left voxel's set already holds every earlier neighbour of value v
                    # that is also its neighbour: only the others are looked at
                    lab = np.int64(out[_u(i - 1)])
                    case = 1
                else:
                    lab = np.int64(0)
                    case = 0
                inner = inner_row and xb and x + 1 < nx
                if inner and settles[case]:
                    j = i + delta[case, 0]
                    if vals[_u(j)] == v and (case == 0 or out[_u(j)] == lab):
                        out[_u(i)] = out[_u(j)]  # joins nothing new: no union to make
                        continue
                skip = outside[case, row_code + 2 * xb + (x + 1 < nx)]
                for k in range(counts[case]):
                    if skip >> k & 1:
                        continue
                    j = i + delta[case, k]
                    if vals[_u(j)] != v:
                        continue
                    skip |= skips[case, k]
                    other = np.int64(out[_u(j)])
                    if lab == 0:
                        lab = other
                    elif other != lab:
                        # union by smaller root, path halving (parents point to smaller labels)
                        a = lab
                        while parent[a] != a:
                            parent[a] = parent[parent[a]]
                            a = np.int64(parent[a])
                        b = other
                        while parent[b] != b:
                            parent[b] = parent[parent[b]]
                            b = np.int64(parent[b])
                        if a < b:
                            parent[b] = a
                            lab = a
                        else:
                            parent[a] = b
                            lab = b
                if lab == 0:  # no earlier neighbour of value v: a new provisional label
                    n_prov += 1
                    parent[n_prov] = n_prov
                    if track_first:
                        made_at[n_prov] = i
                    lab = np.int64(n_prov)
                out[_u(i)] = lab
            spans[z * ny + y, 0] = first
            spans[z * ny + y, 1] = last + 1
    return n_prov, parent, made_at, nz * ny


@numba.njit(nogil=True, cache=True)
def _resolve(parent, made_at, n_prov, track_first):  # pragma: no cover - compiled
    """Number the components: ``parent`` becomes the table provisional label → final id
    (in place) and, with ``track_first``, each component's first voxel is returned,
    ``(n, first)`` (``first`` empty without it).

    Roots in increasing order are the components in order of their first voxels; every
    non-root points to a smaller label, already rewritten to its final id."""
    first_voxel = np.empty(n_prov if track_first else 0, np.int64)
    n = 0
    for lab in range(1, n_prov + 1):
        up = parent[lab]
        if up == lab:
            if track_first:
                first_voxel[n] = made_at[lab]
            n += 1
            parent[lab] = n
        else:
            parent[lab] = parent[up]
    return n, first_voxel[:n]


@numba.njit(nogil=True, cache=True)
def _map_in_place(out, parent, spans):  # pragma: no cover - compiled
    """Provisional labels → final ids over each row's labelled span (outside them ``out``
    is already 0)."""
    for r in range(spans.shape[0]):
        for i in range(spans[r, 0], spans[r, 1]):
            out[_u(i)] = parent[_u(out[_u(i)])]


@numba.njit(nogil=True, cache=True)
def _map_narrow(out, parent, spans, final):  # pragma: no cover - compiled
    """``final = parent[out]`` in ``final``'s (narrower) dtype, every voxel written: the
    labelled span of each row mapped, the rest of the row 0."""
    nx = final.size // spans.shape[0]
    for r in range(spans.shape[0]):
        row = r * nx
        end = row + nx
        a, b = spans[r, 0], spans[r, 1]
        if b <= a:  # an empty row (its span was left at (0, 0))
            a = b = row
        for i in range(row, a):
            final[_u(i)] = 0
        for i in range(a, b):
            final[_u(i)] = parent[_u(out[_u(i)])]
        for i in range(b, end):
            final[_u(i)] = 0
