"""Distances between a pair of objects (voxel masks) with anisotropic voxel size.

``hausdorff(A, B, v)`` is the symmetric Hausdorff distance between the voxel *centres* of two
masks, in world units (``v`` is the voxel size per array axis):

    d(A, B) = max( max_{a∈A} min_{b∈B} ‖(a − b)·v‖ ,  max_{b∈B} min_{a∈A} ‖(a − b)·v‖ )

computed as ``EDT(~B)`` sampled on A and ``EDT(~A)`` sampled on B (what CellMap's scorer does
with ``scipy.ndimage.distance_transform_edt(~B, sampling=v)``, ``shared/specs/cellmap.md``
§5.1.9).

Why the union bounding box of A and B is enough, with no margin: an exact Euclidean distance
transform gives every voxel the distance to the nearest zero (here: the nearest voxel of B) *in
the array*. If the array is a box containing all of B, every candidate nearest voxel is in it,
so the value at every point of the box, in particular on A, equals the whole-volume value; the
box only has to contain A (where we sample) and B (the zeros), which the union of their
bounding boxes does. CellMap pads its ROI by ``ceil(D_max / v) + 2`` voxels; that padding
changes nothing. The cost is ∝ the union box, so the caller should pass small crops (from
:func:`gpueval.kernels.regions.region_stats` boxes, see :func:`union_box`).

CPU: ``edt`` (seung-lab; 10x SciPy in 3-D, ``shared/research/anchors.md`` §0) computes in
float32, so a distance can differ from SciPy's float64 value in the last float32 bits
(≤ ~3e-7 relative). GPU: ``cupyx.scipy.ndimage.distance_transform_edt`` (float64). CellMap
stores Hausdorff distances as float32: casting (and capping at ``D_max``) is left to the
caller.

Empty sets: both empty → 0; exactly one empty → ``inf`` (the caller caps it, e.g. at CellMap's
``D_max``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gpueval.backend import array_module, is_cupy

__all__ = ["crop_to_union_bbox", "directed_distances", "hausdorff", "union_bbox", "union_box"]


def hausdorff(a_mask: Any, b_mask: Any, voxel_size: Sequence[float], *,
              percentile: float | None = None) -> float:
    """Symmetric (optionally percentile, "robust") Hausdorff distance of two masks.

    Parameters
    ----------
    a_mask, b_mask : NumPy or CuPy arrays of one shape (non-zero = in the object), 1-3 D.
    voxel_size : world size of a voxel per array axis (anisotropic sampling).
    percentile : ``None`` (or 100) for the classic maximum. Otherwise the robust variant
        ``max(P_q(d(a, B) for a in A), P_q(d(b, A) for b in B))``: the ``q``-th percentile
        (NumPy's default linear interpolation) of each *directed* set of voxel-to-set distances,
        taken over all voxels of the object (not surface elements), then the larger of the two.

    Returns
    -------
    float
        0.0 if both masks are empty, ``inf`` if exactly one is.

    Examples
    --------
    >>> a = np.zeros((1, 5), bool); b = a.copy(); a[0, 0] = True; b[0, 3:] = True
    >>> hausdorff(a, b, (1.0, 2.0))
    8.0
    """
    dab, dba = directed_distances(a_mask, b_mask, voxel_size)
    if dab is None:
        return 0.0 if dba is None else float("inf")
    if dba is None:
        return float("inf")
    xp = array_module(dab)
    if percentile is None or percentile == 100:
        return float(max(xp.max(dab), xp.max(dba)))
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], not {percentile}")
    return float(max(xp.percentile(dab, percentile), xp.percentile(dba, percentile)))


def directed_distances(a_mask: Any, b_mask: Any, voxel_size: Sequence[float]
                       ) -> tuple[Any, Any]:
    """Distances of every voxel of A to B and of every voxel of B to A (C order of voxels).

    Both are computed inside the union bounding box of the two masks (exact, see the module
    notes). Where one mask is empty there is nothing to measure: ``(None, None)`` if both are
    empty; if only B is empty, ``(None, d_ba=empty array)`` and vice versa, so callers can
    tell which side is missing.
    """
    if a_mask.shape != b_mask.shape:
        raise ValueError(f"masks differ in shape: {a_mask.shape} vs {b_mask.shape}")
    if not 1 <= a_mask.ndim <= 3:
        # edt (CPU) stops at 3-D; refuse up front rather than with a backend-specific error
        raise ValueError(f"masks must be 1-D to 3-D, not {a_mask.ndim}-D")
    if len(voxel_size) != a_mask.ndim:
        raise ValueError(f"voxel_size has {len(voxel_size)} values for a {a_mask.ndim}-D mask")
    xp = array_module(a_mask)
    a, b = crop_to_union_bbox(a_mask != 0, b_mask != 0)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not (has_a and has_b):
        empty = xp.zeros(0, np.float64)
        return (None if not has_b else empty, None if not has_a else empty)
    sampling = tuple(float(v) for v in voxel_size)
    return _edt_outside(b, sampling)[a], _edt_outside(a, sampling)[b]


def union_bbox(a_mask: Any, b_mask: Any) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every non-zero voxel of both masks (None if none)."""
    xp = array_module(a_mask)
    both = (a_mask != 0) | (b_mask != 0)
    out = []
    for ax in range(both.ndim):
        other = tuple(i for i in range(both.ndim) if i != ax)
        hit = xp.flatnonzero(both.any(axis=other) if other else both)
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def crop_to_union_bbox(a_mask: Any, b_mask: Any) -> tuple[Any, Any]:
    """Both masks cropped to :func:`union_bbox` (unchanged, as given, when both are empty)."""
    box = union_bbox(a_mask, b_mask)
    if box is None:
        return a_mask, b_mask
    return a_mask[box], b_mask[box]


def union_box(*boxes: Sequence[slice] | None) -> tuple[slice, ...] | None:
    """The smallest box containing the given boxes (``None`` entries are ignored), e.g. two
    objects' boxes from :meth:`gpueval.kernels.regions.RegionStats.bbox`, to crop a pair of
    objects out of a large volume before :func:`hausdorff`."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(s.start for s in axis), max(s.stop for s in axis))
                 for axis in zip(*boxes, strict=True))


def _edt_outside(mask, sampling):
    """Distance of every voxel to the nearest voxel of ``mask`` (world units)."""
    if is_cupy(mask):
        from cupyx.scipy import ndimage as cndi

        return cndi.distance_transform_edt(~mask, sampling=sampling)
    import edt

    # edt measures the distance to the nearest zero; black_border=False: the box edge is not
    # an object boundary. Its 1-D entry point takes the spacing as a scalar, not a 1-tuple.
    anisotropy = sampling[0] if mask.ndim == 1 else sampling
    return edt.edt(np.ascontiguousarray(~mask).view(np.uint8), anisotropy=anisotropy,
                   black_border=False)
