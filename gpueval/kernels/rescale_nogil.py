"""The compute of :func:`gpueval.io.align.rescale`'s semantic blocks, compiled by Numba with
``nogil`` (two blocks run on two cores at once), bit for bit what skimage's one-shot
``rescale(order=1)`` computes (issue #18, session 10).

**Linear blend** (:func:`linear_3d`, :func:`linear_2d`). skimage's ``rescale(order=1)`` is
``scipy.ndimage.zoom``, whose C loop computes each output voxel as ``t = 0; t += ((v·w₀)·w₁)·w₂``
over the 2ᴺ corners of its cell in C order, in float64, then stores ``t`` in the output dtype.
These kernels do exactly that per voxel (compiled without fastmath: no reassociation, no fused
multiply-add), then skimage's clip to a positive source minimum and CellMap's threshold, so no
float64 array of the block is ever made. Not separable (one axis at a time): that rounds other
partial sums and flips voxels at the threshold (counterexample in
``tests/test_rescale_block.py``).

**Anti-aliasing Gaussian** (:func:`gaussian_filter_3d`): SciPy's ``gaussian_filter`` pass for
pass, reading the source dtype (bool, uint8) without a converted copy. SciPy's own releases the
GIL too; this one is about twice as fast (a 259³ bool region at σ = 0.5: 0.09 against 0.19
CPU-s with the float32 copy), as the voxels of a line are summed side by side.

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


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The taps ``scipy.ndimage.gaussian_filter1d(…, sigma, truncate=truncate)`` correlates
    with: radius ``int(truncate·σ + 0.5)``, ``exp(−x²/(2σ²))`` normalised by its sum (SciPy's
    own helper when it is there, so a change of it is followed)."""
    radius = int(truncate * float(sigma) + 0.5)
    try:
        from scipy.ndimage._filters import _gaussian_kernel1d
    except ImportError:  # pragma: no cover - a SciPy that moved its private helper
        x = np.arange(-radius, radius + 1)
        phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
        return phi / phi.sum()
    return np.ascontiguousarray(_gaussian_kernel1d(sigma, 0, radius)[::-1], dtype=np.float64)


def gaussian_filter_3d(img: np.ndarray, sigma, dtype, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(img.astype(dtype), sigma, mode="constant", cval=0,
    truncate=truncate)`` of a 3-D ``img`` (``dtype`` float32 or float64), bit for bit, without
    the converted copy of ``img`` and without the GIL.

    SciPy filters axis by axis (axes with σ ≤ 10⁻¹⁵ skipped), each pass storing ``dtype``; per
    voxel of a pass, with its symmetric taps ``w`` of radius ``r`` and the line extended by
    zeros, ``t = v₀·w₀; t += (v₋ⱼ + v₊ⱼ)·w₋ⱼ`` for ``j = r … 1`` in float64 (``NI_Correlate1D``'s
    symmetric branch). The passes below do that sum in that order, the last axis on a
    zero-extended float64 copy of each line (as SciPy's line buffer), the others row by row
    over the contiguous axis (so the compiler vectorises across independent voxels, never
    within a voxel's sum).
    """
    if not np.can_cast(img.dtype, dtype, "safe"):
        img = img.astype(dtype)  # SciPy's passes read the rounded values (float64 → float32)
    out = img
    for axis, sd in enumerate(sigma):
        if sd > 1e-15:
            w = gaussian_weights(sd, truncate)
            dst = np.empty(img.shape, dtype)
            if axis == 2:
                _gauss_last(out, w, dst)
            else:
                _gauss_outer(out, w, axis, dst)
            out = dst
    return out if out is not img else img.astype(dtype)


@numba.njit(nogil=True, cache=True)
def _gauss_outer(src, w, axis, dst):
    """One pass along axis 0 or 1 of a 3-D array (see :func:`gaussian_filter_f32`)."""
    r = (w.shape[0] - 1) // 2
    n0, n1, n2 = src.shape
    n = n0 if axis == 0 else n1
    acc = np.empty(n2, np.float64)
    for i in range(n0):
        for j in range(n1):
            p = i if axis == 0 else j
            wc = w[r]
            for k in range(n2):
                acc[k] = np.float64(src[i, j, k]) * wc
            for q in range(r, 0, -1):
                wq = w[r - q]
                lo, hi = p - q, p + q
                i_lo, j_lo = (lo, j) if axis == 0 else (i, lo)
                i_hi, j_hi = (hi, j) if axis == 0 else (i, hi)
                if lo >= 0 and hi < n:
                    for k in range(n2):
                        acc[k] += (np.float64(src[i_lo, j_lo, k])
                                   + np.float64(src[i_hi, j_hi, k])) * wq
                elif lo >= 0:
                    for k in range(n2):
                        acc[k] += (np.float64(src[i_lo, j_lo, k]) + 0.0) * wq
                elif hi < n:
                    for k in range(n2):
                        acc[k] += (0.0 + np.float64(src[i_hi, j_hi, k])) * wq
                else:
                    for k in range(n2):
                        acc[k] += (0.0 + 0.0) * wq
            for k in range(n2):
                dst[i, j, k] = acc[k]  # rounded to dst's dtype (nearest, as a C cast)


@numba.njit(nogil=True, cache=True)
def _gauss_last(src, w, dst):
    """One pass along the last axis of a 3-D array (see :func:`gaussian_filter_f32`)."""
    r = (w.shape[0] - 1) // 2
    n0, n1, n2 = src.shape
    line = np.zeros(n2 + 2 * r, np.float64)
    acc = np.empty(n2, np.float64)
    wc = w[r]
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                line[r + k] = np.float64(src[i, j, k])
            # each voxel's sum in SciPy's order, the voxels of the line side by side
            for k in range(n2):
                acc[k] = line[r + k] * wc
            for q in range(r, 0, -1):
                wq = w[r - q]
                for k in range(n2):
                    acc[k] += (line[r + k - q] + line[r + k + q]) * wq
            for k in range(n2):
                dst[i, j, k] = acc[k]  # rounded to dst's dtype (nearest, as a C cast)
