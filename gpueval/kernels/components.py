"""Connected components of a label volume, whole-array or out of core across chunks.

Semantics are those of ``cc3d.connected_components`` (what CellMap's scorer calls):

* **multi-label** (default): a voxel connects only to neighbours holding the *same* non-zero
  value; ``binary=True``: every non-zero voxel is foreground and all foreground connects.
* connectivity 6/18/26 in 3-D (faces / +edges / +corners), 4/8 in 2-D.
* output ids are 1..N in **C raster order of each component's first voxel** (cc3d numbers in
  memory order, so this holds for C-contiguous input: chunks are made contiguous here).
* any dtype cc3d takes works the same: integers of every width, bool, and float labels
  (float values are compared with ``==``: ``1.5`` and ``2.25`` are distinct ids; ``-0.0`` is
  background; NaN voxels are undefined, as in cc3d), uint64 ids up to 2⁶⁴ − 1 included. Three
  cc3d defects are worked around, see :func:`_cc3d`: our output is the *correct* labelling
  where cc3d's differs or crashes, for every chunking (``tests/test_chunking_independence.py``).

Out of core (:func:`label_chunked`), why a reducer of our own: dask-image's ``ndmeasure.label``
slices a thin face across every pair of chunks in the graph and ran ~220x slower than
whole-volume cc3d (``shared/research/anchors.md`` §1). Here each chunk task labels its chunk
(:mod:`gpueval.kernels.cc_nogil`, cc3d's numbering without holding the GIL) *and*
keeps its own boundary planes (local labels + input values) and the global raster index of
each local component's first voxel — all small. One task per chunk pairs its planes with its
forward neighbours' (faces, edges and corners as the connectivity asks; a compiled loop that
drops repeated pairs) and returns only distinct label pairs. The host runs a union-find
(``scipy.sparse.csgraph.connected_components``) over the boundary-touching components only,
and numbers the merged components by their first voxel's global raster index (raster order is
lexicographic in the coordinates, so the smallest first voxel of the parts is the first voxel
of the whole, and sorting these reproduces cc3d's numbering exactly). The relabelled volume
stays lazy: a chunk is recomputed (the labelling is deterministic) and mapped through that chunk's
lookup table, so nothing voxel-sized is ever stored or gathered.

GPU twin: a union-find kernel of ours (``kernels/cc_union_find.cu``). ``cupyx.scipy.ndimage.
label`` and cuCIM's ``label`` are binary or skimage-flavoured and number components in an
order we would have to repair anyway; ours links every root to the smaller index, so each
root *is* the component's first voxel and a prefix sum over roots gives cc3d's ids directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cc3d
import dask
import dask.array as da
import dask.threaded
import fastremap
import numba
import numpy as np
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from gpueval import engine
from gpueval.backend import is_cupy, to_device, to_host
from gpueval.engine import timed
from gpueval.kernels import cc_nogil
from gpueval.kernels.device import load_module
from gpueval.kernels.throughput_carry import store as carry_store

__all__ = ["ChunkedLabels", "connected_components", "label_chunked", "max_neighbour_order"]

# --------------------------------------------------------------------------------------------
# Public API


def max_neighbour_order(ndim: int, connectivity: int) -> int:
    """How many axes a neighbour offset may change: 6/4 → 1, 18/8 → 2, 26 → 3.

    Raises ``ValueError`` for a connectivity cc3d does not offer for ``ndim``.
    """
    table = {3: {6: 1, 18: 2, 26: 3}, 2: {4: 1, 8: 2}}
    if ndim not in table or connectivity not in table[ndim]:
        raise ValueError(f"connectivity {connectivity} is not defined for {ndim}-D labels "
                         "(3-D: 6, 18, 26; 2-D: 4, 8)")
    return table[ndim][connectivity]


def connected_components(labels: Any, connectivity: int = 26, binary: bool = False
                         ) -> tuple[Any, int]:
    """Connected components of one in-memory array (NumPy → :mod:`.cc_nogil`, CuPy → our
    kernel), as cc3d labels it.

    Parameters
    ----------
    labels : 2-D or 3-D NumPy or CuPy array, any integer, bool or float dtype; 0 = background.
    connectivity : 6, 18, 26 (3-D) or 4, 8 (2-D).
    binary : treat every non-zero voxel as one foreground class.

    Returns
    -------
    out, n : component ids 1..n (C raster order of first voxels; 0 = background) as an array
        of the input's kind, and the number of components.

    Notes
    -----
    On NumPy this is cc3d's multi-label mode (computed by :mod:`.cc_nogil`, equal to cc3d
    voxel for voxel); like cc3d it numbers in *memory* order, so a
    Fortran-ordered array is numbered in F order (chunked labelling always uses C order).
    Where cc3d 4.1 mislabels (binary 2-D 4-connected images; float labels on volumes with a
    size-1 axis) the input is first turned into equivalent integer keys, see :func:`_cc3d`.

    Examples
    --------
    >>> out, n = connected_components(np.array([[1, 0, 1], [2, 2, 0]]), connectivity=4)
    >>> out.tolist(), n
    ([[1, 0, 2], [3, 3, 0]], 3)
    """
    max_neighbour_order(labels.ndim, connectivity)
    if is_cupy(labels):
        out, n, _ = _cc_cupy(labels, connectivity, binary)
        return out, n
    return _cc3d(labels, connectivity, binary)


@dataclass
class ChunkedLabels:
    """The result of :func:`label_chunked`: the count, and the relabelled volume, lazily.

    Attributes
    ----------
    n : number of components (ids are 1..n, cc3d's numbering of the whole volume).
    data : lazy dask array of the relabelled volume, chunked like the input; each chunk is
        recomputed from the input chunk (deterministic) and mapped through its lookup table.
    luts : per chunk (C order of the chunk grid) the table local id → global id (index 0 → 0).
    first_index : per global id ``k`` (at ``k - 1``) the C-order linear index of its first voxel.
    """

    n: int
    data: da.Array
    luts: list[np.ndarray] = field(repr=False)
    first_index: np.ndarray = field(repr=False)
    connectivity: int = 26
    binary: bool = False
    _chunk_of: dict[tuple[int, ...], int] = field(default_factory=dict, repr=False)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def block(self, slices: Sequence[slice]) -> np.ndarray:
        """The relabelled volume over ``slices`` as a NumPy array (reads only the chunks it
        touches; meant for small crops such as a pair of objects' bounding boxes)."""
        # the threaded scheduler as a function: a name makes dask import distributed
        return np.asarray(self.data[tuple(slices)].compute(scheduler=dask.threaded.get))

    def relabel(self, slices: Sequence[slice], chunk: Any) -> Any:
        """Relabel one *input* chunk that is already in memory (NumPy or CuPy), for use inside
        another chunked pass over the same grid ("upload once"). ``slices`` must be exactly
        one chunk of the grid the labels were computed on."""
        key = tuple(int(s.start or 0) for s in slices)
        if key not in self._chunk_of:
            raise ValueError(f"{tuple(slices)} is not a chunk of the labelled grid")
        return _relabel_chunk(chunk, self.luts[self._chunk_of[key]], self.connectivity,
                              self.binary)


def label_chunked(
    arr: da.Array,
    connectivity: int = 26,
    binary: bool = False,
    *,
    device: str = "cpu",
    scheduler: Any = None,
    progress: bool = False,
) -> ChunkedLabels:
    """Connected components of a chunked (dask) label volume, exactly as whole-volume cc3d.

    Memory is bounded by the chunk size: each task labels one chunk and returns only its
    boundary planes and per-component first voxels; the host union-find is sized by the
    number of components, not voxels.

    Parameters
    ----------
    arr : 2-D or 3-D dask array (any dtype cc3d accepts); its chunks are the work units.
    connectivity, binary : as in :func:`connected_components`.
    device : ``"cpu"`` (:mod:`.cc_nogil` per chunk) or ``"gpu"`` (CuPy kernel per chunk).
    scheduler : ``None`` (threads), ``"sync"``, a ``dask.distributed`` address or Client.
    progress : show a progress bar.

    Returns
    -------
    ChunkedLabels
        ``.n`` is computed now; ``.data`` is lazy. ``.data`` equals
        ``cc3d.connected_components(arr.compute(), connectivity=connectivity)`` voxel for voxel
        (its dtype is the smallest of uint16/32/64 that holds ``n``, which may differ from the
        dtype cc3d picks from its own estimate).
    """
    arr = _drop_empty_chunks(arr)
    luts, n, first_index = engine.compute(
        label_graph(arr, connectivity, binary, device=device),
        scheduler=scheduler, progress=progress)[0]
    data = _relabelled_array(arr, luts, connectivity, binary, device, luts[0].dtype)
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64) for c in arr.chunks]
    chunk_of = {tuple(int(starts[ax][j]) for ax, j in enumerate(idx)): i
                for i, idx in enumerate(np.ndindex(*arr.numblocks))}
    return ChunkedLabels(n=n, data=data, luts=luts, first_index=first_index,
                         connectivity=connectivity, binary=binary, _chunk_of=chunk_of)


