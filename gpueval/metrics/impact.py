"""What a metric change did to a ranking: Δscore, Δrank, rank correlation and the items behind it.

The organiser's questions after re-scoring under a new metric version are *did anyone's rank
change, by how much, and because of which cases?* :func:`metric_change_impact` answers them
from plain data (the leaderboard code reads it from the results database):

* per submission: old and new score, Δscore = new − old, old and new rank, Δrank = old − new
  (positive = moved up, as ``gpueval leaderboard --compare`` prints it);
* Kendall's τ-b and Spearman's ρ (:func:`scipy.stats.kendalltau`, :func:`scipy.stats.spearmanr`)
  between the two rankings, over the submissions ranked under both versions;
* for every submission whose rank changed, the items (cases, images, crops) that contributed
  most to its score difference.

Item contributions
------------------
For a challenge whose score is the mean of one per-item metric ``m`` (U-RISC: per-image F;
MedSegFM: per-case DSC), the score change decomposes exactly over the union of items::

    Δscore = Σ_i ( new_i / n_new − old_i / n_old ),

with ``n`` the number of items with a finite value under each version and an item without a
finite value contributing 0 on that side. When both versions score the same items this is
``(new_i − old_i) / n`` — the item's change divided by the number of items — and the
contributions sum to Δscore. This generalises to any aggregation that is a weighted mean (weights
``w_i``: contribution ``w_i·new_i − w_i·old_i``, pass ``weights``). For an aggregation that is not
a mean of item values (REFUGE's rank-weighted boards, CellMap's per-label means) the same
formula is reported for the chosen item metric: it then explains the change in that metric's
mean (e.g. REFUGE's mean cup Dice), the first driver of the rank change, not the rank itself;
the report's ``contribution_rule`` says which one was used.

The items "that contributed most" to a submission are those with the largest contributions in
the direction of its score change (largest positive ones for a gain, most negative ones for a
loss; ties by item id), at most ``top_k`` of them, zero contributions left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from gpueval.metrics.ranking import competition_ranks

# submission -> {item id -> metrics dict or number}, or submission -> result items (dicts with
# an "id"), as stored in a result's ``items``
ItemTable = Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]]
# the per-item headline: a key of the item dict, or a function of it (MedSegFM's text track)
ItemMetric = str | Callable[[Mapping[str, Any]], Any] | None


@dataclass
class ItemContribution:
    """One item's share of a submission's score change (see the module docstring)."""

    item: str
    old: float | None
    new: float | None
    contribution: float


@dataclass
class ImpactRow:
    """One submission under both metric versions (None where it has no score/rank there)."""

    name: str
    old_score: float | None
    new_score: float | None
    delta_score: float | None
    old_rank: int | None
    new_rank: int | None
    delta_rank: int | None  # old − new: positive = moved up
    top_items: list[ItemContribution] = field(default_factory=list)


@dataclass
class ImpactReport:
    """The metric-change impact report (rows in new-rank order, unranked last)."""

    old_version: str
    new_version: str
    rows: list[ImpactRow]
    kendall_tau: float
    kendall_pvalue: float
    spearman_rho: float
    spearman_pvalue: float
    n_compared: int  # submissions ranked under both versions (what τ and ρ are computed on)
    item_metric: str | None
    contribution_rule: str
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[ImpactRow]:
        """Rows whose rank changed (both ranks known)."""
        return [r for r in self.rows if r.delta_rank not in (None, 0)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN correlations become None)."""
        def num(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {"old_version": self.old_version, "new_version": self.new_version,
                "kendall_tau": num(self.kendall_tau),
                "kendall_pvalue": num(self.kendall_pvalue),
                "spearman_rho": num(self.spearman_rho),
                "spearman_pvalue": num(self.spearman_pvalue),
                "n_compared": self.n_compared, "item_metric": self.item_metric,
                "contribution_rule": self.contribution_rule, "notes": list(self.notes),
                "rows": [{"name": r.name, "old_score": r.old_score, "new_score": r.new_score,
                          "delta_score": r.delta_score, "old_rank": r.old_rank,
                          "new_rank": r.new_rank, "delta_rank": r.delta_rank,
                          "top_items": [vars(c).copy() for c in r.top_items]}
                         for r in self.rows]}


def metric_change_impact(old_scores: Mapping[str, float | None],
                         new_scores: Mapping[str, float | None],
                         old_items: ItemTable | None = None,
                         new_items: ItemTable | None = None, *,
                         item_metric: ItemMetric = None,
                         old_ranks: Mapping[str, int | None] | None = None,
                         new_ranks: Mapping[str, int | None] | None = None,
                         higher_is_better: bool = True,
                         weights: Mapping[str, float] | None = None,
                         top_k: int = 3,
                         old_version: str = "old",
                         new_version: str = "new") -> ImpactReport:
    """Compare one challenge's leaderboard under two metric versions.

    Parameters
    ----------
    old_scores, new_scores : ``{submission name: headline score}`` under each version (None or
        NaN: not scored / rejected). A name missing from one mapping is new or gone.
    old_items, new_items : ``{submission name: {item id: item}}`` where ``item`` is the item's
        metrics dict (its ``item_metric`` value is used) or directly a number, or
        ``{submission name: result items}`` (a list of dicts with ``"id"``). Optional: without
        them no item contributions are reported.
    item_metric : the per-item metric the score aggregates (U-RISC ``"f1"``, MedSegFM
        ``"dsc"``, REFUGE e.g. ``"cup_dice"``), or a function of the item dict
        (:func:`gpueval.metrics.stability.item_metric_for` gives each challenge's); needed
        when items are dicts.
    old_ranks, new_ranks : the challenge's own ranks (REFUGE: positions on the final board from
        :func:`gpueval.metrics.ranking.refuge_leaderboard`, where scores are null). Default:
        :func:`gpueval.metrics.ranking.competition_ranks` of the scores (the leaderboard's rule:
        ties share the best rank).
    higher_is_better : direction of the scores (for the default ranks).
    weights : ``{item id: weight}`` when the score is a weighted mean of items (module
        docstring); default: the plain mean.
    top_k : how many items to name per rank change.
    old_version, new_version : labels carried into the report.

    Returns
    -------
    :class:`ImpactReport`; τ and ρ are NaN when fewer than two submissions are ranked under both
    versions (or one ranking is constant), with a note saying so.

    Examples
    --------
    >>> rep = metric_change_impact({"A": 0.5, "B": 0.4}, {"A": 0.3, "B": 0.4},
    ...                            {"A": {"c1": 0.5, "c2": 0.5}}, {"A": {"c1": 0.5, "c2": 0.1}})
    >>> [(r.name, r.delta_rank, [c.item for c in r.top_items]) for r in rep.rows]
    [('B', 1, []), ('A', -1, ['c2'])]
    """
    names = list(dict.fromkeys([*old_scores, *new_scores,
                                *(old_ranks or {}), *(new_ranks or {})]))
    notes: list[str] = []
    ro = _ranks(names, old_scores, old_ranks, higher_is_better)
    rn = _ranks(names, new_scores, new_ranks, higher_is_better)
    rows: list[ImpactRow] = []
    for n in names:
        so, sn = _number(old_scores.get(n)), _number(new_scores.get(n))
        delta = sn - so if so is not None and sn is not None else None
        d_rank = ro[n] - rn[n] if ro[n] is not None and rn[n] is not None else None
        row = ImpactRow(n, so, sn, delta, ro[n], rn[n], d_rank)
        if d_rank not in (None, 0) and old_items is not None and new_items is not None:
            contribs = item_contributions(_as_id_map(old_items.get(n)),
                                          _as_id_map(new_items.get(n)),
                                          item_metric=item_metric, weights=weights)
            direction = _direction(delta, contribs)
            ranked = sorted((c for c in contribs if c.contribution * direction > 0),
                            key=lambda c: (-c.contribution * direction, c.item))
            row.top_items = ranked[:top_k]
        rows.append(row)
    rows.sort(key=lambda r: (r.new_rank is None, r.new_rank or 0,
                             r.old_rank is None, r.old_rank or 0, r.name))
    both = [r for r in rows if r.old_rank is not None and r.new_rank is not None]
    tau = tau_p = rho = rho_p = math.nan
    if len(both) >= 2:
        a = [r.old_rank for r in both]
        b = [r.new_rank for r in both]
        if len(set(a)) > 1 and len(set(b)) > 1:
            tau, tau_p = (float(x) for x in stats.kendalltau(a, b))
            rho, rho_p = (float(x) for x in stats.spearmanr(a, b))
        else:
            notes.append("one of the rankings is constant (all tied): τ and ρ are undefined")
    else:
        notes.append(f"only {len(both)} submission(s) ranked under both versions: "
                     "τ and ρ need at least two")
    gone = [r.name for r in rows if r.old_rank is not None and r.new_rank is None]
    new = [r.name for r in rows if r.old_rank is None and r.new_rank is not None]
    if gone:
        notes.append(f"{len(gone)} submission(s) ranked under {old_version} but not under "
                     f"{new_version}: {', '.join(gone[:5])}{' …' if len(gone) > 5 else ''}")
    if new:
        notes.append(f"{len(new)} submission(s) ranked only under {new_version}: "
                     f"{', '.join(new[:5])}{' …' if len(new) > 5 else ''}")
    rule = ("weighted mean: contribution = w_i·(new_i − old_i)" if weights is not None else
            "mean: contribution = new_i/n_new − old_i/n_old (= Δ_i/n on the same items)")
    return ImpactReport(old_version, new_version, rows, tau, tau_p, rho, rho_p, len(both),
                        item_metric, rule, notes)


def item_contributions(old: Mapping[str, Any], new: Mapping[str, Any], *,
                       item_metric: ItemMetric = None,
                       weights: Mapping[str, float] | None = None) -> list[ItemContribution]:
    """Each item's contribution to the change of the mean of ``item_metric`` (module docstring).

    Parameters
    ----------
    old, new : ``{item id: metrics dict or number}`` of one submission under each version.
    item_metric : key read from metrics dicts, or a function of the dict.
    weights : ``{item id: weight}`` for a weighted mean (missing ids weigh 0).

    Returns
    -------
    One :class:`ItemContribution` per item of either version, in item-id order; with the plain
    mean the contributions sum to ``mean(new) − mean(old)`` over the finite values.
    """
    vo = {k: _item_value(v, item_metric) for k, v in old.items()}
    vn = {k: _item_value(v, item_metric) for k, v in new.items()}
    n_old = sum(v is not None for v in vo.values())
    n_new = sum(v is not None for v in vn.values())
    out = []
    for k in sorted(set(vo) | set(vn)):
        a, b = vo.get(k), vn.get(k)
        if weights is not None:
            w = float(weights.get(k, 0.0))
            c = w * (b or 0.0) - w * (a or 0.0)
        else:
            c = ((b / n_new) if b is not None else 0.0) - ((a / n_old) if a is not None else 0.0)
        out.append(ItemContribution(str(k), a, b, float(c)))
    return out


def _direction(delta: float | None, contribs: list[ItemContribution]) -> float:
    # a rank can change while the score did not (another team moved): then name the items
    # pushing this submission's own item mean in the direction of their net change
    if delta is None or delta == 0:
        total = sum(c.contribution for c in contribs)
        return 1.0 if total >= 0 else -1.0
    return 1.0 if delta > 0 else -1.0


def _ranks(names: list[str], scores: Mapping[str, Any], given: Mapping[str, Any] | None,
           higher_is_better: bool) -> dict[str, int | None]:
    if given is not None:
        return {n: (None if given.get(n) is None else int(given[n])) for n in names}
    r = competition_ranks([_number(scores.get(n)) for n in names],
                          higher_is_better=higher_is_better)
    return dict(zip(names, r, strict=True))


def _number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _item_value(item: Any, key: ItemMetric) -> float | None:
    if isinstance(item, Mapping):
        if key is None:
            raise ValueError("items are metrics dicts: name the per-item metric (item_metric=)")
        return _number(key(item) if callable(key) else item.get(key))
    if isinstance(item, (int, float, np.floating, np.integer)) and not isinstance(item, bool):
        return _number(item)
    return None


def _as_id_map(items: Any) -> dict[str, Any]:
    """``{id: item}`` from ``{id: item}``, a list of item dicts with ``"id"``, or None."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): v for k, v in items.items()}
    out = {}
    for it in items:
        if not isinstance(it, Mapping) or "id" not in it:
            raise ValueError("items must be {id: value} or a list of dicts with an 'id'")
        out[str(it["id"])] = it
    return out
