"""REFUGE leaderboards: segmentation, classification, fovea and the final ranking.

Rules (``shared/specs/refuge.md`` §5, the 2018 evaluation code):

* On each board, teams whose *leading* metric is NaN (or missing) are dropped: mean cup Dice
  for segmentation, AUC for classification, mean distance for fovea.
* A metric's rank is a team's 0-based position in the team order that ``numpy.argsort``
  (default ``kind="quicksort"``) gives on that metric; for "higher is better" the ascending
  order is reversed (so ties come out reversed as well, and NaN, which sorts last, comes first).
* Segmentation score = 0.35·rank(cup Dice) + 0.25·rank(disc Dice) + 0.4·rank(vCDR MAE); teams
  sorted by ascending score with the same argsort; the reported score and ranks are +1.
* Classification board: descending AUC; fovea board: ascending distance.
* Final = 0.6·(segmentation position) + 0.4·(classification position), both 1-based and
  taken on the full boards *before* teams missing from the other board are removed; teams
  on both boards, in segmentation-board order, sorted ascending by that argsort.
  (The final board's source was not available: the candidate order before sorting, which
  only matters for ties, is gpueval's choice.)

Ties. NumPy's default argsort is introsort: not stable, and since NumPy 1.25/2.0 it may be
a SIMD sort on x86 whose tie order depends on the CPU. The fixtures were made with NumPy
1.23.5, so :func:`numpy_quicksort_argsort` re-implements that version's ``aquicksort``
(median-of-3 quicksort, insertion sort once a partition spans ≤ 16 elements, heapsort when
the depth limit 2·⌊log2 n⌋ is exhausted; NaN sorts last) in pure Python: the same tie order
on every machine. Verified against NumPy 1.23.5 itself (``tests/fixtures/refuge/
numpy123_argsort.json``, including the heapsort fallback); NumPy 2.x on an AVX-512 machine
orders ties differently. Leaderboards hold tens of teams, so speed is irrelevant. With ≤ 16
teams it is a stable sort.

The input is ``{team: metrics}`` with gpueval's metric names (``mean_cup_dice``,
``mean_disc_dice``, ``vcdr_mae``, ``auc``, ``sensitivity_at_085_specificity``,
``fovea_mean_distance``); the dict's order is the row order of the official results table
(the order ties are broken from).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SEGMENTATION_HEADER = ["Team", "Score", "Optic cup rank", "Optic disc rank", "CDR rank",
                       "Mean optic cup Dice", "Mean optic disc Dice", "MAE cup to disc ratio"]
CLASSIFICATION_HEADER = ["Team", "AUC", "Reference Sensitivity"]
FOVEA_HEADER = ["Team", "Mean Euclidean distance"]
FINAL_HEADER = ["Team", "Scores", "Segmentation rank", "Classification rank"]

_SMALL_QUICKSORT = 15  # NumPy's SMALL_QUICKSORT: partitions with pr - pl <= 15


def numpy_quicksort_argsort(values: Sequence[float] | np.ndarray) -> list[int]:
    """``np.argsort(values)`` exactly as NumPy 1.23's default (quicksort) orders ties.

    Parameters
    ----------
    values : 1-D floats (NaN allowed; it sorts last).

    Returns
    -------
    list of indices sorting ``values`` ascending.
    """
    v = [float(x) for x in np.asarray(values, dtype=np.float64).ravel()]
    idx = list(range(len(v)))
    if len(v) > 1:
        _introsort(v, idx)
    return idx


def _less(a: float, b: float) -> bool:
    # NumPy's float ordering: NaN is larger than everything (b != b: b is NaN)
    return a < b or (b != b and a == a)


def _introsort(v: list[float], a: list[int]) -> None:
    num = len(a)
    pl, pr = 0, num - 1
    stack: list[tuple[int, int, int]] = []
    cdepth = (num.bit_length() - 1) * 2
    while True:
        if cdepth < 0:
            _heapsort(v, a, pl, pr - pl + 1)
        else:
            # (like NumPy, the depth is only checked for partitions popped from the stack)
            while pr - pl > _SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)
                if _less(v[a[pm]], v[a[pl]]):
                    a[pm], a[pl] = a[pl], a[pm]
                if _less(v[a[pr]], v[a[pm]]):
                    a[pr], a[pm] = a[pm], a[pr]
                if _less(v[a[pm]], v[a[pl]]):
                    a[pm], a[pl] = a[pl], a[pm]
                vp = v[a[pm]]
                pi, pj = pl, pr - 1
                a[pm], a[pj] = a[pj], a[pm]
                while True:
                    pi += 1
                    while _less(v[a[pi]], vp):
                        pi += 1
                    pj -= 1
                    while _less(vp, v[a[pj]]):
                        pj -= 1
                    if pi >= pj:
                        break
                    a[pi], a[pj] = a[pj], a[pi]
                pk = pr - 1
                a[pi], a[pk] = a[pk], a[pi]
                cdepth -= 1
                # push the larger partition, keep sorting the smaller one
                if pi - pl < pr - pi:
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            _insertion_sort(v, a, pl, pr)
        if not stack:
            return
        pl, pr, cdepth = stack.pop()


def _insertion_sort(v: list[float], a: list[int], pl: int, pr: int) -> None:
    for pi in range(pl + 1, pr + 1):
        vi = a[pi]
        vp = v[vi]
        pj = pi
        while pj > pl and _less(vp, v[a[pj - 1]]):
            a[pj] = a[pj - 1]
            pj -= 1
        a[pj] = vi


def _heapsort(v: list[float], a: list[int], start: int, n: int) -> None:
    """NumPy's ``aheapsort`` on ``a[start:start+n]`` (1-based heap indexing)."""

    def get(i: int) -> int:
        return a[start + i - 1]

    def put(i: int, x: int) -> None:
        a[start + i - 1] = x

    def sift(tmp: int, i: int, size: int) -> None:
        j = i << 1
        while j <= size:
            if j < size and _less(v[get(j)], v[get(j + 1)]):
                j += 1
            if _less(v[tmp], v[get(j)]):
                put(i, get(j))
                i = j
                j += j
            else:
                break
        put(i, tmp)

    for l in range(n >> 1, 0, -1):
        sift(get(l), l, n)
    while n > 1:
        tmp = get(n)
        put(n, get(1))
        n -= 1
        sift(tmp, 1, n)