def label_graph(arr: da.Array, connectivity: int = 26, binary: bool = False, *,
                device: str = "cpu", skip: np.ndarray | None = None,
                carry: Any = None) -> Delayed:
    """The chunked labelling of :func:`label_chunked` as one lazy value, for larger graphs.

    Parameters
    ----------
    arr : 2-D or 3-D dask array without zero-size chunks.
    connectivity, binary, device : as in :func:`label_chunked`.
    skip : optional bool array shaped like the chunk grid; ``True`` marks chunks the caller
        knows hold only 0 (they are neither read nor labelled).
    carry : optional hashable key. On the CPU each chunk task then also leaves its local
        labels (cc3d's output, before the merge) in :data:`gpueval.kernels.throughput_carry.
        store` under ``(carry, index)``, so a later pass over the same grid gets the
        relabelled chunk as ``luts[index][local]`` (:func:`carried_local`) without reading
        the chunk or running cc3d again. The caller must collect the entries (``remove=True``
        on the last use); entries the budget evicts are simply recomputed.

    Returns
    -------
    Delayed
        ``(luts, n, first_index)``: per chunk (C order of the grid) the lookup table local id →
        global id (a zero-length table for skipped chunks is never needed: use
        :func:`relabel_block` only on chunks that were labelled), the number of components and
        each component's first voxel, as in :class:`ChunkedLabels`. Boundary planes stay in
        the graph: a task per chunk pairs them with its forward neighbours' planes, so only
        de-duplicated label pairs and first voxels reach the merge.
    """
    order = max_neighbour_order(arr.ndim, connectivity)
    grid = arr.numblocks
    flat_skip = np.zeros(int(np.prod(grid)), bool) if skip is None else \
        np.asarray(skip, bool).ravel()
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64) for c in arr.chunks]
    shape = tuple(int(v) for v in arr.shape)
    # the tasks as one dict (engine.TaskGraph), not dask.delayed calls: each edge task takes
    # a list of neighbour results, and dask (2026.8) culled the whole graph behind such a
    # list at every call (~35 ms of serial graph build on cellmap_600, issue #18)
    graph = engine.TaskGraph("cc-label", dask.base.tokenize(
        arr.name, connectivity, binary, device, flat_skip, carry))
    blocks = arr.to_delayed().ravel()
    cells = list(np.ndindex(*grid))
    infos = {}
    for i, idx in enumerate(cells):
        if not flat_skip[i]:
            origin = tuple(int(starts[ax][j]) for ax, j in enumerate(idx))
            infos[i] = graph.add(_label_task, blocks[i], i, origin, shape, connectivity,
                                 binary, device, None if carry is None else (carry, i),
                                 index=(i,))
    edge_tasks = [_label_edges(graph, infos, i, idx, grid, order) for i, idx in enumerate(cells)
                  if i in infos]
    none = np.zeros(0, np.int64)
    firsts = [graph.add(_first_of, infos[i], index=(i,)) if i in infos else none
              for i in range(len(cells))]
    return graph.delayed(graph.add(_merge_tables, firsts, [e for e in edge_tasks if e]))


