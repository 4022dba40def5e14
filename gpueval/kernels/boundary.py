"""Per-chunk counts for boundary (membrane) precision/recall with a disk tolerance (U-RISC).

The U-RISC scorer (``shared/specs/urisc.md`` §2–§4) works on inverted uint8 maps: a pixel's
*weight* is ``255 - value`` (membrane = stored 0 = weight 255, background = stored 255 = weight
0) and a pixel *is membrane* when its weight is nonzero. With radius ``r`` and the skimage
``disk(r)`` footprint (offsets with ``dy² + dx² <= r²``)::

    n_pred  = Σ w_pred                       n_gt  = Σ w_gt
    tp_pred = Σ w_pred · [dilate(gt ≠ 0)]    tp_gt = Σ w_gt · [dilate(pred ≠ 0)]
    P = tp_pred / n_pred                     R = tp_gt / n_gt

All sums are exact Python integers in *weight units* (a binary membrane pixel weighs 255).
:func:`band_counts` evaluates them on one horizontal band of rows, given ``top``/``bottom``
halo rows of the neighbouring bands (halo = ``r``), so an image is scored band by band with
memory bounded by the band size, and band results add up exactly (:meth:`BoundaryCounts.combine`).
Outside the image counts as background; that equals skimage's ``dilation`` (``reflect`` border)
because a mirrored neighbour of a disk offset always lies inside the same disk.

Dilation is exact and separable: ``disk(r)`` is the union over ``dy`` of horizontal segments
of half-width ``isqrt(r² - dy²)``, so the dilation is an OR of vertically shifted horizontal
dilations. Those are built incrementally from ORs of shifted views for half-widths up to 16
(two byte-wise ORs per width step, several times faster than a 1-D filter call) and with
``maximum_filter1d`` (O(1) per pixel) beyond; ``O(N·r)`` instead of ``O(N·r²)`` for a
footprint dilation.

Value histograms (256 bins) are counted per band for the submission format check
(:func:`format_problem`): the common binary case costs two comparisons; ``bincount`` only runs on
bands holding other values (``bincount`` widens uint8 to intp, 8× the band's bytes).

Every function dispatches on the array type: NumPy chunks use SciPy, CuPy chunks use
``cupyx.scipy.ndimage`` (same code path, ``xp = array_module(x)``).

:func:`tolerance_match_counts` is an *extra*, non-official BSDS-style measure: a one-to-one
maximum matching of boundary pixels within a Euclidean distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpueval.backend import array_module, is_cupy, to_host

__all__ = [
    "BoundaryCounts",
    "band_counts",
    "boundary_counts",
    "disk_rows",
    "dilate_disk",
    "value_histogram",
    "format_problem",
    "precision_recall_f",
    "tolerance_match_counts",
]

WEIGHT = 255
"""Weight of one binary membrane pixel (stored 0 inverted to 255)."""


@dataclass
class BoundaryCounts:
    """Exact sums for one band, one image or several images (weight units, see module doc).

    ``pred_hist``/``gt_hist`` count the stored grey values (0..255) of the core rows.
    """

    n_pred: int = 0
    n_gt: int = 0
    tp_pred: int = 0
    tp_gt: int = 0
    pixels: int = 0
    pred_hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    gt_hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))

    @staticmethod
    def combine(parts: list[BoundaryCounts]) -> BoundaryCounts:
        """Sum of band results (associative and exact: integers only)."""
        out = BoundaryCounts()
        for p in parts:
            out.n_pred += p.n_pred
            out.n_gt += p.n_gt
            out.tp_pred += p.tp_pred
            out.tp_gt += p.tp_gt
            out.pixels += p.pixels
            out.pred_hist = out.pred_hist + p.pred_hist
            out.gt_hist = out.gt_hist + p.gt_hist
        return out

    def pixel_counts(self) -> dict[str, float | int]:
        """The sums in pixels (weight / 255): integers for binary maps, fractions for grey."""
        return {k: _per_pixel(getattr(self, k)) for k in ("tp_pred", "tp_gt", "n_pred", "n_gt")}


def _per_pixel(v: int) -> int | float:
    return v // WEIGHT if v % WEIGHT == 0 else v / WEIGHT


def precision_recall_f(tp_pred: int, tp_gt: int, n_pred: int, n_gt: int
                       ) -> tuple[float, float, float]:
    """Precision, recall and F with the U-RISC special cases (spec §2.6), no epsilon.

    ``n_pred = 0, n_gt > 0`` → P = 1, R = 0; ``n_pred > 0, n_gt = 0`` → P = 0, R = 1;
    both 0 → P = R = 1. F = 2PR/(P+R), and F = 0 when P + R = 0.

    >>> precision_recall_f(3, 3, 4, 6)
    (0.75, 0.5, 0.6)
    >>> precision_recall_f(0, 0, 0, 0)
    (1.0, 1.0, 1.0)
    """
    if n_pred == 0 and n_gt > 0:
        p, r = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        p, r = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        p, r = 1.0, 1.0
    else:
        p, r = tp_pred / n_pred, tp_gt / n_gt  # int/int: correctly rounded, like float64/float64
    f = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return p, r, f


def disk_rows(radius: int) -> list[tuple[int, int]]:
    """``(dy, half_width)`` of the rows of skimage's ``disk(radius)`` (``dy²+dx² <= r²``).

    >>> disk_rows(2)
    [(-2, 0), (-1, 1), (0, 2), (1, 1), (2, 0)]
    """
    r = int(radius)
    if r < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    return [(dy, math.isqrt(r * r - dy * dy)) for dy in range(-r, r + 1)]


def dilate_disk(mask: Any, radius: int, *, top: int = 0, bottom: int = 0) -> Any:
    """Binary dilation of ``mask`` by ``disk(radius)``, for the core rows only.

    Parameters
    ----------
    mask : (rows, cols) bool array: the core rows plus ``top`` halo rows above and ``bottom``
        below (rows beyond the halo count as background).
    radius : disk radius in pixels (0 = identity).
    top, bottom : halo rows present in ``mask``; each at most ``radius`` is needed.

    Returns
    -------
    (rows - top - bottom, cols) bool array.
    """
    xp = array_module(mask)
    n_rows = mask.shape[0] - top - bottom
    if radius == 0:
        return mask[top:top + n_rows]
    mask = mask if mask.dtype == xp.bool_ else mask != 0
    rows = disk_rows(radius)
    by_width = _horizontal_dilations(mask, sorted({w for _, w in rows}))
    out = xp.zeros((n_rows, mask.shape[1]), dtype=xp.bool_)
    for dy, w in rows:
        # core row i reads source row top + i + dy, when it exists in the band
        lo = max(0, -(top + dy))
        hi = min(n_rows, mask.shape[0] - top - dy)
        if hi > lo:
            out[lo:hi] |= by_width[w][top + lo + dy:top + hi + dy]
    return out


_SHIFT_OR_MAX_WIDTH = 16
"""Up to this half-width, horizontal dilation is ORs of shifted views (two cheap passes per
pixel of width); beyond it, ``maximum_filter1d`` (constant cost per pixel, larger constant)."""


def _horizontal_dilations(mask: Any, widths: list[int]) -> dict[int, Any]:
    """``{w: mask dilated by the segment [-w, w] along axis 1}`` for the sorted ``widths``."""
    xp = array_module(mask)
    out: dict[int, Any] = {}
    if widths[-1] > _SHIFT_OR_MAX_WIDTH:
        ndi = _ndimage(mask)
        m8 = mask.view(xp.uint8)
        for w in widths:
            out[w] = mask if w == 0 else ndi.maximum_filter1d(
                m8, 2 * w + 1, axis=1, mode="constant", cval=0).view(xp.bool_)
        return out
    cur = mask
    for w in range(0, widths[-1] + 1):
        if w > 0:
            cur = cur.copy() if w == 1 else cur
            cur[:, w:] |= mask[:, :-w]
            cur[:, :-w] |= mask[:, w:]
        if w in widths:
            out[w] = cur if w == 0 else cur.copy()
    return out


def value_histogram(x: Any) -> np.ndarray:
    """Counts of the 256 grey values of a uint8 chunk, as a host int64 array.

    Binary chunks (only 0 and 255) cost two comparisons; others fall back to ``bincount``.
    """
    xp = array_module(x)
    n0 = int(xp.count_nonzero(x == 0))
    n255 = int(xp.count_nonzero(x == 255))
    if n0 + n255 == x.size:
        h = np.zeros(256, np.int64)
        h[0], h[255] = n0, n255
        return h
    return np.asarray(to_host(xp.bincount(x.ravel(), minlength=256)), dtype=np.int64)


def _weighted_sum(values: Any) -> int:
    """Σ (255 - v) over a uint8 selection, exactly."""
    h = value_histogram(values) if values.size else np.zeros(256, np.int64)
    return int(np.dot(h, np.arange(255, -1, -1, dtype=np.int64)))


def band_counts(gt: Any, pred: Any, *, radius: int = 0, gt_threshold: int | None = 122,
                top: int = 0, bottom: int = 0) -> BoundaryCounts:
    """Exact U-RISC sums on one band of rows.

    Parameters
    ----------
    gt, pred : (rows, cols) uint8 grey bands as stored (0 = membrane, 255 = background), both
        with ``top`` halo rows above and ``bottom`` below the core rows.
    radius : dilation radius (skimage ``disk``); halos must be ``min(radius, available)``.
    gt_threshold : GT membrane ⇔ ``gt <= gt_threshold`` (weight 255); ``None`` keeps the raw
        grey GT as weights ``255 - gt`` (the released script, spec §4).
    top, bottom : halo rows.

    Returns
    -------
    BoundaryCounts over the core rows.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"band shapes differ: {gt.shape} vs {pred.shape}")
    xp = array_module(gt)
    n = gt.shape[0] - top - bottom
    core = slice(top, top + n)
    g_core, p_core = gt[core], pred[core]
    out = BoundaryCounts(pixels=int(g_core.size))
    out.pred_hist = value_histogram(p_core)
    out.gt_hist = value_histogram(g_core)

    gt_mask = gt <= gt_threshold if gt_threshold is not None else gt != 255
    pred_mask = pred != 255
    gt_dil = dilate_disk(gt_mask, radius, top=top, bottom=bottom)
    pred_dil = dilate_disk(pred_mask, radius, top=top, bottom=bottom)
    g_mask_core, p_mask_core = gt_mask[core], pred_mask[core]

    out.n_pred = int(np.dot(out.pred_hist, np.arange(255, -1, -1, dtype=np.int64)))
    if out.pred_hist[0] + out.pred_hist[255] == p_core.size:  # binary: weight 255 or 0
        out.tp_pred = WEIGHT * int(xp.count_nonzero(p_mask_core & gt_dil))
    else:
        out.tp_pred = _weighted_sum(p_core[gt_dil])

    if gt_threshold is not None:
        out.n_gt = WEIGHT * int(out.gt_hist[:gt_threshold + 1].sum())
        out.tp_gt = WEIGHT * int(xp.count_nonzero(g_mask_core & pred_dil))
    else:
        out.n_gt = int(np.dot(out.gt_hist, np.arange(255, -1, -1, dtype=np.int64)))
        if out.gt_hist[0] + out.gt_hist[255] == g_core.size:
            out.tp_gt = WEIGHT * int(xp.count_nonzero(g_mask_core & pred_dil))
        else:
            out.tp_gt = _weighted_sum(g_core[pred_dil])
    return out


