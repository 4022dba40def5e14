"""Bootstrap rank stability: is the ranking of a challenge stable under resampling of its cases?

Implemented from the description in Wiesenfarth et al., "Methods and open-source toolkit for
analyzing and visualizing challenge results" (challengeR, Sci. Rep. 2021): draw the test cases
with replacement ``B`` times, re-apply the challenge's own aggregation and ranking rule to each
bootstrap sample, and look at the distribution of each submission's rank. No R, no code of that
toolkit; the rule and the statistics below are gpueval's.

Rules
-----
* **Mean-aggregated challenges** (U-RISC: per-image F; MedSegFM: per-case DSC or F1):
  score = mean of the per-case metric over the resampled cases (a case drawn twice counts
  twice; a None/NaN case is left out of that submission's mean, as the scorers' own means
  do), ranked by :func:`gpueval.metrics.ranking.competition_ranks` (ties share the best
  rank, as the leaderboard). A resample is a row of case multiplicities ``W`` (``B × n``), so all
  bootstrap means are one matrix product ``W @ X.T / n`` — 100 teams × 1,000 cases × 1,000
  resamples take well under a second (``benchmarks/bench_stability.py``). Because that product
  sums in another order than ``numpy.mean``, two means equal up to 10⁻¹² (relative) count as
  tied.
* **REFUGE**: each resample recomputes mean cup Dice, mean disc Dice and vCDR MAE over the
  resampled images (and, when per-image glaucoma probabilities and labels are given, the AUC
  with multiplicities), then ranks exactly as :func:`gpueval.metrics.ranking.refuge_leaderboard`
  does (weighted metric ranks, NumPy 1.23's tie order, final = weighted board positions; the
  resampled means and AUCs rounded to 12 decimals so that ties do not depend on the order of
  summation). Without
  classification inputs the segmentation board is the one resampled (the report says so).
* **Challenges without per-case items in their score** (XPRESS: one skeleton-weighted score per
  volume; CellMap: a mean over labels of per-crop scores, whose resampling unit is not one item
  list) return :func:`unsupported` — a report with ``supported=False`` and the reason.

Statistics per submission: the bootstrap rank distribution (counts of each rank), the median rank
and the ``1 − alpha`` interval (the ``alpha/2`` and ``1 − alpha/2`` quantiles of the rank
distribution, taken as the smallest rank whose cumulative frequency reaches them).

Statistically tied groups. Submission *i* is **significantly better** than *j* when *i* ranks
strictly better than *j* in at least ``1 − alpha`` of the resamples (a one-sided bootstrap test
at level ``alpha``, no multiplicity correction). Groups are formed along the observed ranking: a
group starts with the best submission not yet grouped (its *leader*) and takes every following
submission that the leader is not significantly better than; the next group starts at the first
one it is. Groups are therefore consecutive runs of the observed ranking, and within a group no
member is distinguishable from the leader (members far apart may be distinguishable from each
other: the relation is not transitive, and the leader rule is the tie-breaking convention).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from gpueval.metrics.impact import ItemMetric, _as_id_map
from gpueval.metrics.ranking import _better_counts, refuge_leaderboard

DEFAULT_RESAMPLES = 1000
TIE_RTOL = 1e-12  # bootstrap means equal to this relative precision are ties (module docstring)

#: Per-case item metric whose mean is each mean-aggregated challenge's headline score.
HEADLINE_ITEM_METRIC: dict[str, str] = {"urisc": "f1", "medsegfm": "dsc"}

#: Why a challenge's score cannot be bootstrapped over cases.
UNSUPPORTED_REASON: dict[str, str] = {
    "xpress": "XPRESS scores one volume (ERL/Rand over all skeletons at once): there are no "
              "per-case items to resample",
    "cellmap": "CellMap's overall score averages labels over crops with per-label weights, not "
               "one per-case list; rank stability is not implemented for it",
}


@dataclass
class StabilityReport:
    """Bootstrap rank stability of one leaderboard (see the module docstring).

    ``names`` are in observed-rank order; the arrays follow that order. ``rank_counts[i, r-1]``
    is how often submission ``i`` took rank ``r`` (rows sum to ``n_resamples``).
    ``better_fraction[i, j]`` is the fraction of resamples where ``i`` ranked strictly better
    than ``j``. When ``supported`` is False only ``message`` (and ``names``) are meaningful.
    """

    supported: bool
    message: str
    names: list[str] = field(default_factory=list)
    observed_rank: list[int] = field(default_factory=list)
    rank_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    median_rank: list[int] = field(default_factory=list)
    interval: list[tuple[int, int]] = field(default_factory=list)
    better_fraction: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    tied_groups: list[list[str]] = field(default_factory=list)
    n_cases: int = 0
    n_resamples: int = 0
    seed: int | None = None
    alpha: float = 0.05
    rule: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"supported": self.supported, "message": self.message, "rule": self.rule,
                "n_cases": self.n_cases, "n_resamples": self.n_resamples, "seed": self.seed,
                "alpha": self.alpha, "notes": list(self.notes),
                "tied_groups": [list(g) for g in self.tied_groups],
                "submissions": [
                    {"name": n, "observed_rank": self.observed_rank[i],
                     "median_rank": self.median_rank[i],
                     "interval": list(self.interval[i]),
                     "rank_frequencies": {str(r + 1): int(c)
                                          for r, c in enumerate(self.rank_counts[i]) if c}}
                    for i, n in enumerate(self.names)]}


def unsupported(challenge: str, reason: str | None = None) -> StabilityReport:
    """The report of a challenge whose score has no per-case items to resample."""
    why = reason or UNSUPPORTED_REASON.get(challenge,
                                           f"{challenge}: no per-case items in its score")
    return StabilityReport(False, f"rank stability not available: {why}")


def resample_indices(n_cases: int, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> np.ndarray:
    """The bootstrap draws: ``(n_resamples, n_cases)`` case indices, uniform with replacement.

    Exactly ``numpy.random.default_rng(seed).integers(0, n_cases, size=(n_resamples, n_cases))``,
    so a result is reproducible from its seed on any machine (PCG64 is platform independent).
    """
    return np.random.default_rng(seed).integers(0, n_cases, size=(n_resamples, n_cases))


def case_weights(indices: np.ndarray, n_cases: int) -> np.ndarray:
    """Multiplicity of each case in each resample: ``(B, n)`` float64 from ``(B, n)`` indices."""
    b = indices.shape[0]
    flat = (indices + (np.arange(b) * n_cases)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n_cases).reshape(b, n_cases).astype(np.float64)


def bootstrap_mean_ranking(per_case: Mapping[str, Mapping[str, Any]] | Mapping[str, Any], *,
                           n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                           higher_is_better: bool = True, alpha: float = 0.05,
                           item_metric: ItemMetric = None, missing: str | float = "skip",
                           indices: np.ndarray | None = None) -> StabilityReport:
    """Bootstrap the rank of each submission of a mean-aggregated challenge.

    Parameters
    ----------
    per_case : ``{submission: {case id: value}}`` (value: number, or a metrics dict read at
        ``item_metric``), or ``{submission: [item dicts with "id"]}`` as in a result's ``items``.
        Cases are the union over submissions, in sorted id order; see ``missing``.
    n_resamples, seed : number of bootstrap samples and the seed of :func:`resample_indices`.
    higher_is_better : direction of the metric.
    alpha : 1 − the interval's coverage, and the level of the pairwise tie test.
    item_metric : key of the per-case metric when values are dicts, or a function of the dict
        (:func:`item_metric_for`).
    missing : what a missing/None/NaN case of a submission does. ``"skip"`` (default): it is
        left out of that submission's mean, as U-RISC's and MedSegFM's means skip None/NaN
        items (a resample that draws none of its finite cases leaves it unranked: last);
        ``"error"``: ValueError naming the submission and case; a number: that value is used
        (e.g. 0 where a challenge scores a missing prediction 0).
    indices : explicit ``(B, n_cases)`` case indices instead of seeded draws (cases in sorted
        id order) — e.g. all ``n**n`` resamples for an exact enumeration.

    Returns
    -------
    :class:`StabilityReport` (``supported=False`` when there are no submissions or no cases).
    """
    if isinstance(missing, str) and missing not in ("skip", "error"):
        raise ValueError(f"missing={missing!r}: expected 'skip', 'error' or a number")
    table = {str(t): _case_values(v, item_metric) for t, v in per_case.items()}
    cases = sorted({c for vals in table.values() for c in vals})
    names = list(table)
    if not names or not cases:
        return StabilityReport(False, "rank stability not available: no per-case values "
                               "were given" if names else "rank stability not available: "
                               "no submissions")
    x = np.full((len(names), len(cases)), np.nan)
    for i, t in enumerate(names):
        for j, c in enumerate(cases):
            v = table[t].get(c)
            if v is not None and math.isfinite(v):
                x[i, j] = v
            elif missing == "error":
                raise ValueError(f"{t}: no finite value for case {c!r}; every submission "
                                 "needs every case (or pass missing='skip' or a number)")
            elif missing != "skip":
                x[i, j] = float(missing)
    if not higher_is_better:
        x = -x
    indices, seed = _draws(len(cases), n_resamples, seed, indices)
    w = case_weights(indices, len(cases))
    finite = np.isfinite(x)
    # one BLAS product gives every team's mean in every resample; with skipped cases a second
    # one counts each team's drawn finite cases (with no skipped case it is n: no division
    # changes the numbers)
    sums = w @ np.where(finite, x, 0.0).T
    if finite.all():
        means = sums / len(cases)
        observed_means = x.mean(axis=1)
    else:
        counts = w @ finite.T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)
        observed_means = np.array([row[ok].mean() if ok.any() else np.nan
                                   for row, ok in zip(x, finite, strict=True)])
    ranks = _better_counts(means, TIE_RTOL) + 1
    observed = _better_counts(observed_means[None, :], TIE_RTOL)[0] + 1
    rule = (f"mean of the per-case metric over {len(cases)} resampled cases, "
            f"{'higher' if higher_is_better else 'lower'} is better, ties share the best rank")
    return _summarise(names, observed, ranks, len(cases), seed, alpha, rule, [])


def bootstrap_refuge_ranking(segmentation_items: Mapping[str, Mapping[str, Any]] |
                             Mapping[str, Sequence[Mapping[str, Any]]],
                             probabilities: Mapping[str, Mapping[str, float]] | None = None,
                             labels: Mapping[str, bool] | None = None, *,
                             segmentation_weights: Sequence[float] = (0.35, 0.25, 0.4),
                             final_weights: Sequence[float] = (0.6, 0.4),
                             n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                             alpha: float = 0.05,
                             indices: np.ndarray | None = None) -> StabilityReport:
    """Bootstrap REFUGE's own ranking (weighted ranks, official tie order) over its images.

    Parameters
    ----------
    segmentation_items : ``{team: {image id: {"cup_dice", "disc_dice", "vcdr_error"}}}`` or
        ``{team: [items with "id"]}`` (a REFUGE result's ``items``). The mapping's order is the
        official results table's row order (ties are broken from it). A team with a missing or
        NaN item drops off the segmentation board in every resample (as the official code
        drops a NaN team).
    probabilities, labels : ``{team: {image id: glaucoma probability}}`` and
        ``{image id: has glaucoma}``, matched to the segmentation items by upper-cased file
        stem (``T0001.jpg`` is the image of ``T0001.bmp``). With both, each resample
        recomputes every team's AUC (pairs weighted by multiplicity, ties ½, i.e. the
        trapezoidal AUC of the resampled list) and the final ranking is resampled; without
        them, the segmentation board.
    segmentation_weights, final_weights : the config's ``ranking`` weights.
    n_resamples, seed, alpha, indices : as :func:`bootstrap_mean_ranking`; images are drawn
        from the sorted ids of the segmentation items (the classification images must be the
        same set).

    Returns
    -------
    :class:`StabilityReport`; a team absent from a resample's board (NaN metric) is given the
    last rank there, and the notes count such resamples.
    """
    teams = [str(t) for t in segmentation_items]
    table = {str(t): {c: (v if isinstance(v, Mapping) else {}) for c, v in
                      _as_id_map(items).items()} for t, items in segmentation_items.items()}
    cases = sorted({c for vals in table.values() for c in vals})
    if not teams or not cases:
        return StabilityReport(False, "rank stability not available: no REFUGE segmentation "
                               "items were given")
    keys = ("cup_dice", "disc_dice", "vcdr_error")
    x = np.full((3, len(teams), len(cases)), np.nan)
    for i, t in enumerate(teams):
        for j, c in enumerate(cases):
            item = table[t].get(c, {})
            for k, key in enumerate(keys):
                v = item.get(key)
                x[k, i, j] = np.nan if v is None else float(v)
    use_cls = probabilities is not None and labels is not None
    notes: list[str] = []
    if use_cls:
        # masks are .bmp, classification rows .jpg: images are matched by upper-cased stem,
        # as the scorer compares classification names upper-cased
        label_of = _by_image(labels, "labels")
        missing = [c for c in cases if _image_key(c) not in label_of]
        if missing:
            raise ValueError(f"no glaucoma label for image {missing[0]!r} "
                             f"({len(missing)} image(s) of the segmentation items)")
        y = np.array([bool(label_of[_image_key(c)]) for c in cases])
        keys_ = [_image_key(c) for c in cases]
        pairs = [_auc_pairs(_by_image(probabilities.get(t) or {}, f"{t} probabilities"),
                            keys_, y) for t in teams]
    else:
        notes.append("no per-image glaucoma probabilities/labels given: the segmentation "
                     "board is resampled, not the final ranking")
    indices, seed = _draws(len(cases), n_resamples, seed, indices)
    w = case_weights(indices, len(cases))
    n = len(cases)
    # NaN items propagate through the product: that team's mean is NaN in every resample
    means = _snap(np.stack([(w @ x[k].T) / n for k in range(3)]))  # (3, B, T)
    if use_cls:
        aucs = _snap(np.stack([_weighted_auc(w, p, y) for p in pairs], axis=1))  # (B, T)
    board = "final" if use_cls else "segmentation"

    def metrics_of(b: int) -> dict[str, dict[str, float]]:
        out = {}
        for i, t in enumerate(teams):
            m = {"mean_cup_dice": means[0, b, i], "mean_disc_dice": means[1, b, i],
                 "vcdr_mae": means[2, b, i]}
            if use_cls:
                m["auc"] = aucs[b, i]
            out[t] = m
        return out

    absent = [0]

    def positions(metrics: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        boards = refuge_leaderboard(metrics, segmentation_weights=segmentation_weights,
                                    final_weights=final_weights)
        order = boards[board]["teams_in_order"]
        pos = np.full(len(teams), len(teams), dtype=np.int64)  # absent: last
        for p, t in enumerate(order):
            pos[teams.index(t)] = p + 1
        absent[0] += len(teams) - len(order)
        return pos

    ranks = np.stack([positions(metrics_of(b)) for b in range(w.shape[0])])
    from_resamples = absent[0]
    # the observed board: the plain means (rounded like the bootstrap means) and full-set AUCs
    ones = np.ones((1, n))
    full = {t: {"mean_cup_dice": _snap(np.mean(x[0, i])), "mean_disc_dice": _snap(np.mean(x[1, i])),
                "vcdr_mae": _snap(np.mean(x[2, i]))} for i, t in enumerate(teams)}
    if use_cls:
        for i, t in enumerate(teams):
            full[t]["auc"] = float(_snap(_weighted_auc(ones, pairs[i], y)[0]))
    observed = positions(full)
    if from_resamples:
        notes.append(f"{from_resamples} team-resample(s) had a NaN metric (a NaN item, or no "
                     "image of one class drawn) and took the last rank")
    rule = (f"REFUGE {board} ranking (weights {list(segmentation_weights)}"
            + (f", final {list(final_weights)}" if use_cls else "")
            + f") over {n} resampled images, NumPy 1.23 tie order")
    return _summarise(teams, observed, ranks, n, seed, alpha, rule, notes)


def challenge_stability(challenge: str, items: Mapping[str, Any], *,
                        n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                        alpha: float = 0.05, track: str | None = None,
                        ranking: Mapping[str, Any] | None = None,
                        probabilities: Mapping[str, Mapping[str, float]] | None = None,
                        labels: Mapping[str, bool] | None = None) -> StabilityReport:
    """Rank stability of one challenge's leaderboard with that challenge's own rule.

    Parameters
    ----------
    challenge : ``urisc``, ``medsegfm``, ``refuge`` (others return :func:`unsupported`).
    items : ``{submission: result items}`` (lists of item dicts with ``id``, or
        ``{id: item}``) of the scored submissions, in leaderboard row order (REFUGE: the
        official table order, submission-name order in ``gpueval leaderboard``).
    track : MedSegFM's track; ``text`` scores F1 for instance cases and DSC for semantic ones.
    ranking : the config's ``ranking`` section (REFUGE weights).
    probabilities, labels : REFUGE classification inputs (see :func:`bootstrap_refuge_ranking`).

    Returns
    -------
    :class:`StabilityReport`.
    """
    if challenge == "refuge":
        ranking = ranking or {}
        return bootstrap_refuge_ranking(
            items, probabilities, labels,
            segmentation_weights=ranking.get("segmentation_weights", (0.35, 0.25, 0.4)),
            final_weights=ranking.get("final_weights", (0.6, 0.4)),
            n_resamples=n_resamples, seed=seed, alpha=alpha)
    if challenge not in HEADLINE_ITEM_METRIC:
        return unsupported(challenge)
    return bootstrap_mean_ranking(items, item_metric=item_metric_for(challenge, track),
                                  n_resamples=n_resamples, seed=seed, alpha=alpha)


def item_metric_for(challenge: str, track: str | None = None) -> ItemMetric:
    """The per-item value whose mean is ``challenge``'s headline score (None if there is none).

    U-RISC: ``f1``; MedSegFM: ``dsc``, or on the ``text`` track F1 for instance cases and DSC
    where F1 is NaN (semantic cases); REFUGE: ``cup_dice`` (its leading segmentation metric —
    the impact report's items then explain the change in mean cup Dice). XPRESS and CellMap:
    None (their score is not a mean of items).
    """
    if challenge == "medsegfm" and track == "text":
        return _text_track_value
    if challenge == "refuge":
        return "cup_dice"
    return HEADLINE_ITEM_METRIC.get(challenge)


def _text_track_value(item: Mapping[str, Any]) -> Any:
    f1 = item.get("f1")
    try:
        finite = f1 is not None and math.isfinite(float(f1))
    except (TypeError, ValueError):
        finite = False
    return f1 if finite else item.get("dsc")


# --------------------------------------------------------------------------------------------


def _draws(n_cases: int, n_resamples: int, seed: int | None,
           indices: Any) -> tuple[np.ndarray, int | None]:
    """The seeded draws, or the explicit ``indices`` checked (seed None: not seeded)."""
    if indices is None:
        if n_resamples < 1:
            raise ValueError(f"n_resamples={n_resamples}: at least one resample is needed")
        return resample_indices(n_cases, n_resamples, seed), seed
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] < 1 or idx.shape[1] < 1 or \
            not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n_cases:
        raise ValueError(f"indices must be a non-empty 2-D array of case indices in "
                         f"[0, {n_cases})")
    return idx.astype(np.int64), None


def _summarise(names: list[str], observed: np.ndarray, ranks: np.ndarray, n_cases: int,
               seed: int | None, alpha: float, rule: str, notes: list[str]) -> StabilityReport:
    """Distribution, quantiles, pairwise fractions and tied groups from ``(B, T)`` ranks."""
    t = len(names)
    b = ranks.shape[0]
    order = sorted(range(t), key=lambda i: (observed[i], i))
    ranks = ranks[:, order]
    names = [names[i] for i in order]
    observed = np.asarray(observed)[order]
    counts = np.zeros((t, t), dtype=np.int64)
    for i in range(t):  # T bincounts of B ranks: cheap next to the resampling
        counts[i] = np.bincount(ranks[:, i] - 1, minlength=t)[:t]
    cum = np.cumsum(counts, axis=1)

    def quantile(q: float) -> np.ndarray:
        # smallest rank whose cumulative frequency reaches q (the inverted CDF)
        return (cum < q * b - 1e-9).sum(axis=1) + 1

    lo, med, hi = quantile(alpha / 2), quantile(0.5), quantile(1 - alpha / 2)
    better = np.zeros((t, t))
    for i in range(t):
        better[i] = (ranks[:, [i]] < ranks).mean(axis=0)
    groups: list[list[str]] = []
    start = 0
    while start < t:
        end = start + 1
        while end < t and better[start, end] < 1 - alpha:
            end += 1
        groups.append(names[start:end])
        start = end
    return StabilityReport(
        True, f"{b} bootstrap resamples of {n_cases} cases", names,
        [int(r) for r in observed], counts, [int(m) for m in med],
        [(int(a), int(c)) for a, c in zip(lo, hi, strict=True)], better, groups,
        n_cases, b, seed, alpha, rule, notes)


def _case_values(v: Any, item_metric: ItemMetric) -> dict[str, float | None]:
    out = {}
    for c, it in _as_id_map(v).items():
        if isinstance(it, Mapping):
            if item_metric is None:
                raise ValueError("per-case values are dicts: name the metric (item_metric=)")
            it = item_metric(it) if callable(item_metric) else it.get(item_metric)
        try:
            out[c] = None if it is None else float(it)
        except (TypeError, ValueError):
            out[c] = None
    return out


def _image_key(name: Any) -> str:
    return PurePosixPath(str(name)).stem.upper()


def _by_image(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, v in values.items():
        key = _image_key(name)
        if key in out:
            raise ValueError(f"{what}: two entries for image {key!r}")
        out[key] = v
    return out


def _auc_pairs(probs: Mapping[str, float], cases: list[str], y: np.ndarray) -> np.ndarray:
    """``P[i, j]``: 1 if positive i outscores negative j, ½ if equal, else 0 (NaN if missing)."""
    s = np.array([np.nan if probs.get(c) is None else float(probs[c]) for c in cases])
    pos, neg = y[:, None], ~y[None, :]
    p = np.where(s[:, None] > s[None, :], 1.0, np.where(s[:, None] == s[None, :], 0.5, 0.0))
    p = np.where(pos & neg, p, 0.0)
    if np.isnan(s).any():
        p[:] = np.nan  # a missing probability: the official code leaves the AUC undefined
    return p


def _weighted_auc(w: np.ndarray, pairs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of each resample: ``Σ w_i w_j P[i, j] / (W_pos · W_neg)`` (NaN if a class is absent)."""
    num = ((w @ pairs) * w).sum(axis=1)
    den = (w[:, y].sum(axis=1)) * (w[:, ~y].sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _snap(x: Any) -> Any:
    """Round REFUGE means and AUCs to 12 decimals: a tie must not depend on summation order.

    The official ranking compares values exactly; a bootstrap mean summed by BLAS may differ
    from ``numpy.mean`` of the same values in the last bit, and an AUC summed over pairs from
    the trapezoidal one. Dice, vCDR errors and AUCs lie in [0, 1], so 12 decimals keep every
    genuine difference of any realistic test set (≤ 10⁶ images).
    """
    return np.round(x, 12)