def _label_edges(graph: engine.TaskGraph, infos: dict[int, Any], i: int, idx: tuple[int, ...],
                 grid: tuple[int, ...], order: int) -> Any:
    """The :func:`_edges_task` of chunk ``i`` (at ``idx`` of ``grid``) with its labelled
    forward neighbours, or ``None`` when it has none."""
    nbs = []
    for delta in _forward_offsets(len(grid), order):
        nb = tuple(a + d for a, d in zip(idx, delta, strict=True))
        if all(0 <= a < g for a, g in zip(nb, grid, strict=True)):
            j = int(np.ravel_multi_index(nb, grid))
            if j in infos:
                nbs.append((delta, j))
    if not nbs:
        return None
    return graph.add(_edges_task, infos[i], [infos[j] for _, j in nbs], nbs, order, index=(i,))


def relabel_block(block: Any, luts: Sequence[np.ndarray], index: int, connectivity: int = 26,
                  binary: bool = False) -> Any:
    """Relabel chunk ``index`` of a :func:`label_graph` grid, already in memory (NumPy or CuPy,
    result on the same device), with its global ids."""
    return _relabel_chunk(_on_device(block, "cpu"), luts[index], connectivity, binary)


def narrowest(local: np.ndarray, n: int) -> np.ndarray:
    """Labels ``0..n`` in the narrowest unsigned dtype (cc3d sizes its output by an estimate,
    often uint32 for < 2¹⁶ components): what a carry stores, decodes and scans halves."""
    dtype = np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else local.dtype
    return local.astype(dtype, copy=False)