def boundary_counts(gt: Any, pred: Any, *, radius: int = 0, gt_threshold: int | None = 122,
                    band_rows: int | None = None) -> BoundaryCounts:
    """:func:`band_counts` over whole in-memory images, optionally band by band.

    ``band_rows`` splits the rows into bands with halos of ``radius`` (the result is identical;
    this is what the chunked scorer does and what the tests compare).
    """
    rows = gt.shape[0]
    step = rows if not band_rows else max(1, int(band_rows))
    parts = []
    for a in range(0, rows, step):
        b = min(rows, a + step)
        lo, hi = max(0, a - radius), min(rows, b + radius)
        parts.append(band_counts(gt[lo:hi], pred[lo:hi], radius=radius,
                                 gt_threshold=gt_threshold, top=a - lo, bottom=hi - b))
    return BoundaryCounts.combine(parts)


def format_problem(pred_hist: np.ndarray, name: str, *, min_background_ratio: int = 5
                   ) -> str | None:
    """Why a prediction fails the official format check (spec §2.3), or ``None``.

    The official check inverts the map, refuses more than two distinct values, then requires
    ``#background / #membrane >= 5`` (stored 255 vs stored 0; membrane at most 1/6). Where the
    official code divides by zero (no stored-0 pixel) this returns a rejection too.
    """
    values = np.flatnonzero(pred_hist)
    if len(values) > 2:
        shown = ", ".join(map(str, values[:6])) + (" ..." if len(values) > 6 else "")
        return (f"{name}: not binarised: {len(values)} grey values ({shown}); submit 0 for "
                "membrane and 255 for background only")
    background, membrane = int(pred_hist[255]), int(pred_hist[0])
    if membrane == 0:
        if set(values.tolist()) <= {255}:
            return (f"{name}: no membrane pixel (value 0) at all; the official check fails "
                    "on an empty prediction (division by zero)")
        return (f"{name}: no pixel has value 0 (membrane): values are "
                f"{', '.join(map(str, values))}; expected 0 = membrane, 255 = background")
    if background < min_background_ratio * membrane:
        frac = membrane / max(int(pred_hist.sum()), 1)
        return (f"{name}: must be white background (255) with black membrane (0): "
                f"{frac:.1%} of pixels are membrane ({len(values)} values: "
                f"{', '.join(map(str, values))}), at most 1/{min_background_ratio + 1} allowed "
                "(inverted map?)")
    return None


