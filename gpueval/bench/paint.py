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
    # per-axis quantities (the grid cell, the voxel centre, the cell centre, the offset of
    # the voxel inside its cell), computed as _paint computes them
    i_ax = np.empty((3, max(n0, n1, n2)), np.int64)
    x_ax = np.empty((3, max(n0, n1, n2)), np.float64)
    ctr_ax = np.empty((3, max(n0, n1, n2)), np.float64)
    corner_ax = np.empty((3, max(n0, n1, n2)), np.bool_)
    los = (lo0, lo1, lo2)
    ns = (n0, n1, n2)
    for k in range(3):
        for j in range(ns[k]):
            x = los[k] + j
            i = np.int64(x / c)
            if i > m - 1:
                i = m - 1
            i_ax[k, j] = i
            x_ax[k, j] = np.float64(x) + 0.5
            ctr_ax[k, j] = (np.float64(i) + 0.5) * c
            local = np.float64(x) - np.float64(i) * c
            corner_ax[k, j] = (local >= 1.0) and (local < 5.0)
    for a in range(n0):
        i0 = i_ax[0, a]
        x0 = x_ax[0, a]
        c0 = ctr_ax[0, a]
        for b in range(n1):
            i1 = i_ax[1, b]
            x1 = x_ax[1, b]
            c1 = ctr_ax[1, b]
            near01 = abs(x0 - c0) <= 2.0 and abs(x1 - c1) <= 2.0
            for e in range(n2):
                i2 = i_ax[2, e]
                x2 = x_ax[2, e]
                c2 = ctr_ax[2, e]
                o0 = off[i0, i1, i2, 0]
                o1 = off[i0, i1, i2, 1]
                o2 = off[i0, i1, i2, 2]
                r0 = rad[i0, i1, i2, 0]
                r1 = rad[i0, i1, i2, 1]
                r2 = rad[i0, i1, i2, 2]
                s0 = np.float64(shift[i0, i1, i2, 0])
                s1 = np.float64(shift[i0, i1, i2, 1])
                s2 = np.float64(shift[i0, i1, i2, 2])
                d0 = ((x0 - c0) - o0) / r0
                d1 = ((x1 - c1) - o1) / r1
                d2 = ((x2 - c2) - o2) / r2
                gt_in = (d0 * d0 + d1 * d1) + d2 * d2 <= 1.0
                q0 = (((x0 - c0) - o0) - s0) / r0
                q1 = (((x1 - c1) - o1) - s1) / r1
                q2 = (((x2 - c2) - o2) - s2) / r2
                p_in = (q0 * q0 + q1 * q1) + q2 * q2 <= 1.0
                flat = (i0 * m + i1) * m + i2
                gt[a, b, e] = np.uint32(flat + 1) if gt_in else np.uint32(0)
                left = i2 - 1 if i2 > 0 else m - 1  # np.roll by one along the last axis
                left_pid = pid[i0, i1, left]
                merged_from = i2 > 0 and merge[i0, i1, i2 - 1]
                p = left_pid if merged_from else pid[i0, i1, i2]
                if split[i0, i1, i2] and x0 < (c0 + o0) + s0:
                    p += 1
                out = p if (p_in and not miss[i0, i1, i2]) else np.int64(0)
                is_merge = merge[i0, i1, i2]
                if out == 0 and near01 and ((is_merge and x2 >= c2)
                                            or (merged_from and x2 <= c2)):
                    out = p if is_merge else left_pid
                if corner_ax[0, a] and corner_ax[1, b] and corner_ax[2, e] \
                        and extra[i0, i1, i2]:
                    out = flat + blob_base
                pred[a, b, e] = np.uint32(out & 0xFFFFFFFF)


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