def carried_local(carry: Any, index: int, *, remove: bool = False) -> np.ndarray | None:
    """The local component labels (ids ``0..n`` of chunk ``index`` alone, cc3d's output) a
    :func:`label_graph` run with ``carry`` left behind, or ``None`` when they are gone; map
    them through ``luts[index]`` (the whole chunk, or only the part a caller needs: equal to
    :func:`relabel_block` of the input chunk there). ``remove`` drops the entry (and hands
    back the array itself); without it the labels may be a **read-only** view of the entry
    (no copy: the passes before the last only read them)."""
    got = carry_store.get((carry, index), remove=remove, copy=False)
    return None if got is None else got[0]


def _merge_tables(firsts, edge_lists) -> tuple[list[np.ndarray], int, np.ndarray]:
    luts, first_index = _merge(firsts, [e for el in edge_lists for e in el])
    n = len(first_index)
    dtype = np.dtype(np.uint16 if n < 2**16 else np.uint32 if n < 2**32 else np.uint64)
    return [lut.astype(dtype) for lut in luts], n, first_index


# --------------------------------------------------------------------------------------------
# Per-chunk task


def _cc3d(labels: np.ndarray, connectivity: int, binary: bool) -> tuple[np.ndarray, int]:
    """cc3d's multi-label components of integer keys with the same equalities as ``labels``.

    The labelling itself is :func:`gpueval.kernels.cc_nogil.connected_components`, a Numba
    kernel equal to cc3d voxel for voxel and in N that releases the GIL: cc3d holds it for
    most of its run (a probe thread beside it ran at 0.08–0.37 of its idle rate), so chunk
    tasks on two threads serialised on it (issue #18, session 8; ``benchmarks/README.md``).
    Its output is uint32 (cc3d's is uint16 on small volumes; callers take any unsigned type).
    cc3d itself labels only what the kernel does not take (other dimensionalities).

    Two cc3d defects (connected-components-3d 3.x, found by the property tests here) shaped
    the keys and stay avoided: ``binary_image=True`` miscounts 2-D 4-connected images and
    raises "maximum length exception" on some tiny 3-D ones, so binary input is labelled as a
    0/1 uint8 volume instead; float labels on a volume with a size-1 axis come out split (two
    equal vertically adjacent 0.5 voxels in a (2, 1) image get two ids), so floats are
    labelled through their bit patterns (``-0.0`` folded into ``0.0``), which compare exactly
    as the float values do for every non-NaN value.

    A third defect (cc3d 4.1): uint64 values ≥ 2⁶³ raise ``OverflowError`` when a volume's
    only foreground is one row (a fast path converts the value to a C ``long``). Negative
    float64 labels reach it too, as their bit patterns are ≥ 2⁶³. On the cc3d path such
    volumes are first renumbered to a dense range 1..k with ``fastremap.renumber`` (0 kept as
    0), which keeps every equality and so the components and their raster numbering; the
    kernel compares any 64-bit keys as they are.
    """
    labels = _cc_keys(labels, binary)
    if labels.ndim in (2, 3):
        return cc_nogil.connected_components(labels, connectivity)
    if labels.dtype == np.uint64 and labels.size and labels.max() >= np.uint64(2**63):
        labels, _ = fastremap.renumber(labels, start=1, preserve_zero=True, in_place=False)
    out, n = cc3d.connected_components(labels, connectivity=connectivity, return_N=True)
    return out, int(n)