def _order(values: Sequence[float], *, higher_is_better: bool) -> list[int]:
    order = numpy_quicksort_argsort(values)
    return order[::-1] if higher_is_better else order


def _value(metrics: Mapping[str, Any] | None, key: str) -> float:
    x = None if metrics is None else metrics.get(key)
    try:
        return float("nan") if x is None else float(x)
    except (TypeError, ValueError):
        return float("nan")


def segmentation_board(results: Mapping[str, Mapping[str, Any]],
                       weights: Sequence[float] = (0.35, 0.25, 0.4)) -> dict[str, Any]:
    """Segmentation leaderboard: weighted metric ranks, ascending (see the module docstring).

    Returns
    -------
    dict with ``teams_in_order``, ``header`` (official column names) and ``scores`` (one row
    per team: score, cup/disc/vCDR ranks — all +1 — then the three metric values).
    """
    teams = [t for t, m in results.items() if not math.isnan(_value(m, "mean_cup_dice"))]
    cup = [_value(results[t], "mean_cup_dice") for t in teams]
    disc = [_value(results[t], "mean_disc_dice") for t in teams]
    mae = [_value(results[t], "vcdr_mae") for t in teams]
    rank_cup = _positions(_order(cup, higher_is_better=True))
    rank_disc = _positions(_order(disc, higher_is_better=True))
    rank_mae = _positions(_order(mae, higher_is_better=False))
    w_cup, w_disc, w_mae = (float(w) for w in weights)
    score = [w_cup * rank_cup[i] + w_disc * rank_disc[i] + w_mae * rank_mae[i]
             for i in range(len(teams))]
    order = numpy_quicksort_argsort(score)
    rows = [[score[i] + 1, rank_cup[i] + 1.0, rank_disc[i] + 1.0, rank_mae[i] + 1.0,
             cup[i], disc[i], mae[i]] for i in order]
    return {"teams_in_order": [teams[i] for i in order], "header": SEGMENTATION_HEADER,
            "scores": rows}


