"""A compiled painter of the synthetic dense CellMap crop (issue 18, ``cellmap_testset``).

:func:`paint_into` writes, voxel by voxel, exactly the values of
``gpueval.bench.dense._paint`` for any box: the same float64 operations in the same order
(``((c - centre) - off) / rad``, squared as ``d * d``, summed ``(t0 + t1) + t2``; no
``fastmath``, so LLVM contracts nothing into FMAs), the same truncating casts, the same
priorities (prediction ellipsoid, then the merge rod where it is empty, then the extra blob).
NumPy's ``_paint`` broadcasts float64 temporaries of the whole box (tens of GiB for a 1000³
crop, ~2 MVx/s); this kernel needs no temporaries, so a builder can paint one storage chunk
at a time in bounded memory and in several processes.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _paint_kernel(m, c, off, rad, shift, miss, split, merge, extra, pid,
                  lo0, lo1, lo2, gt, pred):  # pragma: no cover - compiled
    n0, n1, n2 = gt.shape
    blob_base = m * m * m * 2 + 11
    # per axis, computed as _paint computes them: the grid cell, the voxel centre minus the
    # cell centre (the first operation of every distance), whether the voxel lies 1..5
    # voxels into its cell (the extra blob's corner); plus where each cell's run starts
    # along the last axis
    big = max(n0, n1, n2)
    i_ax = np.empty((3, big), np.int64)
    dx_ax = np.empty((3, big), np.float64)
    corner_ax = np.empty((3, big), np.bool_)
    los = (lo0, lo1, lo2)
    ns = (n0, n1, n2)
    for k in range(3):
        for j in range(ns[k]):
            x = los[k] + j
            i = np.int64(x / c)
            if i > m - 1:
                i = m - 1
            i_ax[k, j] = i
            dx_ax[k, j] = (np.float64(x) + 0.5) - (np.float64(i) + 0.5) * c
            local = np.float64(x) - np.float64(i) * c
            corner_ax[k, j] = (local >= 1.0) and (local < 5.0)
    for a in range(n0):
        i0 = i_ax[0, a]
        dx0 = dx_ax[0, a]
        for b in range(n1):
            i1 = i_ax[1, b]
            dx1 = dx_ax[1, b]
            near01 = abs(dx0) <= 2.0 and abs(dx1) <= 2.0
            corner01 = corner_ax[0, a] and corner_ax[1, b]
            e = 0
            while e < n2:
                # one run of voxels in one grid cell: everything but the last axis's
                # distance term is constant over it
                i2 = i_ax[2, e]
                end = e + 1
                while end < n2 and i_ax[2, end] == i2:
                    end += 1
                o0 = off[i0, i1, i2, 0]
                o1 = off[i0, i1, i2, 1]
                o2 = off[i0, i1, i2, 2]
                r2 = rad[i0, i1, i2, 2]
                s0 = np.float64(shift[i0, i1, i2, 0])
                s1 = np.float64(shift[i0, i1, i2, 1])
                s2 = np.float64(shift[i0, i1, i2, 2])
                d0 = (dx0 - o0) / rad[i0, i1, i2, 0]
                d1 = (dx1 - o1) / rad[i0, i1, i2, 1]
                gt01 = d0 * d0 + d1 * d1
                q0 = ((dx0 - o0) - s0) / rad[i0, i1, i2, 0]
                q1 = ((dx1 - o1) - s1) / rad[i0, i1, i2, 1]
                p01 = q0 * q0 + q1 * q1
                flat = (i0 * m + i1) * m + i2
                left = i2 - 1 if i2 > 0 else m - 1  # np.roll by one along the last axis
                left_pid = pid[i0, i1, left]
                merged_from = i2 > 0 and merge[i0, i1, i2 - 1]
                p = left_pid if merged_from else pid[i0, i1, i2]
                # _paint: coords0 < (centre0 + off0) + shift0, coords0 = dx0 + centre0
                # is not rounded the same way, so compare as _paint does
                x0 = np.float64(lo0 + a) + 0.5
                c0 = (np.float64(i0) + 0.5) * c
                if split[i0, i1, i2] and x0 < (c0 + o0) + s0:
                    p += 1
                keep = not miss[i0, i1, i2]
                is_merge = merge[i0, i1, i2]
                rod_cell = near01 and (is_merge or merged_from)
                rod_id = p if is_merge else left_pid
                blob_cell = corner01 and extra[i0, i1, i2]
                for k in range(e, end):
                    dx2 = dx_ax[2, k]
                    if gt01 <= 1.0:
                        d2 = (dx2 - o2) / r2
                        gt[a, b, k] = np.uint32(flat + 1) if gt01 + d2 * d2 <= 1.0 \
                            else np.uint32(0)
                    else:  # adding a square cannot bring a sum above 1 back to 1
                        gt[a, b, k] = np.uint32(0)
                    out = np.int64(0)
                    if keep and p01 <= 1.0:
                        q2 = ((dx2 - o2) - s2) / r2
                        if p01 + q2 * q2 <= 1.0:
                            out = p
                    if out == 0 and rod_cell and ((is_merge and dx2 >= 0.0)
                                                  or (merged_from and dx2 <= 0.0)):
                        out = rod_id
                    if blob_cell and corner_ax[2, k]:
                        out = flat + blob_base
                    pred[a, b, k] = np.uint32(out & 0xFFFFFFFF)
                e = end


def paint_into(cells: dict[str, np.ndarray], lo: tuple[int, int, int], gt: np.ndarray,
               pred: np.ndarray) -> None:
    """Paint truth and prediction of the box ``[lo, lo + gt.shape)`` into ``gt`` and ``pred``.

    Parameters
    ----------
    cells
        The grid of ``gpueval.bench.dense._cells``.
    lo
        The box's first voxel (crop coordinates).
    gt, pred
        uint32 arrays of the box's shape (views of a larger buffer are fine: a chunk's
        in-bounds part); overwritten.
    """
    if gt.shape != pred.shape or gt.dtype != np.uint32 or pred.dtype != np.uint32:
        raise ValueError("paint_into: gt and pred must be uint32 arrays of one shape")
    _paint_kernel(np.int64(cells["m"]), np.float64(cells["c"]),
                  np.ascontiguousarray(cells["off"], np.float64),
                  np.ascontiguousarray(cells["rad"], np.float64),
                  np.ascontiguousarray(cells["shift"], np.int64),
                  np.ascontiguousarray(cells["miss"], np.bool_),
                  np.ascontiguousarray(cells["split"], np.bool_),
                  np.ascontiguousarray(cells["merge"], np.bool_),
                  np.ascontiguousarray(cells["extra"], np.bool_),
                  np.ascontiguousarray(cells["pid"], np.int64),
                  int(lo[0]), int(lo[1]), int(lo[2]), gt, pred)


def paint(cells: dict[str, np.ndarray], lo: tuple[int, int, int], hi: tuple[int, int, int]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Truth and prediction (uint32) of the box ``[lo, hi)``: ``_paint``'s values, compiled.

    Parameters
    ----------
    cells
        The grid of ``gpueval.bench.dense._cells``.
    lo, hi
        The box, first voxel and one past the last per axis.

    Returns
    -------
    tuple of numpy.ndarray
        ``(truth, prediction)``, uint32 arrays of shape ``hi - lo``.
    """
    shape = tuple(int(b) - int(a) for a, b in zip(lo, hi, strict=True))
    gt = np.empty(shape, np.uint32)
    pred = np.empty(shape, np.uint32)
    paint_into(cells, lo, gt, pred)
    return gt, pred
