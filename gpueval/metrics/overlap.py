"""Overlap scores from voxel counts, and Rand / VOI from a contingency table.

All functions take reduced counts, never voxel arrays. Conventions for empty denominators are
arguments, because the challenges disagree (CellMap's semantic IoU is 1.0 when nothing is
there, MedSegFM's DSC is NaN, U-RISC's F has its own special cases).

>>> dice(tp=3, fp=1, fn=2)
0.6666666666666666
>>> iou(0, 0, 0, empty=1.0)
1.0
"""

from __future__ import annotations

import math

import numpy as np

from gpueval.kernels.stats import Contingency


def dice(tp: float, fp: float, fn: float, *, empty: float = math.nan) -> float:
    """2·TP / (2·TP + FP + FN); ``empty`` when the denominator is 0."""
    den = 2 * tp + fp + fn
    return 2 * tp / den if den else empty


f1 = dice  # the F1 score of counts is the Dice coefficient


def iou(tp: float, fp: float, fn: float, *, empty: float = math.nan) -> float:
    """TP / (TP + FP + FN); ``empty`` when the denominator is 0."""
    den = tp + fp + fn
    return tp / den if den else empty


def precision_recall_f(tp: float, n_pred: float, n_true: float) -> tuple[float, float, float]:
    """Precision, recall and their harmonic mean with 0 where a denominator is 0."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def rand_voi(table: Contingency, *, ignore_a: int | None = 0,
             ignore_b: int | None = None) -> dict[str, float]:
    """Rand split/merge and VOI split/merge of ``b`` (test) against ``a`` (truth).

    As funlib.evaluate's ``rand_voi`` (``shared/specs/xpress.md`` §5): only voxels with
    truth ≠ ``ignore_a`` count; with ``n_ij`` the counts, ``a_i``/``b_j`` the marginals,
    ``p = n / N`` and base-2 logarithms:

    * ``rand_split = Σ n_ij² / Σ a_i²``, ``rand_merge = Σ n_ij² / Σ b_j²``
    * ``voi_split = H(a,b) − H(a)``, ``voi_merge = H(a,b) − H(b)``
    * ``nvi_split = voi_split / H(a,b)``, ``nvi_merge = voi_merge / H(a,b)`` (NaN for 0/0)
    * ``nid = 1 − (H(a) + H(b) − H(a,b)) / max(H(a), H(b))``

    When nothing is counted, Rand and the normalised VOIs are 0/0 = NaN while the entropies,
    hence ``voi_split``/``voi_merge``, are empty sums = 0, as funlib returns (XPRESS fixture
    ``single_neuron``).

    >>> from gpueval.kernels.stats import contingency
    >>> r = rand_voi(contingency(np.array([1, 2, 3, 4]), np.array([1, 1, 8, 8])))
    >>> r["voi_merge"], r["voi_split"]
    (1.0, 0.0)
    """
    t = table
    if ignore_a is not None or ignore_b is not None:
        t = table.drop(a=ignore_a, b=ignore_b)
    n = t.counts.astype(np.float64)
    total = n.sum()
    _, a = t.sizes_a()
    _, b = t.sizes_b()
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sum_n2, sum_a2, sum_b2 = (n * n).sum(), (a * a).sum(), (b * b).sum()
        rand_split = sum_n2 / sum_a2 if sum_a2 else math.nan
        rand_merge = sum_n2 / sum_b2 if sum_b2 else math.nan
        h_ab, h_a, h_b = (_entropy(x, total) for x in (n, a, b))
    voi_split = h_ab - h_a
    voi_merge = h_ab - h_b
    return {
        "rand_split": rand_split,
        "rand_merge": rand_merge,
        "voi_split": voi_split,
        "voi_merge": voi_merge,
        "nvi_split": voi_split / h_ab if h_ab else math.nan,
        "nvi_merge": voi_merge / h_ab if h_ab else math.nan,
        "nid": 1 - (h_a + h_b - h_ab) / max(h_a, h_b) if max(h_a, h_b) else math.nan,
    }


def _entropy(counts: np.ndarray, total: float) -> float:
    if not total:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())
