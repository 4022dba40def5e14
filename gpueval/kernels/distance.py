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

CPU, the maximum (:func:`hausdorff_max`, and :func:`hausdorff` without a percentile):
:mod:`gpueval.kernels.edt_nogil`, a Numba kernel that releases the GIL (so CellMap's pairs
overlap across threads; ``edt`` holds it) and computes the squared maximum in float64 with
SciPy's arithmetic; the value returned is ``float32(sqrt(max))`` — SciPy's float32 value, and
for integer voxel sizes bit for bit what ``edt`` gave before session 7. At non-integer voxel
sizes (e.g. 3.24 nm) ``edt``'s float32 arithmetic could be one float32 step off SciPy; this
kernel is not, so values there may differ from earlier gpueval versions by that step, toward
the official one. CPU, whole distance maps (:func:`directed_distances`, percentiles): ``edt``
(seung-lab; 10x SciPy in 3-D, ``shared/research/anchors.md`` §0), in float32, so a distance
can differ from SciPy's float64 value in the last float32 bits (≤ ~3e-7 relative). GPU:
``cupyx.scipy.ndimage.distance_transform_edt`` (float64). CellMap stores Hausdorff distances as
float32: capping at ``D_max`` and the cast are left to the caller.

Empty sets: both empty → 0; exactly one empty → ``inf`` (the caller caps it, e.g. at CellMap's
``D_max``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpueval.backend import array_module, is_cupy

__all__ = ["check_mask_pair", "crop_to_union_bbox", "directed_distances", "hausdorff",
           "hausdorff_max", "hausdorff_sparse", "union_bbox", "union_box"]


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
    if (percentile is None or percentile == 100) and not is_cupy(a_mask):
        return hausdorff_max(a_mask, b_mask, voxel_size)  # the GIL-free kernel, same value
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


def hausdorff_max(a_mask: Any, b_mask: Any, voxel_size: Sequence[float]) -> float:
    """:func:`hausdorff` (the classic maximum) with no EDT that cannot change the value.

    Voxels of A inside B are at distance 0 from B, so the directed maximum over A equals the
    maximum over ``A \\ B`` (0 when that is empty): the distance to B is needed only there,
    the distance to A only on ``B \\ A``, and nothing when the masks are equal.

    CPU (NumPy masks): one call of :func:`gpueval.kernels.edt_nogil.hausdorff_sq`, which
    releases the GIL for the whole pair (union box, checks, both directions), so threads
    measuring different pairs run in parallel. It returns ``float32(sqrt(max d²))`` with
    ``d²`` in SciPy's float64 arithmetic: SciPy's float32 value (the official one), and for
    integer voxel sizes bit for bit the value of the ``edt``-based kernel gpueval used before
    session 7. At non-integer voxel sizes ``edt``'s float32 arithmetic could be one float32
    step off SciPy; this value is SciPy's, so it may differ from those earlier results by that
    step. GPU (CuPy masks): ``cupyx`` EDTs on the union box, skipped where they cannot change
    the value (A ⊆ B, B ⊆ A), float64.

    Parameters and return value as :func:`hausdorff` without ``percentile``.

    Examples
    --------
    >>> a = np.zeros((1, 5), bool); b = a.copy(); a[0, 0] = True; b[0, :] = True
    >>> hausdorff_max(a, b, (1.0, 2.0))  # A inside B: only B ∖ A is measured
    8.0
    """
    check_mask_pair(a_mask, b_mask, voxel_size)
    if not is_cupy(a_mask):
        from gpueval.kernels.edt_nogil import BOTH, BOTH_EMPTY, hausdorff_sq

        status, squared = hausdorff_sq(a_mask, b_mask, voxel_size)
        if status != BOTH:
            return 0.0 if status == BOTH_EMPTY else float("inf")
        # math.sqrt is correctly rounded, so its float32 rounding is SciPy's float32 value
        # (and, squared distances being exact integers then, edt's for integer voxel sizes)
        return float(np.float32(math.sqrt(squared)))
    a, b = crop_to_union_bbox(a_mask != 0, b_mask != 0)
    has_a, has_b = bool(a.any()), bool(b.any())
    if not (has_a and has_b):
        return 0.0 if not (has_a or has_b) else float("inf")
    sampling = tuple(float(v) for v in voxel_size)
    a_out, b_out = a & ~b, b & ~a
    dab = _edt_outside(b, sampling)[a_out].max() if a_out.any() else 0.0
    dba = _edt_outside(a, sampling)[b_out].max() if b_out.any() else 0.0
    return float(max(dab, dba))


def hausdorff_sparse(a_mask: np.ndarray, b_mask: np.ndarray, voxel_size: Sequence[float]
                     ) -> float:
    """Symmetric Hausdorff distance of two NumPy masks from their voxel lists, not a box EDT.

    For objects far apart inside a large box (CellMap's ID-collision quirk pairs a GT
    instance with a prediction component anywhere within ``D_max``: boxes of 10⁶–10⁷ voxels
    around a few thousand object voxels) an EDT of the box costs ∝ the box; this costs ∝
    the objects' voxels (a k-d tree query).

    Why only the *boundary* of the other set is searched: the nearest voxel ``b`` of a set
    ``B`` to a point ``x ∉ B`` has a face neighbour outside ``B`` — were all six in ``B``,
    the neighbour one step from ``b`` toward ``x`` along the axis of ``x``'s largest offset
    ``d`` would be nearer (the squared distance drops by ``v²(2|d| − 1) > 0``). Points of
    ``A`` inside ``B`` are at distance 0 and are skipped.

    Distances are exact in float64: the k-d tree only picks the nearest voxel, and the
    distance is recomputed from the integer offsets (``sqrt(Σ (d·v)²)``, correctly rounded).
    With integer voxel sizes this equals ``edt``'s float32 value after the float32 cast
    (exact squared distances, and a correctly rounded square root survives double rounding
    from float64 to float32); otherwise it is at least as close to SciPy's float64 EDT.

    Parameters
    ----------
    a_mask, b_mask : boolean (or 0/non-0) NumPy arrays of one shape, 1-3 D.
    voxel_size : world size of a voxel per axis.

    Returns
    -------
    float
        as :func:`hausdorff`: 0.0 when both are empty, ``inf`` when exactly one is.

    Examples
    --------
    >>> a = np.zeros((1, 5), bool); b = a.copy(); a[0, 0] = True; b[0, 3:] = True
    >>> hausdorff_sparse(a, b, (1.0, 2.0))
    8.0
    """
    a = np.ascontiguousarray(np.asarray(a_mask) != 0)
    b = np.ascontiguousarray(np.asarray(b_mask) != 0)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    if not 1 <= a.ndim <= 3 or len(voxel_size) != a.ndim:
        raise ValueError(f"voxel_size has {len(voxel_size)} values for a {a.ndim}-D mask "
                         "(1-3 D)")
    flat_a, flat_b = np.flatnonzero(a), np.flatnonzero(b)  # the only scans of the box
    if not (len(flat_a) and len(flat_b)):
        return 0.0 if not (len(flat_a) or len(flat_b)) else float("inf")
    vs = np.asarray([float(v) for v in voxel_size], np.float64)
    return max(_directed_sparse(a, b, flat_a, flat_b, vs),
               _directed_sparse(b, a, flat_b, flat_a, vs))


def _boundary_coords(mask: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """(k, ndim) coordinates of the voxels of ``mask`` (flat C indices ``flat``) with a face
    neighbour outside it (outside the array counts as outside the set). Costs ∝ the set,
    not the box: one lookup per voxel and axis side."""
    coords = np.stack(np.unravel_index(flat, mask.shape), axis=1)
    lin = mask.reshape(-1)
    strides = np.cumprod((1,) + mask.shape[:0:-1])[::-1]
    edge = np.zeros(len(flat), bool)
    for ax, n in enumerate(mask.shape):
        for step in (-1, 1):
            pos = coords[:, ax] + step
            inside = (pos >= 0) & (pos < n)
            out = ~inside
            out[inside] = ~lin[flat[inside] + step * int(strides[ax])]
            edge |= out
    return coords[edge]


def _directed_sparse(a: np.ndarray, b: np.ndarray, flat_a: np.ndarray, flat_b: np.ndarray,
                     vs: np.ndarray) -> float:
    """max over voxels of ``a`` of the distance to the nearest voxel of ``b`` (both
    non-empty; ``flat_*`` their flat C indices)."""
    from scipy.spatial import cKDTree

    outside = flat_a[~b.reshape(-1)[flat_a]]
    if not len(outside):
        return 0.0  # A inside B
    pts = np.stack(np.unravel_index(outside, a.shape), axis=1)
    edge = _boundary_coords(b, flat_b)
    _, nearest = cKDTree(edge * vs).query(pts * vs, k=1)
    off = (pts - edge[nearest]).astype(np.float64) * vs
    return float(np.sqrt(np.max(np.sum(off * off, axis=1))))


def directed_distances(a_mask: Any, b_mask: Any, voxel_size: Sequence[float]
                       ) -> tuple[Any, Any]:
    """Distances of every voxel of A to B and of every voxel of B to A (C order of voxels).

    Both are computed inside the union bounding box of the two masks (exact, see the module
    notes). Where one mask is empty there is nothing to measure: ``(None, None)`` if both are
    empty; if only B is empty, ``(None, d_ba=empty array)`` and vice versa, so callers can
    tell which side is missing.
    """
    check_mask_pair(a_mask, b_mask, voxel_size)
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


def check_mask_pair(a_mask: Any, b_mask: Any, voxel_size: Sequence[float]) -> None:
    """Raise ``ValueError`` unless the masks share one 1-3 D shape with one voxel size per
    axis (``edt`` and the Numba kernel stop at 3-D: refused up front, whatever the backend)."""
    if a_mask.shape != b_mask.shape:
        raise ValueError(f"masks differ in shape: {a_mask.shape} vs {b_mask.shape}")
    if not 1 <= a_mask.ndim <= 3:
        raise ValueError(f"masks must be 1-D to 3-D, not {a_mask.ndim}-D")
    if len(voxel_size) != a_mask.ndim:
        raise ValueError(f"voxel_size has {len(voxel_size)} values for a {a_mask.ndim}-D mask")


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