def _cc_keys(labels: np.ndarray, binary: bool) -> np.ndarray:
    """Integer keys with the same equalities as ``labels`` (see :func:`_cc3d`: bool and
    binary input as 0/1 uint8, floats by bit pattern with ``-0.0`` folded into ``0.0``)."""
    if binary or labels.dtype == bool:
        return (labels != 0).view(np.uint8)
    if labels.dtype.kind == "f":
        wide = labels.dtype.itemsize
        return (labels + labels.dtype.type(0)).view(np.uint64 if wide == 8 else np.uint32
                                                    if wide == 4 else np.uint16)
    return labels


def _cc3d_narrow(labels: np.ndarray, connectivity: int, binary: bool
                 ) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`_cc3d` as :func:`narrowest` labels and each component's first voxel (C-order
    index in the chunk), from one run of :func:`gpueval.kernels.cc_nogil.label_narrow`
    (issue #18, session 9: no ``astype`` and no :func:`_first_voxels` scan after it);
    ``labels`` must be C-contiguous. Other dimensionalities go through :func:`_cc3d`."""
    keys = _cc_keys(labels, binary)
    if keys.ndim in (2, 3):
        return cc_nogil.label_narrow(keys, connectivity)
    local, n = _cc3d(labels, connectivity, binary)
    return narrowest(local, n), n, _first_voxels(local.reshape(-1), n)


@dataclass
class _ChunkInfo:
    index: int                  # position in the chunk grid (C order)
    n: int                      # local components
    first_index: np.ndarray     # (n,) int64 global C-order index of each local id's first voxel
    planes: dict                # (axis, side) -> (labels plane, values plane), axis kept (size 1)


@timed("kernel")
def _label_task(block, index, origin, shape, connectivity, binary, device, carry_key=None
                ) -> _ChunkInfo:
    block = _on_device(block, device)
    if is_cupy(block):
        local, n, first_local = _cc_cupy(block, connectivity, binary)
        first_local = to_host(first_local)
    else:
        local, n, first_local = _cc3d_narrow(block, connectivity, binary)
        if carry_key is not None:
            carry_store.put(carry_key, [local])
    coords = np.unravel_index(first_local, block.shape)
    first_global = np.ravel_multi_index(
        tuple(c + o for c, o in zip(coords, origin, strict=True)), shape).astype(np.int64)
    planes = {}
    for ax in range(block.ndim):
        for side, pos in ((0, 0), (1, block.shape[ax] - 1)):
            sl = tuple(slice(pos, pos + 1) if a == ax else slice(None) for a in range(block.ndim))
            lab = to_host(local[sl]).copy()
            val = None if binary else _value_keys(to_host(block[sl]))
            planes[ax, side] = (lab, val)
    return _ChunkInfo(index, n, first_global, planes)


def _on_device(block, device):
    """A C-contiguous chunk on ``device`` (dask arrays of CuPy chunks are kept as they are)."""
    if is_cupy(block):
        import cupy

        return cupy.ascontiguousarray(block)
    return to_device(np.ascontiguousarray(block), device)


def _value_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys equal exactly where the label values are equal (floats by bit pattern with
    -0.0 folded into 0.0; negative integers wrap, which keeps equality)."""
    if values.dtype.kind == "f":
        values = values.astype(np.float64) + 0.0
        return values.view(np.uint64)
    return values.astype(np.uint64)


@numba.njit(nogil=True, cache=True)
def _first_voxels(flat, n):  # pragma: no cover - compiled
    """Linear index of the first occurrence of each id 1..n in a flat label array."""
    out = np.full(n, -1, np.int64)
    found = 0
    for i in range(flat.size):
        v = np.int64(flat[i])  # uint64 - int would be float64 in Numba
        if v != 0 and out[v - 1] < 0:
            out[v - 1] = i
            found += 1
            if found == n:
                break
    return out


# --------------------------------------------------------------------------------------------
# Host merge


def _forward_offsets(ndim: int, max_order: int) -> list[tuple[int, ...]]:
    """Chunk-grid offsets to pair with (first non-zero component +1), up to ``max_order`` axes."""
    out = []
    for d in itertools.product((-1, 0, 1), repeat=ndim):
        nz = [v for v in d if v]
        if nz and nz[0] == 1 and len(nz) <= max_order:
            out.append(d)
    return out


def _slab(planes: dict, delta: Sequence[int], sign: int):
    """The voxels of one chunk facing its neighbour at ``sign * delta``: labels and values with
    the axes where ``delta`` is non-zero fixed (last voxel if facing +, first if facing −)."""
    axes = [a for a, v in enumerate(delta) if v]
    first = axes[0]
    facing = sign * delta[first]
    lab, val = planes[first, 1 if facing > 0 else 0]
    idx = []
    for a, v in enumerate(delta):
        if a == first:
            idx.append(0)
        elif v:
            idx.append(-1 if sign * v > 0 else 0)
        else:
            idx.append(slice(None))
    idx = tuple(idx)
    return lab[idx], (None if val is None else val[idx])


def _pair_edges(la, va, lb, vb, free_order: int) -> np.ndarray:
    """Distinct (label_a, label_b) pairs of connected voxels between two facing slabs, as a
    (2, k) int64 array; in-slab offsets change at most ``free_order`` axes."""
    nd = la.ndim
    offs = [o for o in itertools.product((-1, 0, 1), repeat=nd)
            if sum(1 for v in o if v) <= free_order]
    offs = np.array(offs, np.int64).reshape(len(offs), nd)
    # the compiled pairing works on 2-D slabs: faces of 3-D volumes; edges and 2-D faces get a
    # leading size-1 axis, corners two
    pad = 2 - nd
    shape2 = (1,) * pad + la.shape
    offs2 = np.concatenate([np.zeros((len(offs), pad), np.int64), offs], axis=1)
    binary = va is None
    if binary:
        va = vb = np.zeros(1, np.uint64)
    def as2(x, shape, dtype):  # one layout and dtype for the compiled kernel
        return np.ascontiguousarray(x, dtype=dtype).reshape(shape)

    pairs = _pair_kernel(as2(la, shape2, np.int64), as2(lb, shape2, np.int64),
                         as2(va, (1, 1) if binary else shape2, np.uint64),
                         as2(vb, (1, 1) if binary else shape2, np.uint64), offs2, binary)
    if pairs.shape[1] > 1:
        pairs = np.unique(pairs, axis=1) if pairs.shape[1] < 64 else _unique_pairs(pairs)
    return pairs


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    lo = int(pairs[1].max()) + 1
    keys = np.unique(pairs[0] * lo + pairs[1])  # local labels: no overflow in int64
    return np.stack([keys // lo, keys % lo])


@numba.njit(nogil=True, cache=True)
def _pair_kernel(la, lb, va, vb, offs, binary):  # pragma: no cover - compiled
    ny, nx = la.shape
    out = np.empty((2, ny * nx * offs.shape[0] + 1), np.int64)
    k = 0
    last_a, last_b = -1, -1
    for y in range(ny):
        for x in range(nx):
            a = la[y, x]
            if a == 0:
                continue
            for j in range(offs.shape[0]):
                yy, xx = y + offs[j, 0], x + offs[j, 1]
                if yy < 0 or xx < 0 or yy >= ny or xx >= nx:
                    continue
                b = lb[yy, xx]
                if b == 0:
                    continue
                if not binary and va[y, x] != vb[yy, xx]:
                    continue
                if a == last_a and b == last_b:  # runs of one pair are common: skip cheaply
                    continue
                out[0, k] = a
                out[1, k] = b
                k += 1
                last_a, last_b = a, b
    return out[:, :k]


def _first_of(info: _ChunkInfo) -> np.ndarray:
    return info.first_index


@timed("kernel")
def _edges_task(info: _ChunkInfo, neighbours: Sequence[_ChunkInfo], nbs, max_order: int
                ) -> list[tuple[int, int, np.ndarray]]:
    """Label pairs between one chunk and each forward neighbour: ``(ci, cj, (2, k) pairs)``."""
    out = []
    ci = info.index
    for other, (delta, cj) in zip(neighbours, nbs, strict=True):
        la, va = _slab(info.planes, delta, +1)
        lb, vb = _slab(other.planes, delta, -1)
        e = _pair_edges(la, va, lb, vb, max_order - sum(1 for v in delta if v))
        if e.shape[1]:
            out.append((ci, cj, e))
    return out


def _merge(firsts: Sequence[np.ndarray], edges: Sequence[tuple[int, int, np.ndarray]]
           ) -> tuple[list[np.ndarray], np.ndarray]:
    """Union-find over boundary pairs; global ids by first voxel; per-chunk lookup tables.

    ``firsts[c]`` holds the global first voxel of chunk ``c``'s local ids 1..n; ``edges`` are
    ``(c, c', pairs)`` of local ids that touch across the boundary of chunks ``c`` and ``c'``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as csgraph_cc

    counts = np.array([len(f) for f in firsts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])  # provisional id = offset + local - 1
    total = int(offsets[-1])
    first = np.concatenate(firsts) if total else np.zeros(0, np.int64)
    edges = [np.stack([e[0] + (offsets[ci] - 1), e[1] + (offsets[cj] - 1)])
             for ci, cj, e in edges]

    root_key = first.copy()  # per provisional id: smallest first voxel of its merged component
    if edges:
        e = np.concatenate(edges, axis=1)
        nodes, inv = np.unique(e.ravel(), return_inverse=True)
        inv = inv.reshape(2, -1)
        m = len(nodes)
        graph = coo_matrix((np.ones(inv.shape[1], np.int8), (inv[0], inv[1])), shape=(m, m))
        _, comp = csgraph_cc(graph, directed=False)
        key = np.full(comp.max() + 1, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(key, comp, first[nodes])
        root_key[nodes] = key[comp]
    uniq, gid = np.unique(root_key, return_inverse=True)
    gid = gid.astype(np.int64) + 1
    luts = [np.concatenate([[0], gid[offsets[c]:offsets[c + 1]]]) for c in range(len(firsts))]
    return luts, uniq.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Lazy relabelled volume


def _relabel_chunk(chunk, lut, connectivity, binary):
    if is_cupy(chunk):
        import cupy

        local, _, _ = _cc_cupy(chunk, connectivity, binary)
        return cupy.asarray(lut)[local]
    return lut[_cc3d(np.ascontiguousarray(chunk), connectivity, binary)[0]]


@timed("kernel")
def _relabel_task(chunk, lut, connectivity, binary, device):
    out = _relabel_chunk(_on_device(chunk, device), lut, connectivity, binary)
    return to_host(out)


def _relabelled_array(arr, luts, connectivity, binary, device, dtype) -> da.Array:
    name = "cc-relabel-" + dask.base.tokenize(arr, connectivity, binary, device,
                                                [lut.tobytes() for lut in luts])
    grid = tuple(len(c) for c in arr.chunks)
    dsk = {}
    for i, idx in enumerate(itertools.product(*(range(g) for g in grid))):
        dsk[(name, *idx)] = (_relabel_task, (arr.name, *idx), luts[i], connectivity, binary,
                             device)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[arr])
    return da.Array(graph, name, arr.chunks, dtype=dtype)


def _drop_empty_chunks(arr: da.Array) -> da.Array:
    chunks = tuple(tuple(c for c in ax if c > 0) or (0,) for ax in arr.chunks)
    if any(0 in ax for ax in chunks):
        raise ValueError("cannot label an empty volume")
    return arr if chunks == arr.chunks else arr.rechunk(chunks)


# --------------------------------------------------------------------------------------------
# CuPy twin


_KERNELS: dict[str, Any] = {}


def _cuda_kernels():
    """The union-find kernels of ``kernels/cc_union_find.cu``: from its prebuilt fatbin when
    one fits the device (no NVRTC compile on a fresh machine), else compiled from the source
    (:func:`gpueval.kernels.device.load_module`)."""
    if not _KERNELS:
        mod = load_module("cc_union_find.cu")
        for name in ("cc_init", "cc_merge", "cc_compress"):
            _KERNELS[name] = mod.get_function(name)
    return _KERNELS


def _device_keys(block, binary):
    """Values as uint64 keys with the same equalities (floats: -0.0 folded into 0.0)."""
    import cupy

    if binary or block.dtype == bool:
        return (block != 0).astype(cupy.uint64)
    if block.dtype.kind == "f":
        return (block.astype(cupy.float64) + 0.0).view(cupy.uint64)
    return block.astype(cupy.uint64)


def _backward_neighbours(ndim: int, connectivity: int) -> np.ndarray:
    """(k, 3) int32 offsets (dz, dy, dx) that precede a voxel in raster order."""
    order = max_neighbour_order(ndim, connectivity)
    out = []
    for d in itertools.product((-1, 0, 1), repeat=ndim):
        nz = [v for v in d if v]
        if nz and nz[0] == -1 and len(nz) <= order:
            out.append((0,) * (3 - ndim) + d)
    return np.array(out, np.int32)


def _cc_cupy(block, connectivity: int, binary: bool):
    """Union-find labelling on the device: (labels uint32, n, first voxel per id (n,) int64).

    Chunks must stay below 2³¹ voxels (int32 indices, as in CuPy's own ``label``)."""
    import cupy

    if block.size >= 2**31:
        raise ValueError("GPU labelling needs chunks below 2**31 voxels; use smaller chunks")
    if block.size == 0:
        return cupy.zeros(block.shape, cupy.uint32), 0, cupy.zeros(0, cupy.int64)
    shape3 = (1,) * (3 - block.ndim) + tuple(block.shape)
    keys = cupy.ascontiguousarray(_device_keys(block, binary)).reshape(-1)
    size = keys.size
    parent = cupy.empty(size, cupy.int32)
    nbrs = cupy.asarray(_backward_neighbours(block.ndim, connectivity))
    k = _cuda_kernels()
    threads = 256
    grid = ((size + threads - 1) // threads,)
    dims = [np.int32(s) for s in shape3]
    k["cc_init"](grid, (threads,), (keys, parent, np.int64(size)))
    k["cc_merge"](grid, (threads,), (keys, parent, *dims, nbrs, np.int32(len(nbrs)),
                                     np.int32(bool(binary))))
    k["cc_compress"](grid, (threads,), (parent, np.int64(size)))
    index = cupy.arange(size, dtype=cupy.int32)
    is_root = parent == index
    rank = cupy.cumsum(is_root, dtype=cupy.int64)
    n = int(rank[-1]) if size else 0
    out = cupy.where(parent >= 0, rank[cupy.maximum(parent, 0)], 0)
    dtype = cupy.uint32 if n < 2**32 else cupy.uint64
    first = cupy.nonzero(is_root)[0].astype(cupy.int64)
    return out.astype(dtype).reshape(block.shape), n, first