def classification_board(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Classification leaderboard: descending AUC; rows are (AUC, reference sensitivity)."""
    teams = [t for t, m in results.items() if not math.isnan(_value(m, "auc"))]
    auc = [_value(results[t], "auc") for t in teams]
    sens = [_value(results[t], "sensitivity_at_085_specificity") for t in teams]
    order = _order(auc, higher_is_better=True)
    return {"teams_in_order": [teams[i] for i in order], "header": CLASSIFICATION_HEADER,
            "scores": [[auc[i], sens[i]] for i in order]}


def fovea_board(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Fovea leaderboard: ascending mean Euclidean distance (not part of the final ranking)."""
    teams = [t for t, m in results.items() if not math.isnan(_value(m, "fovea_mean_distance"))]
    dist = [_value(results[t], "fovea_mean_distance") for t in teams]
    order = _order(dist, higher_is_better=False)
    return {"teams_in_order": [teams[i] for i in order], "header": FOVEA_HEADER,
            "scores": [dist[i] for i in order]}


def final_board(segmentation: Mapping[str, Any], classification: Mapping[str, Any],
                weights: Sequence[float] = (0.6, 0.4)) -> dict[str, Any]:
    """Final leaderboard from the two boards (positions taken before intersecting them)."""
    seg_pos = {t: i + 1 for i, t in enumerate(segmentation["teams_in_order"])}
    cls_pos = {t: i + 1 for i, t in enumerate(classification["teams_in_order"])}
    teams = [t for t in segmentation["teams_in_order"] if t in cls_pos]
    w_seg, w_cls = (float(w) for w in weights)
    score = [w_seg * seg_pos[t] + w_cls * cls_pos[t] for t in teams]
    order = numpy_quicksort_argsort(score)
    return {"teams_in_order": [teams[i] for i in order], "header": FINAL_HEADER,
            "scores": [[score[i], float(seg_pos[teams[i]]), float(cls_pos[teams[i]])]
                       for i in order]}


def refuge_leaderboard(results: Mapping[str, Any], *,
                       segmentation_weights: Sequence[float] = (0.35, 0.25, 0.4),
                       final_weights: Sequence[float] = (0.6, 0.4)) -> dict[str, dict]:
    """All four REFUGE leaderboards from many submissions' metrics.

    Parameters
    ----------
    results : ``{team: metrics}``; ``metrics`` is a scored result's ``metrics`` dict, or the
        result itself (a :class:`~gpueval.result.Result` or its JSON dict; a rejected one
        counts as all-NaN). None or NaN values drop the team from the boards concerned. The
        mapping's order is the official results table's row order.
    segmentation_weights : weights of the cup Dice, disc Dice and vCDR MAE ranks.
    final_weights : weights of the segmentation and classification positions.

    Returns
    -------
    ``{"segmentation", "classification", "fovea", "final"}``, each a dict with
    ``teams_in_order``, ``header`` and ``scores`` (rows as in the official CSV leaderboards).

    Examples
    --------
    >>> boards = refuge_leaderboard({
    ...     "A": {"mean_cup_dice": 0.9, "mean_disc_dice": 0.9, "vcdr_mae": 0.1, "auc": 0.9},
    ...     "B": {"mean_cup_dice": 0.8, "mean_disc_dice": 0.9, "vcdr_mae": 0.2, "auc": 0.95}})
    >>> boards["final"]["teams_in_order"]
    ['A', 'B']
    """
    results = {team: _metrics_of(r) for team, r in results.items()}
    seg = segmentation_board(results, segmentation_weights)
    cls = classification_board(results)
    return {"segmentation": seg, "classification": cls, "fovea": fovea_board(results),
            "final": final_board(seg, cls, final_weights)}


def _metrics_of(r: Any) -> Mapping[str, Any]:
    """A metrics mapping from a metrics dict, a Result, or a result's JSON dict."""
    if r is None:
        return {}
    if hasattr(r, "metrics") and hasattr(r, "status"):
        return r.metrics if r.status == "ok" else {}
    if isinstance(r, Mapping) and isinstance(r.get("metrics"), Mapping):
        return r["metrics"] if r.get("status", "ok") == "ok" else {}
    return r


def _positions(order: Sequence[int]) -> list[int]:
    """Inverse permutation: position of each index in ``order``."""
    pos = [0] * len(order)
    for p, i in enumerate(order):
        pos[i] = p
    return pos


def competition_ranks(scores: Sequence[float | None] | np.ndarray, *,
                      higher_is_better: bool = True,
                      rtol: float = 0.0) -> list[int | None]:
    """Leaderboard ranks of mean-aggregated challenges: ties share the best rank (1, 2, 2, 4).

    This is the rule ``gpueval leaderboard`` applies to ``score`` (every challenge but
    REFUGE): a submission's rank is 1 + the number of submissions with a strictly better
    score; None, NaN and infinite scores are unranked (None).

    Parameters
    ----------
    scores : one score per submission (None or non-finite: unranked).
    higher_is_better : False for scores where lower wins (distances, errors).
    rtol : relative tolerance under which two scores count as equal; 0 (exact) reproduces
        the leaderboard. :mod:`gpueval.metrics.stability` passes a tiny tolerance because a
        bootstrap mean summed in another order may differ from a tie in the last bit.

    Returns
    -------
    list of 1-based ranks (None where unranked), in the order of ``scores``.

    Examples
    --------
    >>> competition_ranks([0.5, 0.9, 0.5, None, 0.1])
    [2, 1, 2, None, 4]
    """
    vals = np.array([np.nan if s is None else float(s) for s in scores], dtype=np.float64)
    if not higher_is_better:
        vals = -vals
    ranked = np.isfinite(vals)
    ranks = _better_counts(vals[None, :], rtol)[0] + 1
    return [int(r) if ok else None for r, ok in zip(ranks, ranked, strict=True)]


def _better_counts(values: np.ndarray, rtol: float) -> np.ndarray:
    """For each row of ``values`` (higher is better), how many finite entries beat each entry.

    ``values`` is ``(rows, teams)``; non-finite entries never beat anyone; ``j`` beats ``i``
    when ``values[j] > values[i] + rtol·max(|values[i]|, 1)``. One sort and one binary search
    per row: memory stays ``O(rows × teams)`` however many teams (an all-pairs comparison
    would need ``rows × teams²`` bytes, 1 GB for 1,000 × 1,000).
    """
    v = np.where(np.isfinite(values), values, -np.inf)
    tol = rtol * np.maximum(np.abs(np.where(np.isfinite(v), v, 0.0)), 1.0)
    ordered = np.sort(v, axis=1)
    out = np.empty(v.shape, dtype=np.int64)
    n = v.shape[1]
    for b in range(v.shape[0]):
        out[b] = n - np.searchsorted(ordered[b], v[b] + tol[b], side="right")
    return out
