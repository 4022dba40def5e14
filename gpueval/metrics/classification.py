"""ROC curve, AUC and sensitivity at a fixed specificity, on plain score/label vectors.

Implemented here (no scikit-learn at run time) with the semantics of scikit-learn ≥ 1.0:

* :func:`roc_curve` — thresholds at every distinct score (ties form one ROC step), collinear
  points dropped exactly as ``sklearn.metrics.roc_curve(drop_intermediate=True)`` does (a point
  is kept where the *second difference* of the false- or true-positive counts is non-zero), and
  the curve always starts at ``(0, 0)``.
* :func:`roc_auc` — trapezoidal area under that curve (= ``sklearn.metrics.roc_auc_score``;
  ties between a positive and a negative count ½).
* :func:`sensitivity_at_specificity` — two definitions:

  ``"official"``
      REFUGE 2018: ``scipy.interpolate.interp1d(1 - fpr, tpr)(s)`` with SciPy 1.10, i.e. the
      ROC points are stably sorted by specificity (equal specificities keep ROC order =
      ascending sensitivity) and passed to :func:`numpy.interp`. So at a specificity tie *at*
      ``s`` the highest sensitivity is returned, and when ``s`` falls strictly between two
      specificities the line runs from the *last* (highest-sensitivity) point of the lower
      group to the *first* (lowest-sensitivity) point of the upper group. A perfect classifier
      scores 0.15 at ``s = 0.85`` (the line from (spec 0, sens 1) to the (spec 1, sens 0)
      start point).
  ``"tie-robust"``
      The highest sensitivity reachable on the ROC polyline (points joined in ROC order, i.e.
      randomised thresholds between neighbouring cut-offs) with specificity ≥ ``s``. It depends
      only on the curve as a set of points, not on how tied specificities happen to be ordered:
      a perfect classifier scores 1, a vertical ROC segment at ``s`` gives its top.

  The two agree when ``s`` falls on a segment whose end points share their specificities with
  no other ROC point. They differ on the usual staircase ROC without score ties: every
  positive adds a vertical step, and the official rule then cuts the step's corner diagonally
  (REFUGE fixture ``continuous_40_360``: official 0.455, tie-robust 0.45 = the height of the
  horizontal ROC segment at specificity 0.85).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SensitivityRule = Literal["official", "tie-robust"]


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels and scores must be 1-D of equal length, got {y.shape} and "
                         f"{s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers (found NaN or infinity)")
    y = y.astype(bool) if y.dtype != bool else y
    if y.all() or not y.any():
        raise ValueError("ROC needs both positive and negative labels; only one class present")
    return y, s


def roc_counts(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true-positive counts at each distinct score, highest score first.

    Returns
    -------
    fps, tps : float64 arrays, cumulative counts of negatives/positives with score ≥ threshold.
    thresholds : the distinct scores, descending.
    """
    y, s = _check(labels, scores)
    # Stable sort then reverse: the order inside a tie is irrelevant, as only the last index
    # of each group of equal scores is kept.
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y, dtype=np.float64)[last_of_group]
    fps = 1.0 + last_of_group - tps
    return fps, tps, s[last_of_group]


def roc_curve(labels, scores, *, drop_intermediate: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as ``sklearn.metrics.roc_curve`` (≥ 1.3) computes it.

    Parameters
    ----------
    labels : 1-D, truthy = positive.
    scores : 1-D finite floats, higher = more likely positive.
    drop_intermediate : drop points whose neighbours' count steps are equal (sklearn's rule).

    Returns
    -------
    fpr, tpr : rates, starting at (0, 0) and ending at (1, 1).
    thresholds : ``inf`` for the start point, then the distinct scores, descending.
    """
    fps, tps, thr = roc_counts(labels, scores)
    if drop_intermediate and fps.size > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve by the trapezoid rule (= ``sklearn.metrics.roc_auc_score``).

    Raises
    ------
    ValueError
        if only one class is present or a score is not finite.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def sensitivity_at_specificity(labels, scores, specificity: float = 0.85,
                               rule: SensitivityRule = "official") -> float:
    """Sensitivity of the ROC curve at a given specificity (see the module docstring).

    Parameters
    ----------
    labels, scores : as for :func:`roc_curve`.
    specificity : the reference specificity (REFUGE: 0.85).
    rule : ``"official"`` (REFUGE 2018 / SciPy-interp1d behaviour) or ``"tie-robust"``.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    spec = 1 - fpr
    if rule == "official":
        return _official_interp(spec, tpr, specificity)
    if rule == "tie-robust":
        return _max_sensitivity_polyline(spec, tpr, specificity)
    raise ValueError(f"unknown sensitivity rule {rule!r}; use 'official' or 'tie-robust'")


def _official_interp(spec: np.ndarray, tpr: np.ndarray, at: float) -> float:
    if not spec.min() <= at <= spec.max():
        # interp1d(bounds_error=True) refuses to extrapolate
        raise ValueError(f"specificity {at} outside the ROC range [{spec.min()}, {spec.max()}]")
    order = np.argsort(spec, kind="mergesort")  # interp1d(assume_sorted=False) sorts stably
    # np.interp returns fp[j] for the last j with xp[j] <= x, else interpolates j -> j+1
    return float(np.interp(at, spec[order], tpr[order]))


def _max_sensitivity_polyline(spec: np.ndarray, tpr: np.ndarray, at: float) -> float:
    # ROC order: specificity non-increasing, sensitivity non-decreasing. The last point still
    # meeting the specificity bound has the highest sensitivity among those points; beyond it,
    # walk along the next segment until the bound is reached.
    ok = np.flatnonzero(spec >= at)
    if ok.size == 0:
        return float("nan")
    k = int(ok[-1])
    if k == spec.size - 1 or spec[k] == at:
        return float(tpr[k])
    t = (spec[k] - at) / (spec[k] - spec[k + 1])
    return float(tpr[k] + t * (tpr[k + 1] - tpr[k]))