def _ndimage(x: Any):
    if is_cupy(x):
        import cupyx.scipy.ndimage as ndi

        return ndi
    import scipy.ndimage as ndi

    return ndi


def tolerance_match_counts(gt_mask: np.ndarray, pred_mask: np.ndarray, max_dist: float
                           ) -> tuple[int, int, int]:
    """One-to-one matching of boundary pixels within ``max_dist`` (BSDS-style; NOT official).

    Each predicted membrane pixel may be matched to at most one GT membrane pixel at Euclidean
    distance ``<= max_dist`` and vice versa; the number of matches is maximised exactly
    (Hopcroft–Karp, ``scipy.sparse.csgraph.maximum_bipartite_matching``) on the pairs a KD-tree
    finds. BSDS ``correspondPixels`` solves a min-cost assignment with outlier cost and random
    tie breaking, so it matches at most as many pixels as this and varies between runs; this
    gives the deterministic maximum (compare the fixture ``bsds_tolerance``).

    Runs on the host on whole (small) images: memory is O(pixels · neighbours within d).

    Returns
    -------
    (matched, n_pred, n_gt): P = matched / n_pred, R = matched / n_gt.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching
    from scipy.spatial import cKDTree

    gt_pts = np.argwhere(np.asarray(to_host(gt_mask)))
    pr_pts = np.argwhere(np.asarray(to_host(pred_mask)))
    if len(gt_pts) == 0 or len(pr_pts) == 0:
        return 0, len(pr_pts), len(gt_pts)
    neighbours = cKDTree(pr_pts).query_ball_tree(cKDTree(gt_pts), r=float(max_dist) + 1e-9)
    indptr = np.cumsum([0] + [len(n) for n in neighbours])
    indices = np.fromiter((j for n in neighbours for j in n), dtype=np.int64, count=indptr[-1])
    graph = csr_matrix((np.ones(len(indices), np.int8), indices, indptr),
                       shape=(len(pr_pts), len(gt_pts)))
    match = maximum_bipartite_matching(graph, perm_type="column")
    return int(np.count_nonzero(match >= 0)), len(pr_pts), len(gt_pts)
