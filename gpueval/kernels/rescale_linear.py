"""The linear blend of :func:`gpueval.io.align.rescale`'s semantic blocks, compiled by Numba
(``nogil``: two blocks blend on two cores at once).

skimage's ``rescale(order=1)`` is ``scipy.ndimage.zoom``, whose C loop computes each output
voxel as ``t = 0; t += ((v·w₀)·w₁)·w₂`` over the 2ᴺ corners of its cell in C order, in float64,
then stores ``t`` in the output dtype. These kernels do exactly that per voxel (compiled
without fastmath: no reassociation, no fused multiply-add), then skimage's clip to a positive
source minimum and CellMap's threshold, so no float64 array of the block is ever made. Not
separable (one axis at a time): that rounds other partial sums and flips voxels at the
threshold (counterexample in ``tests/test_rescale_block_h10r.py``).

Arguments: ``img`` the (zero-padded, filtered) source region; ``iₖ`` the lower corner index of
each output voxel along axis k; ``loₖ = 1 − fₖ`` and ``hiₖ = fₖ`` its weights (``fₖ`` the
fractional part of the source coordinate); ``single`` rounds to float32 (the working dtype of
bool and float32 sources); ``clip``/``floor_value`` the clip; ``limit`` the threshold in the
dtype numpy would compare in; ``out`` the bool block written.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def linear_3d(img, i0, i1, i2, lo0, lo1, lo2, hi0, hi1, hi2, single, clip, floor_value,
               limit, out):
    """Linear blend of a 3-D block: per voxel ``t = 0 + Σ ((v·w₀)·w₁)·w₂`` over the 8 corners
    in C order (float64; no fastmath: no reassociation, no fused multiply-add), rounded to
    float32 when ``single``, raised to ``floor_value`` when ``clip`` (NaN stays NaN, as
    ``np.maximum``), then ``> limit``."""
    for a in range(out.shape[0]):
        p0, u0, v0 = i0[a], lo0[a], hi0[a]
        for b in range(out.shape[1]):
            p1, u1, v1 = i1[b], lo1[b], hi1[b]
            for c in range(out.shape[2]):
                p2, u2, v2 = i2[c], lo2[c], hi2[c]
                t = 0.0
                t += ((np.float64(img[p0, p1, p2]) * u0) * u1) * u2
                t += ((np.float64(img[p0, p1, p2 + 1]) * u0) * u1) * v2
                t += ((np.float64(img[p0, p1 + 1, p2]) * u0) * v1) * u2
                t += ((np.float64(img[p0, p1 + 1, p2 + 1]) * u0) * v1) * v2
                t += ((np.float64(img[p0 + 1, p1, p2]) * v0) * u1) * u2
                t += ((np.float64(img[p0 + 1, p1, p2 + 1]) * v0) * u1) * v2
                t += ((np.float64(img[p0 + 1, p1 + 1, p2]) * v0) * v1) * u2
                t += ((np.float64(img[p0 + 1, p1 + 1, p2 + 1]) * v0) * v1) * v2
                if single:
                    t = np.float64(np.float32(t))
                if clip and t < floor_value:
                    t = floor_value
                out[a, b, c] = t > limit


@numba.njit(nogil=True, cache=True)
def linear_2d(img, i0, i1, lo0, lo1, hi0, hi1, single, clip, floor_value, limit,
               out):
    """:func:`linear_3d` of a 2-D block (4 corners)."""
    for a in range(out.shape[0]):
        p0, u0, v0 = i0[a], lo0[a], hi0[a]
        for b in range(out.shape[1]):
            p1, u1, v1 = i1[b], lo1[b], hi1[b]
            t = 0.0
            t += (np.float64(img[p0, p1]) * u0) * u1
            t += (np.float64(img[p0, p1 + 1]) * u0) * v1
            t += (np.float64(img[p0 + 1, p1]) * v0) * u1
            t += (np.float64(img[p0 + 1, p1 + 1]) * v0) * v1
            if single:
                t = np.float64(np.float32(t))
            if clip and t < floor_value:
                t = floor_value
            out[a, b] = t > limit
