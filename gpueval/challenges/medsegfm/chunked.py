"""MedSegFM's chunk-by-chunk statistics of one case: the label pair table and class surfaces.

Both are exact reductions over chunks (:func:`gpueval.engine.map_reduce`,
:func:`gpueval.engine.tree_reduce`), so a case is never held whole beyond what its file format
forces (an npz is loaded by the reader; a zarr stays lazy). In-memory arrays are wrapped for
dask without a copy (:class:`_HostArray`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import dask.array as da
import numpy as np
from dask import delayed

from gpueval.backend import to_device
from gpueval.challenges.medsegfm.options import _Context
from gpueval.engine import compute, map_reduce, timed, tree_reduce
from gpueval.errors import TruthError
from gpueval.kernels.stats import Contingency, contingency
from gpueval.kernels.surface import SurfacePoints, block_request, corner_chunks, label_surfaces


def zeros_like(x):
    """An all-zero prediction of the shape, dtype (and chunks, for dask) of ``x``."""
    if isinstance(x, da.Array):
        return da.zeros(x.shape, dtype=x.dtype, chunks=x.chunks)
    return np.zeros(x.shape, x.dtype)


_zeros_like = zeros_like  # the former private name (interactive.py)


def _lazy(x: np.ndarray, chunk: int) -> da.Array:
    if isinstance(x, da.Array):
        return x
    # da.from_array copies and hashes a NumPy array (0.1 s per 78 MB); a read-only wrapper
    # with a unique name avoids both.
    return da.from_array(_HostArray(x), chunks=(chunk,) * x.ndim, asarray=False,
                         name=f"medsegfm-{uuid.uuid4().hex}",
                         meta=np.empty((0,) * x.ndim, x.dtype))


class _HostArray:
    """An in-memory array seen by dask without being copied (never written to)."""

    def __init__(self, array: np.ndarray):
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key):
        return self._array[key]


def pair_table(ctx: _Context, gts, segs) -> Contingency:
    """Voxel counts of every (GT label, predicted label) pair, chunk by chunk."""
    chunk = ctx.settings["chunk"]
    ctx.voxels += int(np.prod(gts.shape))
    return map_reduce(contingency, [_lazy(gts, chunk), _lazy(segs, chunk)],
                      Contingency.combine, device=ctx.device, scheduler=ctx.scheduler,
                      progress=ctx.progress)


def class_surfaces(ctx: _Context, volume, classes: Sequence[int]) -> dict[int, SurfacePoints]:
    """Surface corners of every class of ``volume``, one task per corner chunk (1-voxel halo);
    cost follows the number of corners where labels change, not the bounding box."""
    classes = tuple(int(c) for c in classes)
    if not classes:
        return {}
    if 0 in classes:  # out-of-volume voxels are padded with 0; only negative labels get here
        raise TruthError("label 0 would be scored as a class: ground-truth labels must not be "
                         "negative")
    vol = _lazy(volume, ctx.settings["chunk"])
    tasks = []
    for lo, hi in corner_chunks(vol.shape, ctx.settings["chunk"]):
        slices, pads = block_request(vol.shape, lo, hi)
        tasks.append(delayed(_surface_task, pure=True)(vol[slices], pads, lo, classes,
                                                       ctx.device))
    total = tree_reduce(tasks, _merge_surfaces)
    return compute(total, scheduler=ctx.scheduler, progress=ctx.progress)[0]


@timed("kernel")
def _surface_task(block, pads, lo, classes, device):
    block = np.asarray(block)
    if any(p != (0, 0) for p in pads):
        block = np.pad(block, pads)
    return label_surfaces(to_device(block, device), classes, lo)


def _merge_surfaces(parts: list[dict[int, SurfacePoints]]) -> dict[int, SurfacePoints]:
    keys = sorted({k for p in parts for k in p})
    return {k: SurfacePoints.combine([p[k] for p in parts if k in p]) for k in keys}
